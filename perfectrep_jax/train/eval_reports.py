"""Evaluation reports: what an evaluation's predictions come to, as metrics, a printable table and
files (JSON / CSV tables, PNG plots) that ``reporting.Reporter`` writes under
``WORKDIR/eval/step_<N>/``.

``pose_report``: a lifter's per-action P1 / P2 (mm), N-MPJPE, MPJVE, depth error, PCK / AUC, bone
errors and per-joint errors (MPI-INF-3DHP adds its per-sequence and 14-joint tables);
``action_report``: a classifier's top-1 / top-5 and per-class accuracy. The tasks (``tasks.py``)
call them from ``Task.evaluate``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from perfectrep_jax import bones, figio, metrics, skeleton
from perfectrep_jax.fileio import json_safe

Array = jax.Array


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


# ---------------------------------------------------------------------------- lifter
def pose_report(outputs: Sequence[Mapping[str, np.ndarray]], is_3dhp: bool = False) -> EvalResult:
  """A lifter's evaluation: per-action P1/P2 in mm (after denormalising as upstream), plus N-MPJPE and MPJVE, PCK / AUC
  and bone errors; tables (JSON, CSV) and plots (PNG) in ``EvalResult.files``.

  ``outputs``: the eval batches, each with ``pred`` / ``target_3d`` (B, T, 17, 3), ``scale_mm``
  (B, T), ``valid`` (B,), ``frame_index`` (B, T), ``source`` / ``camera`` / ``action`` (B,).
  ``is_3dhp``: adds per-sequence / per-scene PCK and the 14-joint PCK / AUC (``is_3dhp(cfg)``).
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
    "n_mpjpe": float(np.mean(metrics.n_mpjpe_per_pose(pred_mm.reshape(-1, 17, 3), gt_mm.reshape(-1, 17, 3)))),
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
  extra, lines, files, detail = _pose_extras(pred_mm, gt_mm, clip_frames, frame_sources, table, is_3dhp)
  out.update(extra)
  text = "\n".join([text, *lines])
  files["metrics.json"] = _json_bytes({"metrics": out, **detail})
  return EvalResult(metrics=out, table=text, best_metric=out["mpjpe"], files=files)


def is_3dhp(cfg) -> bool:
  """Whether the config evaluates on MPI-INF-3DHP (``data.source`` 'mpi_inf_3dhp[/config][:ver]')."""
  data = cfg.get("data", None)
  source = str(data.get("source", "")) if data is not None else ""
  return source.split("/")[0].split(":")[0] == "mpi_inf_3dhp"


def _json_bytes(obj: Any) -> bytes:
  """Indented strict JSON (non-finite floats as null) of a nested dict of metrics."""
  return (json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n").encode()


def _csv_bytes(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(header)
  for row in rows:
    writer.writerow([f"{v:.6g}" if isinstance(v, (float, np.floating)) else v for v in row])
  return buf.getvalue().encode()


def _png_bytes(draw) -> bytes:
  """Renders ``draw(ax)`` on a fresh 7 x 4 inch Agg figure and returns the PNG."""
  fig = figio.agg_figure((7.0, 4.0), dpi=100)
  draw(fig.add_subplot(1, 1, 1))
  fig.tight_layout()
  return figio.png_bytes(fig)


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
  """PCK / AUC, bone errors, per-joint errors, and their files, for ``pose_report``.

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


# ---------------------------------------------------------------------------- action classifier
def action_report(outputs: Sequence[Mapping[str, np.ndarray]], classes: Sequence[str]) -> EvalResult:
  """An action classifier's evaluation: top-1 / top-5 accuracy (percent), the loss, and top-1 per
  class, with a table of the classes.

  ``outputs``: the eval batches, each with ``logits`` (B, num_classes), ``label`` (B,) int and
  ``valid`` (B,); ``classes``: the class names, by id.
  """
  cat = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
  keep = cat["valid"].astype(bool)
  logits, labels = cat["logits"][keep], cat["label"][keep]
  ks = (1, min(5, len(classes)))
  top1, top5 = metrics.topk_accuracy(logits, labels, ks=ks)  # percent
  loss = float(
    np.mean(optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), jnp.asarray(labels)))
  )
  out = {"top1": top1, f"top{ks[1]}": top5, "eval_loss": loss, "eval_clips": float(len(labels))}
  pred = logits.argmax(-1)
  rows = []
  for i, name in enumerate(classes):
    sel = labels == i
    if sel.any():
      out[f"top1/{name}"] = 100.0 * float(np.mean(pred[sel] == i))
      rows.append(f"  {name:<30} {out[f'top1/{name}']:6.1f}%  ({int(sel.sum())} clips)")
  text = "\n".join(rows + [f"Top-1: {top1:.1f}%   Top-{ks[1]}: {top5:.1f}%"])
  return EvalResult(metrics=out, table=text, best_metric=-top1)
