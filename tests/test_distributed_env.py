"""Multi-process settings from the `distributed` config and the environment, a real
two-process jax.distributed start on the CPU, and the launch files (Hydra SLURM
launcher, sbatch script, Kubernetes manifest, TPU and local scripts)."""

import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import free_port
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import jaxfw
from jaxfw.config.compose import register_configs
from jaxfw.config.paths import conf_dir
from jaxfw.distributed import DistributedSettings, distributed_settings
from jaxfw.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

SLURM_TWO_NODES = {  # what srun sets in task 1 of `sbatch --nodes=2 --ntasks-per-node=1`
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_NODELIST": "gpu[001-002]",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "0",
}
OPEN_MPI_FOUR_HOSTS = {  # mpirun (Open MPI 4) -np 4 --npernode 1
    "OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.0.0.1:34911",
    "OMPI_COMM_WORLD_SIZE": "4",
    "OMPI_COMM_WORLD_RANK": "2",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "1",
}
EXPLICIT = {
    "JAXFW_COORDINATOR_ADDRESS": "10.0.0.1:1234",
    "JAXFW_NUM_PROCESSES": "2",
    "JAXFW_PROCESS_ID": "1",
}


def cfg(**values):
    base = dict(
        mode="auto",
        coordinator_address=None,
        num_processes=None,
        process_id=None,
        initialization_timeout_s=300,
    )
    return SimpleNamespace(**(base | values))


def settings(environ, **values) -> DistributedSettings | None:
    return distributed_settings(cfg(**values), environ)


# --- single process -------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {
            "SLURM_JOB_ID": "7",
            "SLURM_NTASKS": "1",
            "SLURM_PROCID": "0",
            "SLURM_LOCALID": "0",
            "SLURM_STEP_NODELIST": "gpu001",
            "SLURM_STEP_NUM_NODES": "1",
        },
        {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"},  # an salloc shell: no srun step
        {"OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"},
        {"TPU_WORKER_HOSTNAMES": "localhost"},
        {"JAXFW_NUM_PROCESSES": "1"},
        {"JAXFW_COORDINATOR_ADDRESS": "10.0.0.1:1234"},  # no count: nothing to join
    ],
    ids=[
        "empty",
        "slurm-one-task",
        "salloc",
        "ompi-one",
        "tpu-one-host",
        "one-process",
        "address-only",
    ],
)
def test_auto_mode_stays_single_process(environ):
    assert settings(environ) is None


def test_off_mode_ignores_every_cluster():
    assert settings(SLURM_TWO_NODES | EXPLICIT, mode="off") is None


def test_composed_config_node_defaults_to_single_process():
    node = jaxfw.compose("digits_mlp").distributed  # mode is the schema's enum here
    assert distributed_settings(node, {}) is None


# --- clusters JAX detects itself ------------------------------------------------------


def test_slurm_multi_task_step_is_auto_detected_with_all_node_gpus():
    s = settings(SLURM_TWO_NODES)
    assert s == DistributedSettings(None, None, None, 300, True, (), "SLURM")


def test_slurm_several_tasks_per_node_keeps_jax_one_gpu_per_task():
    s = settings(SLURM_TWO_NODES | {"SLURM_NTASKS": "16"})
    assert s.auto_detect and s.local_device_ids is None


def test_open_mpi_job_is_auto_detected():
    s = settings(OPEN_MPI_FOUR_HOSTS)
    assert (s.auto_detect, s.cluster, s.local_device_ids) == (True, "Open MPI", ())
    assert s.num_processes is None and s.process_id is None  # left to JAX


def test_open_mpi_without_hnp_uri_reads_count_and_rank_but_needs_a_coordinator():
    environ = {k: v for k, v in OPEN_MPI_FOUR_HOSTS.items() if k != "OMPI_MCA_orte_hnp_uri"}
    with pytest.raises(UserError, match=r"coordinator's address.*Open MPI was detected"):
        settings(environ)
    s = settings(environ | {"JAXFW_COORDINATOR_ADDRESS": "h0:1234"})
    assert (s.coordinator_address, s.num_processes, s.process_id, s.auto_detect) == (
        "h0:1234",
        4,
        2,
        False,
    )


