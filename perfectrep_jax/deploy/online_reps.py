"""Repetitions counted online, one 3D pose at a time, as each repetition completes.

The offline segmentation (:mod:`perfectrep_jax.form.reps`) needs the whole recording: its period,
rest and turning-point poses come from all of it. A live stream needs a decision as soon as a
repetition ends, so this counter follows one scalar signal with hysteresis:

- signal: the body's flexion (:func:`perfectrep_jax.form.kinematics.flexion`: knee, hip and elbow
  bend plus shoulder elevation, degrees summed over both sides). It needs no vertical and does not
  change with the camera, the unit or the person's size; it rises to one maximum per repetition for
  squats, lunges, sit-to-stand (the turning point is the bottom or the seat) and raises (the arm up),
  like the offline segmentation's progress from the rest to the turning-point pose.
- smoothing: a causal moving average over ``smooth_s`` seconds.
- adaptive hysteresis (a Schmitt trigger): over the last ``span_s`` seconds the signal's 10th and
  90th percentiles give its rest and turning levels ``lo`` and ``hi``; a repetition starts when the
  signal rises above ``lo + start_frac * (hi - lo)`` and completes when it falls back below
  ``lo + return_frac * (hi - lo)``. Percentiles over a few seconds ignore a short glitch or an odd
  pose before the first repetition, which a plain running minimum would keep for ever. Nothing
  starts while ``hi - lo`` is under ``min_range_deg`` (a person standing still, or jitter).
- with an exercise's own signal (``signal="legs"`` for a squat, ``"elbows"`` for a push-up or
  bench press, ``"hinge"`` for a deadlift: :func:`perfectrep_jax.form.reps.exercise_signal`), as the
  offline segmentation follows it: walking, stretching or re-racking between sets hardly moves it.
- not a repetition: once repetitions have been counted, a rise smaller than ``keep_frac`` of
  their typical (median) amplitude is movement between repetitions, not one; it is dropped.
- partial repetitions: a recording that starts inside a repetition (its first frames already well
  above the rest level) and one that ends after a turning point (in
  :meth:`OnlineRepCounter.finish`) say that repetition with ``partial`` set and do not count it,
  as the offline segmentation does (:attr:`perfectrep_jax.form.reps.Segmentation.count`).

Delay: a repetition is reported once the smoothed signal is back near the rest level: about
``smooth_s / 2`` after the person has returned two thirds of the way to the rest pose.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from perfectrep_jax.form import kinematics, reps


@dataclasses.dataclass(frozen=True)
class OnlineRep:
  """A counted repetition: ``start`` (its valley), ``turn`` (its peak) and ``end`` frame numbers."""

  count: int
  start: int
  turn: int
  end: int
  amplitude_deg: float
  partial: bool = False

  def to_json(self) -> dict:
    return {"event": "rep", **dataclasses.asdict(self)}


class OnlineRepCounter:
  """Counts repetitions from poses fed one at a time.

  Args:
    fps: frames per second of the poses.
    signal: the exercise's own repetition signal (one of
      :data:`perfectrep_jax.form.reps.SIGNALS`), or ``None`` for the whole body's flexion.
    keep_frac: a rise below this fraction of the counted repetitions' median amplitude is not one
      (default 0.55 on an exercise's signal, 0.35 on the whole body's flexion).
    smooth_s: causal moving-average window in seconds.
    span_s: the rest and turning levels are percentiles of the last ``span_s`` seconds.
    start_frac, return_frac: the hysteresis thresholds, as fractions of ``hi - lo`` above ``lo``.
    min_range_deg: no repetition starts while ``hi - lo`` is smaller (degrees of flexion).
    min_period_s: a repetition shorter than this (from its valley to its completion) is ignored.
  """

  def __init__(
    self,
    fps: float,
    *,
    signal: str | None = None,
    keep_frac: float | None = None,
    smooth_s: float = 0.1,
    span_s: float = 3.0,
    start_frac: float = 0.4,
    return_frac: float = 0.25,
    min_range_deg: float | None = None,
    min_period_s: float = 0.4,
  ):
    if signal is not None and signal not in reps.SIGNALS:
      raise ValueError(f"unknown repetition signal {signal!r}; one of {', '.join(reps.SIGNALS)}")
    self.fps = float(fps)
    self.signal = signal
    # The whole body's flexion also moves with the arms, so a shallow squat is a smaller
    # share of it than on the legs' own signal.
    self.keep_frac = (0.35 if signal is None else 0.55) if keep_frac is None else keep_frac
    if min_range_deg is None:
      min_range_deg = 40.0 if signal is None else reps.MIN_RISE_DEG[signal]
    self._first = None  # the stream's first smoothed value (was it already inside a repetition?)
    self.start_frac, self.return_frac = start_frac, return_frac
    self.min_range_deg = min_range_deg
    self.min_frames = max(1, int(round(min_period_s * fps)))
    self._smooth = collections.deque(maxlen=max(1, int(round(smooth_s * fps))))
    self._recent = collections.deque(maxlen=max(2, int(round(span_s * fps))))
    self.reps: list[OnlineRep] = []
    self._reset_phase()

  def _reset_phase(self) -> None:
    self._moving = False
    self._valley = self._valley_frame = None
    self._peak = self._peak_frame = None
    self._last = self._last_frame = None
    self._range = 0.0

  @property
  def count(self) -> int:
    """Whole repetitions counted (partial ones are said, not counted)."""
    return sum(1 for r in self.reps if not r.partial)

  def update(self, frame: int, joints: np.ndarray) -> OnlineRep | None:
    """Feeds one pose (17, 3) of frame number ``frame``.

    Returns:
      the repetition that completed with this pose, or ``None``.
    """
    pose = np.asarray(joints, np.float64)[None]
    value = kinematics.flexion(pose) if self.signal is None else reps.exercise_signal(pose, self.signal)
    return self.update_signal(frame, float(value[0]))

  def update_signal(self, frame: int, value: float) -> OnlineRep | None:
    """Feeds one frame's flexion (degrees) directly: what :meth:`update` computes from a pose
    (:func:`perfectrep_jax.form.kinematics.flexion`, or the exercise's
    :func:`perfectrep_jax.form.reps.exercise_signal`, of a whole motion gives them all at once).

    Returns:
      the repetition that completed with this frame, or ``None``.
    """
    if not np.isfinite(value):
      return None
    self._smooth.append(value)
    s = float(np.mean(self._smooth))
    self._recent.append(s)
    if self._first is None:
      self._first = (s, frame)
      self._head = (s, frame)  # highest value before the first repetition starts
    elif not self.reps and not self._moving and s > self._head[0]:
      self._head = (s, frame)
    self._last, self._last_frame = s, frame
    lo, hi = np.percentile(np.asarray(self._recent), (10.0, 90.0))
    self._range = float(hi - lo)
    if not self._moving:
      if self._valley is None or s < self._valley:
        self._valley, self._valley_frame = s, frame
      if self._range >= self.min_range_deg and s > lo + self.start_frac * self._range:
        self._moving = True
        self._peak, self._peak_frame = s, frame
      return None
    if s > self._peak:
      self._peak, self._peak_frame = s, frame
    if s < lo + self.return_frac * self._range:
      rep = None
      amplitude = self._peak - min(self._valley, s)
      if frame - self._valley_frame >= self.min_frames and amplitude >= self._keep_level():
        # Started inside a repetition: the stream's first value is well above where this
        # repetition came back to, and nothing lower came before its turning point.
        partial = self._valley_frame == self._first[1] and self._first[0] > s + self.return_frac * amplitude
        if not self.reps and not partial:
          self._head_partial(amplitude)
        rep = self._count(self._valley_frame, self._peak_frame, frame, amplitude, partial)
      self._moving = False
      self._valley, self._valley_frame = s, frame
      return rep
    return None

  def _head_partial(self, amplitude: float) -> None:
    """Before the first whole repetition: did the stream start inside one (too little of it
    seen to start the trigger: it still rose to a turning point after the first frame) and
    come down from it to this repetition's rest? Then that one is said as partial (recorded
    in :attr:`reps`, not counted)."""
    top, turn = self._head
    if (
      top - self._valley >= 0.5 * amplitude
      and self._first[0] - self._valley >= 0.25 * amplitude
      and self._first[1] < turn < self._valley_frame
    ):
      self._count(self._first[1], turn, self._valley_frame, top - self._valley, True)

  def _keep_level(self) -> float:
    """The smallest amplitude that is a repetition: ``keep_frac`` of the median of the whole
    repetitions counted so far (none yet: no limit)."""
    done = [r.amplitude_deg for r in self.reps if not r.partial][-10:]
    return self.keep_frac * float(np.median(done)) if done else 0.0

  def _count(self, start: int, turn: int, end: int, amplitude: float, partial: bool) -> OnlineRep:
    rep = OnlineRep(
      self.count + (0 if partial else 1), int(start), int(turn), int(end), round(float(amplitude), 2), partial
    )
    self.reps.append(rep)
    return rep

  def interrupt(self) -> None:
    """The person left the view: a repetition in progress is dropped; the count stays."""
    self._smooth.clear()
    self._recent.clear()
    self._reset_phase()

  def finish(self) -> OnlineRep | None:
    """The stream ended inside a repetition (one that rose as far as a repetition does and
    had not come back within a third of the way to its rest): it is said as partial, not
    counted; one that had is counted whole.

    Returns:
      that repetition, or ``None``.
    """
    rep = None
    amplitude = self._peak - self._valley if self._moving else 0.0
    # Back within a third of the way to its rest: the ascent is as good as complete.
    if self._moving and amplitude >= max(self._keep_level(), self.min_range_deg):
      rep = self._count(
        self._valley_frame,
        self._peak_frame,
        self._last_frame,
        amplitude,
        self._last - self._valley > amplitude / 3.0,
      )
    self._reset_phase()
    return rep
