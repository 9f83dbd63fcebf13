"""Masked-pose pretraining of the DSTformer lifter.

Variants (``--config configs/pretrain.py:VARIANT``):
  full:  PerfectRep's train_config.yaml (dim 512, depth 5, T 243, lr 5e-4 decaying 0.99 per epoch,
         loss MPJPE + 0.5 N-MPJPE + 20 velocity, synthetic 2D with noise and masks, flip).
  lite:  MotionBERT-Lite's model (dim 256, mlp_ratio 4), same recipe and data (Fit3D).
  demo:  the bundled demo mocap (not a benchmark), a small model and 27-frame clips: minutes on
         2 CPU cores; position losses only: at upstream's velocity weight of 20 this model stalls
         (154.5 mm held-out MPJPE at step 500 and at step 1,000), without it it reaches 68 mm.
  smoke: seconds on the bundled demo mocap, for tests.
Every variant names its data (``data.source``); full and lite read Fit3D prepared by
``perfectrep-jax prepare fit3d`` (``--config.data.data_dir=DIR``).
"""

from perfectrep_jax.train.config_base import base_config, use_demo, use_fit3d, use_smoke


def get_config(variant: str = "full"):
  c = base_config("pretrain")
  c.data.synthetic_2d = True  # train_config.yaml: synthetic, gt_2d
  c.data.flip = True
  c.data.clip_len = 243
  c.data.stride = 81  # data_stride
  if variant in ("full", "lite"):
    use_fit3d(c, variant, total_steps=100_000, epochs=90 if variant == "full" else 0)
  elif variant == "demo":
    use_demo(c, total_steps=1000)
    c.data.source = "demo"  # the bundled demo mocap
    c.batch_size = 16
    c.optim.lr = 1e-3
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 100
    c.loss.lambda_3d_velocity = 0.0  # see the docstring: weighted 20 it starves the pose term
    c.eval_every = 500
    c.eval_at_start = True
    c.checkpoint_every = 250
  elif variant == "smoke":
    use_smoke(c, total_steps=6)
    c.data.source = "demo"
    c.checkpoint_every = 3
  else:
    raise ValueError(f"unknown variant {variant!r}: full, lite, demo or smoke")
  return c
