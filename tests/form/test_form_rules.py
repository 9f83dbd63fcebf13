"""Form rules on real faulty squats: fitted on UI-PRMD s01-s04, judged on s05-s08."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.form import fit_rules, rules
from perfectrep_jax.form.figures import FIGURES


def _median(result, figure):
  return float(np.median([f[figure] for f in result.figures if f[figure] is not None]))


@pytest.mark.parametrize("subject", fit_rules.TEST_SUBJECTS + fit_rules.FIT_SUBJECTS)
def test_faulty_squats_score_lower_and_feedback_names_the_fault(analysed, subject):
  correct_id, faulty_id = fit_rules.squat_take_ids(subject)
  correct, faulty = analysed(correct_id, "squat"), analysed(faulty_id, "squat")
  assert 0 <= faulty.assessment.score < correct.assessment.score <= 100
  findings = faulty.assessment.findings
  assert findings, "the faulty set got no feedback"
  # The worst finding names a figure on which this set really is worse than the same person's
  # correct set, in the direction its rule calls bad.
  table = rules.load_rules()
  by_id = {r.id: r for r in table["squat"].rules}
  top = by_id[findings[0].rule]
  worse = _median(faulty, top.figure) - _median(correct, top.figure)
  assert worse < 0 if top.better == "higher" else worse > 0, (top.id, worse)
  assert findings[0].message.startswith(top.finding)


def test_test_subjects_were_not_used_for_fitting():
  assert not set(fit_rules.FIT_SUBJECTS) & set(fit_rules.TEST_SUBJECTS)


@pytest.mark.slow
def test_bundled_thresholds_are_the_fit_on_s01_to_s04(mocap):
  motion, _ = mocap
  doc = json.loads(fit_rules.bundled_rules_path().read_text())
  correct, faulty = fit_rules.rep_figures(fit_rules.FIT_SUBJECTS, motion)
  fitted = fit_rules.fit_thresholds(doc, correct, faulty)
  stored = {r["id"]: (r["good"], r["bad"]) for r in doc["exercises"]["squat"]["rules"]}
  assert fitted and all(stored[k] == pytest.approx(v, abs=2e-3) for k, v in fitted.items())


@pytest.mark.parametrize("take", ["uiprmd_m03_s04", "uiprmd_m03_s05", "uiprmd_m04_s05", "uiprmd_m04_s06"])
def test_correct_lunges_score_well(analysed, take):
  result = analysed(take, "inline lunge" if "m03" in take else "side lunge")
  assert result.exercise == "lunge"
  assert result.assessment.score >= 90


def test_bundled_rules_are_complete():
  table = rules.load_rules()
  for name in ("squat", "deadlift", "bench_press", "push_up", "lunge", "jumping_jack", "generic"):
    ex = table[name]
    assert ex.rules and sum(r.weight for r in ex.rules) == pytest.approx(100)
    assert all(r.figure in FIGURES and r.source for r in ex.rules)
  assert table["bench_press"].posture == "supine" and table["push_up"].posture == "prone"


@pytest.mark.parametrize(
  "name,expected",
  [
    ("Deep squat", "squat"),
    ("bench-press", "bench_press"),
    ("Push Ups", "push_up"),
    ("side lunge", "lunge"),
    ("Jumping Jacks", "jumping_jack"),
    ("RDL", "deadlift"),
    ("sit to stand", "generic"),
    (None, "generic"),
  ],
)
def test_exercise_names_and_aliases(name, expected):
  assert rules.resolve_exercise(name, rules.load_rules()) == expected


def test_severity_is_linear_between_good_and_bad():
  rule = rules.Rule("r", "knee_angle_min", "lower", 90.0, 120.0, 100, "f", "a", "p", "s")
  assert [rule.severity(v) for v in (80.0, 90.0, 105.0, 120.0, 150.0, None)] == [0, 0, 0.5, 1, 1, 0]


def test_score_and_feedback_from_figures():
  ex = rules.load_rules()["squat"]
  good = {r.figure: r.good + (0.5 if r.better == "higher" else -0.5) for r in ex.rules}
  shallow = dict(good, hip_depth_max=-0.5)
  a = rules.assess([good, good, shallow, shallow], ex)
  depth = next(r for r in ex.rules if r.id == "depth")
  assert a.rep_scores == (100, 100, 100 - depth.weight, 100 - depth.weight)
  assert a.score == pytest.approx(100 - depth.weight / 2)
  assert [f.rule for f in a.findings] == ["depth"] and a.findings[0].reps == (2, 3)
  assert "2 of 4 repetitions" in a.findings[0].message
  none = rules.assess([], ex)
  assert none.score == 0 and "No repetitions" in none.findings[0].message


def test_bad_rules_files_are_clear_errors(tmp_path):
  with pytest.raises(UserError, match="not found"):
    rules.load_rules(tmp_path / "missing.json")
  bad = tmp_path / "bad.json"
  bad.write_text("{nope")
  with pytest.raises(UserError, match="not valid JSON"):
    rules.load_rules(bad)
  doc = json.loads(fit_rules.bundled_rules_path().read_text())
  doc["exercises"]["squat"]["rules"][0]["weight"] = 1
  bad.write_text(json.dumps(doc))
  with pytest.raises(UserError, match="add up to"):
    rules.load_rules(bad)
  doc = json.loads(fit_rules.bundled_rules_path().read_text())
  doc["exercises"]["squat"]["rules"][0]["figure"] = "bicep_size"
  bad.write_text(json.dumps(doc))
  with pytest.raises(UserError, match="unknown figure"):
    rules.load_rules(bad)
