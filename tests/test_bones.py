"""Bone vectors, bone rotations and kinematic constraints.

A synthetic T-pose (the rest pose of ``bones``) gives exact expectations for known rotations;
the bundled motion capture (real motion, Z-up millimetres) checks that the constraints are ~zero
on valid motion. Angles are float32: held to 0.05 degree (observed ~1e-3).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from perfectrep_jax import bones as B
from perfectrep_jax.skeleton import BONES, JOINT_INDEX as J

MOCAP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mocap" / "mocap_h36m17.npz"
DEG_TOL = 0.05


def t_pose() -> np.ndarray:
  """The rest pose in the body frame (x right, y forward, z up), millimetres: every relative rotation is I."""
  x = np.zeros((17, 3))
  x[J["right_hip"]], x[J["left_hip"]] = (100, 0, 0), (-100, 0, 0)
  x[J["right_knee"]], x[J["left_knee"]] = (100, 0, -450), (-100, 0, -450)
  x[J["right_ankle"]], x[J["left_ankle"]] = (100, 0, -900), (-100, 0, -900)
  x[J["spine"]], x[J["thorax"]], x[J["nose"]], x[J["head"]] = (
    (0, 0, 250),
    (0, 0, 500),
    (0, 0, 600),
    (0, 0, 750),
  )
  x[J["left_shoulder"]], x[J["left_elbow"]], x[J["left_wrist"]] = (
    (-150, 0, 500),
    (-450, 0, 500),
    (-700, 0, 500),
  )
  x[J["right_shoulder"]], x[J["right_elbow"]], x[J["right_wrist"]] = (
    (150, 0, 500),
    (450, 0, 500),
    (700, 0, 500),
  )
  return x


def rotate_about(x: np.ndarray, joints, pivot: int, axis, degrees: float) -> np.ndarray:
  """Rotates ``joints`` of pose ``x`` (17, 3) about joint ``pivot`` by ``degrees`` around ``axis``."""
  rot = Rotation.from_rotvec(np.radians(degrees) * np.asarray(axis, float) / np.linalg.norm(axis))
  y = np.array(x, float)
  y[list(joints)] = rot.apply(y[list(joints)] - y[pivot]) + y[pivot]
  return y


@jax.jit
def _study(x, gt):
  """Everything the single-pose tests look at, compiled once for (17, 3) poses."""
  return {
    "rel": B.relative_rotations(x),
    "body": B.body_frame(x),
    "frames": B.bone_frames(x),
    "bends": B.hinge_bends(x),
    "hinge_loss": B.hinge_loss(x),
    "symmetry": B.symmetry_loss(x),
    "errors": (
      B.bone_vector_error(x, gt),
      B.bone_direction_error(x, gt),
      B.bone_rotation_error(x, gt),
      B.bone_euler_error(x, gt),
    ),
  }


def analyse(x):
  out = _study(jnp.asarray(x, jnp.float32), jnp.asarray(x, jnp.float32))
  return {k: np.asarray(v, np.float64) for k, v in out.items() if k != "errors"}


def errors(pred, gt):
  """Bone vector, direction, rotation and Euler errors of pred against gt."""
  out = _study(jnp.asarray(pred, jnp.float32), jnp.asarray(gt, jnp.float32))
  return [np.asarray(e, np.float64) for e in out["errors"]]


def test_tables():
  assert B.PARENT_BONE == (-1, 0, 1, -1, 3, 4, -1, 6, 7, 8, 7, 10, 11, 7, 13, 14)
  for b, (p, _) in enumerate(BONES):
    if B.PARENT_BONE[b] >= 0:
      assert BONES[B.PARENT_BONE[b]][1] == p
    assert B.BONE_NAMES[b].split("_")[-1] in {
      "hip",
      "thigh",
      "shin",
      "spine",
      "neck",
      "head",
      "clavicle",
      "arm",
      "forearm",
    }
  assert B.EULER_CONVENTION[B.BONE_INDEX["right_shin"]] == "XZY"
  assert B.EULER_CONVENTION[B.BONE_INDEX["left_forearm"]] == "ZXY"


def test_rest_pose_is_identity_everywhere():
  out = analyse(t_pose())
  np.testing.assert_allclose(out["rel"], np.broadcast_to(np.eye(3), (16, 3, 3)), atol=1e-6)
  np.testing.assert_allclose(out["body"], np.eye(3), atol=1e-6)
  np.testing.assert_allclose(out["bends"], 0.0, atol=1e-6)
  assert out["hinge_loss"] == 0.0 and out["symmetry"] == 0.0


def test_pose_against_itself_and_rigid_motion_gives_zero():
  rng = np.random.default_rng(0)
  x = t_pose()
  x = rotate_about(x, [J["right_knee"], J["right_ankle"]], J["right_hip"], (1, 0.2, 0), -50)  # some pose
  x = rotate_about(x, [J["left_wrist"]], J["left_elbow"], (0.3, 0, -1), 70)
  for e in errors(x, x):
    assert np.all(np.abs(e) < DEG_TOL)
  # Relative rotations do not depend on where the body is or which way it faces.
  moved = Rotation.random(random_state=1).apply(x) + rng.normal(size=3) * 1000
  vec, direction, rot, euler = errors(moved, x)
  assert np.all(rot < DEG_TOL) and np.all(euler < DEG_TOL)
  assert np.all(vec > 1.0)  # bone vectors are in the world frame: they do see the rotation


@pytest.mark.parametrize("theta", [10.0, 45.0, 120.0])
def test_knee_flexion_gives_its_angle(theta):
  """The right shin turned about the knee's flexion axis (-right) by theta."""
  rest = t_pose()
  flexed = rotate_about(rest, [J["right_ankle"]], J["right_knee"], (-1, 0, 0), theta)
  assert flexed[J["right_ankle"], 1] < 0  # flexing moves the ankle backwards
  vec, direction, rot, euler = errors(flexed, rest)
  shin = B.BONE_INDEX["right_shin"]
  assert rot[shin] == pytest.approx(theta, abs=DEG_TOL)
  assert direction[shin] == pytest.approx(theta, abs=DEG_TOL)
  assert vec[shin] == pytest.approx(2 * 450 * np.sin(np.radians(theta) / 2), rel=1e-4)
  np.testing.assert_allclose(euler[shin], [theta, 0, 0], atol=DEG_TOL)  # XZY: flexion first
  others = np.delete(np.arange(16), shin)
  assert np.all(rot[others] < DEG_TOL) and np.all(euler[others] < DEG_TOL)
  bend, side = np.degrees(analyse(flexed)["bends"][0])
  assert bend == pytest.approx(theta, abs=DEG_TOL) and side == pytest.approx(0.0, abs=DEG_TOL)


