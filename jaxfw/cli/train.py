"""`jaxfw-train` (also `python -m jaxfw`): compose a recipe with Hydra and train it.

    jaxfw-train                                    # the default recipe, digits_mlp
    jaxfw-train recipe=digits_cnn optimizer=sgd optimizer.lr=0.05 trainer.steps=300 seed=3
    jaxfw-train -m optimizer.lr=1e-3,3e-3          # a sweep: one run directory each

Overrides are checked before Hydra starts a job, so a typo, a wrong type or an
unknown option ends with one line naming the bad value, exit code 2, no traceback.
Exit codes: 0 done (or preempted: the same command resumes), 1 the machine stopped the
run (disk full, a folder not writable) or a sweep had failed jobs, 2 a user mistake,
3 trainer.nan_policy=raise stopped the run, 130 Ctrl-C.

The run dir is checked before Hydra writes into it: a folder that is not a jaxfw run is
refused, and an existing run keeps its `.hydra/` record of the command that made it.
"""

import atexit
import contextlib
import importlib.util
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from jaxfw import xla_flags
from jaxfw.config.compose import PRIMARY_CONFIG, compose, register_configs
from jaxfw.config.errors import quoted_override, translate_config_error
from jaxfw.config.paths import conf_dir
from jaxfw.config.validate import validate_config
from jaxfw.errors import UserError
from jaxfw.failures import INTERRUPTED_EXIT, ForeignThreadOutput, RunFailed
from jaxfw.json_values import to_jsonable
from jaxfw.observe import timing
from jaxfw.run_guard import check_run_dir, check_writable, is_run_dir, refuse_if_locked

PROG = "jaxfw-train"
USER_ERROR_EXIT = 2
NON_FINITE_EXIT = 3  # trainer.nan_policy=raise stopped the run
SWEEP_FAILED_EXIT = 1
SWEEP_SUMMARY = "sweep_summary.json"


def _fail(exc: BaseException, code: int = USER_ERROR_EXIT) -> None:
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
    if _override_value(overrides, "hydra/sweeper") == "optuna":
        # Optuna's distributions: only for its sweeper (checked installed before).
        from jaxfw.sweep.space import search_space

        return search_space(parsed).check_jobs()
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
        optuna = key.lstrip("+") == "hydra/sweeper" and value == "optuna"
        if optuna and importlib.util.find_spec("optuna") is None:
            raise UserError("hydra/sweeper=optuna needs Optuna: pip install 'jaxfw[optuna]'.")


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
    # JAX and the data stack load only when a run is about to start.
    from jaxfw.build import resolve_config
    from jaxfw.trainer import choose_run_dir

    cfg = configs[0]
    resolved = resolve_config(cfg)
    found = choose_run_dir(cfg, resolved, None)
    return [] if str(found) == resolved.run_dir else [f"hydra.run.dir={found}"]


def _override_value(overrides: Sequence[str], key: str) -> str | None:
    values = [o.partition("=")[2] for o in overrides if o.partition("=")[0].lstrip("+") == key]
    return values[-1] if values else None


def _check_run_dir(argv: Sequence[str], configs: list[DictConfig]) -> list[str]:
    """Refuse a run dir that is not writable, not a jaxfw run, or in use, before Hydra
    writes its `.hydra/` there; for an existing run, keep the `.hydra/` it has (a failed
    rerun must not rewrite it). Returns the overrides to add."""
    args = get_args_parser().parse_args(list(argv))
    if args.multirun or len(configs) != 1 or not configs[0].logger.enabled:
        return []
    placed = _override_value(args.overrides, "hydra.run.dir")
    if placed is None:
        from jaxfw.build import resolve_config  # JAX: only when a run is about to start

        placed = resolve_config(configs[0]).run_dir
    if "${" in placed:  # an interpolation Hydra resolves at launch: a new, unique dir
        return []
    check_run_dir(placed)  # the text: an empty one means the current folder
    path = Path(placed)
    check_writable(path)
    refuse_if_locked(path)
    return ["hydra.output_subdir=null"] if is_run_dir(path) else []


# The jobs of a sweep run in this process (Hydra's basic launcher): each one's outcome.
_sweep_jobs: list[dict[str, Any]] = []


def _train(cfg: DictConfig) -> Any:
    """`jaxfw.train` for this Hydra job; a machine failure (RunFailed) ends the process
    with its one sentence."""
    from jaxfw.trainer import train  # JAX loads only for real work

    background = ForeignThreadOutput(sys.stderr)
    sys.stderr = background
    try:
        result = train(cfg, run_dir=HydraConfig.get().runtime.output_dir)
    except RunFailed as exc:
        # The sentence says it all; TensorStore's threads may still be printing, so the
        # stand-in stays in place until the process ends.
        background.release(show=False)
        print(f"{PROG}: error: {exc}", file=background.stream)
        sys.stdout.flush()
        background.stream.flush()
        # run.json and the checkpoints are closed; Orbax's I/O threads may still be
        # winding down after the failed write, and at interpreter exit they print
        # tracebacks ("Event loop is closed"). Nothing is left to clean up.
        os._exit(exc.exit_code)
    except BaseException:
        background.release(show=True)
        sys.stderr = background.stream
        raise
    background.release(show=True)
    sys.stderr = background.stream
    return result


