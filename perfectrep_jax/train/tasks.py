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

import csv
import dataclasses
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from perfectrep_jax import bones, losses, metrics, skeleton
from perfectrep_jax.data import corruption, moves
from perfectrep_jax.models import ActionConfig, DSTformerConfig, model_dir
from perfectrep_jax.models.baseline import MLPLifterConfig

Array = jax.Array
_FLIP_SIGN = np.array([-1.0, 1.0, 1.0], np.float32)


def flip_joints(x: Array) -> Array:
  """Horizontal flip of (..., J, C) poses: negate x and swap left/right joints."""
  sign = jnp.asarray(_FLIP_SIGN[: x.shape[-1]], x.dtype)
  return x[..., np.asarray(skeleton.FLIP_PERMUTATION), :] * sign


@dataclasses.dataclass
class EvalResult:
  """What an evaluation reports: flat metrics (logged) and a printable table.

  ``files``: file name -> contents (JSON / CSV tables, PNG plots) that the reporter writes under
  ``WORKDIR/eval/step_<N>/``; empty when the task has none.
  """

  metrics: dict[str, float]
  table: str
  best_metric: float  # lower is better
  files: dict[str, bytes] = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------- 3D pose tasks
class PoseTask:
  """The lifter trained on (input_2d -> target_3d); ``corrupt`` makes it masked-pose pretraining."""

  best_metric_name = "mpjpe"
  best_mode = "min"

  def __init__(self, cfg, corrupt: bool):
    self.cfg = cfg
    # config.model.name: "dstformer" (default) or "mlp", the per-frame baseline.
    self.kind = "mlp_lifter" if cfg.model.get("name", "dstformer") == "mlp" else "lifter"
    self.corrupt = corrupt
    self.loss_weights = losses.LossWeights.from_mapping(dict(cfg.loss))
    self.corruption = corruption.CorruptionConfig.from_config(cfg.corruption) if corrupt else None
    self.flip_test = bool(cfg.eval.get("flip_test", False))

  def model_config(self) -> DSTformerConfig | MLPLifterConfig:
    return model_dir.lifter_config(self.cfg.model)

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
      pred = (pred + flip_joints(model(flip_joints(x)).astype(jnp.float32))) / 2
    return {"pred": pred}

  def evaluate(self, outputs: Sequence[Mapping[str, np.ndarray]]) -> EvalResult:
    """Per-action P1/P2 in mm (after denormalising as upstream), plus N-MPJPE and MPJVE, PCK / AUC
    and bone errors; tables (JSON, CSV) and plots (PNG) in ``EvalResult.files``.

    ``outputs``: the eval batches, each with ``pred`` / ``target_3d`` (B, T, 17, 3), ``scale_mm``
    (B, T), ``valid`` (B,), ``frame_index`` (B, T), ``source`` / ``camera`` / ``action`` (B,).
    """
    cat = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    keep = cat["valid"].astype(bool)
    pred = np.asarray(cat["pred"][keep], np.float64)
    gt = np.asarray(cat["target_3d"][keep], np.float64)
    scale = np.asarray(cat["scale_mm"][keep], np.float64)
    pred_mm = pred - pred[..., :1, :]
    gt_mm = gt - gt[..., :1, :]
    pred_mm *= scale[..., None, None]
    gt_mm *= scale[..., None, None]
    n, t = pred_mm.shape[:2]
    p1 = metrics.mpjpe_per_pose(pred_mm.reshape(-1, 17, 3), gt_mm.reshape(-1, 17, 3)).reshape(n, t)
    p2 = metrics.p_mpjpe_per_pose(pred_mm.reshape(-1, 17, 3), gt_mm.reshape(-1, 17, 3)).reshape(n, t)
    # Frames are identified by (sequence, camera, frame number) so overlapping clips average.
    seq = [f"{s}|{c}" for s, c in zip(cat["source"][keep], cat["camera"][keep])]
    ids: dict[tuple[str, int], int] = {}
    frame_actions: list[str] = []
    frame_sources: list[str] = []
    clip_frames = np.zeros((n, t), np.int64)
    for i in range(n):
      for j, f in enumerate(cat["frame_index"][keep][i]):
        key = (seq[i], int(f))
        if key not in ids:
          ids[key] = len(ids)
          frame_actions.append(str(cat["action"][keep][i]))
          frame_sources.append(str(cat["source"][keep][i]))
        clip_frames[i, j] = ids[key]
    table = metrics.action_table({"P1": p1, "P2": p2}, clip_frames, frame_actions)
    out = {
      "mpjpe": table.overall["P1"],
      "p_mpjpe": table.overall["P2"],
      "n_mpjpe": float(
        np.mean(metrics.n_mpjpe_per_pose(pred_mm.reshape(-1, 17, 3), gt_mm.reshape(-1, 17, 3)))
      ),
      "mpjve": metrics.mpjve(pred_mm, gt_mm),
      "depth_mm": metrics.depth_error(pred_mm, gt_mm),
      "eval_clips": float(n),
    }
    for action in table.actions:
      out[f"mpjpe/{action}"] = table.errors["P1"][action]
      out[f"p_mpjpe/{action}"] = table.errors["P2"][action]
    text = (
      table.format() + f"\nProtocol #1 (MPJPE): {out['mpjpe']:.2f} mm   "
      f"Protocol #2 (P-MPJPE): {out['p_mpjpe']:.2f} mm   N-MPJPE: {out['n_mpjpe']:.2f} mm"
      f"   MPJVE: {out['mpjve']:.2f} mm/frame   depth (root-relative): {out['depth_mm']:.2f} mm"
    )
    extra, lines, files, detail = _pose_extras(
      pred_mm, gt_mm, clip_frames, frame_sources, table, _is_3dhp(self.cfg)
    )
    out.update(extra)
    text = "\n".join([text, *lines])
    files["metrics.json"] = _json_bytes({"metrics": out, **detail})
    return EvalResult(metrics=out, table=text, best_metric=out["mpjpe"], files=files)


