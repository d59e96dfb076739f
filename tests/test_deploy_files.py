"""The deployment files (Dockerfile, .dockerignore, examples/kubernetes/*.yaml) checked
against the real server: every command line goes through `jaxfw-serve`'s own parser, and
ports, probe paths, the user and the console script must agree everywhere. No Docker or
cluster needed: the files are parsed, nothing is built or applied."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from jaxfw.cli.serve import PROG, build_parser, parse_options
from jaxfw.serve.options import HEALTH_PATHS

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "examples" / "kubernetes"
DEPLOYMENT = K8S / "deployment.yaml"
KSERVE = K8S / "kserve-inferenceservice.yaml"

LIVE = next(p for p in HEALTH_PATHS if p.endswith("/live"))
READY = next(p for p in HEALTH_PATHS if p.endswith("/ready"))
KSERVE_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts STORAGE_URI


# ----------------------------------------------------------------------------- parsing


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comments dropped (also
    those inside a continued instruction, as Docker does)."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def command_words(arguments: str) -> list[str]:
    """A RUN/CMD/ENTRYPOINT argument list: the JSON (exec) form or a shell line."""
    if arguments.startswith("["):
        words = json.loads(arguments)
        assert isinstance(words, list) and all(isinstance(w, str) for w in words), arguments
        return words
    return shlex.split(arguments)


def env_pairs(arguments: str) -> dict[str, str]:
    words = shlex.split(arguments)
    if "=" not in words[0]:  # legacy `ENV KEY value`
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions split into build stages (each starting with FROM)."""
    result: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions:
        if keyword == "FROM":
            result.append([])
        assert result, f"{keyword} before the first FROM"
        result[-1].append((keyword, arguments))
    return result


