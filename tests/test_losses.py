"""Losses against the upstream PyTorch values, and their gradients at degenerate poses.

Tolerance: the fixture scalars are upstream's float32 torch results; ours are float32 JAX with a
different summation order, so they agree to float32 round-off of a mean over ~1,000 terms. We
hold 1e-5 relative (observed: <= 7e-7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perfectrep_jax import losses as L
from perfectrep_jax.skeleton import BONE_ANGLE_PAIRS, BONES

RTOL = 1e-5

# fixture key -> function of (pred, gt)
UPSTREAM = {
  "loss_mpjpe": L.mpjpe,
  "n_mpjpe": L.n_mpjpe,
  "loss_velocity": L.velocity,
  "loss_limb_var": lambda p, g: L.limb_variance(p),
  "loss_limb_gt": L.limb_gt,
  "loss_angle": L.angle,
  "loss_angle_velocity": L.angle_velocity,
}


@pytest.fixture(scope="module")
def io(parity_dir):
  with np.load(parity_dir / "losses_io.npz") as d:
    return {k: d[k] for k in d.files}


def _random_motion(seed=0, shape=(2, 5, 17, 3), scale=300.0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale, jnp.float32)


# Python floats, so that weights of any value share one compilation.
ALL_ONES = L.LossWeights(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)


def _total(pred, gt, mask=None):
  return L.pose_loss(pred, gt, ALL_ONES, mask)[0]


# A handful of compiled functions shared by the tests below (compilation dominates their time).
_value_and_grad = jax.jit(jax.value_and_grad(_total))
_pose_loss = jax.jit(L.pose_loss)


@pytest.mark.parametrize("key", sorted(UPSTREAM))
def test_matches_upstream(io, key):
  pred, gt = jnp.asarray(io["pred"]), jnp.asarray(io["gt"])
  fn = UPSTREAM[key]
  value = jax.jit(fn)(pred, gt)
  assert value.dtype == jnp.float32 and value.shape == ()
  np.testing.assert_allclose(float(value), float(io[key]), rtol=RTOL)


def test_pose_loss_combines_upstream_terms(io):
  pred, gt = jnp.asarray(io["pred"]), jnp.asarray(io["gt"])
  weights = {
    "lambda_scale": 0.5,
    "lambda_3d_velocity": 20.0,
    "lambda_lv": 0.1,
    "lambda_lg": 0.2,
    "lambda_a": 3.0,
    "lambda_av": 4.0,
  }
  total, terms = jax.jit(lambda p, g: L.pose_loss(p, g, weights))(pred, gt)
  expected = (
    io["loss_mpjpe"]
    + 0.5 * io["n_mpjpe"]
    + 20.0 * io["loss_velocity"]
    + 0.1 * io["loss_limb_var"]
    + 0.2 * io["loss_limb_gt"]
    + 3.0 * io["loss_angle"]
    + 4.0 * io["loss_angle_velocity"]
  )
  np.testing.assert_allclose(float(total), float(expected), rtol=RTOL)
  assert set(terms) == set(L.TERM_NAMES)
  np.testing.assert_allclose(float(terms["lv"]), float(io["loss_limb_var"]), rtol=RTOL)


def test_loss_weights():
  assert L.LossWeights() == L.LossWeights(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
  up = L.LossWeights.upstream()
  assert (up.lambda_scale, up.lambda_3d_velocity) == (0.5, 20.0)
  # A whole training config may be passed: non-weight keys are ignored.
  cfg = {"epochs": 90, "lambda_3d_velocity": 20.0, "lambda_scale": 0.5, "lambda_lv": 0.0}
  w = L.LossWeights.from_mapping(cfg)
  assert w.lambda_3d_velocity == 20.0 and w.lambda_3d_pos == 1.0
  with pytest.raises(ValueError, match="lambda_velocity"):
    L.LossWeights.from_mapping({"lambda_velocity": 1.0})


def test_weights_as_traced_arguments():
  pred, gt = _random_motion(1), _random_motion(2)
  w1 = L.LossWeights.upstream()
  total1, terms = _pose_loss(pred, gt, w1)
  total2, _ = _pose_loss(pred, gt, w1._replace(lambda_lv=1.0))  # same compilation, new weight
  np.testing.assert_allclose(float(total2 - total1), float(terms["lv"]), rtol=1e-4)


def test_definitions_against_numpy():
  """Independent float64 NumPy versions of each definition."""
  rng = np.random.default_rng(3)
  pred = rng.normal(size=(2, 5, 17, 3)) * 200
  gt = rng.normal(size=(2, 5, 17, 3)) * 200
  a, b = np.array(BONES).T
  bones_p, bones_g = pred[..., a, :] - pred[..., b, :], gt[..., a, :] - gt[..., b, :]
  len_p, len_g = np.linalg.norm(bones_p, axis=-1), np.linalg.norm(bones_g, axis=-1)

  def angles(bones):
    i, j = np.array(BONE_ANGLE_PAIRS).T
    u, v = bones[..., i, :], bones[..., j, :]
    cos = (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
    return np.arccos(np.clip(cos, -1 + 1e-7, 1 - 1e-7))

  scale = (gt * pred).sum(-1).mean(-1) / (pred * pred).sum(-1).mean(-1)
  expected = {
    "3d_pos": np.linalg.norm(pred - gt, axis=-1).mean(),
    "3d_scale": np.linalg.norm(scale[..., None, None] * pred - gt, axis=-1).mean(),
    "3d_velocity": np.linalg.norm(np.diff(pred, axis=1) - np.diff(gt, axis=1), axis=-1).mean(),
    "lv": len_p.var(axis=1, ddof=1).mean(),
    "lg": np.abs(len_p - len_g).mean(),
    "angle": np.abs(angles(bones_p) - angles(bones_g)).mean(),
    "angle_velocity": np.abs(np.diff(angles(bones_p), axis=1) - np.diff(angles(bones_g), axis=1)).mean(),
  }
  _, terms = _pose_loss(jnp.asarray(pred, jnp.float32), jnp.asarray(gt, jnp.float32), ALL_ONES)
  for name, value in expected.items():
    np.testing.assert_allclose(float(terms[name]), value, rtol=1e-5, err_msg=name)
  assert L.limb_lengths(jnp.zeros((2, 5, 17, 3))).shape == (2, 5, 16)
  assert L.joint_angles(jnp.zeros((2, 5, 17, 3))).shape == (2, 5, 18)


def test_weighted_and_2d_losses():
  pred, gt = _random_motion(4), _random_motion(5)
  err = np.linalg.norm(np.asarray(pred - gt), axis=-1)  # (2, 5, 17)
  w = np.random.default_rng(6).uniform(size=(2, 5, 17)).astype(np.float32)
  np.testing.assert_allclose(float(L.weighted_mpjpe(pred, gt, w)), (w * err).mean(), rtol=1e-5)
  np.testing.assert_allclose(float(L.weighted_mpjpe(pred, gt, jnp.ones((2, 1, 1)))), err.mean(), rtol=1e-5)
  with pytest.raises(ValueError):
    L.weighted_mpjpe(pred, gt, jnp.ones((3, 1, 1)))
  conf = w[..., None]
  diff2d = np.asarray(pred - gt)[..., :2] * conf
  np.testing.assert_allclose(
    float(L.loss_2d_weighted(pred, gt, conf)), np.linalg.norm(diff2d, axis=-1).mean(), rtol=1e-5
  )


def test_single_frame_and_identity():
  x = _random_motion(7, (2, 1, 17, 3))
  for fn in (L.velocity, L.angle_velocity):
    assert float(fn(x, x + 1.0)) == 0.0
  assert float(L.limb_variance(x)) == 0.0
  y = _random_motion(8)
  total, terms = _pose_loss(y, y, L.LossWeights(1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0))
  for name, value in terms.items():  # constraint terms judge the prediction alone, not against gt
    if name != "lv" and name not in L.CONSTRAINT_TERMS.values():
      assert float(value) == pytest.approx(0.0, abs=1e-4), name
  assert float(total) == pytest.approx(0.0, abs=1e-3)


def test_cosine_similarity_follows_torch_eps():
  """torch normalises each vector by max(||v||, 1e-8): a tiny vector is not rescaled to unit length."""
  b = jnp.array([1.0, 2.0, 3.0])
  np.testing.assert_allclose(
    float(L.cosine_similarity(jnp.array([1e-9, 0.0, 0.0]), b)), 0.1 / np.sqrt(14.0), rtol=1e-5
  )
  assert float(L.cosine_similarity(jnp.zeros(3), b)) == 0.0


@pytest.mark.parametrize("case", ["pred_equals_gt", "collapsed_pred", "zero_pred", "parallel_bones"])
def test_gradients_are_finite_at_degenerate_poses(case):
  gt = _random_motion(9)
  if case == "pred_equals_gt":  # every difference is a zero vector
    pred = gt
  elif case == "collapsed_pred":  # every bone has length 0
    pred = jnp.broadcast_to(gt[..., :1, :], gt.shape)
  elif case == "zero_pred":  # n_mpjpe's scale is 0 / 0
    pred = jnp.zeros_like(gt)
  else:  # all joints on a line: cosines of exactly +-1
    pred = jnp.arange(17, dtype=jnp.float32)[:, None] * jnp.array([1.0, 2.0, 3.0]) + jnp.zeros_like(gt)
  value, grad = _value_and_grad(pred, gt)
  assert np.isfinite(float(value))
  assert np.all(np.isfinite(np.asarray(grad)))


def test_gradient_matches_finite_differences():
  """Directional derivatives of the total loss against central differences.

  Poses of unit scale keep every term O(1), so float32 central differences are good to ~1e-4.
  """
  rng = np.random.default_rng(10)
  pred, gt = _random_motion(10, scale=1.0), _random_motion(11, scale=1.0)
  grad = np.asarray(_value_and_grad(pred, gt)[1], np.float64)
  for _ in range(3):
    direction = rng.normal(size=pred.shape).astype(np.float32)
    direction /= np.linalg.norm(direction)
    h = 1e-2
    plus, minus = _value_and_grad(pred + h * direction, gt)[0], _value_and_grad(pred - h * direction, gt)[0]
    numeric = (float(plus) - float(minus)) / (2 * h)
    # atol: float32 round-off of two O(1) loss values over 2h (about 1e-6 / 2e-2); one direction
    # has a derivative of only 0.004, where that round-off alone is 1.5% of it.
    np.testing.assert_allclose(np.sum(grad * direction), numeric, rtol=1e-2, atol=1e-4)


def test_mask_all_valid_equals_no_mask():
  pred, gt = _random_motion(12), _random_motion(13)
  mask = jnp.ones(pred.shape[:-1], bool)
  _, terms0 = _pose_loss(pred, gt, ALL_ONES)
  _, terms1 = _pose_loss(pred, gt, ALL_ONES, mask)
  for name in terms0:
    np.testing.assert_allclose(float(terms1[name]), float(terms0[name]), rtol=1e-5, err_msg=name)


def test_mask_ignores_invalid_joints_even_nan():
  pred, gt = _random_motion(14), _random_motion(15)
  mask = np.ones(pred.shape[:-1], bool)
  mask[0, 2, 13] = False  # left wrist of one frame
  bad_pred = pred.at[0, 2, 13].set(jnp.nan)
  bad_gt = gt.at[0, 2, 13].set(1e9)
  _, terms = _pose_loss(bad_pred, bad_gt, ALL_ONES, jnp.asarray(mask))
  # MPJPE over the other joints.
  err = np.linalg.norm(np.asarray(pred - gt), axis=-1)
  np.testing.assert_allclose(float(terms["3d_pos"]), err[mask].mean(), rtol=1e-5)
  # Bone (12, 13) of that frame is left out of limb_gt.
  a, b = np.array(BONES).T
  lp = np.linalg.norm(np.asarray(pred)[..., a, :] - np.asarray(pred)[..., b, :], axis=-1)
  lg = np.linalg.norm(np.asarray(gt)[..., a, :] - np.asarray(gt)[..., b, :], axis=-1)
  bmask = np.ones(lp.shape, bool)
  bmask[0, 2, 12] = False
  np.testing.assert_allclose(float(terms["lg"]), np.abs(lp - lg)[bmask].mean(), rtol=1e-5)
  # Limb variance of bone 12 in clip 0 uses the 4 other frames.
  lv = np.var(lp, axis=1, ddof=1)
  lv[0, 12] = np.var(np.delete(lp[0, :, 12], 2), ddof=1)
  np.testing.assert_allclose(float(terms["lv"]), lv.mean(), rtol=1e-5)
  # Everything finite, gradient 0 at the masked joint.
  total, grad = _value_and_grad(bad_pred, bad_gt, jnp.asarray(mask))
  assert np.isfinite(float(total))
  grad = np.asarray(grad)
  assert np.all(np.isfinite(grad)) and np.all(grad[0, 2, 13] == 0)


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="shapes differ"):
    L.mpjpe(jnp.zeros((1, 2, 17, 3)), jnp.zeros((1, 3, 17, 3)))
