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
- a recording that starts inside a repetition counts it; one that ends after a turning point counts
  the last one as ``partial`` in :meth:`OnlineRepCounter.finish`, as the offline segmentation counts
  every turning point inside the recording.

Delay: a repetition is reported once the smoothed signal is back near the rest level: about
``smooth_s / 2`` after the person has returned two thirds of the way to the rest pose.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from perfectrep_jax.form import kinematics


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
      smooth_s: causal moving-average window in seconds.
      span_s: the rest and turning levels are percentiles of the last ``span_s`` seconds.
      start_frac, return_frac: the hysteresis thresholds, as fractions of ``hi - lo`` above ``lo``.
      min_range_deg: no repetition starts while ``hi - lo`` is smaller (degrees of flexion).
      min_period_s: a repetition shorter than this (from its valley to its completion) is ignored.
    """

    def __init__(self, fps: float, *, smooth_s: float = 0.1, span_s: float = 3.0,
                 start_frac: float = 0.4, return_frac: float = 0.25, min_range_deg: float = 40.0,
                 min_period_s: float = 0.4):
        self.fps = float(fps)
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
        return len(self.reps)

    def update(self, frame: int, joints: np.ndarray) -> OnlineRep | None:
        """Feeds one pose (17, 3) of frame number ``frame``.

        Returns:
          the repetition that completed with this pose, or ``None``.
        """
        return self.update_signal(frame, float(kinematics.flexion(np.asarray(joints, np.float64)[None])[0]))

    def update_signal(self, frame: int, value: float) -> OnlineRep | None:
        """Feeds one frame's flexion (degrees) directly: what :meth:`update` computes from a pose
        (:func:`perfectrep_jax.form.kinematics.flexion` of a whole motion gives them all at once).

        Returns:
          the repetition that completed with this frame, or ``None``.
        """
        if not np.isfinite(value):
            return None
        self._smooth.append(value)
        s = float(np.mean(self._smooth))
        self._recent.append(s)
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
            if frame - self._valley_frame >= self.min_frames:
                rep = self._count(self._valley_frame, self._peak_frame, frame,
                                  self._peak - min(self._valley, s), False)
            self._moving = False
            self._valley, self._valley_frame = s, frame
            return rep
        return None

    def _count(self, start: int, turn: int, end: int, amplitude: float, partial: bool) -> OnlineRep:
        rep = OnlineRep(len(self.reps) + 1, int(start), int(turn), int(end), round(float(amplitude), 2),
                        partial)
        self.reps.append(rep)
        return rep

    def interrupt(self) -> None:
        """The person left the view: a repetition in progress is dropped; the count stays."""
        self._smooth.clear()
        self._recent.clear()
        self._reset_phase()

    def finish(self) -> OnlineRep | None:
        """The stream ended: a repetition whose turning point was passed (the signal has fallen from
        its peak by a quarter of ``hi - lo``) is counted as partial.

        Returns:
          that repetition, or ``None``.
        """
        rep = None
        if self._moving and self._peak - self._last >= 0.25 * self._range:
            rep = self._count(self._valley_frame, self._peak_frame, self._last_frame,
                              self._peak - self._valley, True)
        self._reset_phase()
        return rep
