"""Two seconds-long pretraining runs (learning rate 1e-3 and 5e-4): checks a machine or cluster.

perfectrep-jax sweep smoke --workdir runs/sweep-smoke
perfectrep-jax sweep smoke --workdir /shared/runs/sweep-smoke --emit slurm
"""

from perfectrep_jax.sweeps.spec import Sweep, axis


def get_sweep(arg=None):
  del arg
  return Sweep(
    config="../pretrain.py:smoke",
    grid=axis("optim.lr", [1e-3, 5e-4]),
    fixed={"total_steps": 4, "eval_every": 4, "checkpoint_every": 4},
  )