def test_tpu_pod_slice_is_auto_detected():
    s = settings({"TPU_WORKER_HOSTNAMES": "t-0,t-1,t-2,t-3", "TPU_WORKER_ID": "3"})
    assert (s.auto_detect, s.cluster, s.local_device_ids) == (True, "TPU pod", None)


def test_explicit_values_inside_a_cluster_are_kept_and_the_rest_detected():
    s = settings(SLURM_TWO_NODES, coordinator_address="gpu001:4000")
    assert (s.coordinator_address, s.num_processes, s.auto_detect) == ("gpu001:4000", None, True)
    with pytest.raises(UserError, match=r"JAXFW_PROCESS_ID=5 .* 2 processes; use 0\.\.1"):
        settings(SLURM_TWO_NODES | {"JAXFW_PROCESS_ID": "5"})


def test_explicit_single_process_overrides_a_detected_cluster():
    assert settings(SLURM_TWO_NODES, num_processes=1) is None


# --- explicit values: config, JAXFW_*, JAX_* ------------------------------------------


def test_jaxfw_env_vars_describe_the_job_without_detection():
    s = settings(EXPLICIT)
    assert s == DistributedSettings("10.0.0.1:1234", 2, 1, 300, False, None, None)


def test_jax_env_vars_are_accepted_and_jaxfw_ones_win():
    jax_names = {k.replace("JAXFW_", "JAX_"): v for k, v in EXPLICIT.items()}
    assert settings(jax_names) == settings(EXPLICIT)
    mixed = jax_names | {"JAXFW_PROCESS_ID": "0"}
    assert settings(mixed).process_id == 0


def test_config_values_override_env_vars():
    s = settings(
        EXPLICIT,
        coordinator_address="head:5555",
        num_processes=4,
        process_id=3,
        initialization_timeout_s=60,
    )
    assert s == DistributedSettings("head:5555", 4, 3, 60, False, None, None)


def test_composed_config_overrides_are_used():
    node = jaxfw.compose(
        "digits_mlp",
        [
            "distributed.mode=on",
            "distributed.num_processes=2",
            "distributed.process_id=0",
            "distributed.coordinator_address=127.0.0.1:9999",
        ],
    ).distributed
    assert distributed_settings(node, EXPLICIT) == DistributedSettings(
        "127.0.0.1:9999", 2, 0, 300, False, None, None
    )


def test_on_mode_always_initialises():
    assert settings({}, mode="on") == DistributedSettings(None, None, None, 300, True)
    one = settings({"JAXFW_NUM_PROCESSES": "1", "JAXFW_COORDINATOR_ADDRESS": "h:1"}, mode="on")
    assert (one.num_processes, one.process_id, one.auto_detect) == (1, 0, False)


def test_jax_local_device_ids_env_is_left_to_jax():
    s = settings(SLURM_TWO_NODES | {"JAX_LOCAL_DEVICE_IDS": "0,1"})
    assert s.local_device_ids is None


def test_settings_are_frozen():
    s = settings(EXPLICIT)
    with pytest.raises(AttributeError):
        s.process_id = 0  # type: ignore[misc]
    assert replace(s, process_id=0).process_id == 0


# --- mistakes: one sentence naming the bad value --------------------------------------


@pytest.mark.parametrize(
    ("environ", "values", "message"),
    [
        ({}, {"num_processes": 0}, r"distributed\.num_processes=0 is not allowed"),
        ({"JAXFW_NUM_PROCESSES": "-2"}, {}, r"JAXFW_NUM_PROCESSES=-2 is not allowed"),
        (EXPLICIT | {"JAXFW_PROCESS_ID": "2"}, {}, r"JAXFW_PROCESS_ID=2 .* use 0\.\.1"),
        ({}, {"process_id": -1}, r"distributed\.process_id=-1 is not allowed"),
        ({"JAXFW_NUM_PROCESSES": "two"}, {}, r"JAXFW_NUM_PROCESSES='two' is not an integer"),
        ({"JAX_PROCESS_ID": "1.0"}, {}, r"JAX_PROCESS_ID='1\.0' is not an integer"),
        (SLURM_TWO_NODES | {"SLURM_NTASKS": "2(x2)"}, {}, r"SLURM_NTASKS='2\(x2\)'"),
        (
            {"JAXFW_NUM_PROCESSES": "2", "JAXFW_PROCESS_ID": "0"},
            {},
            r"Running 2 processes needs the coordinator's address.*no SLURM, Open MPI or TPU",
        ),
        (
            {"JAXFW_NUM_PROCESSES": "2", "JAXFW_COORDINATOR_ADDRESS": "h:1"},
            {},
            r"needs each one's index.*JAXFW_PROCESS_ID to 0\.\.1",
        ),
        ({}, {"mode": "on", "num_processes": 1}, r"Running 1 process needs the coordinator"),
        ({}, {"mode": "maybe"}, r"distributed\.mode='maybe' is not valid"),
        ({}, {"initialization_timeout_s": 0}, r"initialization_timeout_s=0 is not allowed"),
    ],
)
def test_bad_values_are_named(environ, values, message):
    with pytest.raises(UserError, match=message) as info:
        settings(environ, **values)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "address", ["localhost", "host:port", ":1234", "h:0", "h:99999", "::1:80", "h:12:34"]
)
def test_malformed_coordinator_address(address):
    with pytest.raises(UserError, match=re.escape(f"JAXFW_COORDINATOR_ADDRESS={address!r}")):
        settings(EXPLICIT | {"JAXFW_COORDINATOR_ADDRESS": address})
    with pytest.raises(UserError, match="is not host:port"):
        settings({}, coordinator_address=address, num_processes=2, process_id=0)


