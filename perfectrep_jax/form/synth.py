"""Test material made from real motion: training sessions joined from real takes, and form faults
injected into real correct repetitions.

Nothing here invents a movement: every frame is a frame of a real motion-capture take (read from
the data folder at run time, :func:`perfectrep_jax.data.shared.load_mocap`), held, re-timed,
moved, rotated, bent at one joint or given noise. It is how the counting (:mod:`.reps`) and the
rules (:mod:`.rules`) are checked on sessions and faults that no take holds as such.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from perfectrep_jax.form import kinematics
from perfectrep_jax.form.reps import exercise_signal
from perfectrep_jax.skeleton import JOINT_INDEX as J

UP = np.array([0.0, 0.0, 1.0])  # the mocap's vertical (Z up, millimetres)


# ----------------------------------------------------------------------------- true repetitions


def pelvis_repetitions(joints: np.ndarray, bottoms, level: float = 0.1) -> list[tuple[int, int, int]]:
  """True ``(start, bottom, end)`` of each repetition of a clean squat-like take, from the
  pelvis height alone.

  The descent starts at the last frame before the bottom where the pelvis is within ``level`` of
  the drop below its standing height (the highest point since the previous bottom), and the
  ascent ends at the first frame after it where it is back there.
  """
  z = np.asarray(joints, np.float64)[:, J["pelvis"]] @ UP
  bottoms = [int(b) for b in bottoms]
  out = []
  for i, b in enumerate(bottoms):
    lo = 0 if i == 0 else bottoms[i - 1]
    hi = len(z) - 1 if i == len(bottoms) - 1 else bottoms[i + 1]
    top_before, top_after = z[lo : b + 1].max(), z[b : hi + 1].max()
    before = np.nonzero(z[lo : b + 1] >= top_before - level * (top_before - z[b]))[0]
    after = np.nonzero(z[b : hi + 1] >= top_after - level * (top_after - z[b]))[0]
    out.append((lo + int(before[-1]), b, b + int(after[0])))
  return out


# ----------------------------------------------------------------------------- sessions


@dataclasses.dataclass
class Session:
  """A session joined from pieces of real takes.

  Attributes:
    joints: (T, 17, 3) millimetres, Z up (before :func:`any_view`).
    reps: the true repetitions, ``(start, end, partial)`` in session frames.
    pieces: ``(label, first frame, last frame)`` of every piece, in order.
  """

  joints: np.ndarray
  reps: list[tuple[int, int, bool]]
  pieces: list[tuple[str, int, int]]


def hold(
  pose: np.ndarray,
  frames: int,
  rng: np.random.Generator,
  fps: float = 50.0,
  sway_mm: float = 15.0,
  jitter_mm: float = 3.0,
) -> np.ndarray:
  """One pose held for ``frames`` frames as a person stands between sets: the whole body sways
  slowly (a few centimetres, below 1 Hz) and every joint jitters a little."""
  t = np.arange(frames) / fps
  sway = np.zeros((frames, 3))
  for axis in (0, 1):
    f, ph = rng.uniform(0.15, 0.6), rng.uniform(0, 2 * np.pi)
    sway[:, axis] = sway_mm * np.sin(2 * np.pi * f * t + ph)
  jitter = rng.normal(scale=jitter_mm, size=(frames, 17, 3))
  return pose[None] + sway[:, None] + jitter


def time_warp(x: np.ndarray, rates) -> tuple[np.ndarray, np.ndarray]:
  """Plays ``x`` at a speed that changes along it: ``rates`` (one per original frame, 1 = as
  recorded, 2 = twice as fast) are integrated to the original time of every new frame.

  Returns:
    ``(warped, times)``: the poses (linearly interpolated) and the original (fractional) frame of
    each new frame.
  """
  rates = np.broadcast_to(np.asarray(rates, np.float64), (len(x),))
  times = [0.0]
  while times[-1] < len(x) - 1:
    times.append(times[-1] + rates[int(times[-1])])
  times = np.minimum(np.asarray(times), len(x) - 1.0)
  lo = np.minimum(np.floor(times).astype(int), len(x) - 2)
  w = (times - lo)[:, None, None]
  return x[lo] * (1 - w) + x[lo + 1] * w, times


class SessionBuilder:
  """Joins pieces of real takes into one session, each piece moved so its pelvis starts (on the
  floor plan) where the previous one ended, with ``blend`` frames eased between them."""

  def __init__(self, rng: np.random.Generator, blend: int = 10):
    self.rng = rng
    self.blend = blend
    self.frames: list[np.ndarray] = []
    self.length = 0
    self.reps: list[tuple[int, int, bool]] = []
    self.pieces: list[tuple[str, int, int]] = []

  def _append(self, x: np.ndarray, label: str) -> int:
    x = np.asarray(x, np.float64).copy()
    if self.frames:
      last = self.frames[-1][-1]
      shift = last[J["pelvis"]] - x[0, J["pelvis"]]
      shift[2] = 0.0
      x += shift
      ease = np.linspace(0.0, 1.0, self.blend + 2)[1:-1, None, None]
      bridge = last[None] * (1 - ease) + x[0][None] * ease
      self.frames.append(bridge)
      self.length += len(bridge)
    first = self.length
    self.frames.append(x)
    self.length += len(x)
    self.pieces.append((label, first, self.length - 1))
    return first

  def add_set(self, x: np.ndarray, true_reps, label: str = "set", times: np.ndarray | None = None):
    """A set: ``x`` with its true repetitions ``(start, bottom, end)`` in ``x``'s own frames
    (before any :func:`time_warp`; ``times`` maps new frames to them). A repetition the piece
    does not hold whole is partial."""
    first = self._append(x, label)
    n = len(x)
    for start, _, end in true_reps:
      if times is not None:
        start_new = int(np.searchsorted(times, start))
        end_new = int(np.searchsorted(times, end))
        cut_start, cut_end = start < times[0], end > times[-1]
      else:
        start_new, end_new = start, end
        cut_start, cut_end = start < 0, end > n - 1
      start_new, end_new = max(0, start_new), min(n - 1, end_new)
      if end_new <= 0 or start_new >= n - 1:
        continue
      self.reps.append((first + start_new, first + end_new, bool(cut_start or cut_end)))

  def add_rest(self, seconds: float, fps: float = 50.0, label: str = "rest"):
    """The last pose held with sway for ``seconds``."""
    self._append(hold(self.frames[-1][-1], int(seconds * fps), self.rng, fps), label)

  def add_other(self, x: np.ndarray, label: str):
    """Movement between sets that is not a repetition (walking, arm circles, ...)."""
    self._append(x, label)

  def build(self) -> Session:
    return Session(np.concatenate(self.frames), list(self.reps), list(self.pieces))


def cut_reps(true_reps, first: int, last: int) -> list[tuple[int, int, int]]:
  """The true repetitions of a take seen through the window ``first..last`` (its own frames),
  shifted to the window: a repetition reaching outside it keeps its outside start or end, so
  :meth:`SessionBuilder.add_set` marks it partial."""
  return [(s - first, b - first, e - first) for s, b, e in true_reps if e >= first and s <= last]


def any_view(x: np.ndarray, seed: int, noise_frac: float = 0.0) -> np.ndarray:
  """The motion seen from a random rotation (any view, the vertical no longer an axis), moved
  and rescaled, with per-joint Gaussian noise of ``noise_frac`` body scales (a lifted 3D's
  error is a few percent of the body, :func:`perfectrep_jax.form.kinematics.body_scale`)."""
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  if np.linalg.det(q) < 0:
    q[:, 0] *= -1
  scale = kinematics.body_scale(x)
  out = x @ q.T
  if noise_frac:
    out = out + rng.normal(scale=noise_frac * scale, size=out.shape)
  return (out - out[:1, :1]) / scale


# ----------------------------------------------------------------------------- floor and bench
# There is no prone or bench motion capture in the data folder yet. These composites keep a real
# person's body (a standing frame of a real take: its bone lengths and posture) and a real
# repetition's timing (the legs of a real squat set: descent, bottom, ascent, rests), and place
# them by geometry as a push-up, a plank or a bench press. They are synthetic composites, not
# recordings: they check the counting and the rules on prone and supine bodies, nothing more.


def _body_frame(pose: np.ndarray):
  """Mid-ankle origin and the body's (lateral, front, long) axes of a standing pose (17, 3)."""
  ankles = 0.5 * (pose[J["left_ankle"]] + pose[J["right_ankle"]])
  long, lateral, front = (a[0] for a in kinematics.body_axes(pose[None]))
  return ankles, np.stack([lateral, front, long])


