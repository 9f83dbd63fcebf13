"""Learning rate x depth of the demo pretraining on the bundled mocap (6 runs, minutes each on CPU).

perfectrep-jax sweep demo_lr_depth --workdir runs/demo-lr-depth
perfectrep-jax sweep demo_lr_depth --workdir runs/demo-lr-depth --summary
"""

from perfectrep_jax.sweeps.spec import Sweep, axis, product


def get_sweep(arg=None):
  del arg
  return Sweep(
    config="../pretrain.py:demo",
    grid=product(axis("optim.lr", [2e-3, 1e-3, 5e-4]), axis("model.depth", [2, 3])),
  )
