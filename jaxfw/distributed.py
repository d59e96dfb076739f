"""Multi-process runs with `jax.distributed`: decide whether and how to connect the
processes of one job (pure, from the `distributed` config and the environment), then
connect them before any other JAX call.

Every process of a job runs the same command. Values come from the config first, then
the environment (`JAXFW_COORDINATOR_ADDRESS`, `JAXFW_NUM_PROCESSES`, `JAXFW_PROCESS_ID`,
or JAX's own `JAX_*` names), and whatever is still unset is left to JAX's cluster
detection on SLURM, Open MPI and TPU pods.

    settings = distributed_settings(cfg.distributed, os.environ)
    initialize(settings)  # before anything else touches JAX; no-op for None
    index, count = process_info()
"""

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jaxfw.config.schema import DistributedMode
from jaxfw.errors import UserError

ENV_PREFIXES = ("JAXFW_", "JAX_")  # first found wins; config values beat both
MODES = tuple(mode.name for mode in DistributedMode)  # declared once, in the schema
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedSettings:
    """Arguments for `jax.distributed.initialize`; None values are left to JAX."""

    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None
    initialization_timeout_s: int
    auto_detect: bool  # let JAX's cluster detection fill the unset values
    # None: JAX's default (on SLURM/Open MPI with several processes per host, one GPU
    # per process); (): every process uses all devices of its host (one process per host).
    local_device_ids: tuple[int, ...] | None = None
    cluster: str | None = None  # the environment detected, for logs: "SLURM", "Open MPI", ...


@dataclass(frozen=True)
class _Cluster:
    name: str
    num_processes: int
    process_id: int | None  # read from the environment when JAX cannot detect the job
    jax_detects: bool  # JAX's own detection finds coordinator, count and id
    one_process_per_host: bool | None  # None: unknown
    count_variable: str = ""
    id_variable: str = ""


def _env_int(environ: Mapping[str, str], name: str) -> int:
    value = environ[name]
    try:
        return int(value.strip())
    except ValueError:
        raise UserError(
            f"Environment variable {name}={value!r} is not an integer; set it to a whole "
            "number or unset it."
        ) from None


def _slurm(environ: Mapping[str, str]) -> _Cluster | None:
    # The variables jax._src.clusters.SlurmCluster.is_env_present requires: srun sets
    # them for every task (a plain `sbatch` script or `salloc` shell lacks some).
    required = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID")
    if not all(name in environ for name in (*required, "SLURM_LOCALID")):
        return None
    count = _env_int(environ, "SLURM_NTASKS")
    nodes = _env_int(environ, "SLURM_STEP_NUM_NODES") if "SLURM_STEP_NUM_NODES" in environ else None
    per_host = None if nodes is None else count == nodes
    return _Cluster("SLURM", count, None, True, per_host)


def _open_mpi(environ: Mapping[str, str]) -> _Cluster | None:
    if "OMPI_COMM_WORLD_SIZE" not in environ:
        return None
    count = _env_int(environ, "OMPI_COMM_WORLD_SIZE")
    local = environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
    per_host = None if local is None else _env_int(environ, "OMPI_COMM_WORLD_LOCAL_SIZE") == 1
    # JAX's OmpiCluster finds the coordinator through OMPI_MCA_orte_hnp_uri, which
    # mpirun of Open MPI < 5 sets; otherwise jaxfw reads count and rank itself.
    if "OMPI_MCA_orte_hnp_uri" in environ:
        return _Cluster("Open MPI", count, None, True, per_host)
    rank = _env_int(environ, "OMPI_COMM_WORLD_RANK") if "OMPI_COMM_WORLD_RANK" in environ else None
    return _Cluster(
        "Open MPI", count, rank, False, per_host, "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"
    )


def _tpu_pod(environ: Mapping[str, str]) -> _Cluster | None:
    # jax's GkeTpuCluster: the worker list of the slice (GKE, and TPU VMs that export it).
    # A GCE TPU VM pod without these variables is only found through the metadata server
    # by JAX itself: use distributed.mode=on there.
    hosts = environ.get("TPU_PROCESS_ADDRESSES", environ.get("TPU_WORKER_HOSTNAMES"))
    if not hosts:
        return None
    slices = _env_int(environ, "MEGASCALE_NUM_SLICES") if environ.get("MEGASCALE_NUM_SLICES") else 1
    return _Cluster("TPU pod", len(hosts.split(",")) * slices, None, True, None)


