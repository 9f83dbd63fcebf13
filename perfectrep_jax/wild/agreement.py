"""Does the feedback a user gets from 2D agree with the feedback the true 3D gives?

For every exercise take of the held-out performers (``data.mocap.TEST_SUBJECTS``), each take is
filmed whole by cameras drawn apart from training (``data.mocap.view``: any azimuth, low to high,
phone lenses, detector-like 2D), lifted as ``infer`` lifts a keypoint file (missing joints filled,
crop normalisation, windows, flip, smoothing) and analysed as ``infer`` analyses it (the detector's
confidences, the camera's axis, the lifter's own uncertainty). The same take's recorded 3D, analysed with the true vertical, is
the reference. Per take and view:

- ``not_judged``: rules the lifted motion's report said it could not judge, ``borderline`` those
  of them too close to their limit for the lifter's error margin;
- ``false``: findings (rule ids) of the lifted motion that the true 3D does not have;
- ``missed``: findings of the true 3D the lifted motion neither has nor says it cannot judge;
- ``score_diff``: lifted score minus true score (0-100 points); ``judged_score_diff`` the same
  with the true 3D's penalties of the rules the lifted report did not judge given back (a rule
  it says it cannot judge costs no points there, see :func:`perfectrep_jax.form.rules.assess`);
  ``score_range_off`` how far the true score lies outside the lifted report's range (its
  ``score_low``, every unjudged rule at its worst, to its ``score``; 0 inside);
- ``reps``: repetitions counted from the lifted motion and from the true 3D;
- ``p_mpjpe_mm``: the lifted 3D against the true 3D in the camera's frame, per frame after a
  similarity alignment (Procrustes), millimetres.

    from perfectrep_jax.wild.agreement import feedback_agreement
    report = feedback_agreement(lift_fn, maxlen)      # {"takes": [...], "summary": {...}}
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import spearmanr
from tqdm import tqdm

from perfectrep_jax.data import mocap, shared
from perfectrep_jax.errors import UserError
from perfectrep_jax.form import rules
from perfectrep_jax.form.analysis import Analysis
from perfectrep_jax.form.analyze import MAX_UNCERTAINTY, VIEWS, analyze_motion, camera_view
from perfectrep_jax.metrics import p_mpjpe_per_pose, procrustes_align
from perfectrep_jax.wild.keypoints import fill_missing
from perfectrep_jax.wild.lift import CAMERA_AXIS, CAMERA_UP, LiftFn, lift_keypoints, uncertainty

AGREEMENT_SEED = 20_011  # cameras of the agreement check: apart from training and evaluation
FIGURE_ERROR_SEED = 20_013  # cameras that measure the lifter's figure errors (training performers)
# Filmed as people film exercise: upright (the gravity the true 3D is judged with), any azimuth.
AGREEMENT_FILM = mocap.FilmConfig(tilt_prob=0.0)
MIN_VIEW_REPS = 20  # repetitions a figure's error needs in one view to get its own margin there
# The margin around a rule's limit within which a lifted verdict is borderline: the absolute error
# this share of the lifter's repetitions stay within. With errors symmetric about the truth, a
# verdict given just outside it is on the wrong side of the limit at most (1 - q) / 2 = 10% of the
# time; the median (q = 0.5) left 25%, and on the held-out squats a lean 3-4 degrees off at a
# side view came out as a false finding.
MARGIN_QUANTILE = 0.8
# (keypoints (T, 17, 3), the view) -> 3D (T, 17, 3), or (3D, uncertainty (T, 17) or None)
LiftMotion = Callable[[np.ndarray, dict], np.ndarray | tuple[np.ndarray, np.ndarray | None]]


def exercise_of(meta: dict, table: dict[str, rules.ExerciseRules] | None = None) -> str:
  """The rules a coach would pick for a take: its description's exercise ('deep squat' -> squat),
  a squat or lunge named inside a longer description, else the generic rules."""
  table = table if table is not None else rules.load_rules()
  name = rules.resolve_exercise(meta["description"], table)
  if name == "generic":
    for word in ("squat", "lunge"):
      if word in meta["description"].lower() and word in table:
        return word
  return name


def exercise_takes(min_seconds: float = 2.0, split: str = "test") -> dict[str, tuple[np.ndarray, dict]]:
  """The held-out (``split="train"``: the training) performers' exercise takes long enough to
  analyse: take -> (world mm, meta)."""
  motion, meta = shared.load_mocap()
  return {
    k: (motion[k], meta[k])
    for k in sorted(motion)
    if mocap.split_of(meta[k]) == split
    and meta[k].get("exercise")
    and len(motion[k]) >= min_seconds * mocap.FPS
  }


def lifter_motion(lift_fn: LiftFn, maxlen: int, batch_size: int = 8) -> LiftMotion:
  """``infer``'s lifting of one person's keypoints ((T, 17, 3) pixels and confidence)."""

  def lift(keypoints: np.ndarray, seen: dict) -> np.ndarray:
    del seen
    joints, meta = lift_keypoints(keypoints, lift_fn, maxlen, fps=mocap.FPS, batch_size=batch_size)
    return joints, uncertainty(meta)

  return lift


def _findings(analysis: Analysis) -> set[str]:
  return {f.rule for f in analysis.assessment.findings if f.rule != "no_reps"}


def compare(truth: Analysis, lifted: Analysis) -> dict:
  """What the lifted motion's feedback got right and wrong against the true 3D's."""
  said_not_judged = {rule for rule, _ in lifted.not_judged}
  true_f, lifted_f = _findings(truth), _findings(lifted)
  return {
    "true_findings": sorted(true_f),
    "lifted_findings": sorted(lifted_f),
    "not_judged": sorted(said_not_judged),
    "borderline": sorted(rule for rule, why in lifted.not_judged if why.startswith("borderline")),
    "false": sorted(lifted_f - true_f),
    "missed": sorted(true_f - lifted_f - said_not_judged),
    "true_score": round(truth.assessment.score, 1),
    "lifted_score": round(lifted.assessment.score, 1),
    "score_diff": round(lifted.assessment.score - truth.assessment.score, 1),
    "judged_score_diff": round(
      lifted.assessment.score
      - truth.assessment.score
      - sum(truth.assessment.penalties.get(rule, 0.0) for rule in said_not_judged),
      1,
    ),
    # the lifted report's score is a range, score_low to score, when it left rules unjudged:
    # how far the true score lies outside it (0 inside)
    "lifted_score_low": round(lifted.assessment.score_low, 1),
    "score_range": round(lifted.assessment.score - lifted.assessment.score_low, 1),
    "score_range_off": round(
      max(
        lifted.assessment.score_low - truth.assessment.score,
        truth.assessment.score - lifted.assessment.score,
        0.0,
      ),
      1,
    ),
    "true_reps": len(truth.segmentation.reps),
    "lifted_reps": len(lifted.segmentation.reps),
    "rules": len(lifted.assessment.penalties),
  }


def film_and_lift(world: np.ndarray, lift: LiftMotion, rng: np.random.Generator, film: mocap.FilmConfig):
  """A take filmed by the camera ``rng`` draws and lifted as ``infer`` lifts a keypoint file:
  ``(view, keypoints (T, 17, 3), lifted 3D (T, 17, 3) float64, its uncertainty (T, 17) or None)``."""
  seen = mocap.view(world, rng, film)
  keypoints = fill_missing(seen["keypoints"]).astype(np.float32)
  lifted = lift(keypoints, seen)
  lifted, doubt = lifted if isinstance(lifted, tuple) else (lifted, None)
  return seen, keypoints, np.asarray(lifted, np.float64), doubt


def take_agreement(
  world: np.ndarray,
  meta: dict,
  lift: LiftMotion,
  rng: np.random.Generator,
  film: mocap.FilmConfig = AGREEMENT_FILM,
  max_uncertainty: float | None = MAX_UNCERTAINTY,
  figure_margins: dict | None = None,
) -> dict:
  """One take filmed by one camera drawn from ``rng``, lifted by ``lift`` and judged twice
  (the lifted motion as ``infer`` judges it: joints beyond ``max_uncertainty`` not trusted,
  rules within ``figure_margins`` of their limits said to be borderline)."""
  exercise = exercise_of(meta)
  truth = analyze_motion(world, exercise, fps=mocap.FPS, up="z", name=meta.get("trial", "take"))
  seen, keypoints, lifted_3d, doubt = film_and_lift(world, lift, rng, film)
  if lifted_3d.shape != world.shape:
    raise UserError(f"the lifter returned {lifted_3d.shape} for a take of {world.shape}")
  lifted = analyze_motion(
    lifted_3d,
    exercise,
    fps=mocap.FPS,
    confidence=keypoints[..., 2],
    camera_axis=CAMERA_AXIS,
    camera_up=CAMERA_UP,
    uncertainty=doubt,
    max_uncertainty=max_uncertainty,
    figure_margins=figure_margins,
  )
  row = {"exercise": exercise, "frames": int(len(world)), **compare(truth, lifted)}
  row["p_mpjpe_mm"] = round(float(np.mean(p_mpjpe_per_pose(lifted_3d, seen["camera"]))), 1)
  return row


def feedback_agreement(
  lift_fn: LiftFn | None = None,
  maxlen: int | None = None,
  *,
  views: int = 2,
  noise: float = 1.0,
  lift: LiftMotion | None = None,
  takes: dict[str, tuple[np.ndarray, dict]] | None = None,
  progress: bool = False,
  max_uncertainty: float | None = MAX_UNCERTAINTY,
  figure_margins: dict | None = None,
) -> dict:
  """Feedback agreement over the held-out exercise takes, ``views`` cameras each.

  Args:
    lift_fn, maxlen: the lifter (float32 (B, T, 17, 3) -> (B, T, 17, 3)) and its longest clip.
    views: cameras per take (seeded: the same views on every call).
    noise: detector-like 2D noise scale (0: the exact projection).
    lift: instead of ``lift_fn``, any ``(keypoints, view) -> (T, 17, 3)`` (tests).
    takes: instead of the held-out takes, ``{name: (world mm, meta)}``.
    max_uncertainty: the lifter's own threshold (:func:`uncertainty_calibration`).
    figure_margins: the lifter's error margin per figure (:func:`figure_errors`).
  Returns:
    ``{"takes": [row per take and view], "summary": {...}}`` (see the module docstring).
  """
  lift, film, cameras = _cameras(lift_fn, maxlen, lift, takes, views, noise)
  if progress:
    cameras = tqdm(cameras, desc="feedback agreement", unit="view")
  rows = []
  for name, v, (world, meta), rng in cameras:
    row = take_agreement(world, meta, lift, rng, film, max_uncertainty, figure_margins)
    rows.append({"take": name, "view": v, **row})
  return {"takes": rows, "summary": summarize(rows)}


def _cameras(lift_fn, maxlen, lift, takes, views: int, noise: float, seed: int = AGREEMENT_SEED):
  """``(lift, film, [(take, view, (world, meta), its camera's rng), ...])``: the lifting, the
  filming and the seeded cameras both checks go through (the same views on every call)."""
  if lift is None:
    if lift_fn is None or maxlen is None:
      raise ValueError("give lift_fn and maxlen, or lift")
    lift = lifter_motion(lift_fn, maxlen)
  takes = exercise_takes() if takes is None else takes
  film = mocap.FilmConfig(tilt_prob=AGREEMENT_FILM.tilt_prob, noise=noise)
  cameras = [
    (name, v, takes[name], np.random.default_rng([seed, v, sum(map(ord, name))]))
    for name in takes
    for v in range(views)
  ]
  return lift, film, cameras


def summarize(rows: list[dict]) -> dict:
  """Totals over the rows: how often the feedback agreed, and how far it was off."""
  if not rows:
    return {"views": 0}
  diffs = np.abs([r["score_diff"] for r in rows])
  return {
    "views": len(rows),
    "same_findings": sum(not r["false"] and not r["missed"] for r in rows),
    "with_false_findings": sum(bool(r["false"]) for r in rows),
    "with_missed_findings": sum(bool(r["missed"]) for r in rows),
    "false_findings": sum(len(r["false"]) for r in rows),
    "score_within_10": int(np.sum(diffs <= 10.0)),
    # the same on the rules the lifted report judged: a rule it says it cannot judge costs no
    # points there, so a true finding it leaves unjudged parts the two scores by its penalty
    "judged_score_within_10": sum(abs(r["judged_score_diff"]) <= 10.0 for r in rows),
    # the true score within 10 of the lifted report's range (score_low to score) and the
    # range's mean width: an unjudged rule widens the range instead of scoring it as passed
    "score_range_within_10": int(sum(r.get("score_range_off", np.inf) <= 10.0 for r in rows)),
    "mean_score_range": round(float(np.mean([r.get("score_range", 0.0) for r in rows])), 1),
    "max_score_diff": round(float(diffs.max()), 1),
    "mean_score_diff": round(float(diffs.mean()), 1),
    "reps_exact": sum(r["lifted_reps"] == r["true_reps"] for r in rows),
    # the share of the rules the lifted motion's report judged (not said to be unsupported)
    "rules_judged": round(
      1.0 - sum(len(r["not_judged"]) for r in rows) / max(sum(r.get("rules", 0) for r in rows), 1), 3
    ),
    "p_mpjpe_mm": round(float(np.mean([r["p_mpjpe_mm"] for r in rows])), 1),
  }


# ----------------------------------------------------------------------------- figure errors


def figure_errors(lift_fn: LiftFn | None = None, maxlen: int | None = None, **filming) -> dict:
  """How far the lifter's per-repetition form figures fall from the true 3D's: on the *training*
  performers' exercise takes (the held-out ones stay for :func:`feedback_agreement`), filmed as
  :func:`feedback_agreement` films them by cameras of their own seed, each figure of each
  exercise's rules compared repetition by repetition where both count the same repetitions.
  ``margin`` (the :data:`MARGIN_QUANTILE` quantile of the absolute error) is what ``infer`` takes
  as the margin within which a rule's verdict is borderline (:func:`perfectrep_jax.form.analyze.judge_limits`), over every view and, in
  ``by_view``, for each view the lifted 3D was seen from (:func:`perfectrep_jax.form.analyze.camera_view`:
  side, oblique, facing; a figure with fewer than :data:`MIN_VIEW_REPS` repetitions in a view is
  left out of its table, which then takes the overall one).
  ``filming``: ``views`` (default 1), ``noise`` (1), ``lift`` and ``takes`` (default the training
  performers') as for :func:`feedback_agreement`.

  Returns:
    ``{"median_abs": {figure: ...}, "margin": {figure: ...}, "bias": {figure: median signed error},
    "reps": {figure: n}, "by_view": {view: {"median_abs", "margin", "bias", "reps"}},
    "margin_quantile": q, "views": n, "noise": ..., "performers": "training"}``.
  """
  filming = {"views": 1, "noise": 1.0, "lift": None, "takes": None, **filming}
  if filming["takes"] is None:
    filming["takes"] = exercise_takes(split="train")
  lift, film, cameras = _cameras(lift_fn, maxlen, **filming, seed=FIGURE_ERROR_SEED)
  table = rules.load_rules()
  diffs: dict[str, dict[str, list[float]]] = {view: {} for view in VIEWS}
  for _, _, (world, meta), rng in cameras:
    exercise = exercise_of(meta, table)
    truth = analyze_motion(world, exercise, fps=mocap.FPS, up="z")
    lifted_3d = film_and_lift(world, lift, rng, film)[2]
    lifted = analyze_motion(lifted_3d, exercise, fps=mocap.FPS, camera_axis=CAMERA_AXIS, camera_up=CAMERA_UP)
    if len(lifted.figures) != len(truth.figures):
      continue
    view, _ = camera_view(lifted_3d, CAMERA_AXIS)
    for rule in table[exercise].rules:
      for t, f in zip(truth.figures, lifted.figures):
        if t.get(rule.figure) is not None and f.get(rule.figure) is not None:
          diffs[view].setdefault(rule.figure, []).append(f[rule.figure] - t[rule.figure])
  overall: dict[str, list[float]] = {}
  for by_figure in diffs.values():
    for figure, d in by_figure.items():
      overall.setdefault(figure, []).extend(d)
  by_view = {
    view: _error_table({k: d for k, d in by_figure.items() if len(d) >= MIN_VIEW_REPS})
    for view, by_figure in diffs.items()
  }
  return {
    **_error_table(overall),
    "by_view": {view: t for view, t in by_view.items() if t["reps"]},
    "margin_quantile": MARGIN_QUANTILE,
    "views": len(cameras),
    "noise": float(filming["noise"]),
    "performers": "training",
  }


def _error_table(diffs: dict[str, list[float]]) -> dict:
  """figure -> lifted minus true values: their median absolute error, the margin (the absolute
  error :data:`MARGIN_QUANTILE` of them stay within), median (bias) and count."""
  return {
    "median_abs": {k: round(float(np.median(np.abs(v))), 4) for k, v in sorted(diffs.items())},
    "margin": {k: round(float(np.quantile(np.abs(v), MARGIN_QUANTILE)), 4) for k, v in sorted(diffs.items())},
    "bias": {k: round(float(np.median(v)), 4) for k, v in sorted(diffs.items())},
    "reps": {k: len(v) for k, v in sorted(diffs.items())},
  }


# ----------------------------------------------------------------------------- uncertainty

UNCERTAINTY_GRID = tuple(round(0.02 * i, 2) for i in range(2, 16))  # 4% .. 30% of the body's height
ERROR_RATIO = 2.0  # a joint beyond the threshold errs at least this many times the rest
# ... and the joints beyond it are at least this share of all: a handful of joints (the shipped
# lifter's 8% once singled out 37 of 186,286, 2.1x) is too few to measure a ratio on, and judging
# so few changes no report.
MIN_SHARE = 0.005


def uncertainty_calibration(
  lift_fn: LiftFn | None = None, maxlen: int | None = None, *, grid=UNCERTAINTY_GRID, **filming
) -> dict:
  """How well the lifter's own uncertainty (the flip passes' disagreement, a share of the body's
  height) tells its wrong joints, on the held-out exercise takes filmed as :func:`feedback_agreement`
  films them.

  Every joint of every frame is scored by its error after a per-frame similarity alignment to the
  true 3D (millimetres). For each threshold of ``grid``: the share of joints beyond it, their mean
  error and the rest's. ``threshold`` is the smallest one beyond which at least :data:`MIN_SHARE`
  of the joints lie and err at least :data:`ERROR_RATIO` times the rest (the analysis leaves rules
  on such joints not judged), or ``None`` when no threshold tells them apart that well: then the
  uncertainty is not used.
  ``filming``: ``views``, ``noise``, ``lift`` and ``takes`` as for :func:`feedback_agreement`.

  Returns:
    ``{"threshold", "error_ratio", "min_share", "spearman", "joints", "table": [{"threshold", "share",
    "error_mm", "rest_error_mm", "ratio"}, ...]}``.
  """
  filming = {"views": 2, "noise": 1.0, "lift": None, "takes": None, **filming}
  lift, film, cameras = _cameras(lift_fn, maxlen, **filming)
  doubts, errors = [], []
  for _, _, (world, _), rng in cameras:
    seen, _, lifted, doubt = film_and_lift(world, lift, rng, film)
    if doubt is None:
      raise UserError("the lifter gave no uncertainty (lift with the flip augmentation)")
    truth = np.asarray(seen["camera"], np.float64)
    errors.append(np.linalg.norm(procrustes_align(lifted, truth) - truth, axis=-1).ravel())
    doubts.append(np.asarray(doubt, np.float64).ravel())
  doubt, error = np.concatenate(doubts), np.concatenate(errors)
  table = []
  for t in grid:
    beyond = doubt > t
    row = {"threshold": float(t), "share": round(float(beyond.mean()), 4)}
    if beyond.any() and not beyond.all():
      row["error_mm"] = round(float(error[beyond].mean()), 1)
      row["rest_error_mm"] = round(float(error[~beyond].mean()), 1)
      row["ratio"] = round(row["error_mm"] / max(row["rest_error_mm"], 1e-9), 2)
    table.append(row)
  chosen = next(
    (r["threshold"] for r in table if r.get("ratio", 0.0) >= ERROR_RATIO and r["share"] >= MIN_SHARE), None
  )
  return {
    "threshold": chosen,
    "error_ratio": ERROR_RATIO,
    "min_share": MIN_SHARE,
    "spearman": round(float(spearmanr(doubt, error).statistic), 3),
    "joints": int(doubt.size),
    "noise": float(filming["noise"]),
    "table": table,
  }
