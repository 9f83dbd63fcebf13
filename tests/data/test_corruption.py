"""On-device corruption: the statistics come out as configured, masks have their shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from perfectrep_jax import skeleton
from perfectrep_jax.data import corruption as C

T = 53  # (T - 1) / (27 - 1) = 2: even frames are key frames, odd frames their midpoints


@pytest.fixture(scope="module")
def stats():
  return C.load_statistics()


@pytest.fixture(scope="module")
def noisy(stats):
  """2000 clips of a still pose, noise only, no jitter: the raw offsets and confidences."""
  clean = jnp.broadcast_to(jnp.linspace(-0.5, 0.5, 17 * 2).reshape(1, 1, 17, 2), (2000, T, 17, 2))
  config = C.CorruptionConfig(mask=False, jitter_std=0.0)
  out = np.asarray(C.corrupt_2d(jax.random.key(0), clean, config))
  return out, np.asarray(clean)


def test_shape_dtype_and_determinism():
  x = jnp.zeros((2, 16, 17, 2))
  a = C.corrupt_2d(jax.random.key(1), x)
  b = C.corrupt_2d(jax.random.key(1), x)
  c = C.corrupt_2d(jax.random.key(2), x)
  assert a.shape == (2, 16, 17, 3) and a.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_gaussian_uniform_mixture_matches_the_statistics(noisy, stats):
  out, clean = noisy
  offsets = (out[..., :2] - clean)[:, ::2].reshape(-1, 17, 2)  # key frames only
  w = stats.weight[:, None].astype(np.float64)
  mean = w * stats.mean
  second = (
    w * (stats.std.astype(np.float64) ** 2 + stats.mean.astype(np.float64) ** 2) + (1 - w) * 0.06**2 / 12
  )
  var = second - mean**2
  n = len(offsets)
  assert np.all(np.abs(offsets.mean(0) - mean) < 5 * np.sqrt(var / n) + 1e-6)
  assert np.all(np.abs(offsets.var(0) / var - 1) < 0.1)
  # uniform draws never leave [-0.03, 0.03]; with prob weight_j a Gaussian is drawn instead
  outside = (np.abs(offsets) > 0.03).any(-1).mean(0)
  assert np.all(outside <= stats.weight + 0.01)


def test_offsets_are_interpolated_between_key_frames(noisy):
  out, clean = noisy
  offsets = out[..., :2] - clean
  np.testing.assert_allclose(offsets[:, 1::2], (offsets[:, 0:-1:2] + offsets[:, 2::2]) / 2, atol=1e-6)


def test_confidence_follows_the_distance_map(noisy, stats):
  out, clean = noisy
  dist = np.linalg.norm(out[..., :2] - clean, axis=-1)[:, :5]
  conf = out[..., 2][:, :5]
  f = stats.a / (dist + stats.a) + stats.b * dist
  rng = np.random.default_rng(0)
  expected = np.clip(f[None] + rng.normal(stats.m, stats.s, size=(8,) + f.shape), 0, 1).mean()
  assert conf.mean() == pytest.approx(expected, abs=3e-3)
  assert conf.min() >= 0 and conf.max() <= 1
  # where not clipped, conf - f is N(m, s)
  residual = (conf - f)[(conf > 0) & (conf < 1)]
  assert residual.std() < stats.s * 1.05


def test_jitter_is_gaussian_and_shared_across_the_batch():
  clean = jnp.zeros((64, T, 17, 2))
  config = C.CorruptionConfig(mask=False, jitter_std=0.01)
  offsets = np.asarray(C.corrupt_2d(jax.random.key(3), clean, config))[..., :2]
  residual = offsets[:, 1::2] - (offsets[:, 0:-1:2] + offsets[:, 2::2]) / 2  # jitter_odd - mean of neighbours
  np.testing.assert_allclose(residual, np.broadcast_to(residual[:1], residual.shape), atol=1e-6)
  assert residual[0].std() == pytest.approx(0.01 * np.sqrt(1.5), rel=0.1)


def test_joint_and_frame_masks_match_their_ratios():
  ones = jnp.ones((1000, T, 17, 3))
  config = C.CorruptionConfig(noise=False, mask_ratio=0.3, mask_t_ratio=0.2, share_frame_mask=False)
  out = np.asarray(C.corrupt_2d(jax.random.key(4), ones, config))
  dropped = out[..., 2] == 0
  assert np.all(out[dropped] == 0)  # x, y and confidence all zero
  frame_dropped = dropped.all(-1)
  assert frame_dropped.mean() == pytest.approx(0.2 + 0.8 * 0.3**17, abs=0.01)
  assert dropped[~frame_dropped].mean() == pytest.approx(0.3, abs=0.01)
  np.testing.assert_array_equal(out[~dropped], 1.0)  # no noise: input kept


def test_frame_mask_is_shared_across_the_batch_by_default():
  ones = jnp.ones((8, T, 17, 3))
  out = np.asarray(
    C.corrupt_2d(jax.random.key(5), ones, {"noise": False, "mask_ratio": 0.0, "mask_t_ratio": 0.5})
  )
  frames = out[..., 2].sum(-1) == 0
  assert frames[0].any() and np.all(frames == frames[:1])


def _spans(dropped):
  """For one clip (T, J) bool: (set of joints, frames) of the dropped entries."""
  frames = np.nonzero(dropped.any(-1))[0]
  joints = frozenset(np.nonzero(dropped.any(0))[0])
  return joints, frames


@pytest.mark.parametrize("kind", ["limb", "half", "span"])
def test_anatomy_masks_drop_whole_parts_over_contiguous_spans(kind):
  groups = {
    "limb": [skeleton.LIMBS[n] for n in C.CorruptionConfig().limbs],
    "half": [skeleton.BODY_HALVES[n] for n in C.CorruptionConfig().halves],
    "span": [tuple(range(17))],
  }[kind]
  span = {"limb": (0.25, 1.0), "half": (0.25, 1.0), "span": (0.05, 0.2)}[kind]
  config = C.CorruptionConfig(noise=False, mask=False, **{f"{kind}_mask_prob": 0.5})
  out = np.asarray(C.corrupt_2d(jax.random.key(6), jnp.ones((400, T, 17, 3)), config))
  dropped = out[..., 2] == 0
  applied = dropped.any(axis=(1, 2))
  assert applied.mean() == pytest.approx(0.5, abs=0.08)
  seen = set()
  for clip in dropped[applied]:
    joints, frames = _spans(clip)
    assert joints in {frozenset(g) for g in groups}
    assert np.all(np.diff(frames) == 1)
    assert round(span[0] * T) <= len(frames) <= round(span[1] * T)
    assert np.all(clip[frames][:, sorted(joints)])  # every joint of the part, every frame of the span
    seen.add(joints)
  assert len(seen) == len(groups)


def test_configs_from_configdict_and_validation():
  cfg = ml_collections.ConfigDict({"mask_ratio": 0.1, "limbs": ["left_arm"], "limb_mask_prob": 1.0})
  parsed = C.CorruptionConfig.from_config(cfg)
  assert parsed.limbs == ("left_arm",) and parsed.mask_ratio == 0.1
  with pytest.raises(ValueError, match="unknown corruption settings"):
    C.CorruptionConfig.from_config({"mask_ratoi": 0.1})
  with pytest.raises(ValueError, match="body parts"):
    C.CorruptionConfig(limbs=("tail",))
  with pytest.raises(ValueError):
    C.CorruptionConfig(mask_ratio=1.5)


def test_runs_inside_an_outer_jit_with_only_xy_input():
  config = C.CorruptionConfig(noise=False, mask_ratio=0.0, mask_t_ratio=0.0)
  step = jax.jit(lambda key, x: C.corrupt_2d(key, x, config))
  out = np.asarray(step(jax.random.key(0), jnp.full((2, 4, 17, 2), 0.5)))
  assert out.shape == (2, 4, 17, 3) and np.all(out[..., :2] == 0.5) and np.all(out[..., 2] == 1)
