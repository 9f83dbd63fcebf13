#!/bin/bash
# perfectrep-jax on one machine.
#
#   launch/local.sh --config configs/pretrain.py:demo --workdir runs/demo [--config.KEY=VALUE ...]
#
# By default one process drives every device of the machine (all GPUs, the TPU chips, or the CPU).
#   PROCESSES=N    N processes joined by jax.distributed through a coordinator on 127.0.0.1
#                  (process i takes GPU i when there are GPUs): the multi-host code path on one
#                  machine. Output lines are prefixed with the process id.
#   CPU_DEVICES=N  split the CPU into N XLA devices (--xla_force_host_platform_device_count),
#                  in each process: a device mesh without accelerators.
#   PORT           coordinator port (default: a free one).
#   PYTHON         the interpreter with perfectrep_jax installed (default python3).
# Each `perfectrep-jax train` process re-executes itself once with a glibc malloc that keeps its
# memory on huge pages (perfectrep_jax/hostmem.py; on CPU, re-faulting the step's temporaries cost
# a fifth of the train step: benchmarks/README.md). PERFECTREP_JAX_NO_REEXEC=1 turns that off.
# If one process fails, the others are stopped and the script exits with its status.
set -euo pipefail
if [[ $# -eq 0 ]]; then
  echo "usage: [PROCESSES=N] [CPU_DEVICES=N] launch/local.sh --config CONFIG --workdir DIR" \
       "[--config.KEY=VALUE ...]" >&2
  exit 2
fi
PYTHON=${PYTHON:-python3}
PROCESSES=${PROCESSES:-1}
if [[ -n "${CPU_DEVICES:-}" ]]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$CPU_DEVICES"
fi
if (( PROCESSES <= 1 )); then
  exec "$PYTHON" -m perfectrep_jax.cli train "$@"
fi

PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
echo "perfectrep-jax: $PROCESSES processes, coordinator 127.0.0.1:$PORT"
pids=()
stop() {
  local p
  for p in "${pids[@]}"; do
    if [[ -n "$p" ]]; then kill -TERM "$p" 2>/dev/null || true; fi
  done
}
trap 'stop; wait; exit 130' INT
trap 'stop; wait; exit 143' TERM
for (( i = 0; i < PROCESSES; i++ )); do
  (
    if (( gpus > 0 )); then export CUDA_VISIBLE_DEVICES=$(( i % gpus )); fi
    exec "$PYTHON" -m perfectrep_jax.cli train "$@" \
      "--config.distributed.coordinator=127.0.0.1:$PORT" \
      "--config.distributed.num_processes=$PROCESSES" "--config.distributed.process_id=$i"
  ) > >(sed -u "s/^/$i: /") 2>&1 &
  pids+=($!)
done
status=0
left=$PROCESSES
while (( left > 0 )); do
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    if [[ -z "$pid" ]] || kill -0 "$pid" 2>/dev/null; then continue; fi
    code=0
    wait "$pid" || code=$?
    pids[i]=""
    left=$(( left - 1 ))
    if (( code != 0 && status == 0 )); then
      status=$code
      echo "perfectrep-jax: process $i failed (exit status $code); stopping the others" >&2
      stop
    fi
  done
  sleep 0.5
done
exit "$status"
