"""Body kinematics from 3D joints: the vertical, joint angles, depth and other per-frame signals.

Every function takes Human3.6M-17 joints ``(T, 17, 3)`` in any rigid frame and any unit (the
lifter's normalised camera frame, pixels, or motion capture in millimetres) and returns figures
that do not change when the whole sequence is rotated, translated or scaled: angles are in
degrees and lengths are divided by the body's own size. The only frame-dependent quantity, the
vertical, is estimated from the skeleton itself (or given).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from perfectrep_jax.skeleton import BONES, JOINT_INDEX as J

Posture = Literal["standing", "supine", "prone"]

_EPS = 1e-9
# Standing tall, the thorax sits a little in front of the ankles: the mid-ankle -> thorax line
# leans forward of the vertical by this much (median over the training performers' upright takes,
# 151 takes, 10th-90th percentile 1.4-6.9 degrees; refitted by ``python -m
# perfectrep_jax.form.fit_rules``), so ``estimate_up`` tilts that line back by it.
STANDING_LEAN_DEG = 3.8
# A camera rolled less than this from level (its x axis horizontal) is taken to be level by
# ``level_up``: people film exercise with the phone upright, on a tripod or in hand.
LEVEL_ROLL_DEG = 10.0


def _unit(v: np.ndarray) -> np.ndarray:
  """Normalises vectors on the last axis; zero vectors stay zero."""
  n = np.linalg.norm(v, axis=-1, keepdims=True)
  return v / np.maximum(n, _EPS)


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Angle in degrees between vectors ``a`` and ``b`` (..., 3) -> (...)."""
  cos = np.sum(_unit(a) * _unit(b), axis=-1)
  return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def joint_angle(joints: np.ndarray, a: int, b: int, c: int) -> np.ndarray:
  """Included angle at joint ``b`` between the segments to ``a`` and ``c``.

  Args:
    joints: (T, 17, 3).
  Returns:
    (T,) degrees; 180 when a, b, c are in a straight line.
  """
  return angle_between(joints[:, a] - joints[:, b], joints[:, c] - joints[:, b])


def body_scale(joints: np.ndarray) -> float:
  """The body's size: the sum of the median lengths of the 16 bones (same unit as ``joints``).

  Medians over time make it robust to a few bad frames; being a sum of bone lengths it does not
  depend on the pose.
  """
  lengths = np.stack([np.linalg.norm(joints[:, c] - joints[:, p], axis=-1) for p, c in BONES], axis=1)
  return float(np.sum(np.median(lengths, axis=0)))


def segment_length(joints: np.ndarray, a: int, b: int) -> float:
  """Median length over time of the segment between joints ``a`` and ``b``."""
  return float(np.median(np.linalg.norm(joints[:, a] - joints[:, b], axis=-1)))


def _mean_direction(vectors: np.ndarray) -> np.ndarray:
  """Unit mean of unit vectors (N, 3) -> (3,)."""
  return _unit(np.mean(_unit(vectors), axis=0))


def extended_frames(joints: np.ndarray) -> np.ndarray:
  """(T,) bool: the frames where the body is most extended (head top farthest from the
  mid-ankle, the top fifth), where a standing person stands tall."""
  mid_ankle = 0.5 * (joints[:, J["left_ankle"]] + joints[:, J["right_ankle"]])
  extension = np.linalg.norm(joints[:, J["head"]] - mid_ankle, axis=-1)
  return extension >= np.quantile(extension, 0.8)


def _lean_back(line: np.ndarray, front: np.ndarray, degrees: float) -> np.ndarray:
  """``line`` (3,) turned by ``degrees`` away from the mean of ``front`` (N, 3) (about the axis
  across both); ``line`` itself when the front is undefined or along it."""
  f = np.mean(front, axis=0)
  f = f - (f @ line) * line
  if degrees == 0.0 or np.linalg.norm(f) < 1e-6:
    return line
  a = np.radians(degrees)
  return _unit(np.cos(a) * line - np.sin(a) * _unit(f))