def test_rotating_a_subtree_only_moves_its_root_bone():
  """Upper arm and forearm swung forwards together about the shoulder: only the upper arm turns
  relative to its parent; the forearm keeps its pose relative to the upper arm."""
  rest = t_pose()
  elbow_bent = rotate_about(rest, [J["right_wrist"]], J["right_elbow"], (0, 0, 1), 60)
  swung = rotate_about(elbow_bent, [J["right_elbow"], J["right_wrist"]], J["right_shoulder"], (0, 0, 1), 35)
  vec, direction, rot, euler = errors(swung, elbow_bent)
  upper, fore = B.BONE_INDEX["right_upper_arm"], B.BONE_INDEX["right_forearm"]
  assert rot[upper] == pytest.approx(35.0, abs=DEG_TOL)
  np.testing.assert_allclose(euler[upper], [35.0, 0, 0], atol=DEG_TOL)  # ZXY: about up first
  assert rot[fore] < DEG_TOL
  assert direction[fore] == pytest.approx(35.0, abs=DEG_TOL)  # its world direction did turn


def test_generic_rotation_of_a_leaf_bone():
  """Head top turned about the nose by 30 degrees around a tilted axis: its direction turns by
  the angle between the old and new direction, and the geodesic error is at least that."""
  rest = t_pose()
  rest = rotate_about(rest, [J["head"]], J["nose"], (1, 0, 0), 20)  # start from a tilted head
  moved = rotate_about(rest, [J["head"]], J["nose"], (0.3, 1, 0.5), 30)
  vec, direction, rot, euler = errors(moved, rest)
  head = B.BONE_INDEX["head"]
  d0, d1 = rest[J["head"]] - rest[J["nose"]], moved[J["head"]] - moved[J["nose"]]
  expected = np.degrees(np.arccos(d0 @ d1 / np.linalg.norm(d0) / np.linalg.norm(d1)))
  assert direction[head] == pytest.approx(expected, abs=DEG_TOL)
  assert rot[head] >= expected - DEG_TOL
  assert np.all(np.delete(rot, head) < DEG_TOL)


