"""3D pose finetuning of the lifter, from a pretrained or converted checkpoint.

Variants (``--config configs/pose3d.py:VARIANT``):
  full:  PerfectRep's ft_3d_pose_config.yaml (dim 512, depth 5, T 243, lr 2e-4 decaying 0.99 per
         epoch, MPJPE + 0.5 N-MPJPE + 20 velocity, the dataset's 2D, flip, no noise or masks).
         Start it from a converted checkpoint: --config.init.checkpoint=best_epoch.bin.
  lite:  MotionBERT-Lite's model, same recipe and data (Fit3D).
  demo:  the bundled demo mocap (not a benchmark), finetuning the demo pretraining run
         (runs/demo) on its 2D input.
  smoke: seconds on the bundled demo mocap, for tests.
Every variant names its data (``data.source``); full and lite read Fit3D prepared by
``perfectrep-jax prepare fit3d`` (``--config.data.data_dir=DIR``).
The backbone learns at ``optim.backbone_lr_mult`` times the head's rate (1.0 upstream).
"""

from perfectrep_jax.train.config_base import base_config, use_demo, use_fit3d, use_smoke


def get_config(variant: str = "full"):
  c = base_config("pose3d")
  c.data.synthetic_2d = False  # ft_3d_pose_config.yaml: gt_2d False, synthetic False
  c.data.flip = True
  c.data.clip_len = 243
  c.data.stride = 81
  c.corruption.noise = False
  c.corruption.mask = False
  c.corruption.mask_ratio = 0.0
  c.corruption.mask_t_ratio = 0.0
  c.optim.lr = 2e-4
  if variant in ("full", "lite"):
    use_fit3d(c, variant, total_steps=60_000, epochs=60 if variant == "full" else 0)
    c.init.finetune = variant == "full"  # --config.init.checkpoint=RUN_DIR_OR_BIN
  elif variant == "demo":
    use_demo(c, total_steps=300)
    c.data.source = "demo"  # the bundled demo mocap
    c.batch_size = 16
    c.optim.schedule = "constant"
    c.optim.backbone_lr_mult = 0.5
    c.init.checkpoint = "runs/demo"
    c.eval_every = 300
    c.checkpoint_every = 150
  elif variant == "smoke":
    use_smoke(c, total_steps=4)
    c.data.source = "demo"
  else:
    raise ValueError(f"unknown variant {variant!r}: full, lite, demo or smoke")
  return c
