#!/usr/bin/env bash
# Several jaxfw processes on this machine, connected by jax.distributed (CPU collectives
# through gloo): the same command in each, told about the job by JAXFW_* variables, with
# one shared run directory. A rehearsal of a multi-host job without a cluster.
#   examples/local_multiprocess.sh                         # 2 processes, digits_mlp
#   N=4 examples/local_multiprocess.sh recipe=breast_cancer trainer.steps=300
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2}
PORT=${PORT:-12355}
RUN_DIR=${RUN_DIR:-runs/local-multiprocess/$(date +%Y-%m-%d_%H-%M-%S)}

pids=()
for ((i = 0; i < N; i++)); do
  JAXFW_COORDINATOR_ADDRESS=127.0.0.1:$PORT JAXFW_NUM_PROCESSES=$N JAXFW_PROCESS_ID=$i \
    .venv/bin/jaxfw-train hydra.run.dir="$RUN_DIR" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
echo "run_dir $RUN_DIR"
exit "$status"
