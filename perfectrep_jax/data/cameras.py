"""Camera geometry for building clips: world to camera, projection, the 2.5D image frame.

Camera frame: x right, y down, z forward (depth), as Human3.6M, Fit3D and OpenCV. Everything is
numpy float64 until the clip is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
  """A pinhole camera with the Human3.6M distortion model (radial k1..k3, tangential p1, p2).

  Attributes:
    f: (2,) focal lengths in pixels.
    c: (2,) principal point in pixels.
    k: (3,) radial distortion (zeros for an ideal pinhole).
    p: (2,) tangential distortion.
    res_w, res_h: image size in pixels.
  """

  f: tuple[float, float]
  c: tuple[float, float]
  res_w: int
  res_h: int
  k: tuple[float, float, float] = (0.0, 0.0, 0.0)
  p: tuple[float, float] = (0.0, 0.0)


def world_to_camera_rt(points: np.ndarray, rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
  """``(X - T) R^T`` (Fit3D's convention: R rotates world axes into camera axes, T the centre).

  Args:
    points: (..., 3) world coordinates.
    rotation: (3, 3).
    centre: (3,) camera centre in world coordinates, same unit as ``points``.
  Returns:
    (..., 3) camera coordinates.
  """
  return (np.asarray(points, np.float64) - np.asarray(centre, np.float64)) @ np.asarray(
    rotation, np.float64
  ).T


def quaternion_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Rotates vectors by a unit quaternion.

  Args:
    q: (4,) (w, x, y, z).
    v: (..., 3).
  Returns:
    (..., 3) rotated vectors.
  """
  q = np.asarray(q, np.float64)
  w, u = q[0], q[1:]
  v = np.asarray(v, np.float64)
  t = 2.0 * np.cross(u, v)
  return v + w * t + np.cross(u, t)


def world_to_camera_quaternion(points: np.ndarray, orientation: np.ndarray, centre: np.ndarray) -> np.ndarray:
  """Human3.6M convention: ``orientation`` rotates camera to world, ``centre`` the camera position.

  Args:
    points: (..., 3) world coordinates.
    orientation: (4,) unit quaternion (w, x, y, z).
    centre: (3,) same unit as ``points``.
  Returns:
    (..., 3) camera coordinates.
  """
  q = np.asarray(orientation, np.float64)
  inverse = np.concatenate([q[:1], -q[1:]])
  return quaternion_rotate(inverse, np.asarray(points, np.float64) - np.asarray(centre, np.float64))


def project(points_cam: np.ndarray, intr: Intrinsics) -> np.ndarray:
  """Projects camera-frame points to pixels with the Human3.6M camera model.

  As the upstream ``project_to_2d``: the normalised coordinates ``x/z, y/z`` are clipped to
  [-1, 1], then distorted by ``(1 + k1 r^2 + k2 r^4 + k3 r^6 + p . xy)`` and offset by ``p r^2``.

  Args:
    points_cam: (..., 3) camera coordinates, z > 0.
  Returns:
    (..., 2) pixels.
  """
  points_cam = np.asarray(points_cam, np.float64)
  xy = np.clip(points_cam[..., :2] / points_cam[..., 2:3], -1.0, 1.0)
  r2 = np.sum(xy * xy, axis=-1, keepdims=True)
  k = np.asarray(intr.k, np.float64)
  p = np.asarray(intr.p, np.float64)
  radial = 1.0 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
  tangential = np.sum(p * xy, axis=-1, keepdims=True)
  distorted = xy * (radial + tangential) + p * r2
  return np.asarray(intr.f, np.float64) * distorted + np.asarray(intr.c, np.float64)


def look_at_rotation(
  position: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)
) -> np.ndarray:
  """Rotation whose rows are the camera axes (x right, y down, z forward) in world coordinates.

  Args:
    position: (3,) camera centre.
    target: (3,) point the optical axis goes through.
    up: (3,) world up (Z-up by default); must not be parallel to the viewing direction.
  Returns:
    (3, 3) R for ``world_to_camera_rt``.
  """
  forward = np.asarray(target, np.float64) - np.asarray(position, np.float64)
  forward /= np.linalg.norm(forward)
  right = np.cross(forward, np.asarray(up, np.float64))
  right /= np.linalg.norm(right)
  down = np.cross(forward, right)
  return np.stack([right, down, forward])


def image_scale_factor(pixels: np.ndarray, points_cam: np.ndarray, root: int = 0) -> np.ndarray:
  """The 2.5D factor: camera units per pixel that best map the 2D pose onto the 3D one.

  Least squares per frame between root-relative pixel offsets and root-relative camera x, y
  (the scale lambda of LCN / MotionBERT's ``2.5d_factor``); for a pinhole without distortion it
  is close to ``z_root / f``. Needs no intrinsics, so it works for every dataset alike.

  Args:
    pixels: (T, J, 2) projected pose.
    points_cam: (T, J, 3) the same pose in camera coordinates.
  Returns:
    (T,) factor, positive (frames without 2D extent fall back to the median of the others,
    or 1 when there is none).
  """
  d2 = np.asarray(pixels, np.float64) - np.asarray(pixels, np.float64)[:, root : root + 1]
  d3 = (
    np.asarray(points_cam, np.float64)[..., :2] - np.asarray(points_cam, np.float64)[:, root : root + 1, :2]
  )
  num = np.sum(d2 * d3, axis=(1, 2))
  den = np.sum(d2 * d2, axis=(1, 2))
  good = (den > 1e-9) & (num > 0)
  factor = np.where(good, num / np.where(good, den, 1.0), np.nan)
  fallback = float(np.median(factor[good])) if good.any() else 1.0
  return np.where(good, factor, fallback)


def to_image_frame(pixels: np.ndarray, points_cam: np.ndarray, factor: np.ndarray) -> np.ndarray:
  """The 2.5D pose in pixel units: x, y = projection, z = camera depth / factor.

  Args:
    pixels: (T, J, 2).
    points_cam: (T, J, 3).
    factor: (T,) camera units per pixel.
  Returns:
    (T, J, 3) float64; ``(v - v_root) * factor`` gives camera-unit offsets (x, y approximately,
    z exactly).
  """
  depth = np.asarray(points_cam, np.float64)[..., 2] / factor[:, None]
  return np.concatenate([np.asarray(pixels, np.float64), depth[..., None]], axis=-1)