# ---------------------------------------------------------------------------- pose eval extras
def _is_3dhp(cfg) -> bool:
  """Whether the config evaluates on MPI-INF-3DHP (``data.source`` 'mpi_inf_3dhp[/config][:ver]')."""
  data = cfg.get("data", None)
  source = str(data.get("source", "")) if data is not None else ""
  return source.split("/")[0].split(":")[0] == "mpi_inf_3dhp"


def _finite(x: Any) -> Any:
  """JSON-safe copy: non-finite floats -> None, NumPy scalars -> Python numbers."""
  if isinstance(x, Mapping):
    return {str(k): _finite(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_finite(v) for v in x]
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(float(x)) else None
  if isinstance(x, np.integer):
    return int(x)
  return x


def _json_bytes(obj: Any) -> bytes:
  return (json.dumps(_finite(obj), indent=1, allow_nan=False) + "\n").encode()


def _csv_bytes(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(header)
  for row in rows:
    writer.writerow([f"{v:.6g}" if isinstance(v, (float, np.floating)) else v for v in row])
  return buf.getvalue().encode()


def _png_bytes(draw) -> bytes:
  """Renders ``draw(ax)`` on a fresh Agg figure (no pyplot global state) and returns the PNG."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(7.0, 4.0), dpi=100)
  FigureCanvasAgg(fig)
  draw(fig.add_subplot(1, 1, 1))
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  return buf.getvalue()


@jax.jit
def _bone_error_sums(pred: Array, gt: Array) -> tuple[Array, Array, Array]:
  """(N, 17, 3) x2 -> per-pose sums over the 16 bones of rotation (geodesic, deg), Euler-angle
  (mean of the three angles' absolute differences, deg) and vector (mm) error."""
  return (
    jnp.sum(bones.bone_rotation_error(pred, gt), axis=-1),
    jnp.sum(jnp.mean(bones.bone_euler_error(pred, gt), axis=-1), axis=-1),
    jnp.sum(bones.bone_vector_error(pred, gt), axis=-1),
  )


def _bone_errors(pred_mm: np.ndarray, gt_mm: np.ndarray, chunk: int = 16384) -> tuple[float, float, float]:
  """Mean relative-rotation error (geodesic, deg), Euler-angle error (deg, per angle; PETR's
  second figure, ``bones.bone_euler_error``) and bone-vector error (mm) over (N, 17, 3) poses.

  Runs in float32 chunks padded to a power of two (at least 256, at most ``chunk``) so that
  evaluations of any size reuse a few compilations.
  """
  rot_sum = euler_sum = vec_sum = 0.0
  for start in range(0, len(pred_mm), chunk):
    p = np.asarray(pred_mm[start : start + chunk], np.float32)
    g = np.asarray(gt_mm[start : start + chunk], np.float32)
    size = min(chunk, max(256, 1 << (len(p) - 1).bit_length()))
    pad = ((0, size - len(p)), (0, 0), (0, 0))
    rot, euler, vec = _bone_error_sums(
      jnp.asarray(np.pad(p, pad, mode="edge")), jnp.asarray(np.pad(g, pad, mode="edge"))
    )
    rot_sum += float(np.sum(np.asarray(rot, np.float64)[: len(p)]))
    euler_sum += float(np.sum(np.asarray(euler, np.float64)[: len(p)]))
    vec_sum += float(np.sum(np.asarray(vec, np.float64)[: len(p)]))
  count = max(len(pred_mm), 1) * (skeleton.NUM_JOINTS - 1)
  return rot_sum / count, euler_sum / count, vec_sum / count


def _pose_extras(
  pred_mm: np.ndarray,
  gt_mm: np.ndarray,
  clip_frames: np.ndarray,
  frame_sources: Sequence[str],
  table: metrics.ActionTable,
  is_3dhp: bool,
) -> tuple[dict[str, float], list[str], dict[str, bytes], dict]:
  """PCK / AUC, bone errors, per-joint errors, and their files, for ``PoseTask.evaluate``.

  PCK, AUC and the per-joint errors are computed per test frame: a frame covered by several clips
  (or several times in one) gets the mean of its predictions. Bone errors are means over every
  evaluated clip frame and bone, like N-MPJPE.

  Args:
    pred_mm, gt_mm: (n, t, 17, 3) root-relative clips in mm.
    clip_frames: (n, t) test-frame index of each clip frame.
    frame_sources: (num_frames,) sequence of each test frame (``source``).
    table: the per-action table, written to ``per_action.csv``.
    is_3dhp: adds per-sequence / per-scene PCK and the 14-joint PCK / AUC.
  Returns:
    (metrics, text lines to append to the table text, files (CSV, PNG), detail): ``detail`` holds
    the per-action, per-joint, PCK-curve (and per-group) data for the caller's ``metrics.json``.
  """
  num = len(frame_sources)
  flat = clip_frames.reshape(-1)
  count = np.bincount(flat, minlength=num).astype(np.float64)[:, None, None]
  frame_pred = np.zeros((num, 17, 3))
  np.add.at(frame_pred, flat, pred_mm.reshape(-1, 17, 3))
  frame_pred /= np.maximum(count, 1.0)
  frame_gt = np.zeros((num, 17, 3))
  frame_gt[flat] = gt_mm.reshape(-1, 17, 3)
  covered = count[:, 0, 0] > 0
  frame_pred, frame_gt = frame_pred[covered], frame_gt[covered]
  sources = np.asarray(frame_sources)[covered]

  thresholds = metrics.PCK_THRESHOLDS
  curve = metrics.pck_curve(frame_pred, frame_gt, thresholds)
  out = {"pck150": metrics.pck(frame_pred, frame_gt, 150.0), "auc": float(np.mean(curve))}
  rot, euler, vec = _bone_errors(pred_mm.reshape(-1, 17, 3), gt_mm.reshape(-1, 17, 3))
  out["bone_rotation_error"], out["bone_euler_error"], out["bone_vector_error"] = rot, euler, vec
  dist = metrics.joint_distances(frame_pred, frame_gt)  # (frames, 17)
  joint_err = dist.mean(axis=0) if len(dist) else np.full(17, np.nan)
  joint_pck = 100.0 * (dist <= 150.0).mean(axis=0) if len(dist) else np.full(17, np.nan)
  lines = [
    f"PCK@150mm: {out['pck150']:.1f}%   AUC: {out['auc']:.1f}% (17 joints)   "
    f"bone rotation error: {rot:.2f} deg (Euler angles: {euler:.2f} deg)   "
    f"bone vector error: {vec:.2f} mm"
  ]
  detail: dict[str, Any] = {
    "per_action": {
      a: {"P1": table.errors["P1"][a], "P2": table.errors["P2"][a], "frames": table.frames[a]}
      for a in table.actions
    },
    "per_joint": {
      name: {"mpjpe": joint_err[j], "pck150": joint_pck[j]} for j, name in enumerate(skeleton.H36M_JOINTS)
    },
    "pck_curve": {"thresholds_mm": thresholds.tolist(), "pck": curve.tolist()},
  }
  files: dict[str, bytes] = {
    "per_action.csv": _csv_bytes(
      ["action", "P1_mm", "P2_mm", "frames"],
      [[a, table.errors["P1"][a], table.errors["P2"][a], table.frames[a]] for a in table.actions],
    ),
    "per_joint.csv": _csv_bytes(
      ["joint", "mpjpe_mm", "pck150"],
      [[name, joint_err[j], joint_pck[j]] for j, name in enumerate(skeleton.H36M_JOINTS)],
    ),
    "pck_curve.csv": _csv_bytes(["threshold_mm", "pck"], list(zip(thresholds.tolist(), curve))),
  }
  if is_3dhp:
    out["pck150_14j"] = metrics.pck(frame_pred, frame_gt, 150.0, joints="3dhp")
    out["auc_14j"] = metrics.auc(frame_pred, frame_gt, thresholds, joints="3dhp")
    groups = {}
    for name, joints in (("17", None), ("14", "3dhp")):
      ptab = metrics.pck_table(frame_pred, frame_gt, sources, 150.0, thresholds, joints=joints)
      groups[name] = ptab
      suffix = "" if joints is None else "_14j"
      for g in ptab.groups[:-1]:
        out[f"pck150{suffix}/{g}"], out[f"auc{suffix}/{g}"] = ptab.pck[g], ptab.auc[g]
    lines += [
      "PCK / AUC per sequence and scene (17 joints):",
      groups["17"].format(),
      f"14 joints (3DHP protocol): PCK@150mm {out['pck150_14j']:.1f}%   AUC {out['auc_14j']:.1f}%",
    ]
    detail["pck_table"] = {
      k: {
        g: {"kind": t.kind[g], "pck150": t.pck[g], "auc": t.auc[g], "frames": t.frames[g]} for g in t.groups
      }
      for k, t in groups.items()
    }
    files["pck_table.csv"] = _csv_bytes(
      ["joints", "group", "kind", "pck150", "auc", "frames"],
      [[k, g, t.kind[g], t.pck[g], t.auc[g], t.frames[g]] for k, t in groups.items() for g in t.groups],
    )

  def joint_bars(ax):
    ax.bar(range(17), np.nan_to_num(joint_err), color="tab:blue")
    ax.set_xticks(range(17), skeleton.H36M_JOINTS, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("MPJPE (mm)")
    ax.set_title("Per-joint error (root-relative)")

  def pck_plot(ax):
    ax.plot(thresholds, curve, marker="o", markersize=3)
    ax.set_xlabel("threshold (mm)")
    ax.set_ylabel("PCK (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"PCK curve (AUC {out['auc']:.1f}%)")
    ax.grid(alpha=0.3)

  files["per_joint_error.png"] = _png_bytes(joint_bars)
  files["pck_curve.png"] = _png_bytes(pck_plot)
  return out, lines, files, detail


# ---------------------------------------------------------------------------- action task
def normalize_clip_3d(x: Array) -> Array:
  """(..., T, J, 3) -> the clip relative to its first frame's root, scaled to unit RMS radius.

  Makes a 3D clip's class independent of where the person stands and how large they appear, so
  that a classifier trained on dataset clips reads the lifter's output of any video.
  """
  x = x - x[..., :1, :1, :]
  radius = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(x), axis=-1), axis=(-2, -1), keepdims=True))
  return x / jnp.maximum(radius[..., None], 1e-6)


class ActionTask:
  """The action classifier; labels are the dataset's action names, in ``cfg.action.classes``.

  ``cfg.action.input``: ``2d`` (upstream: the 2D keypoints with confidence) or ``3d`` (the clip's
  3D pose, normalised by ``normalize_clip_3d``: what ``perfectrep-jax infer`` has to classify).
  """

  kind = "action"
  best_metric_name = "top1"
  best_mode = "max"

  def __init__(self, cfg):
    self.cfg = cfg
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
    cat = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    keep = cat["valid"].astype(bool)
    logits, labels = cat["logits"][keep], cat["label"][keep]
    ks = (1, min(5, len(self.classes)))
    top1, top5 = metrics.topk_accuracy(logits, labels, ks=ks)  # percent
    loss = float(
      np.mean(optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), jnp.asarray(labels)))
    )
    out = {"top1": top1, f"top{ks[1]}": top5, "eval_loss": loss, "eval_clips": float(len(labels))}
    pred = logits.argmax(-1)
    rows = []
    for i, name in enumerate(self.classes):
      sel = labels == i
      if sel.any():
        out[f"top1/{name}"] = 100.0 * float(np.mean(pred[sel] == i))
        rows.append(f"  {name:<30} {out[f'top1/{name}']:6.1f}%  ({int(sel.sum())} clips)")
    text = "\n".join(rows + [f"Top-1: {top1:.1f}%   Top-{ks[1]}: {top5:.1f}%"])
    return EvalResult(metrics=out, table=text, best_metric=-top1)


def make_task(cfg):
  name = cfg.task
  if name == "pretrain":
    return PoseTask(cfg, corrupt=True)
  if name == "pose3d":
    return PoseTask(cfg, corrupt=False)
  if name == "action":
    return ActionTask(cfg)
  raise ValueError(f"task must be pretrain, pose3d or action; got {name!r}")
