"""The powerlifts and floor exercises as first-class exercises: names people use, recognition from
the motion, push-up / bench press / plank counting and rules.

There is no prone or bench motion capture: push-ups, bench presses and planks here are SYNTHETIC
COMPOSITES (:func:`perfectrep_jax.form.synth.press_composite`): a real person's standing body laid
down by geometry, its elbows following the timing of real squat sets. Squats are real takes.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from perfectrep_jax.data import shared
from perfectrep_jax.form import rules, synth as S
from perfectrep_jax.form.analyze import analyze_motion
from perfectrep_jax.form.recognise import recognise

FPS = 50.0


@functools.lru_cache(maxsize=1)
def _mocap():
  return shared.load_mocap()


@functools.lru_cache(maxsize=1)
def _body():
  motion, _ = _mocap()
  x = motion["uiprmd_m01_s06"].astype(np.float64)
  return x[S.straight_frame(x)]


def _press(take, posture="prone", **kw):
  motion, _ = _mocap()
  return S.press_composite(
    _body(), S.elbow_course(S.rep_progress(motion[take].astype(np.float64))), posture, **kw
  )


@pytest.mark.parametrize(
  "name,expected",
  [
    ("bench", "bench_press"),
    ("Bench Press", "bench_press"),
    ("close grip bench press", "bench_press"),
    ("deadlift", "deadlift"),
    ("sumo deadlift", "deadlift"),
    ("RDL", "deadlift"),
    ("romanian deadlift", "deadlift"),
    ("trap bar deadlift", "deadlift"),
    ("press-up", "push_up"),
    ("push ups", "push_up"),
    ("forearm plank", "plank"),
    ("back squat", "squat"),
    ("goblet squat", "squat"),
  ],
)
def test_names_people_use(name, expected):
  assert rules.resolve_exercise(name, rules.load_rules()) == expected


def test_every_rule_names_a_source_and_shared_variants_are_said():
  table = rules.load_rules()
  for name in ("squat", "deadlift", "bench_press", "push_up", "plank"):
    assert table[name].note, name
    for rule in table[name].rules:
      assert len(rule.source) > 20, (name, rule.id)
  assert {r.id for r in table["deadlift"].rules} >= {"bar_path", "hip_hinge", "back_rounding", "back_angle"}
  assert {r.id for r in table["bench_press"].rules} >= {"depth", "elbow_flare", "lockout"}
  assert {r.id for r in table["push_up"].rules} >= {"hips_sag", "hips_pike"}


def test_real_squats_are_recognised_with_confidence():
  motion, meta = _mocap()
  squats = [
    k for k, v in meta.items() if v.get("exercise") and v["description"].startswith(("squat", "deep squat"))
  ]
  for take in squats:
    r = recognise(motion[take])
    # A faulty squat (deep forward lean, UI-PRMD incorrect) also looks a little like a hinge:
    # still a squat, less sure.
    assert r.exercise == "squat" and r.confidence >= (0.8 if meta[take]["correct"] else 0.5), (take, r)


def test_other_real_motion_is_not_taken_for_a_lift_or_a_press():
  motion, meta = _mocap()
  for cls in ("jogLeftCircle", "rotateArms", "grabHighR", "elbowToKnee"):
    for take in [k for k in meta if cls in k]:
      assert recognise(motion[take]).exercise not in ("squat", "deadlift", "bench_press", "plank"), take


def test_composite_push_up_bench_and_plank_are_recognised():
  assert recognise(_press("hdm05_bd_squat1Reps_001-004")).exercise == "push_up"
  assert recognise(_press("hdm05_bd_squat1Reps_001-004", "supine")).exercise == "bench_press"
  plank = S.press_composite(_body(), np.full(300, 175.0), "prone")
  plank = plank + np.random.default_rng(0).normal(scale=3.0, size=plank.shape)
  r = recognise(plank)
  assert r.exercise == "plank" and r.confidence > 0.5
  # Without --exercise the report says what it recognised and how sure it is.
  a = analyze_motion(S.any_view(plank, 4), None, fps=FPS)
  assert a.exercise == "plank" and a.exercise_source == "recognised" and a.exercise_confidence > 0.5


def test_push_up_sets_with_a_pike_stretch_between_any_view():
  # Two sets (4 + 10 push-ups timed by two real squat sets), a pike stretch held between them
  # with the arms straight (the hips 300 mm up), as in the push-up video.
  rng = np.random.default_rng(1)
  b = S.SessionBuilder(rng)
  b.add_other(_press("hdm05_dg_squat1Reps_025-028"), "set 1")
  b.add_rest(2.0)
  stretch = S.press_composite(_body(), np.full(150, 175.0), "prone", hip_shift_mm=-300.0)
  b.add_other(stretch, "pike stretch")
  b.add_rest(2.0)
  b.add_other(_press("uiprmd_m01_s01"), "set 2")
  x = b.build().joints
  for seed in (5, 6):
    a = analyze_motion(S.any_view(x, seed, 0.005), "push up", fps=FPS)
    assert a.segmentation.signal == "elbows" and a.segmentation.count == 14


def test_plank_hold_time():
  motion, _ = _mocap()
  standing = np.repeat(_body()[None], 100, axis=0)
  plank = S.press_composite(_body(), np.full(400, 175.0), "prone")  # 8 s
  x = np.concatenate([standing, plank, standing])
  a = analyze_motion(x, "plank", fps=FPS, up="z")
  assert a.segmentation.signal == "hold" and abs(a.segmentation.period / FPS - 8.0) < 0.1
  assert a.assessment.score > 90
  sag = S.press_composite(_body(), np.full(400, 175.0), "prone", hip_shift_mm=150.0)
  a = analyze_motion(np.concatenate([standing, sag, standing]), "plank", fps=FPS, up="z")
  assert [f.rule for f in a.assessment.findings] == ["hips_sag"]


@pytest.mark.parametrize("flare,flagged", [(40.0, False), (90.0, True)])
def test_bench_elbow_flare(flare, flagged):
  a = analyze_motion(_press("hdm05_bd_squat1Reps_001-004", "supine", flare_deg=flare), "bench", fps=FPS)
  assert a.segmentation.count == 4
  assert ("elbow_flare" in [f.rule for f in a.assessment.findings]) == flagged


def test_cli_analyze_says_the_recognised_exercise_and_partials(tmp_path, capsys):
  from perfectrep_jax import cli

  motion, _ = _mocap()
  x = motion["hdm05_tr_squat1Reps_041-044"]
  np.save(tmp_path / "X3D.npy", x[30:])  # starts inside the first descent
  (tmp_path / "X3D.json").write_text('{"fps": 50.0}')
  cli.main(["analyze", str(tmp_path / "X3D.npy"), "--out", str(tmp_path / "out")])
  line = capsys.readouterr().out.splitlines()[0]
  assert line.startswith("3 repetitions (+1 partial) of squat (recognised, ")