def _arm(shoulder, wrist, upper, fore, bend_dir):
  """Elbow of a two-bone arm from ``shoulder`` to ``wrist`` bending towards ``bend_dir``."""
  d = np.linalg.norm(wrist - shoulder)
  d = min(d, upper + fore - 1e-6)
  axis = (wrist - shoulder) / max(d, 1e-9)
  n = bend_dir - (bend_dir @ axis) * axis
  n /= max(np.linalg.norm(n), 1e-9)
  cos_a = np.clip((upper**2 + d**2 - fore**2) / (2 * upper * d), -1, 1)
  return shoulder + upper * (cos_a * axis + np.sqrt(1 - cos_a**2) * n)


def press_composite(
  pose: np.ndarray, elbow_deg: np.ndarray, posture: str = "prone", flare_deg: float = 45.0, hip_shift_mm=0.0
) -> np.ndarray:
  """A push-up (``prone``: hands on the floor under the shoulders, body straight from the
  ankles) or a bench press (``supine``: shoulders on the bench, hands above them, knees bent with
  the feet on the floor) of the real body ``pose`` (a standing frame, mm), with the elbows at
  ``elbow_deg`` (T,) degrees in every frame and the upper arms ``flare_deg`` out from the trunk.

  ``hip_shift_mm`` (scalar or (T,)) moves the pelvis and hips towards the floor (positive: hips
  sagging) or away (negative: piked), the spine and knees half as far: a push-up fault.

  Returns:
    (T, 17, 3) millimetres, Z up, the floor at the ankles' height.
  """
  pose = np.asarray(pose, np.float64)
  origin, axes = _body_frame(pose)
  local = (pose - origin) @ axes.T  # (17, 3): lateral, front, long
  sides = {s: (J[f"{s}_shoulder"], J[f"{s}_elbow"], J[f"{s}_wrist"]) for s in ("left", "right")}
  upper = {s: np.linalg.norm(pose[e] - pose[sh]) for s, (sh, e, w) in sides.items()}
  fore = {s: np.linalg.norm(pose[w] - pose[e]) for s, (sh, e, w) in sides.items()}
  elbow_deg = np.asarray(elbow_deg, np.float64)
  shift = np.broadcast_to(np.asarray(hip_shift_mm, np.float64), elbow_deg.shape)
  rad = np.radians(elbow_deg)
  out = np.zeros((len(elbow_deg), 17, 3))
  long_len = local[[J["left_shoulder"], J["right_shoulder"]], 2].mean()
  for t in range(len(elbow_deg)):
    reach = {
      s: np.sqrt(upper[s] ** 2 + fore[s] ** 2 - 2 * upper[s] * fore[s] * np.cos(rad[t])) for s in sides
    }
    h = 0.5 * (reach["left"] + reach["right"])
    body = local.copy()
    if posture == "prone":
      # Pitched about the ankles until the shoulders are ``h`` above the hands on the floor;
      # the front (belly) faces down.
      pitch = np.arcsin(np.clip(h / long_len, -1, 1))
      along = np.array([np.cos(pitch), 0.0, np.sin(pitch)])  # body long axis in the world
      belly = np.array([np.sin(pitch), 0.0, -np.cos(pitch)])
    else:
      along = np.array([1.0, 0.0, 0.0])
      belly = np.array([0.0, 0.0, 1.0])
      # Knees bent 90 degrees over the bench's end, feet on the floor.
      for s in ("left", "right"):
        hip, knee, ankle = J[f"{s}_hip"], J[f"{s}_knee"], J[f"{s}_ankle"]
        thigh = np.linalg.norm(local[knee] - local[hip])
        shin = np.linalg.norm(local[ankle] - local[knee])
        body[knee] = body[hip] - np.array([0.0, 0.0, thigh])
        body[ankle] = body[knee] + np.array([0.0, -shin, 0.0])
    lateral = np.array([0.0, 1.0, 0.0])
    world = body[:, :1] * lateral + body[:, 1:2] * belly + body[:, 2:3] * along
    if posture != "prone":
      world = world + np.array([0.0, 0.0, 450.0])  # on a bench
    floor_normal = np.array([0.0, 0.0, 1.0])
    for joint, k in (
      ("pelvis", 1.0),
      ("left_hip", 1.0),
      ("right_hip", 1.0),
      ("spine", 0.5),
      ("left_knee", 0.5),
      ("right_knee", 0.5),
    ):
      world[J[joint]] -= k * shift[t] * floor_normal
    for s, (sh, e, w) in sides.items():
      shoulder = world[sh]
      if posture == "prone":
        wrist = shoulder - h * floor_normal
        bend = (
          -along * np.cos(np.radians(flare_deg))
          + (shoulder - world[J["thorax"]])
          / max(np.linalg.norm(shoulder - world[J["thorax"]]), 1e-9)
          * np.sin(np.radians(flare_deg))
          + 0.3 * floor_normal
        )
      else:
        wrist = shoulder + reach[s] * floor_normal
        bend = (
          -along * np.cos(np.radians(flare_deg))
          + (shoulder - world[J["thorax"]])
          / max(np.linalg.norm(shoulder - world[J["thorax"]]), 1e-9)
          * np.sin(np.radians(flare_deg))
          - 0.3 * floor_normal
        )
      world[w] = wrist
      world[e] = _arm(shoulder, wrist, upper[s], fore[s], bend)
    out[t] = world
  return out


