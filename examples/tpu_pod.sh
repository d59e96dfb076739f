#!/usr/bin/env bash
# Train on every host of a Cloud TPU VM pod slice (e.g. a v4-32: 4 hosts). Every host
# runs the same command; JAX reads the slice's hosts from the TPU VM metadata, which
# distributed.mode=on asks for (no environment variable announces a pod slice there).
#   TPU=my-v4-32 ZONE=us-central2-b RUN_DIR=/mnt/shared/runs/digits_mlp/pod1 \
#     examples/tpu_pod.sh recipe=digits_mlp trainer.steps=5000
# RUN_DIR must be one directory all hosts share (a Filestore/NFS mount or a gcsfuse
# mount of a bucket); run the script again with the same RUN_DIR to resume.
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}"
: "${ZONE:?set ZONE to its zone}"
: "${RUN_DIR:?set RUN_DIR to a directory every host shares}"
REPO=${REPO:-https://github.com/your-org/jaxfw.git}

on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command="$1"
}

# 1. Install jaxfw with JAX's TPU runtime on every host (skipped where it is already there).
on_all_workers "test -x jaxfw/.venv/bin/jaxfw-train || { git clone $REPO jaxfw && \
  cd jaxfw && python3 -m venv .venv && .venv/bin/pip install -q -e . 'jax[tpu]'; }"

# 2. Train: the same command on every host, one process per host, one shared run dir.
on_all_workers "cd jaxfw && .venv/bin/jaxfw-train distributed.mode=on \
  hydra.run.dir=$RUN_DIR $*"
