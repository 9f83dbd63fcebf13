"""Form analysis of a 3D motion, end to end: vertical, signals, repetitions, figures, rules, report.

:func:`analyze` is what ``perfectrep-jax analyze`` calls; :func:`analyze_motion` does the same
without writing anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import load_json
from perfectrep_jax.form import figures as figs
from perfectrep_jax.form import kinematics, report, reps, rules
from perfectrep_jax.form.analysis import Analysis
from perfectrep_jax.form.recognise import recognise
from perfectrep_jax.skeleton import JOINT_INDEX as J, NUM_JOINTS

MIN_SECONDS = 1.0  # shorter motions cannot hold a repetition worth analysing

_AXES = {"x": 0, "y": 1, "z": 2}


def parse_up(up: str | np.ndarray | list | tuple | None) -> np.ndarray | None:
  """Reads a vertical: ``None``, an axis name with optional sign ('z', '-y', '+x') or 3 numbers
  ('0,0,1' or a sequence). Returns a unit (3,) vector or None.

  Raises:
    UserError: not one of those, or a zero vector.
  """
  if up is None:
    return None
  if isinstance(up, str):
    text = up.strip().lower()
    sign = -1.0 if text.startswith("-") else 1.0
    axis = text.lstrip("+-")
    if axis in _AXES:
      v = np.zeros(3)
      v[_AXES[axis]] = sign
      return v
    try:
      up = [float(p) for p in text.split(",")]
    except ValueError as e:
      raise UserError(f"--up {up!r}: give an axis (x, y, z, -y, ...) or three numbers 'a,b,c'") from e
  v = np.asarray(up, np.float64).ravel()
  if v.shape != (3,) or not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
    raise UserError(f"up vector {up!r}: need three finite numbers, not all zero")
  return v / np.linalg.norm(v)


def validate_joints(joints, fps: float, name: str = "input") -> np.ndarray:
  """Checks a motion and returns it as float64 (T, 17, 3).

  Raises:
    UserError: wrong shape, joint count or dimension, NaN or infinite values, too few frames,
      or a skeleton collapsed to a point; the message names ``name`` and the problem.
  """
  x = np.asarray(joints)
  if x.dtype == object or not np.issubdtype(x.dtype, np.number):
    raise UserError(f"{name}: expected numbers, got an array of {x.dtype}")
  if x.ndim != 3:
    raise UserError(f"{name}: expected joints of shape (frames, {NUM_JOINTS}, 3), got shape {x.shape}")
  if x.shape[1] != NUM_JOINTS:
    raise UserError(
      f"{name}: expected {NUM_JOINTS} Human3.6M joints per frame, got {x.shape[1]} (shape {x.shape})"
    )
  if x.shape[2] != 3:
    raise UserError(
      f"{name}: expected 3D joints (x, y, z), got {x.shape[2]} values per joint "
      f"(shape {x.shape}); 2D keypoints must be lifted first (perfectrep-jax infer)"
    )
  x = x.astype(np.float64)
  bad = ~np.isfinite(x)
  if bad.any():
    frames = np.nonzero(bad.any(axis=(1, 2)))[0]
    raise UserError(
      f"{name}: {len(frames)} frame(s) contain NaN or infinite coordinates (first: frame {frames[0]})"
    )
  if not fps or fps <= 0 or not np.isfinite(fps):
    raise UserError(f"{name}: frame rate must be positive, got {fps}")
  need = int(np.ceil(MIN_SECONDS * fps))
  if x.shape[0] < max(need, 3):
    raise UserError(
      f"{name}: {x.shape[0]} frame(s) is too short to find repetitions "
      f"(need at least {max(need, 3)} frames, {MIN_SECONDS:g} s at {fps:g} fps)"
    )
  if kinematics.body_scale(x) <= 0:
    raise UserError(f"{name}: every joint is at the same place; this is not a skeleton")
  return x


def _widths(x: np.ndarray, up: np.ndarray) -> dict[str, np.ndarray]:
  def horiz(v):
    return v - (v @ up)[:, None] * up

  return {
    "ankle": np.linalg.norm(horiz(x[:, J["left_ankle"]] - x[:, J["right_ankle"]]), axis=-1),
    "hip": np.linalg.norm(horiz(x[:, J["left_hip"]] - x[:, J["right_hip"]]), axis=-1),
  }


def _both(*joints: str) -> tuple[str, ...]:
  return tuple(f"{side}_{j}" for j in joints for side in ("left", "right"))


LEGS = _both("hip", "knee", "ankle")
ARMS = _both("shoulder", "elbow", "wrist")
TRUNK = ("pelvis", "thorax")
# The joints each figure is measured on: a figure is not judged in a repetition where one of them
# is hidden (confidence below MIN_CONFIDENCE) for most of it.
FIGURE_JOINTS: dict[str, tuple[str, ...]] = {
  "hip_depth_max": _both("hip", "knee"),
  "knee_valgus_bottom": LEGS,
  "knee_width_ratio_bottom": _both("knee", "ankle"),
  "trunk_lean_max": TRUNK,
  "knee_asymmetry": LEGS,
  "front_knee_angle_min": LEGS,
  "knee_angle_max": LEGS,
  "hip_angle_max": TRUNK + _both("knee"),
  "hip_asymmetry": TRUNK + _both("knee"),
  "elbow_angle_min": ARMS,
  "elbow_angle_max": ARMS,
  "elbow_asymmetry": ARMS,
  "elbow_flare_bottom": _both("shoulder", "elbow") + TRUNK,
  "body_sag_max": _both("shoulder", "ankle") + ("pelvis",),
  "body_pike_max": _both("shoulder", "ankle") + ("pelvis",),
  "spine_flexion_max": ("pelvis", "spine", "thorax"),
  "bar_offset_max": _both("wrist", "ankle"),
}
MIN_CONFIDENCE = 0.3
# Lifted 3D whose flip-augmentation passes disagree by more than this share of the body's height
# (``wild.lift.lift_sequence``) is not judged. A published lifter carries its own threshold, measured
# on the held-out takes (model.json "uncertainty", ``wild.agreement.uncertainty_calibration``); this
# is the one for lifters without it (the first default lifter's: joints beyond it erred about 2x).
MAX_UNCERTAINTY = 0.12
# A side view: the hips' left-right axis within this angle of the camera's viewing axis; a
# facing view (front, back or from above): beyond 90 degrees less this angle.
DEPTH_VIEW_DEG = 30.0
# The views a lifted figure's error is measured for (``wild.agreement.figure_errors``): what lies
# along the camera's depth, which 2D cannot see, differs between them (the knees' inward travel
# from the side, the trunk's forward tilt from the front or back).
VIEWS = ("side", "oblique", "facing")
# Figures a view cannot judge, the motion they measure lying along the camera's depth there:
# figure -> (view, what moves). From the front or back the default lifter's (twelfth cycle) trunk
# lean erred 4.2 degrees in the median on the held-out performers' squats and 12.5 at the 90th
# percentile (3.1 and 4.8 from the side), enough to turn a squat's trunk verdict either way.
DEPTH_BOUND_FIGURES = {
  "knee_valgus_bottom": ("side", "the knees' inward travel"),
  "trunk_lean_max": ("facing", "the trunk's forward lean"),
}
ANY_VIEW = "any"  # figure margins measured over every view: for an input whose camera is unknown


def camera_view(joints: np.ndarray, camera_axis: np.ndarray) -> tuple[str, float]:
  """Where the camera looked from: ``(view, angle)``, the angle in degrees between the hips'
  left-right axis and ``camera_axis`` (the camera's viewing direction in the joints' frame;
  median over the frames): 'side' within :data:`DEPTH_VIEW_DEG`, 'facing' beyond 90 less it,
  'oblique' between (:data:`VIEWS`)."""
  axis = np.asarray(camera_axis, np.float64)
  axis = axis / max(np.linalg.norm(axis), 1e-12)
  _, lateral, _ = kinematics.body_axes(joints)
  angle = float(np.degrees(np.arccos(np.clip(np.median(np.abs(lateral @ axis)), 0.0, 1.0))))
  if angle < DEPTH_VIEW_DEG:
    return "side", angle
  return ("facing" if angle > 90.0 - DEPTH_VIEW_DEG else "oblique"), angle


def margins_for_view(figure_margins: dict | None, view: str | None) -> dict[str, float]:
  """The figure -> error margin to judge with: ``figure_margins`` as one table for every view
  (figure -> number), or by view (:data:`VIEWS` and :data:`ANY_VIEW` -> such a table; a figure
  the view's table lacks, or an unknown view, takes the 'any' table's)."""
  if not figure_margins:
    return {}
  if not any(isinstance(v, dict) for v in figure_margins.values()):
    return dict(figure_margins)
  return {**figure_margins.get(ANY_VIEW, {}), **figure_margins.get(view, {})}


def check_figure_margins(margins, where: str) -> dict:
  """``margins`` read from a file, checked: figure -> number >= 0, or view -> such a table."""

  def table(t) -> bool:
    return isinstance(t, dict) and all(
      isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in t.values()
    )

  if table(margins):
    return {str(k): float(v) for k, v in margins.items()}
  if isinstance(margins, dict) and set(margins) <= {*VIEWS, ANY_VIEW} and all(map(table, margins.values())):
    return {str(w): {str(k): float(v) for k, v in t.items()} for w, t in margins.items()}
  raise UserError(
    f"{where}: 'figure_margins' must map figure names to numbers >= 0 "
    f"(or the views {', '.join((*VIEWS, ANY_VIEW))} to such maps)"
  )


def judge_limits(
  joints: np.ndarray,
  segmentation: reps.Segmentation,
  figures: list[dict],
  exercise: rules.ExerciseRules,
  confidence: np.ndarray | None = None,
  camera_axis: np.ndarray | None = None,
  uncertainty: np.ndarray | None = None,
  max_uncertainty: float | None = MAX_UNCERTAINTY,
  figure_margins: dict | None = None,
) -> tuple[dict[str, str], dict[str, tuple[float, ...]]]:
  """What the input cannot support, so the report says so instead of a confident finding.

  - a joint a rule needs hidden (``confidence`` below :data:`MIN_CONFIDENCE`) for more than half
    of a repetition: that repetition's figure becomes ``None`` (in place); a rule with no
    repetition left is not judged;
  - a figure whose motion lies along the camera's depth from where the camera stands
    (:data:`DEPTH_BOUND_FIGURES`; :func:`camera_view` from ``camera_axis``, the camera's viewing
    direction in the input's frame): knees caving in seen from the side, the trunk's forward lean
    seen from the front or back; a lifted 3D guesses that depth;
  - back rounding on a 3D whose spine joint lies on the pelvis-thorax line in every frame (some
    motion capture places it there): it holds no back shape;
  - a joint a rule needs whose lifted 3D is uncertain (``uncertainty``, a fraction of the body's
    height, above ``max_uncertainty``, by default :data:`MAX_UNCERTAINTY`) for more than half of a
    repetition, as for a hidden one: a pose the lifter does not know is said, not judged
    (``max_uncertainty=None``: the lifter's uncertainty does not tell its errors; not used);
  - a rule none of whose repetitions is clearly past its limit (:attr:`rules.Rule.fail_value`)
    but some within ``figure_margins[figure]`` of it (the lifted 3D's error margin for that
    figure, measured for the lifter, at this view when measured by view: :func:`camera_view`,
    :func:`margins_for_view`, :func:`perfectrep_jax.wild.agreement.figure_errors`): a borderline
    verdict the 3D cannot settle is said, not given.

  Returns:
    rule id -> why it was not judged; and for the borderline ones, rule id -> per repetition the
    largest severity within the margin (the figure worsened by it; 1 where the figure is
    missing), which bounds the score (:func:`perfectrep_jax.form.rules.assess`).
  """
  out: dict[str, str] = {}
  worst_severities: dict[str, tuple[float, ...]] = {}
  names = {r.figure: r.id for r in exercise.rules}
  doubts = []  # (frames x joints that cannot be trusted, why)
  if confidence is not None:
    doubts.append(
      (
        np.asarray(confidence, np.float64) < MIN_CONFIDENCE,
        "was hidden (low confidence) for most of every repetition",
      )
    )
  if uncertainty is not None and max_uncertainty is not None:
    doubts.append(
      (
        np.asarray(uncertainty, np.float64) > max_uncertainty,
        "has an uncertain 3D (the lifter's mirrored pass disagrees by more than "
        f"{max_uncertainty:.0%} of the body's height) for most of every repetition",
      )
    )
  for doubtful, why in doubts:
    if not segmentation.reps:
      break
    for figure, rule_id in names.items():
      need = [J[j] for j in FIGURE_JOINTS.get(figure, ())]
      if not need or rule_id in out:
        continue
      doubtful_reps = 0
      worst = None
      for rep, fig in zip(segmentation.reps, figures):
        share = doubtful[rep.start : rep.end + 1][:, need].mean(axis=0)  # per joint
        if share.max() > 0.5:
          fig[figure] = None
          doubtful_reps += 1
          worst = need[int(np.argmax(share))]
      if doubtful_reps == len(figures):
        joint = next(k for k, v in J.items() if v == worst).replace("_", " ")
        out[rule_id] = f"the {joint} {why}"
  view, along = camera_view(joints, camera_axis) if camera_axis is not None else (None, None)
  for figure, (blind_view, what) in DEPTH_BOUND_FIGURES.items():
    if view == blind_view and figure in names and names[figure] not in out:
      out[names[figure]] = (
        f"a {view} view (the hips' line {along:.0f} degrees from the camera's axis): {what} "
        "is along the camera's depth, which 2D cannot see"
      )
  margins = margins_for_view(figure_margins, view)
  for rule in exercise.rules:
    margin = margins.get(rule.figure)
    if not margin or rule.id in out:
      continue
    values = [f[rule.figure] for f in figures if f.get(rule.figure) is not None]
    near = [v for v in values if abs(v - rule.fail_value) < margin]
    clear = [v for v in values if rule.severity(v) > rules.FAIL_LEVEL and abs(v - rule.fail_value) >= margin]
    if near and not clear:
      out[rule.id] = (
        f"borderline: {len(near)} of {len(values)} repetitions came within "
        f"{rules.format_figure(margin, rule.figure)} of its limit "
        f"({rules.format_figure(rule.fail_value, rule.figure)}), inside this 3D's error margin, "
        "and none was clearly past it"
      )
      worse = -margin if rule.better == "higher" else margin
      worst_severities[rule.id] = tuple(
        1.0 if f.get(rule.figure) is None else rule.severity(f[rule.figure] + worse) for f in figures
      )
  if "spine_flexion_max" in names:
    if float(np.max(np.abs(kinematics.spine_flexion(joints)))) < 0.5:
      out[names["spine_flexion_max"]] = (
        "this 3D places the spine joint on the pelvis-thorax line in every frame, so it holds no back shape"
      )
  return out, worst_severities


def analyze_motion(
  joints,
  exercise: str | None = None,
  *,
  fps: float = 30.0,
  up: str | np.ndarray | None = None,
  classify: Callable[[np.ndarray], str] | None = None,
  rules_table: dict[str, rules.ExerciseRules] | None = None,
  name: str = "input",
  confidence: np.ndarray | None = None,
  camera_axis: np.ndarray | None = None,
  uncertainty: np.ndarray | None = None,
  max_uncertainty: float | None = MAX_UNCERTAINTY,
  figure_margins: dict | None = None,
  camera_up: np.ndarray | None = None,
) -> Analysis:
  """Analyses a motion without writing files.

  Args:
    joints: (T, 17, 3) Human3.6M-17 joints in any rigid frame and unit (the lifter's normalised
      camera frame, pixels, millimetres of motion capture).
    exercise: exercise name or alias ('squat', 'deep squat', 'bench press', ...); ``None`` asks
      ``classify``, or without one recognises it from the motion (with a confidence); unknown
      names get the generic rules.
    fps: frames per second of ``joints``.
    up: the world's up direction in the input's frame (see :func:`parse_up`); estimated from the
      skeleton when ``None``.
    classify: optional action classifier, joints (T, 17, 3) -> exercise name.
    rules_table: rules (default: the bundled ``rules.json``).
    name: what to call the input in error messages (its path).
    confidence: optional (T, 17) per-joint trust in [0, 1] (a detector's or lifter's); a rule
      whose joints it hides is said as not judged (:func:`judge_limits`).
    camera_axis: optional (3,) viewing direction of the camera in the input's frame (``(0, 0,
      1)`` for a lifter's camera frame); a side view leaves knee valgus not judged, a facing
      view the trunk's forward lean.
    uncertainty: optional (T, 17) doubt of a lifted 3D per joint, as a share of the body's
      height (``infer``'s flip-augmentation spread); rules on doubtful joints are not judged.
    max_uncertainty: the doubt beyond which a joint is not trusted (the lifter's own, from its
      model.json; ``None``: the uncertainty is not used).
    figure_margins: figure -> the lifter's error margin of it (its model.json), one table or
      one per view (:func:`margins_for_view`, the view from ``camera_axis``); a rule whose
      repetitions all sit within it of the limit is said to be borderline, not judged.
    camera_up: optional (3,) up direction of the camera's picture in the input's frame (``(0,
      -1, 0)`` for a lifter's camera frame); with ``camera_axis``, an estimated vertical is taken
      into the camera's upright plane when the camera looks level (:func:`kinematics.level_up`).
  Raises:
    UserError: for a bad motion (see :func:`validate_joints`) or a bad ``up``.
  """
  x = validate_joints(joints, fps, name)
  table = rules_table if rules_table is not None else rules.load_rules()
  source = "given"
  requested = exercise
  confidence_ex = scores = None
  if not exercise:
    if classify is not None:
      requested = classify(x.astype(np.float32))
      source = "classifier"
    else:
      found = recognise(x)
      requested, confidence_ex, scores = found.exercise, found.confidence, found.scores
      source = "recognised"
  ex_name = rules.resolve_exercise(requested, table)
  ex = table[ex_name]
  up_vec = parse_up(up)
  up_source = "given"
  if up_vec is None:
    up_vec = kinematics.estimate_up(x, ex.posture)
    up_source = f"estimated ({ex.posture})"
    if camera_axis is not None and camera_up is not None:
      try:
        up_vec, levelled = kinematics.level_up(up_vec, camera_axis, camera_up)
      except ValueError as e:
        raise UserError(f"{name}: {e}") from e
      if levelled:
        up_source = f"estimated ({ex.posture}, camera level)"
  signals = kinematics.signals(x, up_vec)
  if ex.signal == reps.HOLD:
    seg = reps.segment_hold(x, fps, up_vec)
  else:
    seg = reps.segment_repetitions(x, fps, signal=ex.signal)
  widths = _widths(x, up_vec)
  rep_figs = [figs.rep_figures(signals, r, fps, len(x), widths) for r in seg.reps]
  ranges = [figs.angle_ranges(signals, r) for r in seg.reps]
  main = figs.add_set_figures(rep_figs, ranges)
  for what, values in (("confidence", confidence), ("uncertainty", uncertainty)):
    if values is not None and np.shape(values) != x.shape[:2]:
      raise UserError(
        f"{name}: {what} has shape {np.shape(values)}, expected {x.shape[:2]} (one value per frame and joint)"
      )
  limits, worst = judge_limits(
    x, seg, rep_figs, ex, confidence, camera_axis, uncertainty, max_uncertainty, figure_margins
  )
  assessment = rules.assess(rep_figs, ex, limits, worst)
  return Analysis(
    ex_name,
    source,
    requested,
    float(fps),
    len(x),
    up_vec,
    up_source,
    signals,
    seg,
    rep_figs,
    ranges,
    main,
    assessment,
    confidence_ex,
    scores,
    tuple(limits.items()),
  )


def load_joints(path: str | Path) -> tuple[np.ndarray, float | None]:
  """Reads a 3D motion file for :func:`analyze_file`.

  Accepts ``.npy`` (T, 17, 3) and the ``X3D.json`` that ``infer`` writes (``joints_3d`` and
  ``fps``); for an ``.npy`` the frame rate comes from a ``.json`` of the same name beside it
  when there is one.

  Returns:
    ``(joints, fps)``: the array as stored and the frame rate, or ``None`` when unknown.
  Raises:
    UserError: missing, empty or unreadable file (named in the message).
  """
  import json

  path = Path(path)
  if not path.is_file():
    raise UserError(f"{path}: file not found")
  if path.stat().st_size == 0:
    raise UserError(f"{path}: the file is empty")
  if path.suffix.lower() == ".json":
    try:
      doc = json.loads(path.read_text())
      return np.asarray(doc["joints_3d"], np.float64), doc.get("fps")
    except (KeyError, TypeError, ValueError, RecursionError) as e:  # ValueError: a 5000-digit number too
      raise UserError(
        f"{path}: not a 3D motion JSON with a 'joints_3d' array ({str(e)[:200] or type(e).__name__})"
      ) from e
  try:
    joints = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise UserError(f"{path}: not a readable .npy array ({e})") from e
  fps = None
  side = path.with_suffix(".json")
  if side.is_file():
    try:
      fps = json.loads(side.read_text()).get("fps")
    except (ValueError, RecursionError, AttributeError):  # unreadable: the rate is unknown
      fps = None
  return joints, fps


def analyze_file(
  path: str | Path,
  exercise: str | None = None,
  out_dir: str | Path | None = None,
  *,
  fps: float | None = None,
  up: str | np.ndarray | None = None,
  classify: Callable[[np.ndarray], str] | None = None,
  rules_path: str | Path | None = None,
  html: bool = True,
) -> dict:
  """``perfectrep-jax analyze X3D.npy --exercise squat --out DIR``: :func:`load_joints` then
  :func:`analyze`. ``fps`` defaults to the file's own (``X3D.json``), else 30. A JSON that
  carries ``confidence`` ((T, 17) per-joint trust), ``camera_axis`` and ``camera_up`` (the
  camera's viewing direction and its picture's up in the joints' frame) or ``uncertainty`` (the
  lifter's, with its ``uncertainty_threshold``), as ``infer`` writes them, passes them on
  (:func:`analyze_motion`), and so does ``figure_margins`` (the lifter's error margin per
  figure, by view or not)."""
  joints, file_fps = load_joints(path)
  extras = {}
  if Path(path).suffix.lower() == ".json":
    doc = load_json(path, "3D joints JSON")
    for key in ("confidence", "camera_axis", "camera_up", "uncertainty"):
      if doc.get(key) is not None:
        try:
          extras[key] = np.asarray(doc[key], np.float64)
        except (TypeError, ValueError) as e:
          raise UserError(f"{path}: '{key}' is not an array of numbers ({e})") from e
    for key in ("camera_axis", "camera_up"):
      v = extras.get(key)
      if v is not None and (v.shape != (3,) or not np.all(np.isfinite(v)) or not np.any(v)):
        raise UserError(f"{path}: '{key}' must be three finite numbers, not all zero (a direction)")
    if "uncertainty_threshold" in doc:
      threshold = doc["uncertainty_threshold"]
      if threshold is not None and not (isinstance(threshold, (int, float)) and threshold > 0):
        raise UserError(
          f"{path}: 'uncertainty_threshold' must be a positive number or null, got {threshold!r}"
        )
      extras["max_uncertainty"] = threshold
    if doc.get("figure_margins") is not None:
      extras["figure_margins"] = check_figure_margins(doc["figure_margins"], str(path))
  return analyze(
    joints,
    exercise,
    out_dir,
    fps=float(fps or file_fps or 30.0),
    up=up,
    classify=classify,
    rules_path=rules_path,
    name=str(path),
    html=html,
    **extras,
  )


def analyze(
  joints_3d,
  exercise: str | None = None,
  out_dir: str | Path | None = None,
  *,
  fps: float = 30.0,
  up: str | np.ndarray | None = None,
  classify: Callable[[np.ndarray], str] | None = None,
  rules_path: str | Path | None = None,
  name: str = "input",
  html: bool = True,
  confidence: np.ndarray | None = None,
  camera_axis: np.ndarray | None = None,
  keypoints_2d: np.ndarray | None = None,
  read_frame: Callable[[int], np.ndarray | None] | None = None,
  uncertainty: np.ndarray | None = None,
  max_uncertainty: float | None = MAX_UNCERTAINTY,
  figure_margins: dict | None = None,
  camera_up: np.ndarray | None = None,
) -> dict:
  """Analyses a motion and, given ``out_dir``, writes ``report.json`` and ``report.html`` there.

  This is what ``perfectrep-jax analyze X3D.npy --exercise squat --out DIR`` calls (and ``infer``
  after lifting).

  Args:
    joints_3d: (T, 17, 3) joints in any rigid frame and unit.
    exercise: exercise name or alias, or ``None`` (then ``classify``, else generic rules).
    out_dir: where to write the report; nothing is written when ``None``.
    fps: frames per second.
    up: vertical in the input's frame ('z', '-y', 'a,b,c' or a vector); estimated when ``None``.
    classify: optional action classifier, joints -> exercise name.
    rules_path: a rules file replacing the bundled ``rules.json``.
    name: the input's name for messages and the report (e.g. its path).
    html: also write ``report.html`` with its plots.
    confidence, camera_axis, uncertainty, max_uncertainty, figure_margins, camera_up: see
      :func:`analyze_motion`.
    keypoints_2d, read_frame: the 2D keypoints (T, 17, 2|3 pixels) of a video input and a reader
      of its frames: each finding's worst repetition is shown on its video frame with the
      skeleton drawn (:func:`perfectrep_jax.form.report.write_report`).
  Returns:
    the report as a JSON-ready dict (top-level ``reps``, ``score``, ``feedback``, ...).
  Raises:
    UserError: bad motion, ``up`` or rules file.
  """
  table = rules.load_rules(rules_path)
  result = analyze_motion(
    joints_3d,
    exercise,
    fps=fps,
    up=up,
    classify=classify,
    rules_table=table,
    name=name,
    confidence=confidence,
    camera_axis=camera_axis,
    uncertainty=uncertainty,
    max_uncertainty=max_uncertainty,
    figure_margins=figure_margins,
    camera_up=camera_up,
  )
  doc = report.to_json(result, source=name)
  if out_dir is not None:
    report.write_report(result, doc, out_dir, html=html, keypoints_2d=keypoints_2d, read_frame=read_frame)
  return doc
