"""Clip utilities: upstream parity, flips, normalisation, cutting, denormalisation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from perfectrep_jax import skeleton
from perfectrep_jax.data import clips


@pytest.fixture(scope="module")
def losses_io(parity_dir):
  with np.load(parity_dir / "losses_io.npz") as npz:
    return {k: npz[k] for k in npz.files}


def _motion(seed=0, shape=(30, 17, 3)):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * 100 + 500


# ----------------------------------------------------------------------------- upstream parity
def test_flip_matches_upstream(losses_io):
  out = clips.flip_data(losses_io["flip_in"])
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, losses_io["flip_out"])


def test_crop_scale_matches_upstream(losses_io):
  out = clips.crop_scale(losses_io["crop_in"])
  assert out.dtype == losses_io["crop_out"].dtype
  np.testing.assert_allclose(out, losses_io["crop_out"], rtol=0, atol=1e-6)


def test_crop_scale_3d_matches_upstream(losses_io):
  out = clips.crop_scale_3d(losses_io["crop3d_in"])
  assert out.dtype == losses_io["crop3d_out"].dtype
  np.testing.assert_allclose(out, losses_io["crop3d_out"], rtol=0, atol=1e-6)


def test_coco_mapping_matches_upstream(losses_io):
  np.testing.assert_allclose(skeleton.coco_to_h36m(losses_io["coco_in"]), losses_io["coco_h36m"], atol=1e-12)


# ----------------------------------------------------------------------------- flip
@pytest.mark.parametrize("to_array", [np.asarray, jnp.asarray], ids=["numpy", "jax"])
def test_flip_twice_is_identity(to_array):
  x = to_array(_motion(1, (2, 9, 17, 3)))
  np.testing.assert_array_equal(np.asarray(clips.flip_data(clips.flip_data(x))), np.asarray(x))


def test_flip_negates_x_and_swaps_sides():
  x = _motion(2)
  out = clips.flip_data(x)
  for left, right in zip(skeleton.LEFT_JOINTS, skeleton.RIGHT_JOINTS):
    np.testing.assert_array_equal(out[:, left, 0], -x[:, right, 0])
    np.testing.assert_array_equal(out[:, right, 1:], x[:, left, 1:])
  for centre in (0, 7, 8, 9, 10):
    np.testing.assert_array_equal(out[:, centre], x[:, centre] * np.array([-1, 1, 1], np.float32))
  np.testing.assert_array_equal(x, _motion(2))  # input untouched


# ----------------------------------------------------------------------------- crop_scale
def test_crop_scale_ratio_sets_the_extent_and_is_reproducible():
  x = _motion(3)
  x[..., 2] = 1.0
  a = clips.crop_scale(x, (1.2, 1.8), np.random.default_rng(7))
  b = clips.crop_scale(x, (1.2, 1.8), np.random.default_rng(7))
  np.testing.assert_array_equal(a, b)
  ratio = np.random.default_rng(7).uniform(1.2, 1.8)
  extent = max(np.ptp(a[..., 0]), np.ptp(a[..., 1]))
  assert extent == pytest.approx(2 / ratio, rel=1e-5)
  assert np.abs(a[..., :2]).max() <= 1


def test_crop_scale_uses_only_confident_joints_and_needs_rng_for_a_range():
  x = _motion(4)
  x[..., 2] = 1.0
  x[0, 0, :2] = 1e6  # an outlier with zero confidence must not set the box
  x[0, 0, 2] = 0.0
  out = clips.crop_scale(x)
  conf = x[..., 2] != 0
  assert np.isclose(max(np.ptp(out[..., 0][conf]), np.ptp(out[..., 1][conf])), 2.0)
  with pytest.raises(ValueError, match="rng"):
    clips.crop_scale(x, (0.5, 1.0))


def test_crop_scale_degenerate_gives_zeros():
  x = np.zeros((5, 17, 3), np.float32)
  x[0, :3, 2] = 1.0  # only three valid joints
  assert not clips.crop_scale(x).any()


def test_crop_scale_3d_affine_describes_its_map():
  x = _motion(5)
  out, origin, side = clips.crop_scale_3d_affine(x, (0.5, 1.0), np.random.default_rng(1))
  np.testing.assert_allclose(out[..., :2], (x[..., :2] - origin) / side * 2 - 1, atol=1e-5)
  np.testing.assert_allclose(out[..., 2], (x[..., 2] - x[0, 0, 2]) / side * 2 - 1, atol=1e-5)
  ratio = np.random.default_rng(1).uniform(0.5, 1.0)
  assert max(np.ptp(out[..., 0]), np.ptp(out[..., 1])) == pytest.approx(2 * ratio, rel=1e-5)
  assert out[0, 0, 2] == pytest.approx(-1.0)  # upstream's shift of z


# ----------------------------------------------------------------------------- resample / cutting
def test_resample_modes():
  rng = np.random.default_rng(0)
  up = clips.resample(5, 12, rng=rng)
  assert up.shape == (12,) and up.min() >= 0 and up.max() <= 4 and np.all(np.diff(up.astype(int)) >= 0)
  down = clips.resample(100, 10, rng=rng)
  assert np.all((down >= np.arange(10) * 10) & (down < np.arange(10) * 10 + 10))
  np.testing.assert_array_equal(
    clips.resample(5, 12, randomness=False), np.linspace(0, 5, 12, endpoint=False).astype(int)
  )
  np.testing.assert_array_equal(clips.resample(3, 7, replay=True), [0, 1, 2, 0, 1, 2, 0])
  np.testing.assert_array_equal(
    clips.resample(7, 4, rng=np.random.default_rng(3)), clips.resample(7, 4, rng=np.random.default_rng(3))
  )
  with pytest.raises(ValueError):
    clips.resample(5, 12)


def test_split_clips_upstream_rules():
  vid = ["a"] * 10 + ["b"] * 3 + ["c"] * 7
  out = clips.split_clips(vid, 4, 2, rng=np.random.default_rng(0))
  full = [list(c) for c in out if isinstance(c, range)]
  assert full == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9], [13, 14, 15, 16], [15, 16, 17, 18]]
  short = [np.asarray(c) for c in out if not isinstance(c, range)]
  assert len(short) == 1 and short[0].shape == (4,) and set(short[0]) <= {10, 11, 12}
  # the last sequence of the list is dropped by upstream when it gave no window
  assert clips.split_clips(["a"] * 5 + ["b"] * 2, 4, 4, rng=np.random.default_rng(0)) == [range(0, 4)]


def test_sequence_clips_equals_split_clips_per_sequence():
  lengths = {"s1": 50, "s2": 7, "s3": 33, "s4": 16}
  vid = [name for name, n in lengths.items() for _ in range(n)] + ["end"] * 16
  rng = np.random.default_rng(0)
  reference = [np.asarray(c) for c in clips.split_clips(vid, 16, 5, rng=rng)]
  mine, offset = [], 0
  rng = np.random.default_rng(0)
  for n in list(lengths.values()) + [16]:
    mine += [c + offset for c in clips.sequence_clips(n, 16, 5, rng)]
    offset += n
  assert len(mine) == len(reference)
  for a, b in zip(mine, reference):
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- (de)normalise
def test_screen_normalisation_round_trip():
  px = np.random.default_rng(0).uniform(0, 1000, size=(4, 17, 2))
  norm = clips.normalize_screen(px, 1000, 1002)
  assert norm.dtype == np.float32
  np.testing.assert_allclose(clips.denormalize_pixels(norm, 1000, 1002), px, atol=1e-3)
  pose = np.concatenate([norm, np.full((4, 17, 1), 0.25, np.float32)], -1)
  assert np.allclose(clips.denormalize_pixels(pose, 1000, 1002)[..., 2], 125.0)


def test_denormalize_mm_is_root_relative_and_scaled():
  pose = _motion(6, (2, 5, 17, 3))
  scale = np.arange(10, dtype=np.float32).reshape(2, 5) + 1
  out = clips.denormalize_mm(pose, scale)
  assert np.all(out[..., 0, :] == 0)
  np.testing.assert_allclose(out[1, 3], (pose[1, 3] - pose[1, 3, 0]) * scale[1, 3], rtol=1e-6)
  out_jax = clips.denormalize_mm(jnp.asarray(pose), jnp.asarray(scale))
  np.testing.assert_allclose(np.asarray(out_jax), out, rtol=1e-5, atol=1e-3)


def test_first_root_depth_to_zero():
  x = _motion(7)
  out = clips.first_root_depth_to_zero(x)
  assert out[0, 0, 2] == 0
  np.testing.assert_allclose(out[..., 2] - x[..., 2], -x[0, 0, 2])
  np.testing.assert_array_equal(out[..., :2], x[..., :2])
