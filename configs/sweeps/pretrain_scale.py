"""Model size x learning rate of full masked-pose pretraining, for a GPU cluster or a TPU pod.

Sizes are zipped (MotionBERT-Lite's 256-wide blocks with mlp_ratio 4, PerfectRep's 512 with 2),
crossed with three learning rates: 6 runs. The argument picks the accelerator's settings:

    perfectrep-jax sweep pretrain_scale:gpu --workdir /shared/runs/scale --emit slurm \
        --sbatch="--nodes=1 --ntasks-per-node=8 --gpus-per-node=8" --num-devices 8
    perfectrep-jax sweep pretrain_scale:tpu --workdir /mnt/shared/runs/scale --emit tpu \
        --tpu my-v5p-32 --zone us-east5-a --num-devices 16
"""

from perfectrep_jax.sweeps.spec import Sweep, axis, product, zipped

SETTINGS = {
  "gpu": {"compute_dtype": "bfloat16", "batch_size": 64},
  "tpu": {"compute_dtype": "bfloat16", "batch_size": 128, "mesh.fsdp": 4},
  "cpu": {},
}


def get_sweep(arg="gpu"):
  if arg not in SETTINGS:
    raise ValueError(f"pretrain_scale: argument gpu, tpu or cpu, not {arg!r}")
  size = zipped(axis("model.dim_feat", [256, 512]), axis("model.mlp_ratio", [4, 2]))
  return Sweep(
    config="../pretrain.py:full",
    grid=product(size, axis("optim.lr", [1e-3, 5e-4, 2e-4])),
    fixed=SETTINGS[arg],
  )