def _detect_cluster(environ: Mapping[str, str]) -> _Cluster | None:
    """The cluster job this environment describes, in JAX's order of detection."""
    for detect in (_open_mpi, _slurm, _tpu_pod):
        cluster = detect(environ)
        if cluster is not None:
            return cluster
    return None


def _setting(cfg: Any, key: str, environ: Mapping[str, str]) -> tuple[Any, str]:
    """(value, where it came from): the config, then JAXFW_<KEY>, then JAX_<KEY>."""
    value = getattr(cfg, key)  # every key is in the typed `distributed` node
    if value is not None:
        return value, f"distributed.{key}"
    for prefix in ENV_PREFIXES:
        name = prefix + key.upper()
        if environ.get(name, "").strip():
            return environ[name].strip(), name
    return None, f"distributed.{key}"


def _int_setting(cfg: Any, key: str, environ: Mapping[str, str]) -> tuple[int | None, str]:
    value, source = _setting(cfg, key, environ)
    if value is None or isinstance(value, int):
        return value, source
    if source.startswith("distributed."):
        raise UserError(f"{source}={value!r} is not an integer.")
    return _env_int(environ, source), source


def _check_address(address: str, source: str) -> str:
    host, sep, port = address.rpartition(":")
    bracketed_ipv6 = host.startswith("[") and host.endswith("]")
    if (
        not sep
        or not host
        or (":" in host and not bracketed_ipv6)
        or not port.isdigit()
        or not 0 < int(port) < 65536
    ):
        raise UserError(
            f"{source}={address!r} is not host:port; give the address process 0 can listen "
            "on, e.g. 10.0.0.1:1234."
        )
    return address


def _processes(count: int | None) -> str:
    return (
        "an unknown number of processes"
        if count is None
        else ("1 process" if count == 1 else f"{count} processes")
    )


def _mode(cfg: Any) -> str:
    mode = str(getattr(cfg.mode, "value", cfg.mode))  # the schema's enum or a plain string
    if mode not in MODES:
        choices = ", ".join(MODES)
        raise UserError(f"distributed.mode={mode!r} is not valid; choose one of {choices}.")
    return mode


def distributed_settings(cfg: Any, environ: Mapping[str, str]) -> DistributedSettings | None:
    """How this process joins a multi-process job, or None to run as a single process.

    `cfg` is the `distributed` config node (mode, coordinator_address, num_processes,
    process_id, initialization_timeout_s). mode=off: None. mode=auto: settings when
    num_processes > 1 (config or env) or the environment is a multi-process SLURM step,
    Open MPI job or TPU pod slice; None otherwise. mode=on: always settings, leaving
    what is unset to JAX's detection. Pure: reads only its arguments; raises UserError
    for values that cannot work.
    """
    mode = _mode(cfg)
    if mode == "off":
        return None
    timeout = cfg.initialization_timeout_s
    if not isinstance(timeout, int) or timeout < 1:
        raise UserError(
            f"distributed.initialization_timeout_s={timeout!r} is not allowed; use a whole "
            "number of seconds >= 1."
        )

    address, address_source = _setting(cfg, "coordinator_address", environ)
    if address is not None:
        address = _check_address(str(address), address_source)
    count, count_source = _int_setting(cfg, "num_processes", environ)
    index, index_source = _int_setting(cfg, "process_id", environ)

    cluster = _detect_cluster(environ)
    if cluster is not None and not cluster.jax_detects:
        # Count and rank come from the launcher's variables; the coordinator must be given.
        if count is None:
            count, count_source = cluster.num_processes, cluster.count_variable
        if index is None and cluster.process_id is not None:
            index, index_source = cluster.process_id, cluster.id_variable
    detectable = cluster if cluster is not None and cluster.jax_detects else None

    if count is not None and count < 1:
        raise UserError(f"{count_source}={count} is not allowed; use 1 or more processes.")
    known_count = count if count is not None else getattr(detectable, "num_processes", None)
    if index is not None and (index < 0 or (known_count is not None and index >= known_count)):
        valid = "0 or more" if known_count is None else f"0..{known_count - 1}"
        raise UserError(
            f"{index_source}={index} is not allowed for {_processes(known_count)}; use {valid}."
        )

    if mode == "auto" and (known_count or 1) <= 1:
        return None

    if detectable is None and count is not None:
        # Nothing can fill in the rest: the job must be described completely.
        where = (
            f" ({cluster.name} was detected, but JAX cannot find its coordinator)"
            if cluster
            else ""
        )
        if address is None:
            raise UserError(
                f"Running {_processes(count)} needs the coordinator's address: set "
                "distributed.coordinator_address or JAXFW_COORDINATOR_ADDRESS to host:port "
                f"of process 0{where or ' (no SLURM, Open MPI or TPU pod job was detected)'}."
            )
        if index is None:
            if count > 1:
                raise UserError(
                    f"Running {_processes(count)} needs each one's index: set "
                    f"distributed.process_id or JAXFW_PROCESS_ID to 0..{count - 1}, different "
                    f"in every process{where}."
                )
            index = 0

    explicit = None not in (address, count, index)
    # One process per host (jaxfw's launchers) uses all its devices; JAX would otherwise
    # pin each auto-detected SLURM/Open MPI process to the one GPU of its local rank.
    all_local_devices = (
        not explicit
        and detectable is not None
        and detectable.one_process_per_host
        and "JAX_LOCAL_DEVICE_IDS" not in environ
    )
    return DistributedSettings(
        coordinator_address=address,
        num_processes=count,
        process_id=index,
        initialization_timeout_s=timeout,
        auto_detect=not explicit,
        local_device_ids=() if all_local_devices else None,
        cluster=cluster.name if cluster is not None else None,
    )


