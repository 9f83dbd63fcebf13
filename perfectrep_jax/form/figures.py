"""Per-repetition figures: angles, depth, range of motion, tempo and left/right symmetry.

Every figure is a plain float (or ``None`` when the recording cut the phase it needs) under a
flat name that the rules refer to; :data:`FIGURES` says what each one means and its unit.
"""

from __future__ import annotations

import numpy as np

from perfectrep_jax.form.kinematics import ANGLE_NAMES
from perfectrep_jax.form.reps import Repetition

# name -> (plain-language meaning, unit)
FIGURES: dict[str, tuple[str, str]] = {
  "hip_depth_max": ("lowest hip position relative to the knees (positive: below parallel)", "thigh lengths"),
  "pelvis_drop": ("how far the pelvis went down from standing", "leg lengths"),
  "knee_angle_min": ("smallest knee angle, both knees averaged (180 = straight)", "deg"),
  "front_knee_angle_min": ("smallest angle of the more bent knee", "deg"),
  "knee_angle_max": ("largest knee angle, both knees averaged", "deg"),
  "hip_angle_min": ("smallest trunk-thigh angle, both sides averaged (180 = straight)", "deg"),
  "hip_angle_max": ("largest trunk-thigh angle, both sides averaged", "deg"),
  "elbow_angle_min": ("smallest elbow angle, both arms averaged (180 = straight)", "deg"),
  "elbow_angle_max": ("largest elbow angle, both arms averaged", "deg"),
  "shoulder_elevation_max": ("highest upper-arm elevation from the trunk, both arms averaged", "deg"),
  "trunk_lean_max": ("largest forward or sideways lean of the trunk from vertical", "deg"),
  "knee_width_ratio_bottom": (
    "knee distance over ankle distance at the deepest knee bend (<1: knees in)",
    "ratio",
  ),
  "ankle_width_max": ("widest stance: ankle distance over hip width", "ratio"),
  "knee_asymmetry": ("mean left/right difference of the knee angles", "deg"),
  "hip_asymmetry": ("mean left/right difference of the hip angles", "deg"),
  "elbow_asymmetry": ("mean left/right difference of the elbow angles", "deg"),
  "shoulder_asymmetry": ("mean left/right difference of the shoulder elevations", "deg"),
  "knee_valgus_bottom": (
    "knees caving in at the deepest knee bend: the more caved knee's distance medial of its ankle (positive: in)",
    "thigh lengths",
  ),
  "body_sag_max": ("largest sag of the hips below the shoulder-ankle line (towards the belly)", "deg"),
  "body_pike_max": ("largest pike of the hips above the shoulder-ankle line (towards the back)", "deg"),
  "elbow_flare_bottom": (
    "upper arms' angle out from the trunk at the deepest elbow bend (90 = straight out)",
    "deg",
  ),
  "spine_flexion_max": ("largest forward rounding of the back at the spine joint", "deg"),
  "bar_offset_max": (
    "largest horizontal distance of the hands (the bar) from over the mid-foot",
    "thigh lengths",
  ),
  "eccentric_s": ("time from the start to the turning point (lowering phase)", "s"),
  "hold_s": ("time held at the turning point", "s"),
  "concentric_s": ("time from the turning point back to the end (lifting phase)", "s"),
  "duration_s": ("duration of the repetition", "s"),
  "rom_ratio": (
    "range of motion relative to the set's typical repetition (median over the joints that move most)",
    "ratio",
  ),
}


def _mean2(signals: dict[str, np.ndarray], joint: str) -> np.ndarray:
  return 0.5 * (signals[f"{joint}_left"] + signals[f"{joint}_right"])