def estimate_up(
  joints: np.ndarray, posture: Posture = "standing", standing_lean_deg: float = STANDING_LEAN_DEG
) -> np.ndarray:
  """Estimates the world's up direction from the skeleton alone.

  - ``standing`` (squats, lunges, deadlifts, ...): in the frames where the body is most extended
    (head top farthest from the ankles, the top fifth), the direction from the mid-ankle to the
    thorax, tilted back by ``standing_lean_deg`` (:data:`STANDING_LEAN_DEG`: people stand with the
    thorax a little in front of the ankles), is the vertical to within a few degrees.
  - ``supine`` (bench press): at the top of a press the arms point up, so up is the mean
    shoulder-to-wrist direction in the frames where the arms are straightest.
  - ``prone`` (push-up): the hands push on the floor, so up is the mean wrist-to-shoulder
    direction in those frames.

  Args:
    joints: (T, 17, 3).
    posture: which of the rules above applies.
    standing_lean_deg: how far the standing mid-ankle -> thorax line leans forward of the vertical.
  Returns:
    (3,) unit vector.
  """
  joints = np.asarray(joints, np.float64)
  mid_ankle = 0.5 * (joints[:, J["left_ankle"]] + joints[:, J["right_ankle"]])
  if posture == "standing":
    top = extended_frames(joints)
    line = _mean_direction(joints[top, J["thorax"]] - mid_ankle[top])
    return _lean_back(line, body_axes(joints[top])[2], standing_lean_deg)
  if posture not in ("supine", "prone"):
    raise ValueError(f"unknown posture {posture!r}")
  arms = []
  straightness = []
  for s, e, w in (
    ("left_shoulder", "left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow", "right_wrist"),
  ):
    arms.append(joints[:, J[w]] - joints[:, J[s]])
    straightness.append(joint_angle(joints, J[s], J[e], J[w]))
  arm = _unit(arms[0]) + _unit(arms[1])
  straight = np.minimum(straightness[0], straightness[1])
  top = straight >= np.quantile(straight, 0.8)
  up = _mean_direction(arm[top])
  return up if posture == "supine" else -up


def level_up(
  up: np.ndarray, camera_axis: np.ndarray, camera_up: np.ndarray, max_roll_deg: float = LEVEL_ROLL_DEG
) -> tuple[np.ndarray, bool]:
  """An estimated vertical ``up`` (3,) turned into the camera's upright plane when the camera
  looks level: ``(up, levelled)``.

  A camera held level (its x axis horizontal: a phone upright on a tripod or in hand) has the
  world's vertical in the plane of its viewing direction ``camera_axis`` and its picture's up
  ``camera_up`` (both (3,) in ``up``'s frame, e.g. ``(0, 0, 1)`` and ``(0, -1, 0)`` for a lifter's
  camera frame). What the skeleton's estimate leans out of that plane is then its own error,
  and in a side view exactly the error of the trunk's forward lean, so it is removed. An estimate
  leaning more than ``max_roll_deg`` out of the plane is kept as it is (a camera rolled on
  purpose, or a body the estimate misreads): the plane is not trusted there.
  """
  up = _unit(np.asarray(up, np.float64))
  axis = _unit(np.asarray(camera_axis, np.float64))
  across = np.cross(axis, np.asarray(camera_up, np.float64))
  if np.linalg.norm(across) < 1e-6:
    raise ValueError("camera_up must not be along camera_axis")
  across = _unit(across)
  sideways = float(up @ across)
  if np.degrees(np.arcsin(min(abs(sideways), 1.0))) > max_roll_deg:
    return up, False
  return _unit(up - sideways * across), True


def heights(joints: np.ndarray, up: np.ndarray) -> np.ndarray:
  """Height of every joint along ``up`` (T, 17), relative to the lowest ankle of the sequence."""
  h = np.asarray(joints, np.float64) @ _unit(np.asarray(up, np.float64))
  floor = np.min(h[:, [J["left_ankle"], J["right_ankle"]]])
  return h - floor


# Included joint angles: name -> (a, b, c) with the angle measured at b.
_ANGLE_TRIPLES: dict[str, tuple[int, int, int]] = {
  "knee_left": (J["left_hip"], J["left_knee"], J["left_ankle"]),
  "knee_right": (J["right_hip"], J["right_knee"], J["right_ankle"]),
  "elbow_left": (J["left_shoulder"], J["left_elbow"], J["left_wrist"]),
  "elbow_right": (J["right_shoulder"], J["right_elbow"], J["right_wrist"]),
}

