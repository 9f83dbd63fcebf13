#!/bin/bash
# perfectrep-jax on a Cloud TPU VM pod slice: run this script on every worker at once.
#
#   gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all \
#     --command='cd ~/perfectrep-jax && bash launch/tpu_pod.sh --config configs/pretrain.py:full \
#                --workdir /mnt/shared/runs/pretrain --config.compute_dtype=bfloat16'
#
# The arguments are those of `perfectrep-jax train`. Every worker needs this repository at the
# same place with the package installed (pip install -e ".[tpu]"), and the run directory must be
# one every worker shares (NFS / Filestore, or a gcsfuse mount).
#
# On a slice of several hosts this script points JAX_COORDINATOR_ADDRESS at worker 0 (the first
# of the TPU metadata's worker-network-endpoints, port 8482 as JAX uses); the trainer then calls
# jax.distributed.initialize(), which reads the process count and this worker's id from the same
# metadata. A single-host TPU VM runs as one process.
#
# Environment: PYTHON (default python3); PERFECTREP_JAX_VENV, when set, is activated first;
# JAX_COORDINATOR_ADDRESS / JAX_COORDINATOR_PORT override the coordinator; GCE_METADATA_IP
# overrides the metadata server (as in JAX).
set -euo pipefail
if [[ $# -eq 0 ]]; then
  echo "usage: launch/tpu_pod.sh --config CONFIG --workdir DIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
if [[ -n "${PERFECTREP_JAX_VENV:-}" ]]; then
  # shellcheck disable=SC1091
  source "$PERFECTREP_JAX_VENV/bin/activate"
fi
PYTHON=${PYTHON:-python3}
metadata="http://${GCE_METADATA_IP:-metadata.google.internal}/computeMetadata/v1/instance/attributes"

attribute() {  # a TPU VM metadata attribute, empty off a TPU VM
  curl -sf --max-time 5 -H "Metadata-Flavor: Google" "$metadata/$1" 2>/dev/null || true
}

endpoints=$(attribute worker-network-endpoints)
worker=$(attribute agent-worker-number)
if [[ -z "${JAX_COORDINATOR_ADDRESS:-}" && "$endpoints" == *,* ]]; then
  first=${endpoints%%,*}          # "name:id:ip" (older images) or an address
  export JAX_COORDINATOR_ADDRESS="${first##*:}:${JAX_COORDINATOR_PORT:-8482}"
fi
hosts=1
if [[ -n "$endpoints" ]]; then
  hosts=$(( $(tr -cd , <<< "$endpoints" | wc -c) + 1 ))
fi
echo "perfectrep-jax: TPU worker ${worker:-0} of $hosts, coordinator" \
     "${JAX_COORDINATOR_ADDRESS:-none (one host)}"
exec "$PYTHON" -m perfectrep_jax.cli train "$@"