def rep_figures(
  signals: dict[str, np.ndarray], rep: Repetition, fps: float, num_frames: int, widths: dict[str, np.ndarray]
) -> dict[str, float | None]:
  """The figures of one repetition.

  Args:
    signals: name -> (T,) from :func:`perfectrep_jax.form.kinematics.signals`.
    rep: the repetition.
    fps: frames per second.
    num_frames: T, to tell which side a partial repetition was cut on.
    widths: ``ankle`` and ``hip`` -> (T,) horizontal ankle distance and hip width (same unit).
  Returns:
    name -> value for every name in :data:`FIGURES` but ``rom_ratio`` (a set-level figure, see
    :func:`add_set_figures`); tempo figures are ``None`` where the recording cut the phase.
  """
  s = slice(rep.start, rep.end + 1)
  knee = _mean2(signals, "knee")
  bottom = rep.start + int(np.argmin(knee[s]))
  cut_start = rep.partial and rep.start == 0
  cut_end = rep.partial and rep.end == num_frames - 1
  standing = float(np.quantile(signals["pelvis_height"], 0.9))
  out: dict[str, float | None] = {
    "hip_depth_max": float(np.max(signals["hip_depth"][s])),
    "pelvis_drop": standing - float(np.min(signals["pelvis_height"][s])),
    "knee_angle_min": float(np.min(knee[s])),
    "front_knee_angle_min": float(min(np.min(signals["knee_left"][s]), np.min(signals["knee_right"][s]))),
    "knee_angle_max": float(np.max(knee[s])),
    "hip_angle_min": float(np.min(_mean2(signals, "hip")[s])),
    "hip_angle_max": float(np.max(_mean2(signals, "hip")[s])),
    "elbow_angle_min": float(np.min(_mean2(signals, "elbow")[s])),
    "elbow_angle_max": float(np.max(_mean2(signals, "elbow")[s])),
    "shoulder_elevation_max": float(np.max(_mean2(signals, "shoulder")[s])),
    "trunk_lean_max": float(np.max(signals["trunk"][s])),
    "knee_width_ratio_bottom": float(signals["knee_width_ratio"][bottom]),
    "ankle_width_max": float(np.max(widths["ankle"][s] / np.maximum(widths["hip"][s], 1e-9))),
  }
  elbow_bottom = rep.start + int(np.argmin(_mean2(signals, "elbow")[s]))
  out["knee_valgus_bottom"] = float(
    max(signals["knee_valgus_left"][bottom], signals["knee_valgus_right"][bottom])
  )
  out["body_sag_max"] = float(max(0.0, np.max(signals["body_line"][s])))
  out["body_pike_max"] = float(max(0.0, np.max(-signals["body_line"][s])))
  out["elbow_flare_bottom"] = float(_mean2(signals, "elbow_flare")[elbow_bottom])
  out["spine_flexion_max"] = float(np.max(signals["spine_flexion"][s]))
  out["bar_offset_max"] = float(np.max(signals["bar_offset"][s]))
  for joint in ("knee", "hip", "elbow", "shoulder"):
    out[f"{joint}_asymmetry"] = float(
      np.mean(np.abs(signals[f"{joint}_left"][s] - signals[f"{joint}_right"][s]))
    )
  out["eccentric_s"] = None if cut_start else (rep.hold_start - rep.start) / fps
  out["hold_s"] = (rep.hold_end - rep.hold_start) / fps
  out["concentric_s"] = None if cut_end else (rep.end - rep.hold_end) / fps
  out["duration_s"] = None if rep.partial else (rep.end - rep.start) / fps
  return out


def angle_ranges(signals: dict[str, np.ndarray], rep: Repetition) -> dict[str, dict[str, float]]:
  """Min, max and range of motion (max - min) of every joint angle in one repetition (degrees)."""
  s = slice(rep.start, rep.end + 1)
  out = {}
  for name in ANGLE_NAMES:
    lo, hi = float(np.min(signals[name][s])), float(np.max(signals[name][s]))
    out[name] = {"min": lo, "max": hi, "rom": hi - lo}
  return out


def main_angle(ranges: list[dict[str, dict[str, float]]]) -> str | None:
  """The angle that moves most over the set (largest median range of motion), or None."""
  if not ranges:
    return None
  return max(ANGLE_NAMES, key=lambda a: float(np.median([r[a]["rom"] for r in ranges])))


# An angle moves with the set's main one when its typical range of motion is at least this share
# of the main angle's: a squat's knees and hips, a hop's legs and swinging arms.
MOVING_SHARE = 0.5


def moving_angles(ranges: list[dict[str, dict[str, float]]]) -> dict[str, float]:
  """The angles that carry the set's movement: angle -> its typical (median) range of motion, for
  every angle whose typical range is at least :data:`MOVING_SHARE` of the largest's."""
  if not ranges:
    return {}
  typical = {a: float(np.median([r[a]["rom"] for r in ranges])) for a in ANGLE_NAMES}
  top = max(typical.values())
  return {a: t for a, t in typical.items() if t >= MOVING_SHARE * top and t > 0.0}


def add_set_figures(figures: list[dict], ranges: list[dict[str, dict[str, float]]]) -> str | None:
  """Adds ``rom_ratio`` to every repetition's figures, in place.

  ``rom_ratio`` is how much of the set's typical range of motion the repetition covered (1
  typical, 0.5 a half repetition): for every angle that carries the movement
  (:func:`moving_angles`), the repetition's range over the set's median, and the median of those
  ratios. A half squat halves every one of them; one angle that alone covers less (an arm swung
  less in one hop, or one joint badly seen) does not make a repetition short.

  Returns:
    the main angle's name (None without repetitions).
  """
  angle = main_angle(ranges)
  if angle is None:
    return None
  moving = moving_angles(ranges) or {angle: 1.0}
  for fig, rng in zip(figures, ranges):
    fig["rom_ratio"] = float(np.median([rng[a]["rom"] / typical for a, typical in moving.items()]))
  return angle
