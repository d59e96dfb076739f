# syntax=docker/dockerfile:1
# The jaxfw model server: `jaxfw-serve` (Open Inference Protocol / KServe v2 REST) on
# port 8080, as a non-root user, JAX on the CPU.
#
#   docker build -t jaxfw-serve:0.1.0 .
#
# The model is not baked in; mount it at run time, either
#   an export folder (written by jaxfw-export) at /models/model (the default CMD):
#     docker run --rm -p 8080:8080 -v "$PWD/runs/digits_mlp/<run>/export/best-2000:/models/model:ro" jaxfw-serve:0.1.0
#   or a registry folder at /registry, serving NAME@ALIAS (follows the alias when it moves):
#     docker run --rm -p 8080:8080 -v "$PWD/registry:/registry:ro" jaxfw-serve:0.1.0 \
#       --host 0.0.0.0 --port 8080 --registry /registry digits@production
# Arguments after the image name replace the whole CMD, so pass --host 0.0.0.0 again:
# jaxfw-serve binds 127.0.0.1 by default, which no one outside the container can reach.
# The HEALTHCHECK below assumes port 8080, and open health endpoints: with
# --auth-token-file, also pass --open-health.

# ---- build: install jaxfw[serve] into a virtual environment --------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src
# Only what the wheel needs (pyproject.toml's hatch config): the package, the README
# (project.readme), and conf/ + recipes/ (force-included into jaxfw/_configs/).
COPY pyproject.toml README.md ./
COPY jaxfw/ jaxfw/
COPY conf/ conf/
COPY recipes/ recipes/
COPY hydra_plugins/ hydra_plugins/
RUN pip install ".[serve]"

# ---- runtime ----------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH="/opt/venv/bin:$PATH" \
    JAX_PLATFORMS=cpu \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/jaxfw

# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can check it (see
# examples/kubernetes/deployment.yaml: runAsUser 10001).
RUN groupadd --system --gid 10001 jaxfw \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/jaxfw --create-home \
       --shell /usr/sbin/nologin jaxfw \
    && mkdir -p /models /registry

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /home/jaxfw

EXPOSE 8080

# Ready = every model loaded and warm (compiled); the start period covers the warm-up.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["jaxfw-serve"]
CMD ["--host", "0.0.0.0", "--port", "8080", "/models/model"]
