"""What the trainer trains, behind a narrow interface: make the model, the loss of a batch,
the predictions of an eval batch, and the metrics of a whole evaluation.

Three tasks:
  pretrain: the 2D input is corrupted on device (noise, masks) and the lifter reconstructs clean
    3D; loss = MPJPE + lambda_scale * N-MPJPE + lambda_3d_velocity * velocity (+ limb, angle).
  pose3d:  the lifter on the dataset's 2D (ground truth or a detector's), same loss; usually
    finetuned from a pretrained or converted checkpoint.
  action:  the action classifier over (N, M=1, T, J, C) clips with cross entropy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from perfectrep_jax import losses, skeleton
from perfectrep_jax.data import corruption, moves
from perfectrep_jax.models import ActionConfig, DSTformer, DSTformerConfig, model_dir
from perfectrep_jax.models.heads import normalize_clip_3d
from perfectrep_jax.models.baseline import MLPLifterConfig
from perfectrep_jax.train import eval_reports
from perfectrep_jax.train.eval_reports import EvalResult

Array = jax.Array


# ---------------------------------------------------------------------------- what every task supplies
class Task:
  """What the trainer asks of a task besides its model, loss, predictions and metrics: the batch
  fields it feeds, how it labels a batch, how its model is built and described, and how another
  model's weights initialise it. The defaults are a lifter's.

  Attributes:
    model_kind: the model it trains, one of ``model_dir.KINDS``.
    device_fields: the batch fields sent to the devices: the update and eval steps' input.
    eval_fields: the host batch fields an evaluation keeps beside the predictions, for
      ``evaluate`` (``index`` names the clip's source, camera and action).
    best_metric_name, best_mode: the evaluation figure that picks the best checkpoint.
  """

  model_kind = "lifter"
  device_fields: tuple[str, ...] = ("input_2d", "target_3d")
  eval_fields: tuple[str, ...] = ("target_3d", "scale_mm", "frame_index", "index", "valid")
  best_metric_name = "mpjpe"
  best_mode = "min"

  def __init__(self, cfg):
    self.cfg = cfg

  def with_labels(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The host batch with whatever the task derives from it (labels); unchanged by default."""
    return batch

  def model_options(self) -> dict[str, Any]:
    """``model_dir.build_model``'s execution options (how the model runs, never its weights):
    the DSTformer's ``remat``, ``attention_impl``, ``qkv_layout`` and ``scan_layers`` from the
    config."""
    return dict(
      remat=self.cfg.get("remat") or None,
      attention_impl=self.cfg.get("attention_impl", "auto"),
      qkv_layout=self.cfg.get("qkv_layout", "auto"),
      scan_layers=bool(self.cfg.get("scan_layers", False)),
    )

  def model_meta(self) -> dict[str, Any]:
    """What ``model.json`` says of the trained model beyond its kind and config."""
    return {}

  def initial_params(self, source: nnx.Module) -> dict[str, Any]:
    """``source``'s parameters (a loaded or converted model) as a nested dict laid out like this
    task's model's, for ``init.checkpoint``; paths the task's model lacks are skipped later."""
    return nnx.to_pure_dict(nnx.state(source, nnx.Param))


# ---------------------------------------------------------------------------- 3D pose tasks
class PoseTask(Task):
  """The lifter trained on (input_2d -> target_3d); ``corrupt`` makes it masked-pose pretraining."""

  def __init__(self, cfg, corrupt: bool):
    super().__init__(cfg)
    # config.model.name: "dstformer" (default) or "mlp", the per-frame baseline.
    self.model_kind = model_dir.MODEL_NAMES.get(cfg.model.get("name", "dstformer"), "lifter")
    self.corrupt = corrupt
    self.loss_weights = losses.LossWeights.from_mapping(dict(cfg.loss))
    self.corruption = corruption.CorruptionConfig.from_config(cfg.corruption) if corrupt else None
    self.flip_test = bool(cfg.eval.get("flip_test", False))

  def model_config(self) -> DSTformerConfig | MLPLifterConfig:
    return model_dir.lifter_config(self.cfg.model)

  def model_options(self) -> dict[str, Any]:
    return {} if self.model_kind == "mlp_lifter" else super().model_options()

  def model_input(self, batch: Mapping[str, Array], key: Array | None) -> Array:
    x = batch["input_2d"]
    if self.corrupt and key is not None:
      x = corruption.corrupt_2d(key, x, self.corruption)
    return x

  def loss(self, model, batch: Mapping[str, Array], key: Array) -> tuple[Array, dict]:
    pred = model(self.model_input(batch, key))
    total, terms = losses.pose_loss(pred.astype(jnp.float32), batch["target_3d"], self.loss_weights)
    return total, {"loss": total, **{f"loss_{k}": v for k, v in terms.items()}}

  def predict(self, model, batch: Mapping[str, Array]) -> dict[str, Array]:
    x = batch["input_2d"]
    pred = model(x).astype(jnp.float32)
    if self.flip_test:
      pred = (pred + skeleton.flip_pose(model(skeleton.flip_pose(x)).astype(jnp.float32))) / 2
    return {"pred": pred}

  def evaluate(self, outputs: Sequence[Mapping[str, np.ndarray]]) -> EvalResult:
    """Per-action P1/P2 in mm, N-MPJPE, MPJVE, PCK / AUC and bone errors, with their tables and
    plots (``eval_reports.pose_report``; 3DHP adds its per-sequence tables)."""
    return eval_reports.pose_report(outputs, eval_reports.is_3dhp(self.cfg))


# ---------------------------------------------------------------------------- action task
class ActionTask(Task):
  """The action classifier; labels are the dataset's action names, in ``cfg.action.classes``.

  ``cfg.action.input``: ``2d`` (upstream: the 2D keypoints with confidence) or ``3d`` (the clip's
  3D pose, normalised by ``normalize_clip_3d``: what ``perfectrep-jax infer`` has to classify).
  """

  model_kind = "action"
  device_fields = (*Task.device_fields, "label")
  eval_fields = (*Task.eval_fields, "label")
  best_metric_name = "top1"
  best_mode = "max"

  def __init__(self, cfg):
    super().__init__(cfg)
    self.classes = tuple(cfg.action.classes)
    if not self.classes:
      raise ValueError("action.classes must list the action names")

  def model_config(self) -> ActionConfig:
    width = max(int(self.cfg.action.get("num_classes", 0)), len(self.classes))
    return ActionConfig(
      backbone=model_dir.backbone_config(self.cfg.model),
      num_classes=width,
      hidden_dim=self.cfg.action.hidden_dim,
      dropout_ratio=self.cfg.action.dropout_ratio,
      version="class",
    )

  def with_labels(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Adds ``label`` (B,) int32: the class ids of the batch's ``action`` names."""
    return dict(batch, label=self.labels(batch["action"]))

  def model_meta(self) -> dict[str, Any]:
    return {"classes": list(self.classes), "action_input": self.cfg.action.get("input", "2d")}

  def initial_params(self, source: nnx.Module) -> dict[str, Any]:
    """A lifter's weights initialise the backbone (its regression head has no place here); an
    action model's map one to one."""
    params = super().initial_params(source)
    return {"backbone": params} if isinstance(source, DSTformer) else params

  def labels(self, actions: np.ndarray) -> np.ndarray:
    """Action names -> class ids (host side); unknown names are an error."""
    index = {c: i for i, c in enumerate(self.classes)}
    try:
      return np.asarray([index[str(a)] for a in actions], np.int32)
    except KeyError as e:
      raise ValueError(f"action {e} is not one of the configured classes {self.classes}") from None

  def model_input(self, batch: Mapping[str, Array], key: Array | None = None) -> Array:
    """(N, M=1, T, J, C) clips of one person.

    2D input in training (``key`` given) gets MotionBERT's ``random_move`` when
    ``action.random_move`` is set; in evaluation, ``eval.scale_range`` (upstream's
    ``scale_range_test``) rescales it with a fixed ratio.
    """
    if self.cfg.action.get("input", "2d") == "3d":
      return normalize_clip_3d(batch["target_3d"])[:, None]
    x = batch["input_2d"]
    if key is not None and self.cfg.action.get("random_move", False):
      x = moves.random_move(key, x)
    scale_range = self.cfg.eval.get("scale_range")
    if key is None and scale_range:
      x = moves.crop_scale_fixed(x, float(sum(scale_range)) / 2)
    return x[:, None]

  def loss(self, model, batch: Mapping[str, Array], key: Array) -> tuple[Array, dict]:
    logits = model(self.model_input(batch, key)).astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, {"loss": loss, "train_top1": acc}

  def predict(self, model, batch: Mapping[str, Array]) -> dict[str, Array]:
    return {"logits": model(self.model_input(batch)).astype(jnp.float32)}

  def evaluate(self, outputs: Sequence[Mapping[str, np.ndarray]]) -> EvalResult:
    """Top-1 / top-5 and per-class accuracy (``eval_reports.action_report``)."""
    return eval_reports.action_report(outputs, self.classes)


def make_task(cfg) -> Task:
  name = cfg.task
  if name == "pretrain":
    return PoseTask(cfg, corrupt=True)
  if name == "pose3d":
    return PoseTask(cfg, corrupt=False)
  if name == "action":
    return ActionTask(cfg)
  raise ValueError(f"task must be pretrain, pose3d or action; got {name!r}")
