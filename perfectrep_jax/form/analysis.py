"""What a form analysis found (:class:`Analysis`), shared by the analysis, its report and plots."""

from __future__ import annotations

import dataclasses

import numpy as np

from perfectrep_jax.form import reps, rules


@dataclasses.dataclass(frozen=True)
class Analysis:
  """Everything the analysis found; :func:`perfectrep_jax.form.report.to_json` lays it out.

  Attributes:
    exercise: the rules used ('squat', ..., 'generic').
    exercise_source: 'given', 'classifier' or 'recognised' (from the motion by
      :func:`perfectrep_jax.form.recognise.recognise`, with ``exercise_confidence``).
    requested_exercise: the name given or classified, before resolving aliases.
    fps: frames per second.
    num_frames: T.
    up: (3,) the vertical used, in the input's frame.
    up_source: 'given' or 'estimated (<posture>)'.
    signals: name -> (T,) per-frame angles and depth figures.
    segmentation: the repetitions.
    figures: per repetition, name -> value.
    angle_ranges: per repetition, angle -> min/max/rom.
    main_angle: the angle that moves most over the set.
    assessment: score, per-repetition scores and feedback.
  """

  exercise: str
  exercise_source: str
  requested_exercise: str | None
  fps: float
  num_frames: int
  up: np.ndarray
  up_source: str
  signals: dict[str, np.ndarray]
  segmentation: reps.Segmentation
  figures: list[dict]
  angle_ranges: list[dict]
  main_angle: str | None
  assessment: rules.Assessment
  exercise_confidence: float | None = None  # when recognised from the motion (0-1)
  recognition_scores: dict | None = None  # every exercise's score, when recognised
  not_judged: tuple = ()  # (rule id, why) the input could not support