ANGLE_NAMES: tuple[str, ...] = (
  "knee_left",
  "knee_right",
  "hip_left",
  "hip_right",
  "elbow_left",
  "elbow_right",
  "shoulder_left",
  "shoulder_right",
  "trunk",
)


def joint_angles(joints: np.ndarray, up: np.ndarray) -> dict[str, np.ndarray]:
  """Joint angles over time, in degrees.

  - ``knee_*``: hip-knee-ankle included angle (180 straight leg, smaller when bent).
  - ``hip_*``: angle between the trunk (pelvis to thorax) and the thigh (hip to knee), 180
    standing straight, about 90 seated or at the bottom of a deep squat.
  - ``elbow_*``: shoulder-elbow-wrist included angle (180 straight arm).
  - ``shoulder_*``: elevation of the upper arm from the trunk (0 arm hanging, 90 raised
    sideways or forwards, 180 overhead).
  - ``trunk``: inclination of the trunk from ``up`` (0 upright, 90 horizontal).

  Args:
    joints: (T, 17, 3).
    up: (3,) world up (see :func:`estimate_up`).
  Returns:
    name -> (T,) for every name in :data:`ANGLE_NAMES`.
  """
  joints = np.asarray(joints, np.float64)
  out = {name: joint_angle(joints, *abc) for name, abc in _ANGLE_TRIPLES.items()}
  trunk_up = joints[:, J["thorax"]] - joints[:, J["pelvis"]]
  for side in ("left", "right"):
    thigh = joints[:, J[f"{side}_knee"]] - joints[:, J[f"{side}_hip"]]
    out[f"hip_{side}"] = angle_between(trunk_up, thigh)
    upper_arm = joints[:, J[f"{side}_elbow"]] - joints[:, J[f"{side}_shoulder"]]
    out[f"shoulder_{side}"] = angle_between(-trunk_up, upper_arm)
  out["trunk"] = angle_between(trunk_up, np.broadcast_to(np.asarray(up, np.float64), trunk_up.shape))
  return {name: out[name] for name in ANGLE_NAMES}


def hip_depth(joints: np.ndarray, up: np.ndarray) -> np.ndarray:
  """How far the hips are below the knees, in thigh lengths (T,).

  Positive below parallel (the squat standard "hip crease below the knee"), about -1 standing.
  """
  joints = np.asarray(joints, np.float64)
  u = _unit(np.asarray(up, np.float64))
  hips = 0.5 * (joints[:, J["left_hip"]] + joints[:, J["right_hip"]])
  knees = 0.5 * (joints[:, J["left_knee"]] + joints[:, J["right_knee"]])
  thigh = 0.5 * (
    segment_length(joints, J["left_hip"], J["left_knee"])
    + segment_length(joints, J["right_hip"], J["right_knee"])
  )
  return (knees - hips) @ u / max(thigh, _EPS)


def pelvis_height(joints: np.ndarray, up: np.ndarray) -> np.ndarray:
  """Pelvis height above the lowest ankle position, in leg lengths (hip to knee to ankle) (T,)."""
  joints = np.asarray(joints, np.float64)
  leg = 0.5 * sum(
    segment_length(joints, J[f"{s}_hip"], J[f"{s}_knee"])
    + segment_length(joints, J[f"{s}_knee"], J[f"{s}_ankle"])
    for s in ("left", "right")
  )
  return heights(joints, up)[:, J["pelvis"]] / max(leg, _EPS)


def _horizontal(v: np.ndarray, up: np.ndarray) -> np.ndarray:
  u = _unit(np.asarray(up, np.float64))
  return v - (v @ u)[..., None] * u


def knee_width_ratio(joints: np.ndarray, up: np.ndarray) -> np.ndarray:
  """Distance between the knees over distance between the ankles, seen from above (T,).

  Below 1 the knees come in towards each other (valgus); about 1 or more the knees track over
  the feet.
  """
  joints = np.asarray(joints, np.float64)
  knees = _horizontal(joints[:, J["left_knee"]] - joints[:, J["right_knee"]], up)
  ankles = _horizontal(joints[:, J["left_ankle"]] - joints[:, J["right_ankle"]], up)
  return np.linalg.norm(knees, axis=-1) / np.maximum(np.linalg.norm(ankles, axis=-1), _EPS)


