"""On-device 2D augmentation and normalisation of action clips (MotionBERT's action recipe).

``random_move``: one affine move of the whole clip (rotation, scale, shift) whose parameters go
linearly from a random start value to a random end value over the clip, as MotionBERT's
``random_move`` with its default single move. ``crop_scale_fixed``: upstream's ``crop_scale``
with a fixed ratio (its test-time ``scale_range_test: [2, 2]``), per clip. Both are pure and
jit-compiled inside the train / eval step, with explicit keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def random_move(
  key: Array, motion: Array, angle_deg=(-10.0, 10.0), scale=(0.9, 1.1), shift=(-0.1, 0.1)
) -> Array:
  """Moves the x, y of (B, T, J, C) clips by a per-clip affine map interpolated over time.

  Args:
    key: PRNG key; one draw per clip.
    motion: (B, T, J, C), C >= 2; channels past x, y (confidence) are kept.
  Returns:
    (B, T, J, C) with ``x' = s (cos a x - sin a y) + tx``, ``y' = s (sin a x + cos a y) + ty``.
  """
  b, t = motion.shape[:2]
  ka, ks, kx, ky = jax.random.split(key, 4)

  def ramp(k, low, high):  # (B, T): from a random start to a random end, endpoints included
    ends = jax.random.uniform(k, (b, 2), minval=low, maxval=high)
    w = jnp.linspace(0.0, 1.0, t) if t > 1 else jnp.zeros((1,))
    return ends[:, :1] + (ends[:, 1:] - ends[:, :1]) * w[None]

  a = jnp.deg2rad(ramp(ka, *angle_deg))[..., None]
  s = ramp(ks, *scale)[..., None]
  tx, ty = ramp(kx, *shift)[..., None], ramp(ky, *shift)[..., None]
  x, y = motion[..., 0], motion[..., 1]
  new_x = s * (jnp.cos(a) * x - jnp.sin(a) * y) + tx
  new_y = s * (jnp.sin(a) * x + jnp.cos(a) * y) + ty
  return jnp.concatenate([new_x[..., None], new_y[..., None], motion[..., 2:]], axis=-1)


def crop_scale_fixed(motion: Array, ratio: float) -> Array:
  """Upstream's ``crop_scale`` with a fixed ratio, per clip: x, y into [-1, 1] around the box of
  the confident joints, the box enlarged by ``ratio``; a clip with fewer than 4 confident points
  or a zero-size box becomes zeros, as upstream.

  Args:
    motion: (B, T, J, 3) x, y, confidence (confidence 0 = missing).
  Returns:
    (B, T, J, 3), clipped to [-1, 1].
  """
  valid = motion[..., 2] != 0
  big = jnp.finfo(motion.dtype).max
  xy = motion[..., :2]
  lo = jnp.min(jnp.where(valid[..., None], xy, big), axis=(1, 2))  # (B, 2)
  hi = jnp.max(jnp.where(valid[..., None], xy, -big), axis=(1, 2))
  scale = jnp.max(hi - lo, axis=-1) * ratio  # (B,)
  ok = (jnp.sum(valid, axis=(1, 2)) >= 4) & (scale > 0)
  safe = jnp.where(ok, scale, 1.0)[:, None]
  start = (lo + hi - safe) / 2
  out_xy = ((xy - start[:, None, None]) / safe[:, None, None] - 0.5) * 2
  out = jnp.clip(jnp.concatenate([out_xy, motion[..., 2:]], axis=-1), -1.0, 1.0)
  return jnp.where(ok[:, None, None, None], out, 0.0)
