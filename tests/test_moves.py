"""MotionBERT's random_move and fixed crop_scale, on device."""

from __future__ import annotations

import jax
import numpy as np

from perfectrep_jax.data import clips, moves


def _clip(seed=0, b=3, t=7):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-0.5, 0.5, (b, t, 17, 3)).astype(np.float32)
  x[..., 2] = rng.uniform(0.2, 1.0, (b, t, 17))
  return x


def test_random_move_is_a_per_frame_similarity_interpolated_over_the_clip():
  x = _clip()
  y = np.asarray(moves.random_move(jax.random.key(0), x))
  np.testing.assert_array_equal(y[..., 2], x[..., 2])  # confidence kept
  for b in range(3):
    # each frame: y = s R x + t, so distances scale by one factor per frame
    d_x = np.linalg.norm(x[b, :, 0, :2] - x[b, :, 5, :2], axis=-1)
    d_y = np.linalg.norm(y[b, :, 0, :2] - y[b, :, 5, :2], axis=-1)
    s = d_y / d_x
    assert np.all((s > 0.9 - 1e-5) & (s < 1.1 + 1e-5))
    np.testing.assert_allclose(np.diff(s, 2), 0, atol=1e-4)  # linear in time
  assert not np.allclose(y, np.asarray(moves.random_move(jax.random.key(1), x)))
  np.testing.assert_array_equal(y, np.asarray(moves.random_move(jax.random.key(0), x)))


def test_crop_scale_fixed_matches_upstream_crop_scale():
  x = _clip(b=2)
  x[0, :, 3, 2] = 0  # a missing joint: ignored for the box
  got = np.asarray(moves.crop_scale_fixed(x, 2.0))
  for b in range(2):
    want = clips.crop_scale(x[b], scale_range=(2, 2))
    np.testing.assert_allclose(got[b], want, atol=1e-6)
  empty = np.zeros((1, 4, 17, 3), np.float32)
  assert not np.asarray(moves.crop_scale_fixed(empty, 2.0)).any()