@pytest.mark.parametrize("address", ["10.0.0.1:1234", "node-0.svc.cluster.local:80", "[::1]:1234"])
def test_valid_coordinator_address(address):
    assert settings(EXPLICIT | {"JAXFW_COORDINATOR_ADDRESS": address}).coordinator_address == (
        address
    )


# --- a real two-process start on the CPU ----------------------------------------------

CHILD = textwrap.dedent(
    """
    import os
    from types import SimpleNamespace

    import jax

    from jaxfw.distributed import distributed_settings, initialize, process_info

    # Without collectives, CPU computations across processes fail ("Multiprocess
    # computations aren't implemented"); initialize() must turn gloo back on.
    jax.config.update("jax_cpu_collectives_implementation", None)

    node = SimpleNamespace(mode="auto", coordinator_address=None, num_processes=None,
                           process_id=None, initialization_timeout_s=60)
    initialize(distributed_settings(node, os.environ))
    import jax.numpy as jnp
    from jax.experimental import multihost_utils

    index, count = process_info()
    gathered = multihost_utils.process_allgather(jnp.array([index + 1.0]))
    print("RESULT", index, count, jax.device_count(), float(gathered.sum()))
    """
)


def test_two_processes_meet_and_compute_across_processes_on_cpu():
    env = os.environ | {
        "JAX_PLATFORMS": "cpu",
        "JAXFW_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}",
        "JAXFW_NUM_PROCESSES": "2",
    }
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD],
            env=env | {"JAXFW_PROCESS_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=90)
        finally:
            proc.kill()
        assert proc.returncode == 0, err[-2000:]
        outputs.append(next(line for line in out.splitlines() if line.startswith("RESULT")))
    # Each process holds one CPU device; the all-gather sums 1 + 2 across processes.
    assert outputs == ["RESULT 0 2 2 3.0", "RESULT 1 2 2 3.0"]


def test_failed_auto_detection_is_one_user_error():
    child = textwrap.dedent(
        """
        from jaxfw.distributed import DistributedSettings, initialize
        from jaxfw.errors import UserError
        try:
            initialize(DistributedSettings(None, None, None, 5, True))
        except UserError as exc:
            print("USER_ERROR", exc)
        """
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "OMPI_", "TPU_", "KUBERNETES_"))
    }
    out = subprocess.run(
        [sys.executable, "-c", child],
        env=env | {"JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "USER_ERROR jax.distributed could not start" in out
    assert "coordinator_address should be defined" in out


# --- launch files -----------------------------------------------------------------------


def test_slurm_launcher_config_composes_without_the_plugin():
    composed = jaxfw.compose("digits_mlp", ["hydra/launcher=slurm"])
    assert composed.name == "digits_mlp"
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            full = compose(
                config_name="config",
                overrides=[
                    "recipe=digits_mlp",
                    "hydra/launcher=slurm",
                    "hydra.launcher.nodes=4",
                    "hydra.launcher.partition=gpu",
                ],
                return_hydra_config=True,
            )
    finally:
        GlobalHydra.instance().clear()
    launcher = full.hydra.launcher
    assert full.hydra.runtime.choices["hydra/launcher"] == "slurm"
    assert launcher._target_ == (
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    )
    assert (launcher.nodes, launcher.tasks_per_node, launcher.partition) == (4, 1, "gpu")
    assert launcher.gpus_per_node >= 1 and launcher.timeout_min > 0
    assert launcher.submitit_folder.startswith(str(full.hydra.sweep.dir))
    # The keys hydra-submitit-launcher 1.2's SlurmQueueConf knows; submitit rejects others.
    known = {
        "_target_",
        "submitit_folder",
        "timeout_min",
        "cpus_per_task",
        "gpus_per_node",
        "tasks_per_node",
        "mem_gb",
        "nodes",
        "name",
        "stderr_to_stdout",
        "partition",
        "qos",
        "comment",
        "constraint",
        "exclude",
        "gres",
        "cpus_per_gpu",
        "gpus_per_task",
        "mem_per_gpu",
        "mem_per_cpu",
        "account",
        "signal_delay_s",
        "max_num_timeout",
        "additional_parameters",
        "array_parallelism",
        "setup",
    }
    assert set(launcher.keys()) <= known
    header = (conf_dir() / "hydra" / "launcher" / "slurm.yaml").read_text().splitlines()[0]
    assert header == "# @package hydra.launcher"


def test_k8s_manifest_wires_the_coordinator_env():
    docs = list(yaml.safe_load_all((EXAMPLES / "k8s-jobset.yaml").read_text()))
    by_kind = {doc["kind"]: doc for doc in docs}
    service, job = by_kind["Service"], by_kind["Job"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    job_name, service_name = job["metadata"]["name"], service["metadata"]["name"]

    assert service["spec"]["clusterIP"] == "None"  # headless
    assert service["spec"]["selector"] == {"job-name": job_name}
    assert pod["subdomain"] == service_name
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"]

    (container,) = pod["containers"]
    env = {item["name"]: item for item in container["env"]}
    address = env["JAXFW_COORDINATOR_ADDRESS"]["value"]
    assert address == f"{job_name}-0.{service_name}:{service['spec']['ports'][0]['port']}"
    assert int(env["JAXFW_NUM_PROCESSES"]["value"]) == spec["completions"]
    assert env["JAXFW_PROCESS_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    # Every pod: the same command and run dir, on the shared volume.
    run_dirs = [a.split("=", 1)[1] for a in container["command"] if a.startswith("hydra.run.dir=")]
    (mount,) = container["volumeMounts"]
    assert len(run_dirs) == 1 and run_dirs[0].startswith(mount["mountPath"] + "/")
    claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert by_kind["PersistentVolumeClaim"]["metadata"]["name"] == claim
    assert "ReadWriteMany" in by_kind["PersistentVolumeClaim"]["spec"]["accessModes"]


def test_sbatch_script_runs_one_task_per_node_with_a_shared_run_dir():
    text = (EXAMPLES / "slurm.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=1" in text
    (srun,) = [line for line in text.replace("\\\n", " ").splitlines() if line.startswith("srun")]
    words = shlex.split(srun)
    assert "--ntasks-per-node=1" in words
    assert ".venv/bin/jaxfw-train" in words
    assert 'hydra.run.dir="$RUN_DIR"' in srun and "RUN_DIR=${RUN_DIR:-runs/" in text
    assert "$SLURM_JOB_ID" in text.split("RUN_DIR=${RUN_DIR:-", 1)[1].splitlines()[0]


@pytest.mark.parametrize(
    ("script", "must_contain"),
    [
        ("slurm.sbatch", ["srun"]),
        (
            "tpu_pod.sh",
            ["--worker=all", "distributed.mode=on", "hydra.run.dir=$RUN_DIR", "jax[tpu]"],
        ),
        (
            "local_multiprocess.sh",
            [
                "JAXFW_COORDINATOR_ADDRESS=127.0.0.1:$PORT",
                "JAXFW_NUM_PROCESSES=$N",
                "JAXFW_PROCESS_ID=$i",
                'hydra.run.dir="$RUN_DIR"',
            ],
        ),
    ],
)
def test_launch_scripts_parse_and_pass_the_job(script, must_contain):
    path = EXAMPLES / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert os.access(path, os.X_OK)
    text = path.read_text()
    for needle in must_contain:
        assert needle in text
