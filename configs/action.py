"""Action classification: the DSTformer backbone and a classification head.

Variants (``--config configs/action.py:VARIANT``):
  full:  PerfectRep's action_config.yaml (dim 512, depth 5, T 243, 2048-wide head with dropout 0.5,
         backbone lr 1e-4 and head lr 1e-3 decaying 0.99 per epoch, 2D input with a random scale in
         [1, 3]); set ``action.classes`` to the dataset's action names.
  demo:  the movements of the bundled demo mocap (deep squat, lunges, sit to stand, shoulder
         abduction, ...) from 3D clips, the classifier ``perfectrep-jax infer --action-checkpoint``
         uses.
  smoke: seconds on the bundled demo mocap, for tests.
Every variant names its data (``data.source``).
"""

from perfectrep_jax.train.config_base import base_config, use_demo, use_fit3d, use_smoke

DEMO_CLASSES = (
  "deep squat",
  "inline lunge",
  "side lunge",
  "sit to stand",
  "standing shoulder abduction",
  "soccer - kick ball",
  "laugh",
)


def get_config(variant: str = "full"):
  c = base_config("action")
  c.data.clip_len = 243
  c.data.stride = 81
  c.data.flip = True
  c.data.scale_range = (1.0, 3.0)  # scale_range_train
  c.optim.lr = 1e-3  # lr_head
  c.optim.backbone_lr_mult = 0.1  # lr_backbone 1e-4 / lr_head 1e-3
  c.action.hidden_dim = 2048
  c.action.dropout_ratio = 0.5
  if variant == "full":
    use_fit3d(c, "full", total_steps=100_000, epochs=300)
    c.init.finetune = True  # --config.init.checkpoint=RUN_DIR_OR_BIN
    c.action.num_classes = 60  # action_classes; name them in action.classes
    c.action.random_move = True
    c.eval.scale_range = (2.0, 2.0)  # scale_range_test
  elif variant in ("demo", "smoke"):
    if variant == "demo":
      use_demo(c, total_steps=300)
      c.batch_size = 16
      c.action.hidden_dim = 256
      c.optim.schedule = "constant"
      c.eval_every = 300
      c.checkpoint_every = 150
    else:
      use_smoke(c, total_steps=4)
      c.action.hidden_dim = 32
    c.data.source = "demo"  # the bundled demo mocap
    c.data.scale_range = None
    c.action.classes = DEMO_CLASSES
    c.action.input = "3d"
  else:
    raise ValueError(f"unknown variant {variant!r}: full, demo or smoke")
  return c