def straight_frame(joints: np.ndarray) -> int:
  """The frame of a take where the body is straightest: hips on the shoulder-ankle line and
  knees straight (a real standing pose to lay down as a plank)."""
  angles = kinematics.joint_angles(joints, UP)
  knees = 360.0 - angles["knee_left"] - angles["knee_right"]
  return int(np.argmin(np.abs(kinematics.body_line(joints)) + 0.5 * knees))


def elbow_course(progress: np.ndarray, top: float = 175.0, bottom: float = 80.0) -> np.ndarray:
  """Elbow angles following a real repetition's progress (0 at rest, 1 at the turning point)."""
  return top - (top - bottom) * np.clip(progress, 0.0, 1.2)


def rep_progress(joints: np.ndarray, kind: str = "legs") -> np.ndarray:
  """A real take's repetitions as progress: its own signal (:func:`.reps.exercise_signal`) with
  the rest at 0 and the typical turning point at 1."""
  s = exercise_signal(joints, kind)
  lo, hi = np.percentile(s, 5), np.percentile(s, 97)
  return (s - lo) / max(hi - lo, 1e-9)


# ----------------------------------------------------------------------------- faults

FAULTS = ("knees_in", "trunk_forward", "cut_bottom", "back_round")


def _rotate_about(points: np.ndarray, centre: np.ndarray, axis: np.ndarray, deg: float) -> np.ndarray:
  """Rodrigues rotation of points (N, 3) about ``axis`` through ``centre`` by ``deg``."""
  k = axis / max(np.linalg.norm(axis), 1e-12)
  th = np.radians(deg)
  v = points - centre
  return centre + v * np.cos(th) + np.cross(k, v) * np.sin(th) + np.outer(v @ k, k) * (1 - np.cos(th))