def _train_job(cfg: DictConfig) -> Any:
    """Train; one sentence and an exit code for every way it can stop early."""
    from jaxfw.loop import NonFiniteError  # JAX loads only for real work

    try:
        return _train(cfg)
    except KeyboardInterrupt as exc:
        _fail(exc if str(exc) else "Interrupted (Ctrl-C).", INTERRUPTED_EXIT)
    except NonFiniteError as exc:
        _fail(exc, NON_FINITE_EXIT)
    except UserError as exc:
        _fail(exc)


# When hydra.main() was called: its composition and job set-up count as config.
_hydra_called_at: float | None = None


def _run_job(cfg: DictConfig) -> Any:
    """A run; in a sweep, returns its best task.best_metric value (what the Optuna
    sweeper optimises; None for a failed job)."""
    global _hydra_called_at
    if _hydra_called_at is not None:
        timing.add("config", time.perf_counter() - _hydra_called_at)
        _hydra_called_at = None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode.name != "MULTIRUN":
        _report(_train_job(cfg))
        return
    # In a sweep a failed job is recorded and the sweep goes on; Ctrl-C stops it all.
    job = {
        "job": hydra_cfg.job.num,
        "overrides": list(hydra_cfg.overrides.task),
        "run_dir": hydra_cfg.runtime.output_dir,
        "sweep_dir": hydra_cfg.sweep.dir,
    }
    try:
        result = _train_job(cfg)
    except SystemExit as exc:
        if exc.code == INTERRUPTED_EXIT:
            raise
        _sweep_jobs.append({**job, "status": "failed", "exit_code": exc.code})
        return
    except Exception as exc:  # a bug: keep its traceback, and the rest of the sweep
        traceback.print_exc()
        _sweep_jobs.append({**job, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return
    _sweep_jobs.append({**job, "status": result.status, "metrics": result.metrics})
    _report(result)
    return result.best.get("value")


def _finish_sweep() -> None:
    """Write the sweep's summary next to its jobs; exit 1 if any job failed."""
    if not _sweep_jobs:
        return
    failed = [job for job in _sweep_jobs if job["status"] == "failed"]
    sweep_dir = Path(_sweep_jobs[0]["sweep_dir"])
    summary = {"jobs": len(_sweep_jobs), "failed": len(failed), "runs": _sweep_jobs}
    try:
        (sweep_dir / SWEEP_SUMMARY).write_text(json.dumps(to_jsonable(summary), indent=2) + "\n")
    except OSError as exc:
        print(f"{PROG}: could not write {sweep_dir / SWEEP_SUMMARY}: {exc}", file=sys.stderr)
    if not failed:
        print(f"sweep: all {len(_sweep_jobs)} jobs completed  {sweep_dir}")
        return
    names = "; ".join(f"job {job['job']} ({' '.join(job['overrides'])})" for job in failed)
    print(
        f"{PROG}: error: {len(failed)} of {len(_sweep_jobs)} sweep jobs failed: {names} "
        f"(see {sweep_dir / SWEEP_SUMMARY}).",
        file=sys.stderr,
    )
    sys.exit(SWEEP_FAILED_EXIT)


def _report(result: Any) -> None:
    if result.status == "preempted":
        step = int(result.state.step)
        print(f"preempted at step {step}; the same command resumes it  run_dir {result.run_dir}")
        return
    summary = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k.startswith("test/"))
    print(f"{summary}  run_dir {result.run_dir}")


def _import_trainer(configs: list[DictConfig]) -> None:
    """Import the training stack before the run dir checks when a single run is about to
    start, so run.json's time split counts it as imports rather than config (a sweep's
    jobs may run elsewhere, e.g. under a Slurm launcher)."""
    if len(configs) == 1:
        import jaxfw.trainer  # noqa: F401


def _exit_now() -> None:
    """End the command's process without the interpreter's teardown: freeing every
    module and XLA's client takes over a second after a run. Everything the run wrote
    is closed by now; the atexit handlers (logging's flush, JAX's clean-up) still run."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # e.g. a closed pipe
            stream.flush()
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    """The command (arguments from sys.argv: the process ends when it is done) or, with
    `argv` given, the same in this process, which then goes on."""
    command = argv is None
    _main(list(sys.argv[1:] if argv is None else argv))
    # Under a profiler or coverage the interpreter's own exit writes their results.
    if command and sys.getprofile() is None and sys.gettrace() is None:
        _exit_now()


def _main(argv: list[str]) -> None:
    global _hydra_called_at
    timing.count_from_process_start()
    # Hydra reads a non-ASCII word (name=café) only quoted; quote it for the user.
    argv = [quoted_override(arg) or arg for arg in argv]
    xla_flags.configure()  # before JAX starts its backend
    # A log line that cannot be written (train.log on a full disk) is dropped instead of
    # printing a traceback per line; the run's own failure is reported in one sentence.
    logging.raiseExceptions = False
    try:
        with timing.timed("config"):
            register_configs()
            configs = check_overrides(argv)
        _import_trainer(configs)
        with timing.timed("config"):
            argv += _resume_dir_override(argv, configs)
            argv += _check_run_dir(argv, configs)
    except UserError as exc:
        _fail(exc)
    sys.argv = [PROG, *argv]
    _sweep_jobs.clear()
    _hydra_called_at = time.perf_counter()
    try:
        hydra.main(config_path=str(conf_dir()), config_name=PRIMARY_CONFIG, version_base="1.3")(
            _run_job
        )()
    except KeyboardInterrupt:  # outside a job (Hydra's own set-up), or between jobs
        _fail("Interrupted (Ctrl-C).", INTERRUPTED_EXIT)
    _finish_sweep()


if __name__ == "__main__":
    main()
