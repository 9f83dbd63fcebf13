"""The fields every training config has, with PerfectRep's values where it has them.

Task configs in ``configs/`` start from ``base_config(task)`` and set their variants
(``configs/pretrain.py:full`` is PerfectRep's ``train_config.yaml``, ``:lite`` MotionBERT's
``MB_lite.yaml`` model, ``:demo`` the bundled mocap on 2 CPU cores, ``:smoke`` a seconds-long
test run). Every field can be overridden from the command line (``--config.optim.lr=1e-4``).
"""

from __future__ import annotations

import dataclasses
import typing

import ml_collections
from ml_collections.config_dict import placeholder

from perfectrep_jax.data.pipeline_config import PipelineConfig
from perfectrep_jax.loss_weights import LossWeights

# PerfectRep's model (train_config.yaml, ft_3d_pose_config.yaml, action_config.yaml).
FULL_MODEL = dict(
  dim_in=3,
  dim_out=3,
  dim_feat=512,
  dim_rep=512,
  depth=5,
  num_heads=8,
  mlp_ratio=2,
  num_joints=17,
  maxlen=243,
  att_fuse=True,
  qkv_bias=True,
  qk_scale=None,
  drop_rate=0.0,
  attn_drop_rate=0.0,
  drop_path_rate=0.0,
)
# MotionBERT-Lite (configs/pretrain/MB_lite.yaml).
LITE_MODEL = dict(FULL_MODEL, dim_feat=256, mlp_ratio=4)
# Small enough to train on the bundled mocap in minutes on 2 CPU cores.
DEMO_MODEL = dict(FULL_MODEL, dim_feat=64, dim_rep=128, depth=3, num_heads=4, mlp_ratio=2, maxlen=27)
# The default lifter (configs/lifter.py:default): trains in about an hour and streams in real time
# on 2 CPU cores (dim 128 trains 2.6x slower there: 5.3 against 13.6 clips/s, AMD EPYC, one run).
LIFTER_MODEL = dict(FULL_MODEL, dim_feat=64, dim_rep=128, depth=4, num_heads=4, mlp_ratio=2, maxlen=27)
SMOKE_MODEL = dict(FULL_MODEL, dim_feat=16, dim_rep=16, depth=1, num_heads=2, mlp_ratio=2, maxlen=9)


def pipeline_data_defaults(**overrides) -> ml_collections.ConfigDict:
  """``PipelineConfig``'s fields and defaults as a ``data`` ConfigDict (less split, batch, seed).

  A field whose default is None becomes a typed placeholder, so ``--config.data.stride=9`` works.
  """
  hints = typing.get_type_hints(PipelineConfig)
  data = {}
  for field in dataclasses.fields(PipelineConfig):
    if field.name in ("split", "batch_size", "seed"):
      continue
    value = overrides.pop(field.name, field.default)
    if value is None:
      kind = next(a for a in typing.get_args(hints[field.name]) if a is not type(None))
      value = placeholder(typing.get_origin(kind) or kind)
    data[field.name] = value
  if overrides:
    raise ValueError(f"unknown pipeline settings {sorted(overrides)}")
  return ml_collections.ConfigDict(data)


