"""Compose a run's config from conf/ + recipes/ with Hydra, for the CLI and notebooks.

Recipes live in the top-level `recipes/` folder but act as the Hydra config group
`recipe` (`recipe=digits_cnn`): each file is loaded into Hydra's ConfigStore under
that group, so the repo keeps its layout and Hydra keeps its semantics.
"""

import re
import secrets
from collections.abc import Sequence
from pathlib import PurePath

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from jaxfw.config.errors import parse_failure, quoted_override, translate_config_error
from jaxfw.config.paths import conf_dir, recipes_dir
from jaxfw.config.schema import SCHEMA_NAME, register_schema
from jaxfw.errors import UserError

PRIMARY_CONFIG = "config"


def _unique_suffix() -> str:
    # Time-stamped run dirs collide when two runs start in the same second.
    return secrets.token_hex(3)


def available_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


# Extensions dropped from a data file's name to name a run after it ("shop.csv.gz" -> "shop").
_DATA_SUFFIXES = {".csv", ".parquet", ".pq", ".npz", ".txt", ".gz", ".bz2"}


def data_run_name(path: str | None, default: str) -> str:
    """`${jaxfw.data_name:${data.path},digits_mlp}`: the name of a run on the user's own data
    (data.path set) is the file's stem made safe as a directory name ("data/My Shop.csv" ->
    "My_Shop"); without a data file it is `default`."""
    if not path:
        return default
    name = PurePath(str(path)).name
    while True:
        stem, dot, suffix = name.rpartition(".")
        if not (dot and stem and f".{suffix.lower()}" in _DATA_SUFFIXES):
            break
        name = stem
    safe = re.sub(r"\.{2,}", ".", re.sub(r"[^\w.-]+", "_", name)).strip("._-")
    return safe or default


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("jaxfw.unique"):
        OmegaConf.register_new_resolver("jaxfw.unique", _unique_suffix, use_cache=True)
    if not OmegaConf.has_resolver("jaxfw.data_name"):
        OmegaConf.register_new_resolver("jaxfw.data_name", data_run_name)


# At import: a launcher (submitit) unpickles the job in a fresh process where main()
# never ran, and Hydra's cached resolver values still need the resolver registered.
_register_resolvers()


# The recipe files (path, mtime, size) last stored in Hydra's ConfigStore: storing the
# schema and recipes takes a tenth of a second or more, and the CLI registers them before
# each composition.
_registered: tuple | None = None


def _recipe_files() -> tuple:
    paths = sorted(recipes_dir().glob("*.yaml"))
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)


def register_configs() -> None:
    """Register the schema, the recipes and jaxfw's resolvers (idempotent; a recipe file
    edited since, e.g. in a notebook session, is stored again)."""
    global _registered
    _register_resolvers()
    store = ConfigStore.instance()
    files = _recipe_files()
    if files == _registered and f"{SCHEMA_NAME}.yaml" in store.repo:
        return
    register_schema()
    for path, *_ in files:
        stem = PurePath(path).stem
        store.store(group="recipe", name=stem, node=OmegaConf.load(path), package="_global_")
    _registered = files


def compose(recipe: str | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """The composed, typed config of `recipe` (default: the default recipe) with Hydra
    overrides applied, e.g. `compose("digits_cnn", ["optimizer=sgd", "trainer.steps=300"])`.

    Raises UserError with one sentence for a misspelled key, a wrong type or an
    unknown option. Leaves no global Hydra state behind, so it can be called again.
    """
    register_configs()
    all_overrides = ([f"recipe={recipe}"] if recipe is not None else []) + list(overrides)
    try:
        return _compose(all_overrides)
    except UserError:
        raise
    except Exception as exc:  # Hydra/OmegaConf errors are user mistakes here
        raise _explain(exc, all_overrides) from exc


def _explain(exc: Exception, overrides: list[str]) -> UserError:
    """The UserError for a failed composition of `overrides`."""
    unparsed = parse_failure(exc)
    quoted = None if unparsed is None else quoted_override(unparsed)
    if quoted is not None:
        # `name=café`: Hydra reads non-ASCII letters only in quotes. Compose the quoted form
        # to report what would still be wrong with the value (a number expected, an unknown
        # option); if nothing is, the error says to quote it.
        try:
            _compose([quoted if o == unparsed else o for o in overrides])
        except UserError as error:
            return error
        except Exception as retry:
            return translate_config_error(retry)
    return translate_config_error(exc)


def _compose(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name=PRIMARY_CONFIG, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