def test_euler_angles_match_scipy():
  rots = Rotation.random(40, random_state=2)
  mats = jnp.broadcast_to(jnp.asarray(rots.as_matrix(), jnp.float32)[:, None], (40, 16, 3, 3))
  angles = np.asarray(jax.jit(B.euler_angles)(mats))
  for b, convention in enumerate(B.EULER_CONVENTION):
    np.testing.assert_allclose(angles[:, b], rots.as_euler(convention), atol=1e-4)


def test_rotation_angle_near_zero_and_pi():
  for deg in (0.0, 1e-3, 90.0, 179.9, 180.0):
    mats = Rotation.from_rotvec(np.radians(deg) * np.array([[0.6, 0.0, 0.8]])).as_matrix()
    assert float(np.degrees(B.rotation_angle(jnp.asarray(mats))[0])) == pytest.approx(deg, abs=1e-3)


# --------------------------------------------------------------------------- constraints
def _mocap_clips(clip_len=100):
  """The bundled takes cut into (N, clip_len, 17, 3) clips (one compile for all of them)."""
  if not MOCAP.exists():
    if os.environ.get("CI"):  # CI always has ../shared, as for the parity fixtures
      pytest.fail(f"motion capture not found at {MOCAP}")
    pytest.skip(f"motion capture not found at {MOCAP}")
  with np.load(MOCAP) as data:
    clips = [
      take[s : s + clip_len]
      for take in (data[k] for k in data.files)
      for s in range(0, len(take) - clip_len + 1, clip_len)
    ]
  return jnp.asarray(np.stack(clips), jnp.float32)


def test_constraints_are_zero_on_real_motion():
  clips = _mocap_clips()
  per_clip = jax.jit(
    jax.vmap(lambda c: jnp.stack([B.hinge_loss(c), B.symmetry_loss(c), B.length_constancy_loss(c)]))
  )(clips)
  per_clip = np.asarray(per_clip)
  assert len(per_clip) > 400
  assert np.all(per_clip[:, 0] == 0.0)  # no knee or elbow ever bent backwards
  assert per_clip[:, 1].max() < 5e-3  # limbs symmetric within 20% (one subject's thighs at the edge)
  assert per_clip[:, 2].max() < 1e-3  # limb lengths within 15% of their clip mean


def _standing_frame():
  clips = _mocap_clips()
  return np.asarray(clips[0, 0], np.float64)  # deep-squat take, standing at the start


def test_knee_bent_backwards_is_penalised():
  x = _standing_frame()
  out = analyse(x)
  assert out["hinge_loss"] == 0.0
  flexion_axis = out["frames"][B.BONE_INDEX["right_thigh"]] @ np.array(B.HINGES[0][2])  # -right, carried
  knee, ankle = J["right_knee"], J["right_ankle"]
  bent_forward = rotate_about(x, [ankle], knee, flexion_axis, 70)  # a normal flexion
  bent_backward = rotate_about(x, [ankle], knee, flexion_axis, -60)  # hyperextended by ~45 degrees
  assert analyse(bent_forward)["hinge_loss"] == 0.0
  out = analyse(bent_backward)
  assert out["hinge_loss"] > 0.02
  bend, direction = np.degrees(out["bends"][0])
  assert abs(direction) > 150.0 and bend > 40.0


def test_elbow_bent_backwards_is_penalised():
  rest = t_pose()
  forward = rotate_about(rest, [J["left_wrist"]], J["left_elbow"], (0, 0, -1), 90)
  backward = rotate_about(rest, [J["left_wrist"]], J["left_elbow"], (0, 0, -1), -60)
  assert forward[J["left_wrist"], 1] > 0  # the left elbow flexes forwards about -up
  assert analyse(forward)["hinge_loss"] == 0.0
  assert analyse(backward)["hinge_loss"] > 0.02


