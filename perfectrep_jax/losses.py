"""Training losses of PerfectRep / MotionBERT, in JAX.

Every function is pure and jit-able, and takes poses as ``(..., T, J, 3)`` arrays (upstream uses
``(N, T, 17, 3)``; any number of leading batch axes works, time is axis -3 and joints axis -2).
Each returns a scalar: the mean over every element, as upstream's ``torch.mean`` and
``nn.L1Loss()`` do, so the values match the PyTorch losses to float32 round-off.

Differences from upstream, all at inputs where upstream is undefined or would poison training:
  * Norms are "safe": the value at a zero vector is 0 and so is its gradient (upstream
    ``torch.norm`` gives a 0 subgradient there too; a naive ``sqrt`` in JAX gives NaN).
  * ``n_mpjpe`` uses a scale of 0 for a pose that is all zeros (upstream divides 0 by 0).
  * Optional ``mask``: a ``(..., T, J)`` boolean/0-1 array of valid joints. A term that uses several
    joints (a bone, an angle, a velocity) is valid when all of them are; the mean is then over
    valid terms only (0 if none is valid). Masked joints may hold anything, NaN included: they
    are replaced by 0 first, so neither the value nor the gradient sees them. With
    ``mask=None`` the upstream definition is used.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from perfectrep_jax import bones
from perfectrep_jax.bones import safe_norm
from perfectrep_jax.loss_weights import LossWeights
from perfectrep_jax.skeleton import BONE_ANGLE_PAIRS, BONES

Array = jnp.ndarray

# Upstream's limb vectors are joint[first] - joint[second] of each pair in BONES.
_BONE_A = np.array([a for a, _ in BONES])
_BONE_B = np.array([b for _, b in BONES])
_ANGLE_A = np.array([a for a, _ in BONE_ANGLE_PAIRS])
_ANGLE_B = np.array([b for _, b in BONE_ANGLE_PAIRS])

COSINE_EPS = 1e-8  # torch.nn.functional.cosine_similarity's default eps
ACOS_EPS = 1e-7  # upstream clamps the cosine to [-1 + 1e-7, 1 - 1e-7] before acos


# --------------------------------------------------------------------------- helpers
def _masked_mean(x: Array, mask: Array | None) -> Array:
  """Mean of ``x``; with a mask (broadcastable to ``x``), the mean over its true entries (0 if none)."""
  if mask is None:
    return jnp.mean(x)
  m = jnp.broadcast_to(jnp.asarray(mask, x.dtype), x.shape)
  return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def _clean(x: Array, mask: Array | None) -> Array:
  """Replaces the joints that ``mask`` (..., J) marks invalid by 0 in ``x`` (..., J, 3)."""
  if mask is None:
    return x
  return jnp.where(jnp.asarray(mask, bool)[..., None], x, jnp.zeros((), jnp.result_type(x)))


def _bone_mask(mask: Array | None) -> Array | None:
  """(..., J) joint validity -> (..., 16) bone validity (both ends valid)."""
  if mask is None:
    return None
  m = jnp.asarray(mask, bool)
  return m[..., _BONE_A] & m[..., _BONE_B]


def _angle_mask(mask: Array | None) -> Array | None:
  """(..., J) joint validity -> (..., 18) angle validity (both bones valid)."""
  bones = _bone_mask(mask)
  if bones is None:
    return None
  return bones[..., _ANGLE_A] & bones[..., _ANGLE_B]


def _time_diff(x: Array) -> Array:
  """First difference along the time axis of (..., T, J, 3) poses -> (..., T-1, J, 3)."""
  return x[..., 1:, :, :] - x[..., :-1, :, :]


def _check_same_shape(a: Array, b: Array) -> None:
  if jnp.shape(a) != jnp.shape(b):
    raise ValueError(f"prediction and target shapes differ: {jnp.shape(a)} vs {jnp.shape(b)}")


# --------------------------------------------------------------------------- position losses
def mpjpe(pred: Array, gt: Array, mask: Array | None = None) -> Array:
  """Mean per-joint position error (Protocol #1 as a loss): mean Euclidean distance.

  Args:
    pred, gt: (..., J, 3).
    mask: optional (..., J) valid joints.
  Returns:
    scalar, the mean over every joint of every pose (upstream ``loss_mpjpe``).
  """
  _check_same_shape(pred, gt)
  pred, gt = _clean(pred, mask), _clean(gt, mask)
  return _masked_mean(safe_norm(pred - gt), mask)


def weighted_mpjpe(pred: Array, gt: Array, w: Array) -> Array:
  """Weighted MPJPE: ``mean(w * ||pred - gt||)`` (upstream ``weighted_mpjpe``).

  Args:
    pred, gt: (N, ..., J, 3).
    w: weights broadcastable (NumPy rules, trailing axes aligned) to the (N, ..., J) joint
      errors, e.g. (N, T, J) per joint or (N, 1, 1) per sample; its first axis must have size N.
  Returns:
    scalar; the mean is over the joint errors, not normalised by the weights' sum.
  """
  _check_same_shape(pred, gt)
  w = jnp.asarray(w)
  if w.shape[0] != jnp.shape(pred)[0]:
    raise ValueError(f"weights' first axis {w.shape[0]} != batch size {jnp.shape(pred)[0]}")
  return jnp.mean(w * safe_norm(pred - gt))


def loss_2d_weighted(pred: Array, gt: Array, conf: Array) -> Array:
  """Confidence-weighted 2D error (upstream ``loss_2d_weighted``, for 2D-only training data).

  Args:
    pred, gt: (..., J, C) with C >= 2; only x, y are compared.
    conf: (..., J, 1) (or broadcastable) confidence multiplying the x, y differences.
  Returns:
    scalar ``mean(||(pred_xy - gt_xy) * conf||)``.
  """
  _check_same_shape(pred, gt)
  return jnp.mean(safe_norm((pred[..., :2] - gt[..., :2]) * conf))


def n_mpjpe(pred: Array, gt: Array, mask: Array | None = None) -> Array:
  """Scale-normalised MPJPE (upstream ``n_mpjpe``, after Rhodin et al.).

  Each pose of ``pred`` is scaled by ``s = mean_j <gt_j, pred_j> / mean_j ||pred_j||^2`` (the
  least-squares scale, no rotation or translation) before MPJPE. A pose of all zeros gets s = 0.

  Args:
    pred, gt: (..., J, 3).
    mask: optional (..., J) valid joints; the scale is fitted on valid joints only.
  Returns:
    scalar.
  """
  _check_same_shape(pred, gt)
  pred, gt = _clean(pred, mask), _clean(gt, mask)
  if mask is None:
    num = jnp.mean(jnp.sum(gt * pred, axis=-1), axis=-1)
    den = jnp.mean(jnp.sum(pred * pred, axis=-1), axis=-1)
  else:
    m = jnp.asarray(mask, pred.dtype)
    num = jnp.sum(m * jnp.sum(gt * pred, axis=-1), axis=-1)
    den = jnp.sum(m * jnp.sum(pred * pred, axis=-1), axis=-1)
  positive = den > 0
  scale = jnp.where(positive, num / jnp.where(positive, den, 1.0), 0.0)
  return mpjpe(scale[..., None, None] * pred, gt, mask)


def velocity(pred: Array, gt: Array, mask: Array | None = None) -> Array:
  """Mean per-joint velocity error: MPJPE of the first time differences (upstream ``loss_velocity``).

  Args:
    pred, gt: (..., T, J, 3).
    mask: optional (..., T, J); a velocity is valid when the joint is valid in both frames.
  Returns:
    scalar; 0 when T <= 1.
  """
  _check_same_shape(pred, gt)
  if jnp.shape(pred)[-3] <= 1:
    return jnp.zeros((), jnp.result_type(pred))
  pred, gt = _clean(pred, mask), _clean(gt, mask)
  vmask = None if mask is None else jnp.logical_and(mask[..., 1:, :], mask[..., :-1, :])
  return _masked_mean(safe_norm(_time_diff(pred) - _time_diff(gt)), vmask)


# --------------------------------------------------------------------------- limb losses
def limb_lengths(x: Array) -> Array:
  """Lengths of the 16 bones of ``skeleton.BONES`` (upstream ``get_limb_lens``).

  Args:
    x: (..., T, 17, 3) (any (..., 17, 3) works).
  Returns:
    (..., T, 16).
  """
  return safe_norm(x[..., _BONE_A, :] - x[..., _BONE_B, :])


def limb_variance(x: Array, mask: Array | None = None) -> Array:
  """Mean over clips and bones of each bone length's variance over time (upstream ``loss_limb_var``).

  The variance is unbiased (``ddof=1``) as ``torch.var``'s default.

  Args:
    x: (..., T, 17, 3).
    mask: optional (..., T, 17); each (clip, bone) uses only frames where the bone is valid, and
      enters the mean only if it has at least 2 such frames.
  Returns:
    scalar in squared input units; 0 when T <= 1.
  """
  if jnp.shape(x)[-3] <= 1:
    return jnp.zeros((), jnp.result_type(x))
  lengths = limb_lengths(_clean(x, mask))  # (..., T, 16)
  if mask is None:
    return jnp.mean(jnp.var(lengths, axis=-2, ddof=1))
  m = jnp.asarray(_bone_mask(mask), lengths.dtype)
  n = jnp.sum(m, axis=-2)
  mean = jnp.sum(m * lengths, axis=-2) / jnp.maximum(n, 1.0)
  sq = jnp.sum(m * (lengths - mean[..., None, :]) ** 2, axis=-2)
  enough = n > 1
  var = sq / jnp.where(enough, n - 1.0, 1.0)
  return _masked_mean(var, enough)


def limb_gt(pred: Array, gt: Array, mask: Array | None = None) -> Array:
  """L1 error of bone lengths (upstream ``loss_limb_gt``).

  Args:
    pred, gt: (..., T, 17, 3).
    mask: optional (..., T, 17).
  Returns:
    scalar, mean over (..., T, 16) of ``|len_pred - len_gt|``.
  """
  _check_same_shape(pred, gt)
  pred, gt = _clean(pred, mask), _clean(gt, mask)
  return _masked_mean(jnp.abs(limb_lengths(pred) - limb_lengths(gt)), _bone_mask(mask))


# --------------------------------------------------------------------------- angle losses
def cosine_similarity(a: Array, b: Array, eps: float = COSINE_EPS) -> Array:
  """Cosine similarity along the last axis with ``torch.nn.functional.cosine_similarity``'s eps.

  ``sum(a / max(||a||, eps) * b / max(||b||, eps))``: each vector is normalised separately, so a
  zero vector gives 0 (and a finite gradient of order 1/eps, as in torch).

  Args:
    a, b: (..., D).
  Returns:
    (...,).
  """
  a_hat = a / jnp.maximum(safe_norm(a, keepdims=True), eps)
  b_hat = b / jnp.maximum(safe_norm(b, keepdims=True), eps)
  return jnp.sum(a_hat * b_hat, axis=-1)


def joint_angles(x: Array) -> Array:
  """Angles between the bone pairs of ``skeleton.BONE_ANGLE_PAIRS`` (upstream ``get_angles``).

  ``acos`` of the cosine similarity of the two limb vectors, clamped to
  ``[-1 + 1e-7, 1 - 1e-7]`` so the gradient stays finite at parallel bones.

  Args:
    x: (..., T, 17, 3) (any (..., 17, 3) works).
  Returns:
    (..., T, 18) in radians.
  """
  limbs = x[..., _BONE_A, :] - x[..., _BONE_B, :]
  cos = cosine_similarity(limbs[..., _ANGLE_A, :], limbs[..., _ANGLE_B, :])
  return jnp.arccos(jnp.clip(cos, -1.0 + ACOS_EPS, 1.0 - ACOS_EPS))


def angle(pred: Array, gt: Array, mask: Array | None = None) -> Array:
  """L1 error of the joint angles (upstream ``loss_angle``).

  Args:
    pred, gt: (..., T, 17, 3).
    mask: optional (..., T, 17).
  Returns:
    scalar in radians.
  """
  _check_same_shape(pred, gt)
  pred, gt = _clean(pred, mask), _clean(gt, mask)
  return _masked_mean(jnp.abs(joint_angles(pred) - joint_angles(gt)), _angle_mask(mask))


def angle_velocity(pred: Array, gt: Array, mask: Array | None = None) -> Array:
  """L1 error of the joint angles' first time differences (upstream ``loss_angle_velocity``).

  Args:
    pred, gt: (..., T, 17, 3).
    mask: optional (..., T, 17); a difference is valid when the angle is valid in both frames.
  Returns:
    scalar in radians per frame; 0 when T <= 1.
  """
  _check_same_shape(pred, gt)
  if jnp.shape(pred)[-3] <= 1:
    return jnp.zeros((), jnp.result_type(pred))
  pred, gt = _clean(pred, mask), _clean(gt, mask)
  dp = jnp.diff(joint_angles(pred), axis=-2)
  dg = jnp.diff(joint_angles(gt), axis=-2)
  amask = _angle_mask(mask)
  vmask = None if amask is None else amask[..., 1:, :] & amask[..., :-1, :]
  return _masked_mean(jnp.abs(dp - dg), vmask)


# --------------------------------------------------------------------------- weighted total
# Names of the terms as upstream's train loop logs them.
TERM_NAMES = ("3d_pos", "3d_scale", "3d_velocity", "lv", "lg", "angle", "angle_velocity")
# The constraint terms: weight field -> (log name, function of the prediction) (see ``pose_loss``).
CONSTRAINT_TERMS = {
  "lambda_hinge": "hinge",
  "lambda_symmetry": "symmetry",
  "lambda_length": "length_constancy",
}


def _is_zero(weight) -> bool:
  """A weight known to be 0 when tracing (a Python number, not an array passed to ``jit``)."""
  return isinstance(weight, (int, float)) and weight == 0


DEFAULT_LOSS_WEIGHTS = LossWeights()


def pose_loss(
  pred: Array,
  gt: Array,
  weights: LossWeights | Mapping[str, float] = DEFAULT_LOSS_WEIGHTS,
  mask: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
  """The weighted 3D pose loss of upstream's train loop.

  ``total = l3d_pos * mpjpe + l_scale * n_mpjpe + l_3d_velocity * velocity + l_lv * limb_variance
  + l_lg * limb_gt + l_a * angle + l_av * angle_velocity`` plus, for each kinematic constraint
  whose weight is not a literal 0, ``l_hinge * hinge_loss(pred) + l_symmetry *
  symmetry_loss(pred) + l_length * length_constancy_loss(pred)`` (PETR's constraints,
  dimensionless, so they mean the same in normalised or millimetre units).

  Args:
    pred, gt: (..., T, 17, 3).
    weights: a ``LossWeights`` or a mapping with its ``lambda_*`` keys.
    mask: optional (..., T, 17) valid joints, passed to every term.
  Returns:
    ``(total, terms)``: the scalar total and every unweighted term by its upstream log name
    (``TERM_NAMES``), all computed whatever their weight (upstream logs them all); the
    constraint terms (``CONSTRAINT_TERMS``) only where they are weighted, since they cost more.
  """
  w = weights if isinstance(weights, LossWeights) else LossWeights.from_mapping(weights)
  terms = {
    "3d_pos": mpjpe(pred, gt, mask),
    "3d_scale": n_mpjpe(pred, gt, mask),
    "3d_velocity": velocity(pred, gt, mask),
    "lv": limb_variance(pred, mask),
    "lg": limb_gt(pred, gt, mask),
    "angle": angle(pred, gt, mask),
    "angle_velocity": angle_velocity(pred, gt, mask),
  }
  total = (
    w.lambda_3d_pos * terms["3d_pos"]
    + w.lambda_scale * terms["3d_scale"]
    + w.lambda_3d_velocity * terms["3d_velocity"]
    + w.lambda_lv * terms["lv"]
    + w.lambda_lg * terms["lg"]
    + w.lambda_a * terms["angle"]
    + w.lambda_av * terms["angle_velocity"]
  )
  active = {field: name for field, name in CONSTRAINT_TERMS.items() if not _is_zero(getattr(w, field))}
  if active:
    functions = {
      "hinge": bones.hinge_loss,
      "symmetry": bones.symmetry_loss,
      "length_constancy": bones.length_constancy_loss,
    }
    for field, name in active.items():
      terms[name] = functions[name](pred)
      total = total + getattr(w, field) * terms[name]
  return total, terms
