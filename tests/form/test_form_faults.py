"""Faults injected into real correct repetitions are flagged by the right rule, at a severity that
grows with the fault, while the untouched repetitions are not (squats: real UI-PRMD takes; push-ups:
synthetic composites, there being no prone motion capture)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from perfectrep_jax.data import shared
from perfectrep_jax.form import rules as R
from perfectrep_jax.form import synth as S
from perfectrep_jax.form.analyze import analyze_motion
from perfectrep_jax.skeleton import JOINT_INDEX as J

FPS = 50.0
TAKE = "uiprmd_m01_s01"


@functools.lru_cache(maxsize=1)
def _take():
  motion, meta = shared.load_mocap()
  x = motion[TAKE].astype(np.float64)
  truth = [(a, c) for a, _, c in S.pelvis_repetitions(x, meta[TAKE]["rep_frames"])]
  return x, truth


def _by_truth(analysis, truth):
  idx = []
  for start, end in truth:
    hits = [i for i, r in enumerate(analysis.segmentation.reps) if start <= r.turn <= end]
    assert len(hits) == 1
    idx.append(hits[0])
  return idx


@pytest.mark.parametrize(
  "fault,rule,exercise,sizes",
  [
    ("knees_in", "knees_in", "squat", (0.02, 0.1, 0.3)),
    ("trunk_forward", "trunk_lean", "squat", (2.0, 15.0, 30.0)),
    ("cut_bottom", "depth", "squat", (0.02, 0.2, 0.4)),
    ("back_round", "back_rounding", "deadlift", (2.0, 15.0, 30.0)),
  ],
)
def test_injected_fault_is_flagged_by_its_rule_growing_with_size(fault, rule, exercise, sizes):
  x, truth = _take()
  faulted = list(range(1, len(truth), 2))
  table = R.load_rules()
  the_rule = next(r for r in table[exercise].rules if r.id == rule)
  base = analyze_motion(x, exercise, fps=FPS)
  assert not any(rule in issues for issues in base.assessment.rep_issues)
  severities = []
  for size in sizes:
    a = analyze_motion(S.inject_fault(x, [truth[i] for i in faulted], fault, size), exercise, fps=FPS)
    idx = _by_truth(a, truth)
    flagged = [i for i in range(len(truth)) if rule in a.assessment.rep_issues[idx[i]]]
    # Untouched repetitions are never flagged by it.
    assert set(flagged) <= set(faulted), (size, flagged)
    severities.append(np.mean([the_rule.severity(a.figures[idx[i]][the_rule.figure]) for i in faulted]))
    if size == sizes[0]:
      assert flagged == []  # too small to matter
    if size == sizes[-1]:
      assert flagged == faulted  # every faulted one
  # Grows with the fault (until it saturates at 1, the rule's 'bad' value).
  assert severities == sorted(severities) and severities[0] < severities[1]


@pytest.mark.parametrize("rule,sign", [("hips_sag", 1.0), ("hips_pike", -1.0)])
def test_push_up_hips_dropped_or_raised(rule, sign):
  motion, _ = shared.load_mocap()
  straight = motion["uiprmd_m01_s06"].astype(np.float64)
  body = straight[S.straight_frame(straight)]  # hips within a degree of the line
  prog = S.rep_progress(motion["hdm05_tr_squat1Reps_041-044"].astype(np.float64))
  clean = analyze_motion(S.press_composite(body, S.elbow_course(prog), "prone"), "push_up", fps=FPS)
  truth = [(r.start, r.end) for r in clean.segmentation.reps]
  assert len(truth) == 4 and not clean.assessment.findings
  severities = []
  for size in (20.0, 150.0, 250.0):
    shift = np.zeros(len(prog))
    for a_, b_ in truth[1::2]:
      shift[a_ : b_ + 1] = sign * size * np.clip(prog[a_ : b_ + 1], 0, 1)
    a = analyze_motion(
      S.press_composite(body, S.elbow_course(prog), "prone", hip_shift_mm=shift), "push_up", fps=FPS
    )
    flagged = [i for i, issues in enumerate(a.assessment.rep_issues) if rule in issues]
    assert flagged == ([] if size == 20.0 else [1, 3])
    other = "hips_pike" if rule == "hips_sag" else "hips_sag"
    assert not any(other in issues for issues in a.assessment.rep_issues)
    severities.append(next((f.severity for f in a.assessment.findings if f.rule == rule), 0.0))
  assert severities[0] < severities[1] <= severities[2]


def test_unknown_fault_is_refused():
  x, truth = _take()
  with pytest.raises(ValueError, match="unknown fault"):
    S.inject_fault(x, truth[:1], "wobble", 1.0)


def test_a_repetition_cut_short_is_inconsistent_but_one_arm_held_still_is_not():
  # A real squat whose fifth repetition stops 40% short of the bottom: cut short, it alone.
  x, truth = _take()
  assert not any("inconsistent" in i for i in analyze_motion(x, "squat", fps=FPS).assessment.rep_issues)
  for size, flagged in ((0.2, []), (0.4, [4])):
    a = analyze_motion(S.inject_fault(x, truth[4:5], "cut_bottom", size), "squat", fps=FPS)
    idx = _by_truth(a, truth)
    assert [i for i in range(len(truth)) if "inconsistent" in a.assessment.rep_issues[idx[i]]] == flagged
  # Real hops with the arms swinging (the elbow is the angle that moves most). In the second hop
  # the left arm is held straight: that elbow's range is gone, the jump is whole, and it is no
  # shorter a repetition (the range is the median over the joints that carry the movement).
  motion, _ = shared.load_mocap()
  hops = motion["hdm05_tr_hopBothLegs1hops_034-036"].astype(np.float64)
  base = analyze_motion(hops, "generic", fps=FPS, up="z")
  assert base.main_angle == "elbow_left" and not base.assessment.findings
  second = base.segmentation.reps[1]
  assert len(base.segmentation.reps) == 3 and not second.partial
  s, e, w = (J["left_shoulder"], J["left_elbow"], J["left_wrist"])
  t = slice(second.start, second.end + 1)
  forearm = np.linalg.norm(hops[t, w] - hops[t, e], axis=-1, keepdims=True)
  upper = hops[t, e] - hops[t, s]
  held = hops.copy()
  held[t, w] = hops[t, e] + forearm * upper / np.linalg.norm(upper, axis=-1, keepdims=True)
  a = analyze_motion(held, "generic", fps=FPS, up="z")
  assert len(a.segmentation.reps) == 3 and a.angle_ranges[1]["elbow_left"]["rom"] < 5.0
  assert a.main_angle == "elbow_left"  # still the largest over the set: on it alone the ratio is 0
  assert a.figures[1]["rom_ratio"] > 0.85 and not a.assessment.findings