def last(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [arguments for k, arguments in stage if k == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]  # Docker: the last one wins


@pytest.fixture(scope="module")
def docker() -> list[tuple[str, str]]:
    """The final (runtime) stage's instructions."""
    return stages(dockerfile_instructions(DOCKERFILE.read_text()))[-1]


@pytest.fixture(scope="module")
def all_stages() -> list[list[tuple[str, str]]]:
    return stages(dockerfile_instructions(DOCKERFILE.read_text()))


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    return load_yaml(DEPLOYMENT)


@pytest.fixture(scope="module")
def isvc() -> dict[str, Any]:
    return one(load_yaml(KSERVE), "InferenceService")


def the_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec["containers"]
    assert len(containers) == 1, "one container per pod: the server"
    return containers[0]


def resolve_port(port: int | str, container: dict[str, Any]) -> int:
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in by_name, f"port name {port!r} is not one of the container's {sorted(by_name)}"
    return by_name[port]


def container_port(container: dict[str, Any]) -> int:
    ports = container["ports"]
    assert len(ports) == 1, "the server listens on one port"
    return ports[0]["containerPort"]


def security(pod_spec: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The effective security context: the container's fields override the pod's."""
    return {**pod_spec.get("securityContext", {}), **container.get("securityContext", {})}


def server_options(argv: list[str]):
    """The real parser's verdict on a command line (a mistake raises UserError)."""
    build_parser().parse_args(argv)  # argparse itself: unknown flags, bad values
    return parse_options(argv)


# -------------------------------------------------------------------------- Dockerfile


def test_parser_handles_continuations_json_and_comments():
    text = (
        "# syntax=docker/dockerfile:1\nFROM a AS b\nRUN x \\\n  # inside\n  && y\n"
        'CMD ["--port", "1"]\nENV A=1 \\\n    B="two words"\n'
    )
    instructions = dockerfile_instructions(text)
    assert instructions == [
        ("FROM", "a AS b"),
        ("RUN", "x && y"),
        ("CMD", '["--port", "1"]'),
        ("ENV", 'A=1 B="two words"'),
    ]
    assert command_words(instructions[2][1]) == ["--port", "1"]
    assert env_pairs(instructions[3][1]) == {"A": "1", "B": "two words"}


def test_runtime_base_is_a_slim_python_the_package_supports(docker, pyproject):
    image = last(docker, "FROM").split()[0]
    match = re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", image)
    assert match, f"runtime base {image!r} is not a python:3.X-slim image"
    minimum = re.fullmatch(r">=\s*3\.(\d+)", pyproject["project"]["requires-python"])
    assert minimum and int(match.group(1)) >= int(minimum.group(1))


def test_entrypoint_is_the_console_script(docker, pyproject):
    entrypoint = last(docker, "ENTRYPOINT")
    assert entrypoint.startswith("["), (
        "ENTRYPOINT in exec form: the server is PID 1 and gets SIGTERM"
    )
    assert command_words(entrypoint) == [PROG]
    assert pyproject["project"]["scripts"].get(PROG) == "jaxfw.cli.serve:main"


def test_default_command_is_accepted_by_the_cli_and_reachable(docker):
    cmd = last(docker, "CMD")
    assert cmd.startswith("["), "CMD in exec form (appended to the ENTRYPOINT as is)"
    options = server_options(command_words(cmd))
    assert options.host == "0.0.0.0", "the default host (loopback) is unreachable from outside"
    exposed = [int(p.split("/")[0]) for p in last(docker, "EXPOSE").split()]
    assert exposed == [options.port]
    assert options.models and all(m.startswith("/models/") for m in options.models), (
        "the default model path is the documented mount point /models/..."
    )


def test_environment(docker):
    env: dict[str, str] = {}
    for keyword, arguments in docker:
        if keyword == "ENV":
            env.update(env_pairs(arguments))
    assert env.get("JAX_PLATFORMS") == "cpu"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"


def dockerfile_uid(docker) -> int:
    user = last(docker, "USER").split(":")[0]
    assert user.isdigit(), f"USER {user!r}: numeric, so Kubernetes' runAsNonRoot can verify it"
    return int(user)


def test_runs_as_a_non_root_user_created_in_the_image(docker):
    uid = dockerfile_uid(docker)
    assert uid != 0
    runs = " ".join(arguments for keyword, arguments in docker if keyword == "RUN")
    assert re.search(rf"useradd\b[^&;]*--uid {uid}\b", runs), f"no useradd --uid {uid}"
    # USER comes after the installation steps and before the ENTRYPOINT.
    keywords = [keyword for keyword, _ in docker]
    user_at = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[user_at:], "a RUN after USER would run as the server's user"
    assert keywords.index("ENTRYPOINT") > user_at


def test_healthcheck_asks_the_ready_endpoint_with_python(docker):
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.+)", last(docker, "HEALTHCHECK"), re.S)
    assert match, "HEALTHCHECK [OPTIONS] CMD ..."
    options = match.group(1).split()
    command = command_words(match.group(2))
    assert command[0] in ("python", "python3"), "slim images have no curl: use Python"
    script = " ".join(command[1:])
    assert "urllib.request" in script
    urls = re.findall(r"https?://[^'\"\s]+", script)
    assert len(urls) == 1, urls
    url = urlsplit(urls[0])
    assert url.path == READY
    assert url.hostname in ("127.0.0.1", "localhost")
    exposed = int(last(docker, "EXPOSE").split()[0].split("/")[0])
    assert url.port == exposed
    start_period = [o for o in options if o.startswith("--start-period=")]
    assert start_period, "--start-period covers the warm-up (compilation)"


def test_install_copies_what_the_wheel_needs_and_uses_the_serve_extra(all_stages, pyproject):
    hatch = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", pyproject["project"]["readme"], *hatch["packages"]}
    needed |= set(hatch.get("force-include", {}))
    copied: set[str] = set()
    installs = []
    for stage in all_stages:
        for keyword, arguments in stage:
            if keyword == "COPY" and "--from" not in arguments:
                sources = command_words(arguments)[:-1]
                copied |= {s.rstrip("/") for s in sources if not s.startswith("--")}
            if keyword == "RUN" and "pip install" in arguments:
                installs.append(arguments)
    assert needed <= copied, f"not copied into the build: {sorted(needed - copied)}"
    assert "serve" in pyproject["project"]["optional-dependencies"]
    assert any(re.search(r"\.\[serve\]", run) for run in installs), installs
    assert not any(re.search(r"(^|\s)-e(\s|$)|--editable", run) for run in installs), (
        "an editable install would need the source tree in the runtime image"
    )


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line.rstrip("/") for line in lines if line and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `path` (or a parent folder of it) out; later `!`
    patterns re-include, as in Docker."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        hit = any(
            fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.removeprefix("**/"))
            for c in candidates
        )
        if hit:
            result = not negate
    return result


def test_dockerignore_keeps_the_build_inputs_and_drops_local_state(all_stages):
    patterns = dockerignore_patterns()
    for stage in all_stages:
        for keyword, arguments in stage:
            if keyword == "COPY" and "--from" not in arguments:
                for source in command_words(arguments)[:-1]:
                    probe = source.rstrip("/") + ("/x.py" if source.endswith("/") else "")
                    assert not ignored(probe, patterns), f".dockerignore drops {source}"
    for local in (".venv", ".git", "runs", "registry", ".pytest_cache", "jaxfw/__pycache__"):
        assert ignored(local, patterns), f".dockerignore sends {local} to the build"


def test_dockerignore_matcher_can_fail():
    assert ignored("jaxfw/__pycache__/a.pyc", ["**/__pycache__"])
    assert not ignored("jaxfw/a.py", ["**/__pycache__"])
    assert not ignored("runs", ["runs", "!runs"])


# ------------------------------------------------------------------ Kubernetes Deployment


def test_deployment_args_are_accepted_by_the_cli(k8s):
    deployment = one(k8s, "Deployment")
    container = the_container(deployment["spec"]["template"]["spec"])
    assert "command" not in container, "keep the image's ENTRYPOINT (jaxfw-serve)"
    options = server_options(container["args"])
    assert options.host == "0.0.0.0", "the Service and the probes cannot reach 127.0.0.1"
    assert container_port(container) == options.port


