"""Honest uncertainty: where the input cannot support a finding, the report says it could not
judge that point instead of a confident finding (real squat takes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfectrep_jax.data import shared
from perfectrep_jax.errors import UserError
from perfectrep_jax.form import kinematics, rules, synth as S
from perfectrep_jax.form.analyze import analyze_file, analyze_motion, camera_view, margins_for_view
from perfectrep_jax.skeleton import JOINT_INDEX as J

FPS = 50.0
TAKE = "uiprmd_m01_s01"


def _faulty_knees():
  motion, meta = shared.load_mocap()
  x = motion[TAKE].astype(np.float64)
  truth = [(a, c) for a, _, c in S.pelvis_repetitions(x, meta[TAKE]["rep_frames"])]
  return S.inject_fault(x, truth, "knees_in", 0.6)  # every repetition caves in


def test_a_knee_hidden_for_most_of_every_repetition_is_not_judged():
  x = _faulty_knees()
  seen = analyze_motion(x, "squat", fps=FPS)
  assert "knees_in" in [f.rule for f in seen.assessment.findings]
  conf = np.ones(x.shape[:2])
  conf[:, J["left_knee"]] = 0.05
  a = analyze_motion(x, "squat", fps=FPS, confidence=conf)
  assert "knees_in" not in [f.rule for f in a.assessment.findings]
  assert dict(a.not_judged)["knees_in"].startswith("the left knee was hidden")
  # Still judged: what the knee does not enter (depth needs it too, so only trunk lean stays).
  assert "trunk_lean" not in dict(a.not_judged)
  from perfectrep_jax.form import report

  doc = report.to_json(a, source="x")
  assert any(
    line.startswith("Could not judge knees in: the left knee was hidden") for line in doc["feedback"]
  )
  assert not any("Knees tracked" in line for line in doc["feedback"])  # no praise either


def test_a_knee_the_lifter_is_unsure_of_is_said_not_judged():
  x = _faulty_knees()
  doubt = np.full(x.shape[:2], 0.02)  # a lifter sure of the whole motion
  sure = analyze_motion(x, "squat", fps=FPS, uncertainty=doubt)
  assert "knees_in" in [f.rule for f in sure.assessment.findings] and not sure.not_judged
  doubt[:, J["right_knee"]] = 0.3  # its two mirrored passes disagree there
  a = analyze_motion(x, "squat", fps=FPS, uncertainty=doubt)
  assert "knees_in" not in [f.rule for f in a.assessment.findings]
  assert dict(a.not_judged)["knees_in"].startswith("the right knee has an uncertain 3D")
  with pytest.raises(UserError, match="uncertainty has shape"):
    analyze_motion(x, "squat", fps=FPS, uncertainty=doubt[:, :5])


def test_a_knee_hidden_in_one_repetition_leaves_the_others_judged():
  x = _faulty_knees()
  base = analyze_motion(x, "squat", fps=FPS)
  rep = base.segmentation.reps[2]
  conf = np.ones(x.shape[:2])
  conf[rep.start : rep.end + 1, J["right_knee"]] = 0.0
  a = analyze_motion(x, "squat", fps=FPS, confidence=conf)
  finding = next(f for f in a.assessment.findings if f.rule == "knees_in")
  assert 2 not in finding.reps and len(finding.reps) == len(base.segmentation.reps) - 1
  assert a.figures[2]["knee_valgus_bottom"] is None and "knees_in" not in dict(a.not_judged)


def test_a_side_view_leaves_knee_valgus_unjudged():
  x = _faulty_knees()
  _, lateral, front = kinematics.body_axes(x)
  side = np.median(lateral, axis=0)
  a = analyze_motion(x, "squat", fps=FPS, camera_axis=side)
  assert "side view" in dict(a.not_judged)["knees_in"]
  assert "knees_in" not in [f.rule for f in a.assessment.findings]
  facing = analyze_motion(x, "squat", fps=FPS, camera_axis=np.median(front, axis=0))
  assert "knees_in" in [f.rule for f in facing.assessment.findings]
  assert set(dict(facing.not_judged)) == {"trunk_lean"}  # the view that hides the lean, below


def test_a_facing_view_leaves_the_trunk_lean_unjudged():
  motion, meta = shared.load_mocap()
  x = motion[TAKE].astype(np.float64)
  truth = [(a, c) for a, _, c in S.pelvis_repetitions(x, meta[TAKE]["rep_frames"])]
  leaning = S.inject_fault(x, truth, "trunk_forward", 40.0)
  _, lateral, front = kinematics.body_axes(leaning)
  side = analyze_motion(leaning, "squat", fps=FPS, camera_axis=np.median(lateral, axis=0))
  assert "trunk_lean" in [f.rule for f in side.assessment.findings]
  assert set(dict(side.not_judged)) == {"knees_in"}
  for axis in (np.median(front, axis=0), -np.median(front, axis=0)):  # from the front and the back
    facing = analyze_motion(leaning, "squat", fps=FPS, camera_axis=axis)
    assert "facing view" in dict(facing.not_judged)["trunk_lean"]
    assert "trunk_lean" not in [f.rule for f in facing.assessment.findings]


def test_a_spine_on_the_pelvis_thorax_line_holds_no_back_shape():
  motion, meta = shared.load_mocap()
  x = motion[TAKE].astype(np.float64)
  a = analyze_motion(x, "deadlift", fps=FPS)
  assert "spine joint on the pelvis-thorax line" in dict(a.not_judged)["back_rounding"]
  assert "The back stayed flat." not in a.assessment.praise
  truth = [(s, e) for s, _, e in S.pelvis_repetitions(x, meta[TAKE]["rep_frames"])]
  rounded = analyze_motion(S.inject_fault(x, truth, "back_round", 30.0), "deadlift", fps=FPS)
  assert "back_rounding" not in dict(rounded.not_judged)
  assert "back_rounding" in [f.rule for f in rounded.assessment.findings]


def test_confidence_and_camera_axis_read_from_the_json(tmp_path):
  x = _faulty_knees()
  conf = np.ones(x.shape[:2])
  conf[:, J["left_ankle"]] = 0.0
  doc = {"fps": FPS, "joints_3d": x.tolist(), "confidence": conf.tolist()}
  (tmp_path / "X3D.json").write_text(json.dumps(doc))
  out = analyze_file(tmp_path / "X3D.json", "squat", None)
  # The ankle enters knee valgus and the knees' left/right comparison; nothing else.
  assert sorted(d["rule"] for d in out["not_judged"]) == ["knees_in", "uneven_knees"]
  doc["confidence"] = conf[:10].tolist()
  (tmp_path / "bad.json").write_text(json.dumps(doc))
  with pytest.raises(UserError, match="confidence has shape"):
    analyze_file(tmp_path / "bad.json", "squat", None)


def test_a_level_cameras_up_travels_in_the_json_and_is_checked(tmp_path):
  # infer's X3D.json says where its camera looked and which way its picture's up is: analyze of
  # that file takes the level camera's vertical as infer's report did; a bad direction is refused.
  motion, _ = shared.load_mocap()
  a = np.radians(30.0)  # seen from 30 degrees above, the camera held level
  down = np.array([[1.0, 0.0, 0.0], [0.0, -np.sin(a), -np.cos(a)], [0.0, np.cos(a), -np.sin(a)]])
  x = motion[TAKE].astype(np.float64) @ down.T
  doc = {"fps": FPS, "joints_3d": x.tolist(), "camera_axis": [0.0, 0.0, 1.0], "camera_up": [0.0, -1.0, 0.0]}
  (tmp_path / "X3D.json").write_text(json.dumps(doc))
  out = analyze_file(tmp_path / "X3D.json", "squat", None)
  assert out["up_source"] == "estimated (standing, camera level)"
  assert abs(out["up"][0]) < 1e-12 and abs(np.dot(out["up"], down @ [0.0, 0.0, 1.0]) - 1.0) < 1e-3
  assert analyze_file(tmp_path / "X3D.json", "squat", None, up="-y")["up_source"] == "given"
  for bad in ([0.0, 0.0], [0.0, 0.0, 0.0], "up"):
    doc["camera_up"] = bad
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="bad.json: 'camera_up'"):
      analyze_file(tmp_path / "bad.json", "squat", None)
  doc["camera_up"] = [0.0, 0.0, -1.0]  # along the viewing axis: no plane
  (tmp_path / "bad.json").write_text(json.dumps(doc))
  with pytest.raises(UserError, match="bad.json: camera_up must not be along camera_axis"):
    analyze_file(tmp_path / "bad.json", "squat", None)


def test_the_lifters_own_threshold_decides_and_travels_in_the_json(tmp_path):
  x = _faulty_knees()
  doubt = np.full(x.shape[:2], 0.02)
  doubt[:, J["right_knee"]] = 0.09  # above a lifter's 8%, below the fallback's 12%
  judged = analyze_motion(x, "squat", fps=FPS, uncertainty=doubt)
  assert "knees_in" in [f.rule for f in judged.assessment.findings]
  strict = analyze_motion(x, "squat", fps=FPS, uncertainty=doubt, max_uncertainty=0.08)
  assert dict(strict.not_judged)["knees_in"].startswith("the right knee has an uncertain 3D")
  assert "8%" in dict(strict.not_judged)["knees_in"]
  # None: the lifter's uncertainty did not tell its errors, so it decides nothing.
  doubt[:, J["right_knee"]] = 0.5
  unused = analyze_motion(x, "squat", fps=FPS, uncertainty=doubt, max_uncertainty=None)
  assert not unused.not_judged and "knees_in" in [f.rule for f in unused.assessment.findings]
  # infer writes both into X3D.json; analyze X3D.json judges as infer did.
  doc = {"fps": FPS, "joints_3d": x.tolist(), "uncertainty": doubt.tolist(), "uncertainty_threshold": 0.08}
  (tmp_path / "X3D.json").write_text(json.dumps(doc))
  same = analyze_motion(x, "squat", fps=FPS, uncertainty=doubt, max_uncertainty=0.08)
  from_file = analyze_file(tmp_path / "X3D.json", "squat", None)["not_judged"]
  assert [d["rule"] for d in from_file] == [rule for rule, _ in same.not_judged] != []
  doc["uncertainty_threshold"] = None
  (tmp_path / "X3D.json").write_text(json.dumps(doc))
  assert analyze_file(tmp_path / "X3D.json", "squat", None)["not_judged"] == []
  doc["uncertainty_threshold"] = "high"
  (tmp_path / "X3D.json").write_text(json.dumps(doc))
  with pytest.raises(UserError, match="X3D.json: 'uncertainty_threshold' must be a positive number or null"):
    analyze_file(tmp_path / "X3D.json", "squat", None)


def _leaning_squats():
  motion, meta = shared.load_mocap()
  x = motion[TAKE].astype(np.float64)
  truth = [(a, c) for a, _, c in S.pelvis_repetitions(x, meta[TAKE]["rep_frames"])]
  # every repetition leans 8 degrees more: 37-41 degrees, about the squat's limit (37.5)
  return S.inject_fault(x, truth, "trunk_forward", 8.0)


def test_a_verdict_within_the_lifters_error_of_the_limit_is_said_borderline(tmp_path):
  x = _leaning_squats()
  plain = analyze_motion(x, "squat", fps=FPS)
  lean_rule = next(r for r in rules.load_rules()["squat"].rules if r.id == "trunk_lean")
  leans = np.array([f["trunk_lean_max"] for f in plain.figures])
  failing = leans[leans > lean_rule.fail_value]
  assert "trunk_lean" in [f.rule for f in plain.assessment.findings] and len(failing)
  # A lifter whose trunk lean errs by more than the farthest repetition is from the limit cannot
  # settle the verdict: borderline, said, no finding, no praise, no points either way.
  wide = {"trunk_lean_max": float(np.max(np.abs(leans - lean_rule.fail_value))) + 0.5}
  unsure = analyze_motion(x, "squat", fps=FPS, figure_margins=wide)
  assert "trunk_lean" not in [f.rule for f in unsure.assessment.findings]
  assert dict(unsure.not_judged)["trunk_lean"].startswith("borderline:")
  assert unsure.assessment.penalties["trunk_lean"] == 0.0
  # One that errs by less than the clearest failing repetition's distance keeps the finding.
  narrow = {"trunk_lean_max": float(np.max(failing - lean_rule.fail_value)) - 0.5}
  sure = analyze_motion(x, "squat", fps=FPS, figure_margins=narrow)
  assert "trunk_lean" in [f.rule for f in sure.assessment.findings]
  assert "trunk_lean" not in dict(sure.not_judged)
  # Rules on other figures are untouched, and the margins travel in the JSON infer writes.
  assert [f.rule for f in unsure.assessment.findings] == [
    f.rule for f in plain.assessment.findings if f.rule != "trunk_lean"
  ]
  doc = {"fps": FPS, "joints_3d": x.tolist(), "figure_margins": wide}
  (tmp_path / "X3D.json").write_text(json.dumps(doc))
  assert [d["rule"] for d in analyze_file(tmp_path / "X3D.json", "squat", None)["not_judged"]] == [
    "trunk_lean"
  ]
  doc["figure_margins"] = {"trunk_lean_max": "wide"}
  (tmp_path / "X3D.json").write_text(json.dumps(doc))
  with pytest.raises(UserError, match="X3D.json: 'figure_margins' must map figure names to numbers"):
    analyze_file(tmp_path / "X3D.json", "squat", None)


def test_the_view_is_read_from_the_hips_line_against_the_camera():
  x = _leaning_squats()
  _, lateral, front = kinematics.body_axes(x)
  assert camera_view(x, np.median(lateral, axis=0))[0] == "side"
  assert camera_view(x, -np.median(front, axis=0))[0] == "facing"  # from the front
  assert camera_view(x, np.array([0.0, 0.0, -1.0]))[0] == "facing"  # from above
  half = np.median(lateral, axis=0) + np.median(front, axis=0)
  view, angle = camera_view(x, half)
  assert view == "oblique" and 35.0 < angle < 55.0


def test_the_margin_is_the_one_measured_for_the_view_the_3d_is_seen_from(tmp_path):
  # A lifter errs on the trunk's forward tilt more at some views than others: a wide margin
  # measured for the oblique view leaves the verdict borderline there, the side's keeps the finding.
  x = _leaning_squats()
  lean_rule = next(r for r in rules.load_rules()["squat"].rules if r.id == "trunk_lean")
  leans = np.array([f["trunk_lean_max"] for f in analyze_motion(x, "squat", fps=FPS).figures])
  wide = float(np.max(np.abs(leans - lean_rule.fail_value))) + 5.0
  margins = {"any": {"trunk_lean_max": 0.5}, "oblique": {"trunk_lean_max": wide}}
  _, lateral, front = kinematics.body_axes(x)
  oblique = np.median(lateral, axis=0) - np.median(front, axis=0)
  from_oblique = analyze_motion(x, "squat", fps=FPS, camera_axis=oblique, figure_margins=margins)
  assert dict(from_oblique.not_judged)["trunk_lean"].startswith("borderline:")
  assert "trunk_lean" not in [f.rule for f in from_oblique.assessment.findings]
  from_side = analyze_motion(
    x, "squat", fps=FPS, camera_axis=np.median(lateral, axis=0), figure_margins=margins
  )
  assert "trunk_lean" in [f.rule for f in from_side.assessment.findings]
  assert "trunk_lean" not in dict(from_side.not_judged)
  # Without a camera the 'any' table is used; by-view margins travel in X3D.json and are checked.
  assert margins_for_view(margins, None) == {"trunk_lean_max": 0.5}
  assert margins_for_view(margins, "oblique") == {"trunk_lean_max": wide}
  assert margins_for_view({"trunk_lean_max": 2.0}, "facing") == {"trunk_lean_max": 2.0}
  doc = {"fps": FPS, "joints_3d": x.tolist(), "figure_margins": margins}
  doc["camera_axis"] = oblique.tolist()
  (tmp_path / "X3D.json").write_text(json.dumps(doc))
  assert [d["rule"] for d in analyze_file(tmp_path / "X3D.json", "squat", None)["not_judged"]] == [
    "trunk_lean"
  ]
  doc["figure_margins"] = {"behind": {"trunk_lean_max": 1.0}}
  (tmp_path / "X3D.json").write_text(json.dumps(doc))
  with pytest.raises(UserError, match="X3D.json: 'figure_margins' must map figure names to numbers"):
    analyze_file(tmp_path / "X3D.json", "squat", None)


def test_a_rule_not_judged_makes_the_score_a_range_that_holds_the_truths(tmp_path, capsys):
  # Seen from the front, the lean that costs the true 3D points is not judged: the score counts
  # only the rules judged, and ``score_low`` (that rule at its worst) says how far it could fall.
  motion, meta = shared.load_mocap()
  x = motion[TAKE].astype(np.float64)
  truth = [(a, c) for a, _, c in S.pelvis_repetitions(x, meta[TAKE]["rep_frames"])]
  leaning = S.inject_fault(x, truth, "trunk_forward", 40.0)
  _, lateral, front = kinematics.body_axes(leaning)
  seen = analyze_motion(leaning, "squat", fps=FPS)  # every rule judged
  assert seen.assessment.score_low == seen.assessment.score
  facing = analyze_motion(leaning, "squat", fps=FPS, camera_axis=np.median(front, axis=0))
  lean_weight = next(r.weight for r in rules.load_rules()["squat"].rules if r.id == "trunk_lean")
  a = facing.assessment
  assert a.score - a.score_low == pytest.approx(lean_weight)  # nothing bounds an unseen figure
  assert a.score_low <= seen.assessment.score <= a.score
  assert a.score > seen.assessment.score + 10  # the point score alone is off by more than 10
  # A borderline rule is bounded by its margin: the range is narrower than the rule's weight and
  # still holds the truth's score.
  x = _leaning_squats()
  plain = analyze_motion(x, "squat", fps=FPS)
  lean_rule = next(r for r in rules.load_rules()["squat"].rules if r.id == "trunk_lean")
  leans = np.array([f["trunk_lean_max"] for f in plain.figures])
  wide = {"trunk_lean_max": float(np.max(np.abs(leans - lean_rule.fail_value))) + 0.5}
  unsure = analyze_motion(x, "squat", fps=FPS, figure_margins=wide)
  b = unsure.assessment
  assert b.score_low <= plain.assessment.score <= b.score
  assert 0 < b.score - b.score_low < lean_rule.weight
  worst = [lean_rule.severity(v + wide["trunk_lean_max"]) for v in leans]
  assert b.score - b.score_low == pytest.approx(lean_rule.weight * np.mean(worst))
  # The report gives the range in its JSON, its feedback and on the command line's summary.
  doc = {"fps": FPS, "joints_3d": leaning.tolist(), "camera_axis": np.median(front, axis=0).tolist()}
  (tmp_path / "X3D.json").write_text(json.dumps(doc))
  report = analyze_file(tmp_path / "X3D.json", "squat", tmp_path / "out")
  assert report["score_low"] == pytest.approx(a.score_low, abs=1e-3)
  assert any(f"as low as {a.score_low:.0f}" in line for line in report["feedback"])
  assert "as low as" in (tmp_path / "out" / "report.html").read_text()
  per_rep = [(r["score_low"], r["score"]) for r in report["reps"]]
  assert all(lo < hi for lo, hi in per_rep) and np.mean([lo for lo, _ in per_rep]) == pytest.approx(
    report["score_low"], abs=1e-3
  )
  from perfectrep_jax import cli

  cli.main(["analyze", str(tmp_path / "X3D.json"), "--exercise", "squat", "--out", str(tmp_path / "cli")])
  assert f"score {a.score_low:.0f}-{a.score:.0f}/100" in capsys.readouterr().out.splitlines()[0]
  del doc["camera_axis"]  # every rule judged: one score, no range
  (tmp_path / "X3D.json").write_text(json.dumps(doc))
  judged = analyze_file(tmp_path / "X3D.json", "squat", None)
  assert judged["score_low"] == judged["score"]
  assert not any("as low as" in line for line in judged["feedback"])