def base_config(task: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = task
  c.seed = 0
  c.epochs = 0  # > 0: total_steps = epochs x steps per epoch (upstream counts)
  c.total_steps = 1000
  c.batch_size = 32  # global, over all processes
  c.log_every = 20
  c.eval_every = 500  # 0 = only at the end... and never mid-run
  c.eval_at_start = False
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.data_global_order = False  # True: every process reads each global batch, keeps its slice
  c.compute_dtype = "float32"  # "bfloat16" on accelerators
  c.remat = ""  # "", "full" or "dots": rematerialise each half-block
  # "auto": "einsum" (CPU), "lanes" (GPU), "pallas" (TPU: Pallas kernels, interpreted elsewhere);
  # or "dot_product_attention" (cuDNN), "tpu" (TPU without Pallas)
  c.attention_impl = "auto"
  # "tokens" (CPU, GPU) or "heads" (TPU): q, k, v projected straight into heads, norms and MLPs
  # on the (B, T, J, C) arrays instead of (tokens, C) matrices
  c.qkv_layout = "auto"
  c.scan_layers = False  # True: one lax.scan over the depths (no dropout; measured no gain on v5e)

  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  c.sharding_rules = (
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("qkv", "tensor"),
    ("rep", None),
  )
  c.distributed = ml_collections.ConfigDict(dict(coordinator="", num_processes=0, process_id=0))

  c.model = ml_collections.ConfigDict(
    dict(FULL_MODEL, name="dstformer", mlp_hidden=1024, mlp_blocks=2, qk_scale=placeholder(float))
  )
  # The pipeline's own defaults (data/pipeline_config.py), less what the run sets (split, batch,
  # seed). source: every variant names its data ("demo": the bundled demo mocap; "mocap": all of
  # the data folder; or a prepared TFDS dataset such as "fit3d/clip243"); check_config refuses a
  # config that does not. clip_len: upstream's 243 frames.
  c.data = pipeline_data_defaults(source="", clip_len=243)
  # scale_range: (r, r) rescales the action task's 2D test clips by crop_scale with ratio r.
  c.eval = ml_collections.ConfigDict(
    dict(batch_size=32, flip_test=False, max_batches=0, scale_range=placeholder(tuple))
  )
  # PerfectRep's loss weights (train_config.yaml); losses.LossWeights says what each term is.
  c.loss = ml_collections.ConfigDict(LossWeights.upstream()._asdict())
  c.corruption = ml_collections.ConfigDict(
    dict(
      noise=True,
      mask=True,
      mask_ratio=0.05,
      mask_t_ratio=0.1,
      limb_mask_prob=0.0,
      half_mask_prob=0.0,
      span_mask_prob=0.0,
    )
  )
  c.optim = ml_collections.ConfigDict(
    dict(
      lr=5e-4,
      weight_decay=0.01,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      schedule="exponential",
      lr_decay=0.99,
      warmup_steps=0,
      end_lr_factor=0.0,
      cycle_steps=(),
      cycle_lr_factors=(),
      cycle_warmup_steps=(),
      clip_norm=0.0,
      accumulate_steps=1,
      backbone_lr_mult=1.0,
    )
  )
  # finetune: the run must start from init.checkpoint (a model/run dir or a PyTorch .bin).
  c.init = ml_collections.ConfigDict(dict(checkpoint="", num_heads=8, finetune=False))
  # num_classes: width of the classifier (0: len(classes)); classes name the labels in order.
  # random_move: MotionBERT's random affine move of 2D training clips.
  c.action = ml_collections.ConfigDict(
    dict(classes=(), num_classes=0, hidden_dim=2048, dropout_ratio=0.5, input="2d", random_move=False)
  )
  return c


def use_fit3d(
  c: ml_collections.ConfigDict, size: str, total_steps: int, epochs: int = 0
) -> ml_collections.ConfigDict:
  """The benchmark sizes: ``full`` (MotionBERT's model, batch 32) or ``lite`` (MotionBERT-Lite's,
  batch 64) on Fit3D's 243-frame clips, prepared with `perfectrep-jax prepare fit3d`; ``epochs``
  (> 0) counts upstream's epochs instead of ``total_steps``."""
  c.model.update(FULL_MODEL if size == "full" else LITE_MODEL)
  c.data.source = "fit3d/clip243"
  c.batch_size = 32 if size == "full" else 64
  c.total_steps = total_steps
  if epochs:
    c.epochs = epochs
  return c


def use_demo(c: ml_collections.ConfigDict, total_steps: int) -> ml_collections.ConfigDict:
  """The demo sizes shared by every task: the small model on 27-frame clips of the bundled mocap."""
  c.model.update(DEMO_MODEL)
  c.data.clip_len = DEMO_MODEL["maxlen"]
  c.data.stride = 9
  c.total_steps = total_steps
  c.log_every = 25
  c.eval.batch_size = 64
  return c


def use_smoke(c: ml_collections.ConfigDict, total_steps: int) -> ml_collections.ConfigDict:
  """A run of a few seconds for tests: tiny model, 9-frame clips, two eval batches."""
  c.model.update(SMOKE_MODEL)
  c.data.clip_len = SMOKE_MODEL["maxlen"]
  c.data.stride = 9
  c.batch_size = 8
  c.total_steps = total_steps
  c.log_every = 2
  c.eval_every = total_steps
  c.checkpoint_every = total_steps
  c.eval.batch_size = 16
  c.eval.max_batches = 2
  return c
