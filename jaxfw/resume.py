"""Where a run continues from: its own checkpoints, another run's, or nowhere.

`trainer.resume=auto` makes re-running the exact same command continue the run it
started: a run with the default (time-stamped) run dir looks for the latest run
under the same parent (`runs/<name>/`) whose config is identical and which did not
complete, and whose process is no longer alive.
"""

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from jaxfw.checkpoint import CHECKPOINT_DIR
from jaxfw.errors import UserError
from jaxfw.observe import RUN_FILE

# Keys that do not change what a run computes, so they do not tell runs apart.
_NOT_IDENTITY = (
    ("run_dir",),
    ("trainer", "resume"),
    ("trainer", "progress"),
    ("trainer", "compile_cache"),
    ("fault",),
    ("distributed",),  # differs per process of one job
)


def config_identity(cfg: DictConfig) -> str:
    """A hash of the resolved config minus where/how it is displayed and resumed."""
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(plain, dict)
    for path in _NOT_IDENTITY:
        node = plain
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def _process_alive(record: dict) -> bool:
    if record.get("hostname") != socket.gethostname() or not record.get("pid"):
        return False
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return int(record["pid"]) != os.getpid()


def find_unfinished_run(parent: Path, identity: str) -> Path | None:
    """The newest run dir under `parent` of this config that did not complete."""
    candidates = []
    for run_file in parent.glob(f"*/{RUN_FILE}"):
        try:
            record = json.loads(run_file.read_text())
        except (OSError, ValueError):
            continue
        if (
            record.get("config_identity") == identity
            and record.get("status") != "completed"
            and (run_file.parent / CHECKPOINT_DIR).is_dir()
            and not _process_alive(record)
        ):
            candidates.append((record.get("start_time", ""), run_file.parent))
    return max(candidates)[1] if candidates else None


@dataclass(frozen=True)
class ResumeSource:
    checkpoint_dir: Path  # an Orbax CheckpointManager directory
    step: int | None  # None: the latest readable one


def resume_source(spec: str) -> ResumeSource:
    """Parse `trainer.resume=<path>`: a run dir, its checkpoints dir, or one checkpoint."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(
            f"trainer.resume='{spec}' is neither auto, never, nor an existing run or "
            "checkpoint directory."
        )
    if not path.is_dir():
        raise UserError(
            f"trainer.resume='{spec}' is a file; give a run dir, its '{CHECKPOINT_DIR}' dir "
            f"or a '{CHECKPOINT_DIR}/<step>' dir."
        )
    if (path / CHECKPOINT_DIR).is_dir():
        return ResumeSource(path / CHECKPOINT_DIR, None)
    if path.name.isdigit() and (path / "state").is_dir():
        return ResumeSource(path.parent, int(path.name))
    if any(child.name.isdigit() for child in path.iterdir()):
        return ResumeSource(path, None)
    raise UserError(
        f"trainer.resume='{spec}' holds no checkpoints; give a run dir, its "
        f"'{CHECKPOINT_DIR}' dir or a '{CHECKPOINT_DIR}/<step>' dir."
    )
