"""On-device 2D corruption for masked-pose pretraining: detector-like noise and masks.

``corrupt_2d(key, clean, config)`` is pure and jit-compiled (the config is static), so the train
step can call it inside its own ``jax.jit``. It follows MotionBERT / PerfectRep's
``Augmenter2D``:

- noise: per clip, joint and one of ``num_key_frames`` (27) key frames, an offset drawn from the
  per-joint Gaussian ``N(mean_j, std_j)`` with probability ``weight_j``, else uniform in
  ``[-range/2, range/2]`` (statistics in the data folder's ``params/synthetic_noise.npz``); the offsets are
  interpolated linearly over the clip (``align_corners``), a per-frame Gaussian jitter (std 0.002,
  one draw for the whole batch as upstream) is added, and the confidence is
  ``clip(a / (d + a) + b d + N(m, s), 0, 1)`` of the offset length d (``params/d2c_params.npz``);
- masks: joints dropped independently with ``mask_ratio``, frames with ``mask_t_ratio`` (one
  frame mask for the whole batch, as upstream); a dropped entry has x = y = confidence = 0;
- anatomy-aware masks (new here): per clip, with a configured probability each, one whole limb,
  one body half (upper / lower / left / right), or all joints, dropped over a contiguous span of
  frames whose length is a random fraction of the clip.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from perfectrep_jax import skeleton
from perfectrep_jax.data import shared


@dataclasses.dataclass(frozen=True)
class CorruptionConfig:
  """What ``corrupt_2d`` does. Hashable: it is a static argument of the jitted function.

  Attributes:
    noise: add the detector-like noise and recompute confidence.
    mask: apply the joint-level and frame-level masks.
    mask_ratio: probability of dropping a joint in a frame.
    mask_t_ratio: probability of dropping a whole frame.
    share_frame_mask: one frame mask for the batch (upstream) instead of one per clip.
    num_key_frames: key frames the noise offsets are drawn at.
    jitter_std: std of the per-frame Gaussian jitter.
    share_jitter: one jitter draw for the batch (upstream) instead of one per clip.
    uniform_range: width of the uniform offset (upstream default 0.06).
    limb_mask_prob: per-clip probability of dropping one of ``limbs`` over a span.
    limbs: names from ``skeleton.LIMBS``.
    limb_span: (low, high) fraction of the clip the limb is dropped for.
    half_mask_prob: per-clip probability of dropping one of ``halves`` over a span.
    halves: names from ``skeleton.BODY_HALVES``.
    half_span: (low, high) fraction of the clip.
    span_mask_prob: per-clip probability of dropping all joints over a span of frames.
    span: (low, high) fraction of the clip.
    noise_path, d2c_path: other statistics files (``None``: those of the data folder).
  """

  noise: bool = True
  mask: bool = True
  mask_ratio: float = 0.05
  mask_t_ratio: float = 0.1
  share_frame_mask: bool = True
  num_key_frames: int = 27
  jitter_std: float = 0.002
  share_jitter: bool = True
  uniform_range: float = 0.06
  limb_mask_prob: float = 0.0
  limbs: tuple[str, ...] = ("left_arm", "right_arm", "left_leg", "right_leg")
  limb_span: tuple[float, float] = (0.25, 1.0)
  half_mask_prob: float = 0.0
  halves: tuple[str, ...] = ("upper", "lower", "left", "right")
  half_span: tuple[float, float] = (0.25, 1.0)
  span_mask_prob: float = 0.0
  span: tuple[float, float] = (0.05, 0.2)
  noise_path: str | None = None
  d2c_path: str | None = None

  def __post_init__(self):
    for name in ("mask_ratio", "mask_t_ratio", "limb_mask_prob", "half_mask_prob", "span_mask_prob"):
      value = getattr(self, name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"corruption {name} must be in [0, 1], got {value}")
    for name in ("limb_span", "half_span", "span"):
      low, high = getattr(self, name)
      if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"corruption {name} must satisfy 0 < low <= high <= 1, got {(low, high)}")
    unknown = [n for n in self.limbs if n not in skeleton.LIMBS] + [
      n for n in self.halves if n not in skeleton.BODY_HALVES
    ]
    if unknown:
      raise ValueError(
        f"unknown body parts {unknown}; limbs: {sorted(skeleton.LIMBS)}, "
        f"halves: {sorted(skeleton.BODY_HALVES)}"
      )
    if self.num_key_frames < 1:
      raise ValueError(f"num_key_frames must be >= 1, got {self.num_key_frames}")

  @classmethod
  def from_config(cls, config) -> CorruptionConfig:
    """From a ``CorruptionConfig``, an ``ml_collections.ConfigDict`` or a mapping (lists become tuples)."""
    if isinstance(config, cls):
      return config
    if config is None:
      return cls()
    items = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    if not isinstance(items, Mapping):
      raise TypeError(f"cannot read a corruption config from {type(config).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(items) - names)
    if unknown:
      raise ValueError(f"unknown corruption settings {unknown}; known: {sorted(names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in items.items()})


@dataclasses.dataclass(frozen=True)
class NoiseStatistics:
  """The upstream statistics (numpy, float32).

  Attributes:
    mean, std: (17, 2) per-joint Gaussian offset.
    weight: (17,) probability of the Gaussian rather than the uniform offset.
    a, b, m, s: distance-to-confidence parameters.
  """

  mean: np.ndarray
  std: np.ndarray
  weight: np.ndarray
  a: float
  b: float
  m: float
  s: float


@functools.lru_cache(maxsize=4)
def load_statistics(noise_path: str | None = None, d2c_path: str | None = None) -> NoiseStatistics:
  """Reads the noise and distance-to-confidence statistics (by default ``params/`` of the data
  folder, see ``perfectrep_jax.data.shared``)."""

  def _load(path, name):
    src = shared.shared_path(f"{shared.PARAMS_DIR}/{name}") if path is None else path
    with np.load(src, allow_pickle=False) as npz:
      return {k: npz[k] for k in npz.files}

  noise = _load(noise_path, "synthetic_noise.npz")
  d2c = _load(d2c_path, "d2c_params.npz")
  return NoiseStatistics(
    mean=noise["mean"].astype(np.float32),
    std=noise["std"].astype(np.float32),
    weight=noise["weight"].astype(np.float32),
    a=float(d2c["a"]),
    b=float(d2c["b"]),
    m=float(d2c["m"]),
    s=float(d2c["s"]),
  )


def interpolate_time(values: jax.Array, num_frames: int) -> jax.Array:
  """Linear interpolation along axis 1 with aligned corners (torch ``interpolate(..., align_corners=True)``).

  Args:
    values: (B, K, ...) values at K evenly spaced key frames.
    num_frames: T.
  Returns:
    (B, T, ...); frame t samples key position t (K - 1) / (T - 1) (key 0 when T is 1).
  """
  k = values.shape[1]
  if num_frames == 1 or k == 1:
    return jnp.repeat(values[:, :1], num_frames, axis=1)
  pos = np.arange(num_frames) * ((k - 1) / (num_frames - 1))
  lo = np.minimum(np.floor(pos).astype(np.int32), k - 1)
  hi = np.minimum(lo + 1, k - 1)
  w = jnp.asarray((pos - lo).astype(np.float32)).reshape((1, num_frames) + (1,) * (values.ndim - 2))
  return values[:, lo] * (1 - w) + values[:, hi] * w


def _draws(sampler, key: jax.Array, *shapes: tuple[int, ...]) -> list[jax.Array]:
  """Several arrays from one flat draw (each random op costs seconds to compile on CPU)."""
  sizes = [int(np.prod(s)) for s in shapes]
  flat = sampler(key, (sum(sizes),))
  out, offset = [], 0
  for shape, size in zip(shapes, sizes):
    out.append(flat[offset : offset + size].reshape(shape))
    offset += size
  return out


def noise_offsets(
  key: jax.Array, batch: int, num_frames: int, config: CorruptionConfig, stats: NoiseStatistics
) -> tuple[jax.Array, jax.Array]:
  """The noise offsets and the confidence they get.

  Returns:
    offsets (B, T, 17, 2): key-frame draws interpolated over the clip plus the jitter;
    confidence (B, T, 17, 1) from the offset lengths.
  """
  j = stats.mean.shape[0]
  k_uniform, k_normal = jax.random.split(key)
  shape = (batch, config.num_key_frames, j)
  jitter_batch = 1 if config.share_jitter else batch
  sel, unif = _draws(jax.random.uniform, k_uniform, shape + (1,), shape + (2,))
  gauss, jitter, shift = _draws(
    jax.random.normal, k_normal, shape + (2,), (jitter_batch, num_frames, j, 2), (batch, num_frames, j, 1)
  )
  gauss = gauss * stats.std + stats.mean
  unif = (unif - 0.5) * config.uniform_range
  delta = jnp.where(sel < stats.weight[:, None], gauss, unif)
  offsets = interpolate_time(delta, num_frames) + jitter * config.jitter_std
  return offsets, confidence_from_offsets(offsets, shift * stats.s + stats.m, stats)


def confidence_from_offsets(offsets: jax.Array, shift: jax.Array, stats: NoiseStatistics) -> jax.Array:
  """``clip(a / (d + a) + b d + shift, 0, 1)`` of the offset length d; shift ~ N(m, s).

  Args:
    offsets: (..., 2).
    shift: (..., 1).
  Returns:
    (..., 1).
  """
  dist = jnp.sqrt(jnp.sum(offsets * offsets, axis=-1, keepdims=True))
  return jnp.clip(stats.a / (dist + stats.a) + stats.b * dist + shift, 0.0, 1.0)


def joint_frame_keep(
  key: jax.Array, batch: int, num_frames: int, num_joints: int, config: CorruptionConfig
) -> jax.Array:
  """Upstream masks as a keep mask: (B, T, J, 1) bool, False where a joint or frame is dropped."""
  frame_batch = 1 if config.share_frame_mask else batch
  u_joint, u_frame = _draws(
    jax.random.uniform, key, (batch, num_frames, num_joints, 1), (frame_batch, num_frames, 1, 1)
  )
  return (u_joint > config.mask_ratio) & (u_frame > config.mask_t_ratio)


def _group_table(groups: dict[str, tuple[int, ...]], names: tuple[str, ...], num_joints: int) -> np.ndarray:
  table = np.zeros((len(names), num_joints), bool)
  for g, name in enumerate(names):
    table[g, list(groups[name])] = True
  return table


def span_drop(
  u: jax.Array, num_frames: int, table: np.ndarray, prob: float, span: tuple[float, float]
) -> jax.Array:
  """Per clip, with probability ``prob``: one row of ``table`` dropped over a contiguous span.

  Args:
    u: (B, 4) uniforms in [0, 1): apply?, which group, span length, span start.
    table: (G, J) bool, the joint groups to choose from (uniformly).
    span: (low, high) fraction of the clip; the span length is round(U(low, high) T), >= 1.
  Returns:
    (B, T, J) bool, True where dropped.
  """
  apply = u[:, 0] < prob
  group = jnp.minimum(jnp.floor(u[:, 1] * table.shape[0]), table.shape[0] - 1).astype(jnp.int32)
  length = jnp.clip(jnp.round((span[0] + u[:, 2] * (span[1] - span[0])) * num_frames), 1, num_frames).astype(
    jnp.int32
  )
  start = jnp.floor(u[:, 3] * (num_frames - length + 1)).astype(jnp.int32)
  t = jnp.arange(num_frames)[None, :]
  in_span = (t >= start[:, None]) & (t < (start + length)[:, None])
  joints = jnp.asarray(table)[group]
  return apply[:, None, None] & in_span[:, :, None] & joints[:, None, :]


def anatomy_keep(
  key: jax.Array, batch: int, num_frames: int, num_joints: int, config: CorruptionConfig
) -> jax.Array:
  """The anatomy-aware masks as a keep mask: (B, T, J, 1) bool."""
  u_limb, u_half, u_span = _draws(jax.random.uniform, key, (batch, 4), (batch, 4), (batch, 4))
  dropped = jnp.zeros((batch, num_frames, num_joints), bool)
  if config.limb_mask_prob > 0:
    table = _group_table(skeleton.LIMBS, config.limbs, num_joints)
    dropped |= span_drop(u_limb, num_frames, table, config.limb_mask_prob, config.limb_span)
  if config.half_mask_prob > 0:
    table = _group_table(skeleton.BODY_HALVES, config.halves, num_joints)
    dropped |= span_drop(u_half, num_frames, table, config.half_mask_prob, config.half_span)
  if config.span_mask_prob > 0:
    table = np.ones((1, num_joints), bool)
    dropped |= span_drop(u_span, num_frames, table, config.span_mask_prob, config.span)
  return ~dropped[..., None]


@functools.partial(jax.jit, static_argnames=("config",))
def _corrupt(key: jax.Array, motion: jax.Array, config: CorruptionConfig) -> jax.Array:
  stats = load_statistics(config.noise_path, config.d2c_path)
  batch, num_frames, num_joints, channels = motion.shape
  if num_joints != stats.mean.shape[0]:
    raise ValueError(f"corruption statistics are for {stats.mean.shape[0]} joints, got {num_joints}")
  if channels < 2:
    raise ValueError(f"need at least x, y on the last axis, got shape {motion.shape}")
  motion = motion.astype(jnp.float32)
  k_noise, k_mask, k_anatomy = jax.random.split(key, 3)
  xy = motion[..., :2]
  if config.noise:
    offsets, conf = noise_offsets(k_noise, batch, num_frames, config, stats)
    xy = xy + offsets
  elif channels >= 3:
    conf = motion[..., 2:3]
  else:
    conf = jnp.ones_like(xy[..., :1])
  out = jnp.concatenate([xy, conf], axis=-1)
  if config.mask:
    out = out * joint_frame_keep(k_mask, batch, num_frames, num_joints, config)
  if config.limb_mask_prob > 0 or config.half_mask_prob > 0 or config.span_mask_prob > 0:
    out = out * anatomy_keep(k_anatomy, batch, num_frames, num_joints, config)
  return out


def corrupt_2d(key: jax.Array, motion: jax.Array, config=None) -> jax.Array:
  """Corrupts clean 2D (or the x, y of 3D) into detector-like, partly masked input.

  Args:
    key: a JAX PRNG key; the same key gives the same corruption.
    motion: (B, T, 17, C), C >= 2; only x, y are read when noise is on (C >= 3 keeps the input
      confidence when it is off).
    config: ``CorruptionConfig``, ``ConfigDict`` or mapping of its fields; ``None`` = upstream
      pretraining defaults.
  Returns:
    (B, T, 17, 3) float32 x, y, confidence.
  """
  return _corrupt(key, motion, CorruptionConfig.from_config(config))
