"""Bone-level geometry of the Human3.6M-17 tree: bone vectors, bone rotations, their errors, and
kinematic constraints usable as training losses.

Everything is JAX (jit-able, float32 by default) and takes poses ``(..., 17, 3)`` in a
right-handed frame (any unit); the constraint losses take motion ``(..., T, 17, 3)``.

Frames. Joint positions fix a bone's direction but not its twist, so bone rotations are defined
from a rest pose and the body frame:
  * The body frame (``body_frame``) has columns right (left hip -> right hip), forward
    (up x right) and up (pelvis -> spine, made orthogonal to right).
  * In the rest pose, expressed in that frame, legs point down, spine/neck/head up, hip bones and
    clavicles sideways, arms sideways (a T-pose; ``REST_DIRECTIONS``).
  * A bone's frame is its parent bone's frame (the body frame for the three bones leaving the
    pelvis) carried by the smallest rotation (the "swing") that turns the bone's rest direction,
    placed in the parent's frame, onto its actual direction. A bone's rotation relative to its
    parent (``relative_quaternions``, ``relative_rotations``) is that swing written in the parent's
    frame; it is the identity in the rest pose, and it has no twist about the bone, which
    positions cannot show.
The swing is undefined when a bone points exactly opposite to its rest direction (an arm across
the chest at 180 degrees, a leg pointing straight up); there a half turn about a fixed
perpendicular axis is used, so errors near that pose are not meaningful.

Constraints (``hinge_loss``, ``symmetry_loss``, ``length_constancy_loss``) are differentiable
penalties, 0 on the bundled real motion capture, with margins sized from it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from perfectrep_jax.skeleton import BONES, JOINT_INDEX

Array = jnp.ndarray


def safe_norm(x: Array, axis: int = -1, keepdims: bool = False) -> Array:
  """Euclidean norm along ``axis`` whose value and gradient are 0 at a zero vector.

  Uses the double-``where`` trick: the ``sqrt`` never sees a 0, so no ``inf * 0`` appears
  in the backward pass.
  """
  sq = jnp.sum(x * x, axis=axis, keepdims=keepdims)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


NUM_BONES = len(BONES)
BONE_NAMES: tuple[str, ...] = (
  "right_hip",
  "right_thigh",
  "right_shin",
  "left_hip",
  "left_thigh",
  "left_shin",
  "lower_spine",
  "upper_spine",
  "neck",
  "head",
  "left_clavicle",
  "left_upper_arm",
  "left_forearm",
  "right_clavicle",
  "right_upper_arm",
  "right_forearm",
)
BONE_INDEX: dict[str, int] = {name: i for i, name in enumerate(BONE_NAMES)}

_PARENT_JOINT = np.array([p for p, _ in BONES])
_CHILD_JOINT = np.array([c for _, c in BONES])
# PARENT_BONE[b]: the bone ending where bone b starts; -1 for the bones leaving the pelvis.
PARENT_BONE: tuple[int, ...] = tuple(
  next((i for i, (_, c) in enumerate(BONES) if c == p), -1) for p, _ in BONES
)


def _bone_depths() -> np.ndarray:
  """Depth of each bone in the tree: 0 for the bones leaving the pelvis."""
  depth = np.zeros(len(BONES), int)
  for b, parent in enumerate(PARENT_BONE):  # parents come before their children in BONES
    depth[b] = 0 if parent < 0 else depth[parent] + 1
  return depth


# Bones grouped by depth in the tree (the three leaving the pelvis first), one row per depth,
# padded with the scratch index NUM_BONES; and the carry slot of each bone's parent (0: the body).
_LEVELS = tuple(np.flatnonzero(_bone_depths() == d) for d in range(_bone_depths().max() + 1))
_LEVEL_TABLE = np.full((len(_LEVELS), max(map(len, _LEVELS))), len(BONES))
for _depth, _bones in enumerate(_LEVELS):
  _LEVEL_TABLE[_depth, : len(_bones)] = _bones
_PARENT_SLOT = np.array([p + 1 for p in PARENT_BONE] + [len(BONES) + 1])

_RIGHT, _FORWARD, _UP = np.eye(3)
# Rest direction of each bone in its parent's frame (axes: right, forward, up).
REST_DIRECTIONS = np.stack(
  [
    _RIGHT,
    -_UP,
    -_UP,
    -_RIGHT,
    -_UP,
    -_UP,
    _UP,
    _UP,
    _UP,
    _UP,
    -_RIGHT,
    -_RIGHT,
    -_RIGHT,
    _RIGHT,
    _RIGHT,
    _RIGHT,
  ]
).astype(np.float32)
# The body axis each rest direction lies on (0 right, 1 forward, 2 up).
_REST_AXIS = np.argmax(np.abs(REST_DIRECTIONS), axis=1)

# Bones of the limbs, the segments whose length a body keeps. The trunk and neck segments span
# a bending spine, and thorax -> shoulder follows the shoulder girdle (in the bundled capture it
# changes by up to 50% when an arm is raised), so the length constraints leave them out.
LIMB_BONES: tuple[int, ...] = tuple(
  BONE_INDEX[side + name]
  for side in ("left_", "right_")
  for name in ("hip", "thigh", "shin", "upper_arm", "forearm")
)
# Left/right limb bone pairs for the symmetry constraint.
SYMMETRIC_BONES: tuple[tuple[int, int], ...] = tuple(
  (BONE_INDEX["left_" + name], BONE_INDEX["right_" + name])
  for name in ("hip", "thigh", "shin", "upper_arm", "forearm")
)

# Hinges as (proximal bone, distal bone, flexion axis in the proximal bone's frame): flexing turns
# the distal bone about this axis (right-hand rule) away from the proximal bone's direction.
# Knees flex backwards about -right for both legs; elbows, from the T-pose with palms forward,
# flex forwards: about +up for the right arm and -up for the left (mirror images).
HINGES: tuple[tuple[int, int, tuple[float, float, float]], ...] = (
  (BONE_INDEX["right_thigh"], BONE_INDEX["right_shin"], (-1.0, 0.0, 0.0)),
  (BONE_INDEX["left_thigh"], BONE_INDEX["left_shin"], (-1.0, 0.0, 0.0)),
  (BONE_INDEX["right_upper_arm"], BONE_INDEX["right_forearm"], (0.0, 0.0, 1.0)),
  (BONE_INDEX["left_upper_arm"], BONE_INDEX["left_forearm"], (0.0, 0.0, -1.0)),
)
HINGE_NAMES = ("right_knee", "left_knee", "right_elbow", "left_elbow")
_HINGE_PROXIMAL = np.array([h[0] for h in HINGES])
_HINGE_DISTAL = np.array([h[1] for h in HINGES])
_HINGE_AXES = np.array([h[2] for h in HINGES], np.float32)


# --------------------------------------------------------------------------- small helpers
def _dot(a: Array, b: Array, keepdims: bool = False) -> Array:
  return jnp.sum(a * b, axis=-1, keepdims=keepdims)


def _unit(v: Array) -> Array:
  """Normalises the last axis; a zero vector stays zero (with a zero gradient)."""
  n = safe_norm(v, keepdims=True)
  return v / jnp.where(n > 0, n, 1.0)


def _safe_atan2(y: Array, x: Array) -> Array:
  """``atan2`` that is 0, with a zero gradient, at (0, 0)."""
  nonzero = (x != 0) | (y != 0)
  return jnp.where(nonzero, jnp.arctan2(y, jnp.where(nonzero, x, 1.0)), 0.0)


# --------------------------------------------------------------------------- quaternions
# Unit quaternions (w, x, y, z) on the last axis.
def quaternion_multiply(p: Array, q: Array) -> Array:
  """Hamilton product ``p q`` (rotation q, then p): (..., 4) x2 -> (..., 4)."""
  pw, pv = p[..., :1], p[..., 1:]
  qw, qv = q[..., :1], q[..., 1:]
  return jnp.concatenate(
    [pw * qw - _dot(pv, qv, keepdims=True), pw * qv + qw * pv + jnp.cross(pv, qv)], axis=-1
  )


def quaternion_conjugate(q: Array) -> Array:
  """The inverse rotation of a unit quaternion: (..., 4) -> (..., 4)."""
  return q * jnp.asarray([1.0, -1.0, -1.0, -1.0], q.dtype)


def quaternion_rotate(q: Array, u: Array) -> Array:
  """Rotates vectors u (..., 3) by unit quaternions q (..., 4)."""
  w, v = q[..., :1], q[..., 1:]
  t = 2.0 * jnp.cross(v, u)
  return u + w * t + jnp.cross(v, t)


def quaternion_to_matrix(q: Array) -> Array:
  """(..., 4) unit quaternions -> (..., 3, 3) rotation matrices."""
  w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
  return jnp.stack(
    [
      jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
      jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
      jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ],
    -2,
  )


def quaternion_angle(q: Array) -> Array:
  """Rotation angle (radians, in [0, pi]) of unit quaternions (..., 4) -> (...); accurate near 0."""
  return 2.0 * _safe_atan2(safe_norm(q[..., 1:]), jnp.abs(q[..., 0]))


def swing(a: Array, b: Array, eps: float = 1e-6) -> Array:
  """Smallest rotation taking unit vector ``a`` onto unit vector ``b``, as a unit quaternion.

  ``normalise(1 + a . b, a x b)``: the rotation about ``a x b`` by the angle between them. When
  ``b`` is (within ``eps``) opposite to ``a`` it is a half turn about a fixed axis perpendicular
  to ``a``. A zero ``b`` gives the identity.

  Args:
    a, b: (..., 3).
  Returns:
    (..., 4) with ``quaternion_rotate(swing(a, b), a) == b``.
  """
  a, b = jnp.broadcast_arrays(a, b)
  w = 1.0 + _dot(a, b, keepdims=True)
  q = jnp.concatenate([w, jnp.cross(a, b)], axis=-1)
  regular = w > eps
  # Half turn about a x e, e = x unless a is close to x (then y): a fixed axis perpendicular to a.
  x_axis, y_axis = jnp.eye(3, dtype=a.dtype)[:2]
  e = jnp.where(jnp.abs(a[..., :1]) < 0.9, x_axis, y_axis)
  half_turn = jnp.concatenate([jnp.zeros_like(w), _unit(jnp.cross(a, e))], axis=-1)
  return jnp.where(regular, _unit(jnp.where(regular, q, 1.0)), half_turn)


def rotation_angle(r: Array) -> Array:
  """Geodesic angle (radians, in [0, pi]) of rotation matrices (..., 3, 3) -> (...).

  ``atan2(|vee(R - R^T)| / 2, (trace R - 1) / 2)``, accurate near 0 as well as near pi.
  """
  vee = jnp.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
  sin = 0.5 * safe_norm(vee)
  cos = 0.5 * (jnp.trace(r, axis1=-2, axis2=-1) - 1.0)
  return _safe_atan2(sin, cos)


# --------------------------------------------------------------------------- bones and frames
def bone_vectors(x: Array) -> Array:
  """Bone vectors child minus parent for the 16 bones of ``skeleton.BONES``: (..., 17, 3) -> (..., 16, 3)."""
  x = jnp.asarray(x)
  return x[..., _CHILD_JOINT, :] - x[..., _PARENT_JOINT, :]


def bone_directions(x: Array) -> Array:
  """Unit bone vectors (zero for a zero-length bone): (..., 17, 3) -> (..., 16, 3)."""
  return _unit(bone_vectors(x))


def body_frame(x: Array) -> Array:
  """The pelvis frame: (..., 17, 3) -> (..., 3, 3) with columns right, forward, up.

  right = left hip -> right hip; up = pelvis -> spine with its right component removed;
  forward = up x right (a right-handed frame; in a left-handed world it would point backwards).
  """
  x = jnp.asarray(x)
  right = _unit(x[..., JOINT_INDEX["right_hip"], :] - x[..., JOINT_INDEX["left_hip"], :])
  up = x[..., JOINT_INDEX["spine"], :] - x[..., JOINT_INDEX["pelvis"], :]
  up = _unit(up - _dot(up, right, keepdims=True) * right)
  forward = jnp.cross(up, right)
  return jnp.stack([right, forward, up], axis=-1)


def _body_directions(x: Array) -> Array:
  """Bone directions in body-frame coordinates (right, forward, up): (..., 17, 3) -> (..., 16, 3)."""
  return jnp.einsum("...ki,...bk->...bi", body_frame(x), bone_directions(x))


def _chain(body_dirs: Array) -> tuple[Array, Array]:
  """Bone orientations from bone directions in body coordinates.

  Returns ``(relative, absolute)``, both (..., 16, 4): each bone's swing relative to its parent
  (in the parent's frame) and the bone frame's orientation relative to the body frame (the
  product of the swings from the pelvis down). A ``lax.scan`` over the depths of the tree
  handles the bones of one depth together, so the graph holds one step, not 16.
  """
  batch = body_dirs.shape[:-2]
  dtype = body_dirs.dtype
  # Slot NUM_BONES is a scratch bone for padding: zero direction, so its swing is the identity.
  dirs = jnp.concatenate([body_dirs, jnp.zeros(batch + (1, 3), dtype)], axis=-2)
  rest = jnp.asarray(np.concatenate([REST_DIRECTIONS, _RIGHT[None]]), dtype)
  identity = jnp.zeros(batch + (NUM_BONES + 1, 4), dtype).at[..., 0].set(1.0)

  def step(carry, bones):
    absolute, relative = carry  # absolute: slot 0 = body frame, slot b + 1 = bone b
    parents = jnp.take(absolute, jnp.asarray(_PARENT_SLOT)[bones], axis=-2)
    local = quaternion_rotate(quaternion_conjugate(parents), jnp.take(dirs, bones, axis=-2))
    rel = swing(rest[bones], local)
    absolute = absolute.at[..., bones + 1, :].set(quaternion_multiply(parents, rel))
    return (absolute, relative.at[..., bones, :].set(rel)), None

  absolute = jnp.concatenate([identity[..., :1, :], identity], axis=-2)  # slots 0..NUM_BONES + 1
  (absolute, relative), _ = jax.lax.scan(step, (absolute, identity), jnp.asarray(_LEVEL_TABLE))
  return relative[..., :NUM_BONES, :], absolute[..., 1 : NUM_BONES + 1, :]


def relative_quaternions(x: Array) -> Array:
  """Each bone's rotation relative to its parent bone, in the parent's frame: (..., 17, 3) -> (..., 16, 4).

  Unit quaternions (w, x, y, z); the identity in the rest pose; for bones leaving the pelvis,
  relative to the body frame.
  """
  return _chain(_body_directions(x))[0]


def relative_rotations(x: Array) -> Array:
  """``relative_quaternions`` as rotation matrices: (..., 17, 3) -> (..., 16, 3, 3)."""
  return quaternion_to_matrix(relative_quaternions(x))


def bone_frames(x: Array) -> Array:
  """Frame of every bone in world coordinates: (..., 17, 3) -> (..., 16, 3, 3).

  Column k of a frame is the world direction of the body axis k (right, forward, up) carried
  along the chain from the pelvis to that bone; ``frame @ REST_DIRECTIONS[b]`` is bone b's direction.
  """
  absolute = _chain(_body_directions(x))[1]
  return body_frame(x)[..., None, :, :] @ quaternion_to_matrix(absolute)


# --------------------------------------------------------------------------- Euler angles
# Per bone, intrinsic Tait-Bryan order (i, j, k) with the bone's rest axis j in the middle, so the
# middle angle stays below 90 degrees for every swing under 180 degrees (no gimbal lock):
# bones resting along up/down: X-Z-Y (right, up, forward); along right/left: Z-X-Y (up, right, forward).
_EULER_ORDER = np.array([(0, 2, 1) if axis == 2 else (2, 0, 1) for axis in _REST_AXIS])
EULER_CONVENTION = tuple("XZY" if axis == 2 else "ZXY" for axis in _REST_AXIS)


def euler_angles(rel: Array) -> Array:
  """Euler angles of bone rotations: (..., 16, 3, 3) -> (..., 16, 3) radians.

  Convention: intrinsic rotations about the parent frame's axes X = right, Y = forward, Z = up,
  ``R = R_i(a) @ R_j(b) @ R_k(c)`` with order ``EULER_CONVENTION[bone]``: "XZY" for bones resting
  vertically (legs, spine, neck, head: a = flexion about right, b = about the bone's own axis,
  c = about forward), "ZXY" for bones resting sideways (hip bones, clavicles, arms: a = about up,
  b = about the bone's own axis, c = about forward). Returns (a, b, c), with b in [-pi/2, pi/2].
  """
  bones = np.arange(NUM_BONES)
  i, j, k = _EULER_ORDER.T
  # +1 for cyclic orders (XYZ, YZX, ZXY), -1 for the others.
  e = jnp.asarray([1.0 if (jj - ii) % 3 == 1 else -1.0 for ii, jj in zip(i, j)], rel.dtype)
  r_ik = rel[..., bones, i, k]
  b = _safe_atan2(e * r_ik, jnp.sqrt(jnp.maximum(1.0 - r_ik * r_ik, 0.0)))
  a = _safe_atan2(-e * rel[..., bones, j, k], rel[..., bones, k, k])
  c = _safe_atan2(-e * rel[..., bones, i, j], rel[..., bones, i, i])
  return jnp.stack([a, b, c], axis=-1)


def _wrap(angle: Array) -> Array:
  """Wraps angles to [-pi, pi)."""
  return (angle + jnp.pi) % (2.0 * jnp.pi) - jnp.pi


# --------------------------------------------------------------------------- errors
def bone_vector_error(pred: Array, gt: Array) -> Array:
  """Distance between predicted and true bone vectors (input units): (..., 17, 3) x2 -> (..., 16).

  Translation-invariant; a wrong length and a wrong direction both count.
  """
  return safe_norm(bone_vectors(pred) - bone_vectors(gt))


def bone_direction_error(pred: Array, gt: Array) -> Array:
  """Angle in degrees between predicted and true bone directions: (..., 17, 3) x2 -> (..., 16)."""
  a, b = bone_directions(pred), bone_directions(gt)
  return jnp.degrees(_safe_atan2(safe_norm(jnp.cross(a, b)), _dot(a, b)))


def bone_rotation_error(pred: Array, gt: Array) -> Array:
  """Geodesic distance in degrees between predicted and true relative bone rotations.

  ``angle(R_pred^T R_gt)`` of the relative rotations: it measures how each bone is posed relative
  to its parent, so an error upstream in the chain does not propagate to the children.

  Args:
    pred, gt: (..., 17, 3).
  Returns:
    (..., 16) degrees in [0, 180].
  """
  qp, qg = relative_quaternions(jnp.stack(jnp.broadcast_arrays(pred, gt)))
  return jnp.degrees(quaternion_angle(quaternion_multiply(quaternion_conjugate(qp), qg)))


def bone_euler_error(pred: Array, gt: Array) -> Array:
  """Absolute differences in degrees of the ``euler_angles`` of the relative bone rotations.

  Args:
    pred, gt: (..., 17, 3).
  Returns:
    (..., 16, 3) degrees in [0, 180], differences wrapped around the circle.
  """
  ep, eg = euler_angles(relative_rotations(jnp.stack(jnp.broadcast_arrays(pred, gt))))
  return jnp.degrees(jnp.abs(_wrap(ep - eg)))


# --------------------------------------------------------------------------- kinematic constraints
def hinge_bends(x: Array) -> Array:
  """How far and which way each knee and elbow bends: (..., 17, 3) -> (..., 4, 2) radians.

  For each hinge of ``HINGES`` (order ``HINGE_NAMES``), with p and d the unit directions of the
  proximal and distal bones and a the flexion axis carried into the proximal bone's frame:
    * ``[..., 0]`` bend: the angle between p and d, in [0, pi] (0 = straight);
    * ``[..., 1]`` direction: where d leans, around p, measured from the flexion side
      ``g = a x p``, in (-pi, pi]: 0 is a pure flexion, +-pi a joint bent straight backwards.
      It is meaningless (and 0) for a straight limb. The sign is mirrored between left and right.
  Positions cannot show the twist of the thigh or upper arm, which turns the real hinge about p,
  so valid motion reaches directions well away from 0 (bundled capture, bends over 20 degrees:
  knees up to 82 degrees, elbows up to 135 degrees, the humerus turning much more than the femur).
  """
  directions = _body_directions(x)  # all in body coordinates: the angles do not depend on the frame
  orientation = _chain(directions)[1][..., _HINGE_PROXIMAL, :]
  p = directions[..., _HINGE_PROXIMAL, :]
  d = directions[..., _HINGE_DISTAL, :]
  a = quaternion_rotate(orientation, jnp.asarray(_HINGE_AXES, p.dtype))
  g = jnp.cross(a, p)  # unit: a is perpendicular to p by construction
  along_g, along_h = _dot(d, g), _dot(d, jnp.cross(p, g))
  sin_bend = safe_norm(jnp.stack([along_g, along_h], axis=-1))
  bend = _safe_atan2(sin_bend, _dot(d, p))
  return jnp.stack([bend, _safe_atan2(along_h, along_g)], axis=-1)


# Largest |direction| of ``hinge_bends`` a hinge may take: knees, knees, elbows, elbows (degrees).
HINGE_DIRECTION_LIMITS_DEG = (100.0, 100.0, 150.0, 150.0)


def hinge_loss(
  x: Array,
  bend_margin_deg: float = 20.0,
  direction_limits_deg: tuple[float, ...] = HINGE_DIRECTION_LIMITS_DEG,
) -> Array:
  """Penalty for knees and elbows bent backwards.

  A hinge is bent backwards when its bend direction (``hinge_bends``) lies outside
  ``+-direction_limits_deg`` (i.e. within 80 degrees of straight backwards for the knees, 30 for
  the elbows, whose hinge the humerus' unseen twist turns further) while it bends more than
  ``bend_margin_deg`` (natural hyperextension and joint-centre noise stay below it: down to
  16 degrees at the knees of the bundled capture). Each hinge and pose contributes
  ``relu(|direction| - limit) * relu(bend - margin)`` (radians squared); the mean is returned.
  Both factors grow monotonically with how far backwards the joint is bent.

  Args:
    x: (..., 17, 3).
    bend_margin_deg: bends up to this angle are never penalised.
    direction_limits_deg: one limit per hinge of ``HINGE_NAMES``.
  Returns:
    scalar; 0 on valid motion.
  """
  bends = hinge_bends(x)
  bend, direction = bends[..., 0], bends[..., 1]
  limits = jnp.radians(jnp.asarray(direction_limits_deg, bend.dtype))
  outside = jnp.maximum(jnp.abs(direction) - limits, 0.0)
  beyond = jnp.maximum(bend - jnp.radians(bend_margin_deg), 0.0)
  return jnp.mean(outside * beyond)


def _lengths(x: Array) -> Array:
  """Bone lengths: (..., 17, 3) -> (..., 16)."""
  return safe_norm(bone_vectors(x))


def symmetry_loss(x: Array, tolerance: float = 0.2) -> Array:
  """Penalty for left and right limb bones of different lengths.

  For each pair of ``SYMMETRIC_BONES``, the relative difference ``|l_left - l_right| / mean``,
  minus ``tolerance`` (bodies and estimated joint centres are not exactly symmetric: the bundled
  capture reaches 20% at the thighs of one subject), clipped at 0; the mean over pairs and poses.

  Args:
    x: (..., 17, 3).
  Returns:
    scalar (dimensionless).
  """
  lengths = _lengths(x)
  left = lengths[..., [a for a, _ in SYMMETRIC_BONES]]
  right = lengths[..., [b for _, b in SYMMETRIC_BONES]]
  mean = 0.5 * (left + right)
  rel = jnp.abs(left - right) / jnp.where(mean > 0, mean, 1.0)
  return jnp.mean(jnp.maximum(rel - tolerance, 0.0))


def length_constancy_loss(x: Array, tolerance: float = 0.15) -> Array:
  """Penalty for limb bones changing length within a clip.

  Each frame's length of each ``LIMB_BONES`` bone is compared with its mean over the clip:
  ``|l_t - mean_t l| / mean_t l``, minus ``tolerance`` (joint centres estimated from skin markers
  move: up to 15% in the bundled capture), clipped at 0; the mean over clips, frames and bones.
  Unlike upstream's ``limb_variance`` it is relative, so it does not depend on units.

  Args:
    x: (..., T, 17, 3).
  Returns:
    scalar (dimensionless); 0 when T <= 1.
  """
  if jnp.shape(x)[-3] <= 1:
    return jnp.zeros((), jnp.result_type(x))
  lengths = _lengths(x)[..., list(LIMB_BONES)]  # (..., T, 10)
  mean = jnp.mean(lengths, axis=-2, keepdims=True)
  rel = jnp.abs(lengths - mean) / jnp.where(mean > 0, mean, 1.0)
  return jnp.mean(jnp.maximum(rel - tolerance, 0.0))
