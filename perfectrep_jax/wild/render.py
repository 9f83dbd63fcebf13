"""Animations of a lifted motion: the 3D skeleton turning in time, optionally beside the 2D input.

MP4 through matplotlib's ffmpeg writer when ffmpeg is installed, else an animated GIF through
Pillow (a matplotlib dependency). The skeleton is drawn with its own vertical (estimated from the
skeleton, or given) pointing up, whatever the input's frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import animation

from perfectrep_jax.errors import UserError
from perfectrep_jax.figio import agg_figure
from perfectrep_jax.form.kinematics import estimate_up
from perfectrep_jax.skeleton import BONES, LEFT_JOINTS, RIGHT_JOINTS

_LEFT, _RIGHT, _MID = "#1f77b4", "#d62728", "#444444"


def _bone_colour(parent: int, child: int) -> str:
  if child in LEFT_JOINTS:
    return _LEFT
  if child in RIGHT_JOINTS:
    return _RIGHT
  return _MID


def upright(joints: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
  """Rotates a motion (T, 17, 3) so that ``up`` (estimated when None) is +z, centred on the
  mean pelvis; returns (T, 17, 3)."""
  x = np.asarray(joints, np.float64)
  u = estimate_up(x) if up is None else np.asarray(up, np.float64) / np.linalg.norm(up)
  # Any orthonormal frame whose third axis is u; the first follows the mean left-to-right hip axis.
  lr = np.mean(x[:, 4] - x[:, 1], axis=0)
  lr = lr - (lr @ u) * u
  if np.linalg.norm(lr) < 1e-9:
    lr = np.cross(u, [1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.cross(u, [0.0, 1.0, 0.0])
  e1 = lr / np.linalg.norm(lr)
  e2 = np.cross(u, e1)
  rot = np.stack([e1, e2, u])
  return (x - x[:, :1].mean(axis=0)) @ rot.T


def writer_for(path: Path, fps: float):
  """(writer, path): ffmpeg for .mp4 when available, else Pillow and the path as .gif."""
  if path.suffix.lower() == ".mp4" and animation.writers.is_available("ffmpeg"):
    return animation.FFMpegWriter(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p"]), path
  return animation.PillowWriter(fps=fps), path.with_suffix(".gif")


def render_motion(
  joints: np.ndarray,
  path: str | Path,
  fps: float,
  *,
  keypoints_2d: np.ndarray | None = None,
  up: np.ndarray | None = None,
  title: str | None = None,
  max_fps: float = 25.0,
  size: tuple[float, float] = (4.0, 4.0),
  dpi: int = 80,
) -> Path:
  """Renders the 3D skeleton (and the 2D input beside it) to a video.

  Args:
    joints: (T, 17, 3) any rigid frame and unit.
    path: where to write; ``.mp4`` (falls back to ``.gif`` without ffmpeg) or ``.gif``.
    fps: frames per second of ``joints``.
    keypoints_2d: optional (T, 17, 2|3) pixel keypoints drawn beside (image axes, y down);
      joints with confidence 0 are hidden.
    up: the vertical in ``joints``' frame; estimated from the skeleton when None.
    max_fps: frames are skipped to render at most this rate.
  Returns:
    the path written (its suffix says which format).
  Raises:
    UserError: wrong shapes, or the file cannot be written.
  """
  x = np.asarray(joints, np.float64)
  if x.ndim != 3 or x.shape[1:] != (17, 3) or len(x) == 0:
    raise UserError(f"cannot render joints of shape {x.shape}; expected (frames, 17, 3)")
  if keypoints_2d is not None and len(keypoints_2d) != len(x):
    raise UserError(f"2D keypoints have {len(keypoints_2d)} frames, the 3D motion {len(x)}")
  y = upright(x, up)
  step = max(1, int(np.ceil(fps / max_fps)))
  frames = np.arange(0, len(y), step)
  out_fps = fps / step
  span = float(np.max(np.ptp(y.reshape(-1, 3), axis=0))) / 2 or 1.0
  centre = (y.reshape(-1, 3).max(axis=0) + y.reshape(-1, 3).min(axis=0)) / 2

  panels = 2 if keypoints_2d is not None else 1
  fig = agg_figure((size[0] * panels, size[1]), dpi=dpi)
  ax3 = fig.add_subplot(1, panels, panels, projection="3d")
  ax3.set_xlim(centre[0] - span, centre[0] + span)
  ax3.set_ylim(centre[1] - span, centre[1] + span)
  ax3.set_zlim(centre[2] - span, centre[2] + span)
  ax3.set_box_aspect((1, 1, 1))
  ax3.view_init(elev=12, azim=-70)
  ax3.set_xticklabels([])
  ax3.set_yticklabels([])
  ax3.set_zticklabels([])
  lines3 = [ax3.plot([], [], [], color=_bone_colour(p, c), lw=2.5)[0] for p, c in BONES]
  lines2 = []
  if keypoints_2d is not None:
    k2 = np.asarray(keypoints_2d, np.float64)
    conf = k2[..., 2] if k2.shape[-1] > 2 else np.ones(k2.shape[:2])
    ax2 = fig.add_subplot(1, panels, 1)
    ok = conf > 0
    xy = k2[..., :2][ok] if ok.any() else np.zeros((1, 2))
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = 0.1 * float(max(hi - lo)) + 1.0
    ax2.set_xlim(lo[0] - pad, hi[0] + pad)
    ax2.set_ylim(hi[1] + pad, lo[1] - pad)
    ax2.set_aspect("equal")
    ax2.set_title("2D input", fontsize=9)
    ax2.tick_params(labelsize=7)
    lines2 = [ax2.plot([], [], color=_bone_colour(p, c), lw=2)[0] for p, c in BONES]
  caption = fig.suptitle(title or "", fontsize=9)

  def draw(i):
    t = frames[i]
    for line, (p, c) in zip(lines3, BONES):
      line.set_data_3d(y[t, [p, c], 0], y[t, [p, c], 1], y[t, [p, c], 2])
    if lines2:
      for line, (p, c) in zip(lines2, BONES):
        if conf[t, p] > 0 and conf[t, c] > 0:
          line.set_data(k2[t, [p, c], 0], k2[t, [p, c], 1])
        else:
          line.set_data([], [])
    caption.set_text(f"{title + '  ' if title else ''}frame {t}  {t / fps:.2f} s")
    return lines3 + lines2

  path = Path(path)
  writer, path = writer_for(path, out_fps)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    anim = animation.FuncAnimation(fig, draw, frames=len(frames), blit=False)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    anim.save(str(tmp), writer=writer)
    tmp.replace(path)
  except OSError as err:
    raise UserError(f"{path}: cannot write the animation ({err.strerror or err})") from err
  return path
