"""`jaxfw-train` (also `python -m jaxfw.train`): compose a recipe with Hydra and train it.

    jaxfw-train                                    # the default recipe, digits_mlp
    jaxfw-train recipe=digits_cnn optimizer=sgd optimizer.lr=0.05 trainer.steps=300 seed=3
    jaxfw-train -m optimizer.lr=1e-3,3e-3          # a sweep: one run directory each

Overrides are checked before Hydra starts a job, so a typo, a wrong type or an
unknown option ends with one line naming the bad value, exit code 2, no traceback.
"""

import importlib.util
import sys
from collections.abc import Sequence

import hydra
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from jaxfw import xla_flags
from jaxfw.config.compose import PRIMARY_CONFIG, compose, register_configs
from jaxfw.config.errors import translate_config_error
from jaxfw.config.paths import conf_dir
from jaxfw.config.validate import validate_config
from jaxfw.errors import UserError

PROG = "jaxfw-train"
USER_ERROR_EXIT = 2
NON_FINITE_EXIT = 3  # trainer.nan_policy=raise stopped the run


def _fail(exc: UserError, code: int = USER_ERROR_EXIT) -> None:
    print(f"{PROG}: error: {exc}", file=sys.stderr)
    sys.exit(code)


def _job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of each job Hydra would launch (one unless sweeping)."""
    if not multirun:
        return [overrides]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise translate_config_error(exc) from exc
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


_LAUNCHER_PACKAGES = {"slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher")}


def _check_launcher(overrides: Sequence[str]) -> None:
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+") == "hydra/launcher" and value in _LAUNCHER_PACKAGES:
            module, package = _LAUNCHER_PACKAGES[value]
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                raise UserError(
                    f"hydra/launcher={value} needs the {package} package: pip install {package}."
                )


def check_overrides(argv: Sequence[str]) -> list[DictConfig]:
    """Compose and validate every job's config; raise UserError for the first mistake."""
    args = get_args_parser().parse_args(list(argv))
    if args.help or args.hydra_help or args.info or args.shell_completion or args.cfg:
        return []
    _check_launcher(args.overrides)
    configs = []
    for overrides in _job_overrides(list(args.overrides), bool(args.multirun)):
        configs.append(compose(overrides=overrides))
        validate_config(configs[-1])
    return configs


def _resume_dir_override(argv: Sequence[str], configs: list[DictConfig]) -> list[str]:
    """`hydra.run.dir=<dir>` of the unfinished run this exact command started, if any:
    Hydra must not create a fresh time-stamped dir for a run that is resumed."""
    args = get_args_parser().parse_args(list(argv))
    placed = any(o.split("=")[0] in ("hydra.run.dir", "run_dir") for o in args.overrides)
    if args.multirun or placed or len(configs) != 1:
        return []
    from jaxfw.build import resolve_config
    from jaxfw.trainer import choose_run_dir

    cfg = configs[0]
    resolved = resolve_config(cfg)
    found = choose_run_dir(cfg, resolved, None)
    return [] if str(found) == resolved.run_dir else [f"hydra.run.dir={found}"]


def _run_job(cfg: DictConfig) -> None:
    # Imported after the checks: JAX loads only for real work.
    from jaxfw.loop import NonFiniteError
    from jaxfw.trainer import train

    try:
        result = train(cfg, run_dir=HydraConfig.get().runtime.output_dir)
    except NonFiniteError as exc:
        _fail(exc, NON_FINITE_EXIT)
    except UserError as exc:
        _fail(exc)
    if result.status == "preempted":
        step = int(result.state.step)
        print(f"preempted at step {step}; the same command resumes it  run_dir {result.run_dir}")
        return
    summary = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k.startswith("test/"))
    print(f"{summary}  run_dir {result.run_dir}")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    xla_flags.configure()  # before JAX starts its backend
    register_configs()
    try:
        argv += _resume_dir_override(argv, check_overrides(argv))
    except UserError as exc:
        _fail(exc)
    sys.argv = [PROG, *argv]
    hydra.main(config_path=str(conf_dir()), config_name=PRIMARY_CONFIG, version_base="1.3")(
        _run_job
    )()


if __name__ == "__main__":
    main()