def wrist_height(joints: np.ndarray, up: np.ndarray) -> np.ndarray:
  """Height of the higher wrist above the thorax, in body scales (T,)."""
  joints = np.asarray(joints, np.float64)
  h = heights(joints, up)
  top = np.maximum(h[:, J["left_wrist"]], h[:, J["right_wrist"]])
  return (top - h[:, J["thorax"]]) / max(body_scale(joints), _EPS)


def body_axes(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The body's own axes per frame, needing no vertical: ``(long, lateral, front)``, each (T, 3)
  unit: pelvis to thorax, right hip to left hip (made orthogonal to ``long``), and the belly
  side ``lateral x long`` (towards the nose; towards the floor in a push-up)."""
  joints = np.asarray(joints, np.float64)
  long = _unit(joints[:, J["thorax"]] - joints[:, J["pelvis"]])
  lateral = joints[:, J["left_hip"]] - joints[:, J["right_hip"]]
  lateral = _unit(lateral - np.sum(lateral * long, axis=-1, keepdims=True) * long)
  return long, lateral, _unit(np.cross(lateral, long))


def body_line(joints: np.ndarray) -> np.ndarray:
  """How far the hips leave the shoulder-ankle line, as a signed bend at the pelvis (T,) degrees.

  0 when mid-shoulder, pelvis and mid-ankle are in line (a plank, a push-up held straight);
  positive when the pelvis is on the belly side of the line (hips sagging towards the floor in a
  push-up or plank), negative on the back side (hips piked up). Needs no vertical.
  """
  joints = np.asarray(joints, np.float64)
  shoulders = 0.5 * (joints[:, J["left_shoulder"]] + joints[:, J["right_shoulder"]])
  ankles = 0.5 * (joints[:, J["left_ankle"]] + joints[:, J["right_ankle"]])
  pelvis = joints[:, J["pelvis"]]
  bend = 180.0 - angle_between(shoulders - pelvis, ankles - pelvis)
  # The side is read against the line's own normal in the body's sagittal plane.
  line = _unit(ankles - shoulders)
  _, lateral, _ = body_axes(joints)
  belly = _unit(np.cross(lateral, -line))  # the front, perpendicular to the line
  foot_of = shoulders + np.sum((pelvis - shoulders) * line, axis=-1, keepdims=True) * line
  side = np.sign(np.sum((pelvis - foot_of) * belly, axis=-1))
  return bend * side


def shoulder_abduction(joints: np.ndarray, side: str) -> np.ndarray:
  """Elbow flare: the upper arm's angle from the trunk in the body's frontal plane (T,) degrees.

  The upper arm is projected on the plane of the trunk axis and the shoulders' line (its
  forward part, pointing to the ceiling in a bench press, dropped); 0 along the body towards the
  hips, 90 straight out to the side. At the bottom of a press, about 45 is tucked, 90 flared.
  """
  joints = np.asarray(joints, np.float64)
  long, lateral, front = body_axes(joints)
  arm = joints[:, J[f"{side}_elbow"]] - joints[:, J[f"{side}_shoulder"]]
  arm = arm - np.sum(arm * front, axis=-1, keepdims=True) * front
  return angle_between(-long, arm)


def spine_flexion(joints: np.ndarray) -> np.ndarray:
  """Bend of the back at the spine joint (T,) degrees, positive when rounded forward (thorax
  towards the belly side of the pelvis-spine line), negative when arched. A 3D whose spine joint
  lies on the pelvis-thorax line by construction (some motion capture) reads 0 throughout."""
  joints = np.asarray(joints, np.float64)
  pelvis, spine, thorax = joints[:, J["pelvis"]], joints[:, J["spine"]], joints[:, J["thorax"]]
  lower = _unit(spine - pelvis)
  upper = _unit(thorax - spine)
  # atan2 of the cross and dot products: exact near 0, where arccos loses half its digits.
  bend = np.degrees(
    np.arctan2(np.linalg.norm(np.cross(lower, upper), axis=-1), np.sum(lower * upper, axis=-1))
  )
  _, lateral, _ = body_axes(joints)
  front = _unit(np.cross(lateral, lower))
  return bend * np.sign(np.sum((thorax - spine) * front, axis=-1))


def knee_valgus(joints: np.ndarray, side: str) -> np.ndarray:
  """Knee valgus: how far the knee lies medial of its ankle along the hips' left-right axis,
  in thigh lengths (T,); positive when it caves in towards the other leg, negative when it tracks
  out over the toes. Unlike the knee/ankle width ratio it does not depend on the stance width,
  and unlike a frontal-plane projection angle (Munro et al. 2012) it stays defined at the bottom
  of a deep squat, where the thigh points forward.
  """
  joints = np.asarray(joints, np.float64)
  _, lateral, _ = body_axes(joints)
  medial = -lateral if side == "left" else lateral  # towards the other leg
  knee, ankle = joints[:, J[f"{side}_knee"]], joints[:, J[f"{side}_ankle"]]
  thigh = segment_length(joints, J[f"{side}_hip"], J[f"{side}_knee"])
  return np.sum((knee - ankle) * medial, axis=-1) / max(thigh, _EPS)


def bar_offset(joints: np.ndarray, up: np.ndarray) -> np.ndarray:
  """Deadlift bar path proxy: horizontal distance of the mid-wrist (where the bar is held) from
  the mid-ankle (over the mid-foot), in thigh lengths (T,)."""
  joints = np.asarray(joints, np.float64)
  wrists = 0.5 * (joints[:, J["left_wrist"]] + joints[:, J["right_wrist"]])
  ankles = 0.5 * (joints[:, J["left_ankle"]] + joints[:, J["right_ankle"]])
  thigh = 0.5 * (
    segment_length(joints, J["left_hip"], J["left_knee"])
    + segment_length(joints, J["right_hip"], J["right_knee"])
  )
  return np.linalg.norm(_horizontal(wrists - ankles, up), axis=-1) / max(thigh, _EPS)


def signals(joints: np.ndarray, up: np.ndarray) -> dict[str, np.ndarray]:
  """Every per-frame signal the form analysis uses: the joint angles plus depth-like figures.

  Returns:
    name -> (T,): the :data:`ANGLE_NAMES` angles (degrees), ``hip_depth`` (thigh lengths,
    positive below parallel), ``pelvis_height`` (leg lengths), ``knee_width_ratio`` and
    ``wrist_height`` (body scales above the thorax), ``body_line`` (:func:`body_line`),
    ``elbow_flare_left/right`` (:func:`shoulder_abduction`), ``spine_flexion`` and
    ``bar_offset`` (thigh lengths).
  """
  out = joint_angles(joints, up)
  out["hip_depth"] = hip_depth(joints, up)
  out["pelvis_height"] = pelvis_height(joints, up)
  out["knee_width_ratio"] = knee_width_ratio(joints, up)
  out["wrist_height"] = wrist_height(joints, up)
  out["knee_valgus_left"] = knee_valgus(joints, "left")
  out["knee_valgus_right"] = knee_valgus(joints, "right")
  out["body_line"] = body_line(joints)
  out["elbow_flare_left"] = shoulder_abduction(joints, "left")
  out["elbow_flare_right"] = shoulder_abduction(joints, "right")
  out["spine_flexion"] = spine_flexion(joints)
  out["bar_offset"] = bar_offset(joints, up)
  return out


def flexion(joints: np.ndarray) -> np.ndarray:
  """How far the body is from standing straight with the arms down, in degrees summed (T,).

  The sum over both sides of knee, hip and elbow bend (180 minus the included angle) and
  shoulder elevation. It needs no vertical, so it tells the rest pose of a repetition (least
  flexed: standing, arms down) from its turning point (most flexed: the bottom of a squat, the
  arm raised) whatever the frame.
  """
  angles = joint_angles(joints, up=np.array([0.0, 0.0, 1.0]))
  bend = sum(180.0 - angles[f"{j}_{s}"] for j in ("knee", "hip", "elbow") for s in ("left", "right"))
  return bend + angles["shoulder_left"] + angles["shoulder_right"]