def test_deployment_ports_agree_with_the_image_and_the_service(k8s, docker):
    deployment, service = one(k8s, "Deployment"), one(k8s, "Service")
    container = the_container(deployment["spec"]["template"]["spec"])
    port = container_port(container)
    assert port == int(last(docker, "EXPOSE").split()[0])
    (service_port,) = service["spec"]["ports"]
    assert resolve_port(service_port["targetPort"], container) == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert resolve_port(container[probe]["httpGet"]["port"], container) == port, probe


def test_service_selects_the_deployments_pods(k8s):
    deployment, service = one(k8s, "Deployment"), one(k8s, "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["selector"], "an empty selector picks no pods"


def test_deployment_probes(k8s):
    container = the_container(one(k8s, "Deployment")["spec"]["template"]["spec"])
    readiness = container["readinessProbe"]["httpGet"]["path"]
    liveness = container["livenessProbe"]["httpGet"]["path"]
    assert (readiness, liveness) == (READY, LIVE)
    assert {readiness, liveness} == set(HEALTH_PATHS)
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] in HEALTH_PATHS
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    assert budget >= 120, f"the startup probe allows only {budget} s for loading and warm-up"


def test_deployment_security(k8s, docker):
    pod = one(k8s, "Deployment")["spec"]["template"]["spec"]
    container = the_container(pod)
    context = security(pod, container)
    assert context.get("runAsNonRoot") is True
    assert context.get("runAsUser") == dockerfile_uid(docker) != 0
    assert context.get("allowPrivilegeEscalation") is False
    assert context.get("readOnlyRootFilesystem") is True
    assert context.get("capabilities", {}).get("drop") == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]["name"]], (
        "a read-only root filesystem needs a writable /tmp"
    )
    for mount in mounts.values():
        assert mount["name"] in volumes, f"volumeMount {mount['name']!r} has no volume"


def test_deployment_model_comes_from_a_read_only_volume(k8s):
    pod = one(k8s, "Deployment")["spec"]["template"]["spec"]
    container = the_container(pod)
    options = server_options(container["args"])
    paths = [options.registry] if options.registry else list(options.models)
    read_only = [m["mountPath"] for m in container["volumeMounts"] if m.get("readOnly")]
    for path in paths:
        assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in read_only), (
            f"{path} is not on a read-only volume mount ({read_only})"
        )


def test_deployment_resources(k8s):
    container = the_container(one(k8s, "Deployment")["spec"]["template"]["spec"])
    resources = container["resources"]
    for key in ("cpu", "memory"):
        assert key in resources["requests"] and key in resources["limits"], key


def test_same_image_everywhere(k8s, isvc):
    deployment_image = the_container(one(k8s, "Deployment")["spec"]["template"]["spec"])["image"]
    assert the_container(isvc["spec"]["predictor"])["image"] == deployment_image
    assert not deployment_image.endswith(":latest"), "pin a tag: rollouts need a new name"


# ---------------------------------------------------------------------------- KServe


def test_inferenceservice_is_a_v2_custom_predictor(isvc):
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    container = the_container(isvc["spec"]["predictor"])
    assert container["name"] == "kserve-container"
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env.get("PROTOCOL") == "v2", "KServe reads a custom container's protocol from PROTOCOL"
    assert env.get("STORAGE_URI"), "the model: STORAGE_URI, downloaded to /mnt/models"


def test_inferenceservice_args_ports_and_probes(isvc, docker):
    predictor = isvc["spec"]["predictor"]
    container = the_container(predictor)
    assert "command" not in container, "keep the image's ENTRYPOINT (jaxfw-serve)"
    options = server_options(container["args"])
    assert options.host == "0.0.0.0", "KServe's proxy cannot reach 127.0.0.1"
    port = container_port(container)
    assert port == options.port == int(last(docker, "EXPOSE").split()[0])
    assert container["readinessProbe"]["httpGet"]["path"] == READY
    assert resolve_port(container["readinessProbe"]["httpGet"]["port"], container) == port
    if "livenessProbe" in container:
        assert container["livenessProbe"]["httpGet"]["path"] == LIVE
    paths = [options.registry] if options.registry else list(options.models)
    for path in paths:
        assert path == KSERVE_MODEL_DIR or path.startswith(KSERVE_MODEL_DIR + "/"), path


def test_inferenceservice_security(isvc, docker):
    predictor = isvc["spec"]["predictor"]
    context = security(predictor, the_container(predictor))
    assert context.get("runAsNonRoot") is True
    assert context.get("runAsUser") == dockerfile_uid(docker)
    assert context.get("allowPrivilegeEscalation") is False
    assert context.get("capabilities", {}).get("drop") == ["ALL"]


def test_bad_command_lines_are_refused():
    """The CLI checks above can fail: the parser rejects what the files must not contain."""
    from jaxfw.errors import UserError

    with pytest.raises(UserError):
        server_options(["--host", "0.0.0.0", "--prot", "8080", "/models/model"])
    with pytest.raises(UserError):
        server_options(["--host", "0.0.0.0", "--port", "8080"])  # no MODEL
    assert server_options(["/models/model"]).host != "0.0.0.0"  # why --host is required
