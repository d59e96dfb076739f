"""Compose a run's config from conf/ + recipes/ with Hydra, for the CLI and notebooks.

Recipes live in the top-level `recipes/` folder but act as the Hydra config group
`recipe` (`recipe=digits_cnn`): each file is loaded into Hydra's ConfigStore under
that group, so the repo keeps its layout and Hydra keeps its semantics.
"""

import secrets
from collections.abc import Sequence

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from jaxfw.config.errors import translate_config_error
from jaxfw.config.paths import conf_dir, recipes_dir
from jaxfw.config.schema import register_schema
from jaxfw.errors import UserError

PRIMARY_CONFIG = "config"


def _unique_suffix() -> str:
    # Time-stamped run dirs collide when two runs start in the same second.
    return secrets.token_hex(3)


def available_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("jaxfw.unique"):
        OmegaConf.register_new_resolver("jaxfw.unique", _unique_suffix, use_cache=True)


# At import: a launcher (submitit) unpickles the job in a fresh process where main()
# never ran, and Hydra's cached resolver values still need the resolver registered.
_register_resolvers()


def register_configs() -> None:
    """Register the schema, the recipes and jaxfw's resolvers (idempotent)."""
    _register_resolvers()
    register_schema()
    store = ConfigStore.instance()
    for path in sorted(recipes_dir().glob("*.yaml")):
        store.store(group="recipe", name=path.stem, node=OmegaConf.load(path), package="_global_")


def compose(recipe: str | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """The composed, typed config of `recipe` (default: the default recipe) with Hydra
    overrides applied, e.g. `compose("digits_cnn", ["optimizer=sgd", "trainer.steps=300"])`.

    Raises UserError with one sentence for a misspelled key, a wrong type or an
    unknown option. Leaves no global Hydra state behind, so it can be called again.
    """
    register_configs()
    all_overrides = ([f"recipe={recipe}"] if recipe is not None else []) + list(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=PRIMARY_CONFIG, overrides=all_overrides)
    except UserError:
        raise
    except Exception as exc:  # Hydra/OmegaConf errors are user mistakes here
        raise translate_config_error(exc) from exc
    finally:
        GlobalHydra.instance().clear()
    return cfg