def _ensure_cpu_collectives(jax: Any) -> None:
    """Cross-process computations on CPU need a collectives implementation (gloo)."""
    if not hasattr(jax.config, "jax_cpu_collectives_implementation"):
        return
    platforms = jax.config.jax_platforms  # None: JAX picks, and may fall back to CPU
    if platforms and "cpu" not in str(platforms).split(","):
        return
    if jax.config.jax_cpu_collectives_implementation is None:  # keep a deliberate "mpi"
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def initialize(settings: DistributedSettings | None) -> None:
    """Connect this process to the others; call it before any other JAX computation.

    A no-op for None (a single-process run) or when jax.distributed is already up.
    """
    if settings is None:
        return
    import jax  # lazily: the settings above are read before JAX may start

    if jax.distributed.is_initialized():
        return
    _ensure_cpu_collectives(jax)
    kwargs: dict[str, Any] = {
        "coordinator_address": settings.coordinator_address,
        "num_processes": settings.num_processes,
        "process_id": settings.process_id,
        "initialization_timeout": settings.initialization_timeout_s,
        "local_device_ids": (
            list(settings.local_device_ids) if settings.local_device_ids is not None else None
        ),
    }
    if not settings.auto_detect:
        kwargs["cluster_detection_method"] = "deactivate"  # the values given are the job
    _log.info("jax.distributed: %s", _describe(settings))
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, jax.errors.JaxRuntimeError) as exc:
        # Typically: auto-detection found no job. (A coordinator that cannot be reached
        # within the timeout makes the JAX runtime abort the process with DEADLINE_EXCEEDED.)
        reason = re.sub(r"\s+", " ", str(exc).strip()).rstrip(".") or type(exc).__name__
        raise UserError(
            f"jax.distributed could not start ({_describe(settings)}): {reason}; set "
            "distributed.coordinator_address, num_processes and process_id (or the "
            "JAXFW_* variables), or use distributed.mode=auto."
        ) from exc


def _describe(settings: DistributedSettings) -> str:
    parts = [
        f"coordinator {settings.coordinator_address or 'auto'}",
        f"process {'auto' if settings.process_id is None else settings.process_id}"
        f" of {settings.num_processes or 'auto'}",
        f"timeout {settings.initialization_timeout_s} s",
    ]
    if settings.auto_detect:
        parts.append(f"detected: {settings.cluster or 'left to JAX'}")
    return ", ".join(parts)


def process_info() -> tuple[int, int]:
    """(this process's index, the number of processes); (0, 1) without jax.distributed."""
    import jax  # lazily: the settings above are read before JAX may start

    return jax.process_index(), jax.process_count()