def test_length_constraints_see_violations():
  x = _standing_frame()
  long_shin = x.copy()
  knee, ankle = J["left_knee"], J["left_ankle"]
  long_shin[ankle] = x[knee] + 1.6 * (x[ankle] - x[knee])
  assert analyse(long_shin)["symmetry"] > 0.05
  clip = np.stack([x] * 8)
  clip[4:] = long_shin  # the left shin grows in the middle of the clip
  assert float(jax.jit(B.length_constancy_loss)(jnp.asarray(clip, jnp.float32))) > 0.005
  assert float(B.length_constancy_loss(jnp.asarray(clip[:1], jnp.float32))) == 0.0


@jax.jit
@jax.value_and_grad
def _constraint_value_and_grad(clip):
  return B.hinge_loss(clip) + B.symmetry_loss(clip) + B.length_constancy_loss(clip)


@pytest.mark.parametrize("case", ["rest", "collapsed", "folded"])
def test_constraint_gradients_are_finite(case):
  x = t_pose()
  if case == "collapsed":
    x = np.zeros_like(x)
  elif case == "folded":  # both knees folded back onto the thighs: bend of 180 degrees
    x[J["right_ankle"]] = x[J["right_hip"]]
    x[J["left_ankle"]] = x[J["left_hip"]]
  value, grad = _constraint_value_and_grad(jnp.asarray(np.stack([x, x * 1.1]), jnp.float32))
  assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))


# --------------------------------------------------------------------------- constraints as loss terms
def test_constraint_terms_join_the_pose_loss_only_where_weighted():
  from perfectrep_jax import losses as L

  x = _standing_frame()
  flexion_axis = analyse(x)["frames"][B.BONE_INDEX["right_thigh"]] @ np.array(B.HINGES[0][2])
  bad = rotate_about(x, [J["right_ankle"]], J["right_knee"], flexion_axis, -60)
  clip = jnp.asarray(np.stack([x, bad, bad]), jnp.float32)[None]
  gt = jnp.asarray(np.stack([x, x, x]), jnp.float32)[None]
  plain, plain_terms = L.pose_loss(clip, gt, {})
  assert not set(L.CONSTRAINT_TERMS.values()) & set(plain_terms)  # not computed when unweighted
  weights = {"lambda_hinge": 2.0, "lambda_symmetry": 3.0, "lambda_length": 5.0}
  total, terms = jax.jit(lambda p, g: L.pose_loss(p, g, weights))(clip, gt)
  assert terms["hinge"] > 0.01 and terms["symmetry"] >= 0.0 and terms["length_constancy"] >= 0.0
  np.testing.assert_allclose(float(terms["hinge"]), float(B.hinge_loss(clip)), rtol=1e-6)
  expected = plain + 2.0 * terms["hinge"] + 3.0 * terms["symmetry"] + 5.0 * terms["length_constancy"]
  np.testing.assert_allclose(float(total), float(expected), rtol=1e-6)
  # Weights passed as arrays (a sweep without recompiling) keep every constraint term.
  w = L.LossWeights(lambda_hinge=jnp.float32(0.0))
  assert "hinge" in L.pose_loss(clip, gt, w)[1]


def test_descending_the_hinge_term_straightens_a_knee_bent_backwards():
  x = _standing_frame()
  flexion_axis = analyse(x)["frames"][B.BONE_INDEX["right_thigh"]] @ np.array(B.HINGES[0][2])
  pose = jnp.asarray(rotate_about(x, [J["right_ankle"]], J["right_knee"], flexion_axis, -60), jnp.float32)
  step = jax.jit(jax.value_and_grad(B.hinge_loss))
  start, _ = step(pose)
  for _ in range(200):
    value, grad = step(pose)
    pose = pose - 200.0 * grad  # millimetres: the loss is radians squared
  assert float(start) > 0.02 and float(value) < 0.25 * float(start)
  assert np.isfinite(np.asarray(pose)).all()
