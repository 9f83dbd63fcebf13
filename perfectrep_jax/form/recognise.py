"""Which exercise a motion is, from the motion alone, with a confidence.

A rule over a few figures that do not depend on the view, the unit or the person's size (how far
each exercise's own signal rises, :func:`perfectrep_jax.form.reps.exercise_signal`, and the knee,
elbow and shoulder angles it happens at), so it works on any 3D source (motion capture, the
lifter, MediaPipe world landmarks) without a trained model:

- squat: hips and both knees bend far (the knees more than 50-80 degrees);
- deadlift: the hips hinge far while the knees bend less than that;
- lunge: the legs bend with the two sides far apart (one thigh forward, one back);
- push-up: the elbows bend and straighten with the legs straight and still;
- bench press: the elbows bend and straighten with the knees bent and still (feet on the floor);
- plank: nothing moves, legs straight, both upper arms out at 50-115 degrees from the trunk
  (standing still has them hanging; nothing but this tells a plank from standing when the
  vertical is unknown);
- jumping jack: both arms swing up and down;
- anything else: generic (counted on the whole pose, judged on consistency only).

Each gets a score in [0, 1] (a product of ramps, :func:`_ramp`); the confidence is the winner's
share of all scores.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from perfectrep_jax.form import kinematics, reps


@dataclasses.dataclass(frozen=True)
class Recognition:
  """The recognised exercise (a rules table name), its confidence (0-1) and every score."""

  exercise: str
  confidence: float
  scores: dict[str, float]
  features: dict[str, float]


def _ramp(x: float, lo: float, hi: float) -> float:
  """0 below ``lo``, 1 above ``hi``, linear in between (``lo > hi`` ramps down)."""
  return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def _rise(x: np.ndarray) -> float:
  return float(np.percentile(x, 95) - np.percentile(x, 5))


def features(joints: np.ndarray) -> dict[str, float]:
  """The figures the rule looks at, all in degrees."""
  joints = np.asarray(joints, np.float64)
  angles = kinematics.joint_angles(joints, np.array([0.0, 0.0, 1.0]))  # trunk unused
  legs = reps.exercise_signal(joints, "legs")
  hinge = reps.exercise_signal(joints, "hinge")
  elbows = reps.exercise_signal(joints, "elbows")
  knee = 0.5 * (angles["knee_left"] + angles["knee_right"])
  bottom = int(np.argmax(hinge))
  deep = hinge >= np.percentile(hinge, 90)
  return {
    "legs_rise": _rise(legs),
    "hinge_rise": _rise(hinge),
    "elbow_rise": _rise(elbows),
    "knee_bend_bottom": float(180.0 - np.median(knee[deep])) if deep.any() else float(180.0 - knee[bottom]),
    "knee_median": float(np.median(knee)),
    "knee_rise": max(_rise(angles["knee_left"]), _rise(angles["knee_right"])),
    "sides_apart": float(np.percentile(np.abs(angles["hip_left"] - angles["hip_right"]), 90)),
    "arm_rise": float(min(_rise(angles["shoulder_left"]), _rise(angles["shoulder_right"]))),
    "arm_median": float(min(np.median(angles["shoulder_left"]), np.median(angles["shoulder_right"]))),
    "body_line": float(np.median(np.abs(kinematics.body_line(joints)))),
  }


def recognise(joints: np.ndarray) -> Recognition:
  """The exercise of a (T, 17, 3) motion, with its confidence (see the module docstring)."""
  f = features(joints)
  still = 1.0 - _ramp(max(f["legs_rise"], f["hinge_rise"], f["elbow_rise"]), 15.0, 30.0)
  legs_still = (1.0 - _ramp(f["legs_rise"], 20.0, 40.0)) * (1.0 - _ramp(f["knee_rise"], 15.0, 30.0))
  legs_straight = _ramp(f["knee_median"], 140.0, 160.0)
  scores = {
    "squat": _ramp(f["legs_rise"], 30.0, 60.0)
    * _ramp(f["knee_bend_bottom"], 50.0, 80.0)
    * (1.0 - _ramp(f["sides_apart"], 30.0, 50.0)),
    "deadlift": _ramp(f["hinge_rise"], 30.0, 60.0)
    * (1.0 - _ramp(f["knee_bend_bottom"], 50.0, 80.0))
    * (1.0 - _ramp(f["sides_apart"], 30.0, 50.0))
    * legs_straight,
    "lunge": _ramp(f["hinge_rise"], 20.0, 40.0) * _ramp(f["sides_apart"], 30.0, 50.0),
    "push_up": _ramp(f["elbow_rise"], 25.0, 50.0) * legs_straight * legs_still,
    "bench_press": _ramp(f["elbow_rise"], 25.0, 50.0) * (1.0 - legs_straight) * legs_still,
    "plank": still
    * _ramp(f["knee_median"], 150.0, 165.0)
    * _ramp(f["arm_median"], 35.0, 50.0)
    * (1.0 - _ramp(f["arm_median"], 115.0, 130.0)),
    "jumping_jack": _ramp(f["arm_rise"], 60.0, 100.0) * (1.0 - _ramp(f["elbow_rise"], 40.0, 70.0)),
  }
  scores["generic"] = 0.25 * (1.0 - max(scores.values()))
  total = sum(scores.values())
  best = max(scores, key=scores.get)
  return Recognition(
    best,
    float(scores[best] / total) if total > 0 else 0.0,
    {k: round(v, 3) for k, v in scores.items()},
    {k: round(v, 2) for k, v in f.items()},
  )
