"""`jaxfw-train -m hydra/sweeper=optuna ...`: a TPE search on Optuna, one Hydra job per
trial (so each trial is a usual multirun job dir), the study kept in SQLite in the sweep
dir so that the same command resumes a killed sweep. Config: conf/hydra/sweeper/optuna.yaml.

Hydra instantiates sweepers only from its plugin namespace, `hydra_plugins.*`: the
repository's hydra_plugins/jaxfw_optuna_sweeper/ names this class there.
"""

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from jaxfw.errors import UserError
from jaxfw.json_values import to_jsonable
from jaxfw.sweep import trial as current_trial
from jaxfw.sweep.space import search_space

log = logging.getLogger(__name__)

SUMMARY = "optuna_summary.json"
MISSING_OPTUNA = "hydra/sweeper=optuna needs Optuna: pip install 'jaxfw[optuna]'."
_DIRECTIONS = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        n_trials: int = 20,
        sampler_seed: int | None = None,
        direction: str = "auto",
        storage: str | None = None,
        study_name: str | None = None,
        pruner: str = "none",
        params: Any = None,
    ) -> None:
        super().__init__()
        self.n_trials = int(n_trials)
        self.sampler_seed = sampler_seed
        self.direction = str(direction)
        self.storage = storage
        self.study_name = study_name
        self.pruner = str(pruner)
        self.params = dict(params or {})
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        # Hydra's plugin registry, imported where Hydra's own BasicSweeper imports it.
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self._sweep(arguments)
        except UserError as exc:
            print(f"jaxfw-train: error: {exc}", file=sys.stderr)
            sys.exit(2)

    # ------------------------------------------------------------------ details
    def _direction(self) -> str:
        assert self.config is not None
        mode = self.config.task.best_mode  # a MetricMode enum, or its name
        wanted = getattr(mode, "name", str(mode)) if self.direction == "auto" else self.direction
        if wanted not in _DIRECTIONS:
            raise UserError(
                f"hydra.sweeper.direction={self.direction}: use auto, maximize or minimize."
            )
        return _DIRECTIONS[wanted]

    def _pruner(self, optuna: Any) -> Any:
        if self.pruner == "median":
            return optuna.pruners.MedianPruner()
        if self.pruner in ("none", "None", "null"):
            return optuna.pruners.NopPruner()
        raise UserError(f"hydra.sweeper.pruner={self.pruner}: use none or median.")

    def _sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.hydra_context is not None
        try:
            # Optuna is optional (jaxfw[optuna]); it loads only for this sweeper.
            import optuna
        except ModuleNotFoundError as exc:
            raise UserError(MISSING_OPTUNA) from exc
        if self.n_trials < 1:
            raise UserError(f"hydra.sweeper.n_trials={self.n_trials}: must be 1 or more.")
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        try:
            space = search_space(parser.parse_overrides(lines))
        except UserError:
            raise
        except Exception as exc:  # Hydra's parse errors: a mistake in a range
            raise UserError(str(exc).splitlines()[0]) from exc
        if not space.params:
            raise UserError(
                "hydra/sweeper=optuna has nothing to search: give a range, e.g. "
                "'optimizer.lr=tag(log,interval(1e-4,1e-2))'."
            )
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        direction = self._direction()
        study = optuna.create_study(
            storage=self.storage or f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}",
            study_name=self.study_name or str(self.config.hydra.job.name),
            sampler=optuna.samplers.TPESampler(seed=self.sampler_seed),
            pruner=self._pruner(optuna),
            direction=direction,
            load_if_exists=True,
        )
        states = optuna.trial.TrialState
        for stale in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
            study.tell(stale.number, state=states.FAIL)  # a sweep killed during that trial
        done = len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED)))
        returns = []
        # A failed trial is not retried here: the same command runs the missing ones later.
        for _ in range(max(0, self.n_trials - done)):
            trial = study.ask({key: p.distribution for key, p in space.params.items()})
            overrides = [*space.fixed]
            overrides += [space.params[k].override(v) for k, v in trial.params.items()]
            with current_trial.active(trial) as context:
                results = self.launcher.launch([overrides], initial_job_idx=trial.number)
            ret = results[0]
            returns.append(results)
            run_dir = _run_dir(ret)
            if run_dir is not None:
                trial.set_user_attr("run_dir", run_dir)
            value = ret._return_value if ret.status == JobStatus.COMPLETED else None
            if context.pruned:
                study.tell(trial, state=states.PRUNED)
            elif isinstance(value, int | float) and math.isfinite(value):
                study.tell(trial, float(value))
            else:
                study.tell(trial, state=states.FAIL)
        self._write_summary(study, sweep_dir, direction)
        return returns

    def _write_summary(self, study: Any, sweep_dir: Path, direction: str) -> None:
        assert self.config is not None
        trials = [_trial_record(t) for t in study.get_trials(deepcopy=False)]
        complete = [t for t in trials if t["state"] == "COMPLETE"]
        pick = max if direction == "maximize" else min
        best = pick(complete, key=lambda t: t["value"]) if complete else None
        summary = {
            "study": study.study_name,
            "metric": str(self.config.task.best_metric),
            "direction": direction,
            "n_trials": self.n_trials,
            "best": best,
            "trials": trials,
        }
        path = sweep_dir / SUMMARY
        try:
            path.write_text(json.dumps(to_jsonable(summary), indent=2) + "\n")
        except OSError as exc:
            print(f"jaxfw-train: could not write {path}: {exc}", file=sys.stderr)
        if best is not None:
            log.info("optuna: best trial %s  value %s  %s", best["number"], best["value"], path)


def _run_dir(ret: Any) -> str | None:
    try:
        return str(ret.hydra_cfg.hydra.runtime.output_dir)
    except Exception:  # a launcher that returns no Hydra config
        return None


def _trial_record(trial: Any) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": dict(trial.params),
        "value": trial.value,
        "run_dir": trial.user_attrs.get("run_dir"),
    }
