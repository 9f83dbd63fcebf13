"""Evaluation metrics: MPJPE (P1), P-MPJPE (P2), N-MPJPE, MPJVE, top-k accuracy, per-action tables.

The NumPy functions compute in float64 whatever the input dtype and follow upstream's
definitions (``src/model/loss.py`` of PerfectRep, ``lib/utils/learning.py`` of MotionBERT) so that
reported numbers are comparable. ``jax_mpjpe_per_pose`` and ``jax_p_mpjpe_per_pose`` are
jit-able JAX versions for evaluating on the device inside a jitted eval step.

Poses are ``(..., J, 3)``; "per pose" means the mean over the J joints of one pose, keeping the
leading axes (upstream passes ``(T, 17, 3)`` clips and gets one error per frame).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from perfectrep_jax.bones import safe_norm


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  if pred.shape != gt.shape:
    raise ValueError(f"prediction and target shapes differ: {pred.shape} vs {gt.shape}")
  if pred.ndim < 2 or pred.shape[-1] != 3:
    raise ValueError(f"expected poses of shape (..., J, 3), got {pred.shape}")
  return pred, gt


# --------------------------------------------------------------------------- pose errors
def mpjpe_per_pose(pred, gt) -> np.ndarray:
  """Protocol #1: mean per-joint position error of each pose.

  Args:
    pred, gt: (..., J, 3).
  Returns:
    (...,) float64, mean over joints of the Euclidean distance.
  """
  pred, gt = _pair(pred, gt)
  return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)


def procrustes_align(pred, gt) -> np.ndarray:
  """Aligns each pose of ``pred`` to ``gt`` by the best similarity transform (upstream P2).

  Centres both poses, scales both to unit Frobenius norm, takes the rotation from the SVD of
  their cross-covariance with the sign of the last singular direction flipped when it would be
  a reflection (det = -1), and the scale as the sum of the (sign-corrected) singular values.
  A pose of ``pred`` whose joints all coincide is mapped onto ``gt``'s centroid (upstream: NaN).

  Args:
    pred, gt: (..., J, 3).
  Returns:
    (..., J, 3) float64: ``pred`` rotated, scaled and translated onto ``gt``.
  """
  pred, gt = _pair(pred, gt)
  mu_gt = gt.mean(axis=-2, keepdims=True)
  mu_pred = pred.mean(axis=-2, keepdims=True)
  gt0, pred0 = gt - mu_gt, pred - mu_pred
  norm_gt = np.sqrt(np.sum(gt0**2, axis=(-2, -1), keepdims=True))
  norm_pred = np.sqrt(np.sum(pred0**2, axis=(-2, -1), keepdims=True))
  safe_gt = np.where(norm_gt > 0, norm_gt, 1.0)
  safe_pred = np.where(norm_pred > 0, norm_pred, 1.0)
  cov = np.swapaxes(gt0 / safe_gt, -1, -2) @ (pred0 / safe_pred)  # (..., 3, 3)
  u, s, vt = np.linalg.svd(cov)
  v = np.swapaxes(vt, -1, -2)
  ut = np.swapaxes(u, -1, -2)
  # Flip the last axis of V where V U^T would be a reflection.
  sign = np.sign(np.linalg.det(v @ ut))
  v[..., :, -1] *= sign[..., None]
  s[..., -1] *= sign
  rot = v @ ut
  scale = s.sum(axis=-1)[..., None, None] * norm_gt / safe_pred
  scale = np.where(norm_pred > 0, scale, 0.0)
  return scale * (pred0 @ rot) + mu_gt


def p_mpjpe_per_pose(pred, gt) -> np.ndarray:
  """Protocol #2: MPJPE of each pose after Procrustes alignment (``procrustes_align``).

  Args:
    pred, gt: (..., J, 3).
  Returns:
    (...,) float64.
  """
  return mpjpe_per_pose(procrustes_align(pred, gt), gt)


def n_mpjpe_per_pose(pred, gt) -> np.ndarray:
  """Scale-normalised MPJPE of each pose: ``pred`` scaled by its least-squares scale to ``gt``.

  The scale is ``sum_j <gt_j, pred_j> / sum_j ||pred_j||^2`` as in the ``n_mpjpe`` loss (no
  centring, no rotation); a pose of all zeros gets scale 0.

  Args:
    pred, gt: (..., J, 3).
  Returns:
    (...,) float64.
  """
  pred, gt = _pair(pred, gt)
  num = np.sum(gt * pred, axis=(-2, -1))
  den = np.sum(pred * pred, axis=(-2, -1))
  scale = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
  return mpjpe_per_pose(scale[..., None, None] * pred, gt)


def n_mpjpe(pred, gt) -> float:
  """Mean over poses of ``n_mpjpe_per_pose`` (equals the ``n_mpjpe`` loss, in float64)."""
  return float(np.mean(n_mpjpe_per_pose(pred, gt)))


def depth_error(pred, gt) -> float:
  """Mean absolute error of the depth (the last coordinate) of every joint relative to the
  pose's root (joint 0): what a single camera cannot see, reported on its own.

  Args:
    pred, gt: (..., J, 3) in the camera's frame, depth along the last axis.
  Returns:
    float, in input units.
  """
  pred, gt = _pair(pred, gt)
  rel = (pred[..., 2] - pred[..., :1, 2]) - (gt[..., 2] - gt[..., :1, 2])
  return float(np.abs(rel).mean())


def mpjve(pred, gt) -> float:
  """Mean per-joint velocity error: mean distance between first time differences.

  Args:
    pred, gt: (..., T, J, 3), time on axis -3.
  Returns:
    float, in input units per frame (multiply by fps for per second); 0.0 when T <= 1.
  """
  pred, gt = _pair(pred, gt)
  if pred.ndim < 3:
    raise ValueError(f"expected (..., T, J, 3) motion, got {pred.shape}")
  if pred.shape[-3] <= 1:
    return 0.0
  err = np.diff(pred, axis=-3) - np.diff(gt, axis=-3)
  return float(np.linalg.norm(err, axis=-1).mean())


# --------------------------------------------------------------------------- classification
def topk_accuracy(logits, labels, ks: Sequence[int] = (1, 5)) -> tuple[float, ...]:
  """Top-k accuracy in percent, as MotionBERT's ``accuracy`` (100 * hits / batch).

  Args:
    logits: (B, C) scores.
    labels: (B,) integer classes.
    ks: the k values; each must be <= C.
  Returns:
    one float per k, in percent. Ties are broken towards the lower class index.
  """
  logits = np.asarray(logits)
  labels = np.asarray(labels)
  if logits.ndim != 2 or labels.shape != logits.shape[:1]:
    raise ValueError(f"expected logits (B, C) and labels (B,), got {logits.shape} and {labels.shape}")
  maxk = max(ks)
  if maxk > logits.shape[1]:
    raise ValueError(f"k={maxk} exceeds the number of classes {logits.shape[1]}")
  ranked = np.argsort(-logits, axis=1, kind="stable")[:, :maxk]
  hits = ranked == labels[:, None]
  batch = max(len(labels), 1)
  return tuple(100.0 * float(hits[:, :k].sum()) / batch for k in ks)


# --------------------------------------------------------------------------- JAX versions
def jax_mpjpe_per_pose(pred, gt):
  """JAX ``mpjpe_per_pose``: (..., J, 3) -> (...,) in the input dtype; jit-able."""
  return jnp.mean(safe_norm(jnp.asarray(pred) - jnp.asarray(gt)), axis=-1)


def jax_p_mpjpe_per_pose(pred, gt):
  """JAX ``p_mpjpe_per_pose``: (..., J, 3) -> (...,) in the input dtype; jit-able.

  Same algorithm as the NumPy version (reflection fix included); in float32 it agrees with the
  float64 NumPy result to about 1e-4 mm on poses in millimetres.
  """
  pred = jnp.asarray(pred)
  gt = jnp.asarray(gt)
  gt0 = gt - gt.mean(axis=-2, keepdims=True)
  pred0 = pred - pred.mean(axis=-2, keepdims=True)
  norm_gt = jnp.sqrt(jnp.sum(gt0**2, axis=(-2, -1), keepdims=True))
  norm_pred = jnp.sqrt(jnp.sum(pred0**2, axis=(-2, -1), keepdims=True))
  safe_gt = jnp.where(norm_gt > 0, norm_gt, 1.0)
  safe_pred = jnp.where(norm_pred > 0, norm_pred, 1.0)
  cov = jnp.swapaxes(gt0 / safe_gt, -1, -2) @ (pred0 / safe_pred)
  u, s, vt = jnp.linalg.svd(cov)
  v = jnp.swapaxes(vt, -1, -2)
  ut = jnp.swapaxes(u, -1, -2)
  sign = jnp.sign(jnp.linalg.det(v @ ut))
  flip = jnp.concatenate([jnp.ones_like(s[..., :-1]), sign[..., None]], axis=-1)  # (..., 3)
  rot = (v * flip[..., None, :]) @ ut
  scale = jnp.sum(s * flip, axis=-1)[..., None, None] * norm_gt / safe_pred
  scale = jnp.where(norm_pred > 0, scale, 0.0)
  aligned = scale * (pred0 @ rot) + gt.mean(axis=-2, keepdims=True)
  return jax_mpjpe_per_pose(aligned, gt)


# --------------------------------------------------------------------------- per-action table
@dataclasses.dataclass(frozen=True)
class ActionTable:
  """Errors per action, and their mean over actions.

  Attributes:
    actions: action names, sorted.
    errors: metric name -> action -> mean error over the action's evaluated frames.
    frames: action -> number of evaluated frames.
    overall: metric name -> mean over actions of the per-action errors (each action weighs
      the same, whatever its number of frames, as upstream reports it).
  """

  actions: tuple[str, ...]
  errors: dict[str, dict[str, float]]
  frames: dict[str, int]
  overall: dict[str, float]

  def format(self, digits: int = 2) -> str:
    """A plain-text table: one row per metric, one column per action, then the overall mean."""
    header = ["metric", *self.actions, "mean"]
    rows = [
      [m, *(f"{self.errors[m][a]:.{digits}f}" for a in self.actions), f"{self.overall[m]:.{digits}f}"]
      for m in self.errors
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in [header, *rows])


def action_table(
  clip_errors: Mapping[str, np.ndarray],
  clip_frames: np.ndarray,
  frame_actions: Sequence,
) -> ActionTable:
  """Aggregates per-frame errors of overlapping test clips into a per-action table, as upstream.

  Upstream's ``evaluate`` (PerfectRep and MotionBERT ``train.py``): each test frame's error is the
  mean of its errors over every clip covering it; an action's error is the mean over its covered
  frames; the overall error is the unweighted mean over actions.

  Details kept from upstream: within one clip, a frame index that repeats (a short sequence
  resampled to the clip length) counts once, with the error of its last occurrence (NumPy's
  ``a[idx] += v``). Differences: a frame is "covered" when some clip contains it (upstream tests
  ``error > 0``, which also drops frames with an error of exactly 0), and an action without a
  covered frame is left out (upstream would average an empty list into NaN). Clips to exclude
  (MotionBERT's blocked H3.6M sequences) should be removed by the caller.

  Args:
    clip_errors: metric name (e.g. "P1", "P2") -> (num_clips, T) per-frame error of each clip,
      e.g. ``mpjpe_per_pose(pred_clip, gt_clip)``.
    clip_frames: (num_clips, T) integer index of each clip frame among all test frames.
    frame_actions: (num_frames,) action name of every test frame.
  Returns:
    an ``ActionTable``.
  """
  clip_frames = np.asarray(clip_frames)
  frame_actions = np.asarray(frame_actions)
  if clip_frames.ndim != 2:
    raise ValueError(f"clip_frames must be (num_clips, T), got {clip_frames.shape}")
  num_frames = len(frame_actions)
  if clip_frames.size and (clip_frames.min() < 0 or clip_frames.max() >= num_frames):
    raise ValueError(f"clip_frames index outside the {num_frames} test frames")
  count = np.zeros(num_frames)
  for frames in clip_frames:
    count[frames] += 1
  covered = count > 0

  actions = tuple(sorted({str(a) for a in frame_actions[covered]}))
  labels = frame_actions.astype(str)
  errors: dict[str, dict[str, float]] = {}
  for metric, per_clip in clip_errors.items():
    per_clip = np.asarray(per_clip, np.float64)
    if per_clip.shape != clip_frames.shape:
      raise ValueError(f"{metric}: errors {per_clip.shape} do not match clip_frames {clip_frames.shape}")
    total = np.zeros(num_frames)
    for frames, err in zip(clip_frames, per_clip):
      total[frames] += err
    per_frame = total[covered] / count[covered]
    errors[metric] = {a: float(per_frame[labels[covered] == a].mean()) for a in actions}
  frames = {a: int(np.sum(labels[covered] == a)) for a in actions}
  overall = {
    m: float(np.mean([e[a] for a in actions])) if actions else float("nan") for m, e in errors.items()
  }
  return ActionTable(actions=actions, errors=errors, frames=frames, overall=overall)


# --------------------------------------------------------------------------- PCK / AUC (MPI-INF-3DHP)
# The 14 joints of the MPI-INF-3DHP evaluation, as indices into the H36M-17 order of
# ``skeleton.H36M_JOINTS``: right hip/knee/ankle (1, 2, 3), left hip/knee/ankle (4, 5, 6), neck
# (8, H36M's thorax = 3DHP's neck), head top (10), left shoulder/elbow/wrist (11, 12, 13) and right
# shoulder/elbow/wrist (14, 15, 16). They are the first 14 joints of 3DHP's 17-joint test order,
# the ones its evaluation script (``mpii_test_predictions.m``, joint groups head, neck, shoulder,
# elbow, wrist, hip, knee, ankle) scores. Left out, as there: the pelvis (0), which is the root and
# so has no error in root-relative poses and would only inflate PCK; the spine (7) and 3DHP's
# "head" (9, H36M's nose slot), which are not anatomical landmarks but points interpolated on the
# torso and skull, and are not in any joint group.
MPI_INF_3DHP_PCK_JOINTS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15, 16)

# Scene type of each MPI-INF-3DHP test sequence (Mehta et al. 2017, Table 3): TS1-TS2 studio with
# green screen, TS3-TS4 studio without green screen, TS5-TS6 outdoors.
MPI_INF_3DHP_SCENES: dict[str, str] = {
  "TS1": "GS",
  "TS2": "GS",
  "TS3": "noGS",
  "TS4": "noGS",
  "TS5": "outdoor",
  "TS6": "outdoor",
}

PCK_THRESHOLDS = np.linspace(0.0, 150.0, 31)  # mm, 0, 5, ..., 150


def _joint_subset(joints, num_joints: int) -> np.ndarray:
  """``joints`` (None: all; "3dhp" / "14": ``MPI_INF_3DHP_PCK_JOINTS``; "all" / "17": all; or
  a sequence of indices) -> integer index array into the joint axis."""
  if joints is None or (isinstance(joints, str) and joints in ("all", "17")):
    return np.arange(num_joints)
  if isinstance(joints, str):
    if joints not in ("3dhp", "14"):
      raise ValueError(f"joints must be None, 'all', '17', '3dhp', '14' or indices; got {joints!r}")
    joints = MPI_INF_3DHP_PCK_JOINTS
  idx = np.asarray(joints, np.int64).reshape(-1)
  if idx.size == 0 or idx.min() < -num_joints or idx.max() >= num_joints:
    raise ValueError(f"joint indices {idx.tolist()} do not fit {num_joints} joints")
  return idx


def joint_distances(pred_mm, gt_mm, joints=None, root: int | None = 0) -> np.ndarray:
  """Per-joint Euclidean error of root-relative poses, the quantity PCK and AUC threshold.

  Args:
    pred_mm, gt_mm: (..., J, 3) poses in millimetres.
    joints: which joints to keep: None / "all" / "17" for all J, "3dhp" / "14" for
      ``MPI_INF_3DHP_PCK_JOINTS`` (needs H36M-17 order), or a sequence of joint indices.
    root: joint subtracted from each pose before comparing (the 3DHP protocol is root-relative;
      0 is the H36M pelvis); None compares the poses as given.
  Returns:
    (..., K) float64 distances in mm, K the number of kept joints.
  """
  pred, gt = _pair(pred_mm, gt_mm)
  if root is not None:
    pred = pred - pred[..., root : root + 1, :]
    gt = gt - gt[..., root : root + 1, :]
  idx = _joint_subset(joints, pred.shape[-2])
  return np.linalg.norm(pred[..., idx, :] - gt[..., idx, :], axis=-1)


def _pck_of_distances(dist: np.ndarray, thresholds) -> np.ndarray:
  """(..., K) distances, (M,) thresholds -> (M,) percent of all distances <= each threshold."""
  dist = np.asarray(dist, np.float64).reshape(-1)
  thresholds = np.asarray(thresholds, np.float64).reshape(-1)
  if dist.size == 0:
    return np.full(thresholds.shape, np.nan)
  ordered = np.sort(dist)
  return 100.0 * np.searchsorted(ordered, thresholds, side="right") / dist.size


def pck(pred_mm, gt_mm, threshold: float = 150.0, joints=None, root: int | None = 0) -> float:
  """Percentage of Correct Keypoints: percent of joints (over all poses) within ``threshold`` mm.

  A joint counts as correct when its root-relative error is <= ``threshold`` (the 3DHP script
  uses ``<=``); the percentage pools every (pose, joint) pair, as the 3DHP evaluation does.

  Args:
    pred_mm, gt_mm: (..., J, 3) poses in millimetres.
    threshold: mm; 150 is the 3DHP protocol's PCK.
    joints, root: as in ``joint_distances``. The literature's 3DHP tables use ``joints="3dhp"``
      (14 joints); P-STMO / MotionBERT-style papers use all 17 H36M-order joints (the default).
  Returns:
    float in [0, 100]; NaN when there is no pose.
  """
  return float(_pck_of_distances(joint_distances(pred_mm, gt_mm, joints, root), [threshold])[0])


def pck_curve(pred_mm, gt_mm, thresholds=PCK_THRESHOLDS, joints=None, root: int | None = 0) -> np.ndarray:
  """PCK at each threshold: (..., J, 3) x2, (M,) mm -> (M,) float64 percent."""
  return _pck_of_distances(joint_distances(pred_mm, gt_mm, joints, root), thresholds)


def auc(pred_mm, gt_mm, thresholds=PCK_THRESHOLDS, joints=None, root: int | None = 0) -> float:
  """Area under the PCK curve, 3DHP protocol: the mean PCK over 0, 5, ..., 150 mm (31 values).

  Args:
    pred_mm, gt_mm: (..., J, 3) poses in millimetres.
    thresholds: (M,) mm; the mean is unweighted, so use evenly spaced ones.
    joints, root: as in ``joint_distances``.
  Returns:
    float in [0, 100] (percent, as papers report AUC); NaN when there is no pose.
  """
  return float(np.mean(pck_curve(pred_mm, gt_mm, thresholds, joints, root)))


@dataclasses.dataclass(frozen=True)
class PCKTable:
  """PCK@threshold and AUC per sequence, per scene type and over everything.

  Attributes:
    groups: row names in order: the sequences (sorted), then the scene types present (in the
      order of first appearance in ``scenes``' values, then others sorted), then "all".
    kind: row name -> "sequence", "scene" or "all".
    pck: row name -> PCK in percent at ``threshold``.
    auc: row name -> AUC in percent.
    frames: row name -> number of poses.
    threshold: mm.
  Rows pool all (pose, joint) pairs of their poses, as the 3DHP evaluation script does (so a
  scene or "all" is not the mean of its sequences but weighs each frame the same).
  """

  groups: tuple[str, ...]
  kind: dict[str, str]
  pck: dict[str, float]
  auc: dict[str, float]
  frames: dict[str, int]
  threshold: float

  def format(self, digits: int = 1) -> str:
    """A plain-text table: one row per group with PCK, AUC and the number of frames."""
    header = ["group", f"PCK@{self.threshold:g}", "AUC", "frames"]
    rows = [
      [g, f"{self.pck[g]:.{digits}f}", f"{self.auc[g]:.{digits}f}", str(self.frames[g])] for g in self.groups
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows])


def pck_table(
  pred_mm,
  gt_mm,
  sequences: Sequence,
  threshold: float = 150.0,
  thresholds=PCK_THRESHOLDS,
  joints=None,
  scenes: Mapping[str, str] | None = MPI_INF_3DHP_SCENES,
  root: int | None = 0,
) -> PCKTable:
  """PCK and AUC of each sequence, of each scene type (GS / noGS / outdoor for 3DHP), and overall.

  Args:
    pred_mm, gt_mm: (N, J, 3) poses in millimetres, one per evaluated frame (deduplicate
      overlapping clips first, or every copy counts).
    sequences: (N,) sequence name of each pose (3DHP test: "TS1" ... "TS6").
    threshold: mm, for the PCK column.
    thresholds: (M,) mm, for AUC.
    joints, root: as in ``joint_distances``.
    scenes: sequence name -> scene type; sequences not in it get no scene row. None: no scene
      rows. Default: ``MPI_INF_3DHP_SCENES``.
  Returns:
    a ``PCKTable``.
  """
  dist = joint_distances(pred_mm, gt_mm, joints, root)
  if dist.ndim != 2:
    raise ValueError(f"expected (N, J, 3) poses, got distances of shape {dist.shape}")
  names = np.asarray([str(s) for s in sequences])
  if names.shape != dist.shape[:1]:
    raise ValueError(f"{len(names)} sequence names for {dist.shape[0]} poses")
  scenes = dict(scenes or {})
  seq_names = sorted(set(names.tolist()))
  scene_order = list(dict.fromkeys(scenes.values()))
  present = {scenes[s] for s in seq_names if s in scenes}
  scene_names = [c for c in scene_order if c in present]
  masks: dict[str, np.ndarray] = {}
  kind: dict[str, str] = {}
  for s in seq_names:
    masks[s], kind[s] = names == s, "sequence"
  for c in scene_names:
    if c in masks:
      raise ValueError(f"scene type {c!r} is also a sequence name")
    members = [s for s in seq_names if scenes.get(s) == c]
    masks[c], kind[c] = np.isin(names, members), "scene"
  if "all" in masks:
    raise ValueError("'all' cannot be a sequence or scene name")
  masks["all"], kind["all"] = np.ones(len(names), bool), "all"
  grid = np.concatenate([[threshold], np.asarray(thresholds, np.float64).reshape(-1)])
  pck_out: dict[str, float] = {}
  auc_out: dict[str, float] = {}
  for g, m in masks.items():
    curve = _pck_of_distances(dist[m], grid)
    pck_out[g], auc_out[g] = float(curve[0]), float(np.mean(curve[1:]))
  return PCKTable(
    groups=tuple(masks),
    kind=kind,
    pck=pck_out,
    auc=auc_out,
    frames={g: int(m.sum()) for g, m in masks.items()},
    threshold=float(threshold),
  )