_UPPER = [
  J[n]
  for n in (
    "thorax",
    "nose",
    "head",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
  )
]


def inject_fault(joints: np.ndarray, reps, fault: str, size: float, kind: str = "legs") -> np.ndarray:
  """A form fault put into the repetitions ``reps`` (``(start, end)`` frames) of a real take,
  growing with each repetition's progress (0 standing, 1 at the bottom) so it is largest at the
  bottom and absent at rest; frames outside ``reps`` are untouched.

  - ``knees_in``: both knees moved towards the midline by ``size`` thigh lengths at the bottom
    (knee valgus);
  - ``trunk_forward``: everything above the pelvis rotated forward about the hips by ``size``
    degrees at the bottom;
  - ``cut_bottom``: the deepest ``size`` (fraction) of each repetition cut off: past that depth
    the pose where the repetition reached it is held (a shallower squat with a pause);
  - ``back_round``: the thorax and everything above it rotated forward about the spine joint by
    ``size`` degrees at the bottom (a rounded back).
  """
  if fault not in FAULTS:
    raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
  x = np.asarray(joints, np.float64).copy()
  prog = np.clip(rep_progress(x, kind), 0.0, 1.0)
  _, lateral, _ = kinematics.body_axes(x)
  thigh = 0.5 * (
    kinematics.segment_length(x, J["left_hip"], J["left_knee"])
    + kinematics.segment_length(x, J["right_hip"], J["right_knee"])
  )
  for start, end in reps:
    for t in range(start, end + 1):
      w = prog[t]
      if fault == "knees_in":
        for knee, side in ((J["left_knee"], 1.0), (J["right_knee"], -1.0)):
          x[t, knee] -= side * lateral[t] * size * thigh * w
      elif fault in ("trunk_forward", "back_round"):
        # Rotating about the lateral axis by a positive angle tips the long axis to the front.
        centre = x[t, J["pelvis"]] if fault == "trunk_forward" else x[t, J["spine"]]
        moved = _UPPER + ([J["spine"]] if fault == "trunk_forward" else [])
        x[t, moved] = _rotate_about(x[t, moved], centre, lateral[t], size * w)
    if fault == "cut_bottom":
      over = [t for t in range(start, end + 1) if prog[t] > 1.0 - size]
      if over:
        held = x[over[0]].copy()
        x[over] = held
  return x
