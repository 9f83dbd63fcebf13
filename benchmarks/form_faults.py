"""Form rules on real motion: faults injected into real correct repetitions, and false findings.

    python benchmarks/form_faults.py [--quick] [--markdown]

1. Faults put into every other repetition of each real correct squat take of the data folder
   (:func:`perfectrep_jax.form.synth.inject_fault`: knees moved medially at the bottom, the trunk
   rotated forward, the bottom of the squat cut off, the back rounded), at several sizes; the other
   repetitions are untouched. For each rule and size: the share of faulted repetitions the right
   rule flags (detection), the share of untouched repetitions it flags that it did not flag
   before the fault was put in (false flags), and the mean severity over the faulted ones.
   Push-up hips dropped / raised are put into SYNTHETIC push-ups (a real body laid down, the
   elbows timed by real squat sets: :func:`perfectrep_jax.form.synth.press_composite`): there is
   no prone motion capture.
2. False findings: every correct exercise take analysed with its own rules; the share of
   repetitions with any failed rule.

Reads the motion from the data folder at run time (``$PERFECTREP_JAX_DATA`` or ../shared).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfectrep_jax.data import shared  # noqa: E402
from perfectrep_jax.form import synth as S  # noqa: E402
from perfectrep_jax.form.analyze import analyze_motion  # noqa: E402

FPS = 50.0
# fault -> (rule that must flag it, exercise whose rules judge it, sizes)
SQUAT_FAULTS = {
  "knees_in": ("knees_in", "squat", (0.1, 0.2, 0.4, 0.6)),
  "trunk_forward": ("trunk_lean", "squat", (5.0, 10.0, 20.0, 30.0)),
  "cut_bottom": ("depth", "squat", (0.1, 0.2, 0.3, 0.4)),
  # No real hinge takes: the back is rounded in real squats and judged by the deadlift's rule.
  "back_round": ("back_rounding", "deadlift", (5.0, 10.0, 20.0, 30.0)),
}
PUSH_UP_SIZES = (30.0, 60.0, 100.0, 150.0)  # mm of hip drop (sag) or raise (pike)
UNIT = {"knees_in": "thigh", "trunk_forward": "deg", "cut_bottom": "of depth", "back_round": "deg"}


def squat_takes(meta, quick: bool):
  takes = sorted(
    k
    for k, v in meta.items()
    if v.get("exercise") and v.get("correct") and v["description"].startswith(("squat", "deep squat"))
  )
  return takes[::4] if quick else takes


def _match(analysis, truth):
  """For each true (start, end): the index of the analysed repetition whose turning point is in it."""
  out = []
  for start, end in truth:
    hits = [i for i, r in enumerate(analysis.segmentation.reps) if start <= r.turn <= end]
    out.append(hits[0] if hits else None)
  return out


def _flags(analysis, idx, rule):
  return idx is not None and rule in analysis.assessment.rep_issues[idx]


def _severity(analysis, idx, rule_id, exercise_rules):
  if idx is None:
    return 0.0
  rule = next(r for r in exercise_rules.rules if r.id == rule_id)
  return rule.severity(analysis.figures[idx].get(rule.figure))


def fault_table(motion, meta, quick: bool):
  from perfectrep_jax.form import rules as R

  table = R.load_rules()
  rows = []
  for fault, (rule, exercise, sizes) in SQUAT_FAULTS.items():
    stats = {s: collections.Counter() for s in sizes}
    sev = {s: [] for s in sizes}
    for take in squat_takes(meta, quick):
      x = motion[take].astype(np.float64)
      truth = [(a, c) for a, _, c in S.pelvis_repetitions(x, meta[take]["rep_frames"])]
      faulted = set(range(1, len(truth), 2))
      base = analyze_motion(x, exercise, fps=FPS)
      base_idx = _match(base, truth)
      for size in sizes:
        y = S.inject_fault(x, [truth[i] for i in sorted(faulted)], fault, size)
        a = analyze_motion(y, exercise, fps=FPS)
        idx = _match(a, truth)
        for i in range(len(truth)):
          if i in faulted:
            stats[size]["faulted"] += 1
            stats[size]["detected"] += _flags(a, idx[i], rule)
            stats[size]["missed_rep"] += idx[i] is None
            sev[size].append(_severity(a, idx[i], rule, table[exercise]))
          elif not _flags(base, base_idx[i], rule):
            stats[size]["clean"] += 1
            stats[size]["false"] += _flags(a, idx[i], rule)
    for size in sizes:
      c = stats[size]
      rows.append(
        (
          rule,
          fault,
          f"{size:g} {UNIT[fault]}",
          c["detected"] / max(c["faulted"], 1),
          c["false"] / max(c["clean"], 1),
          float(np.mean(sev[size])),
          c["faulted"],
          "real squats",
        )
      )
  rows += push_up_rows(motion)
  return rows


def push_up_rows(motion):
  body_take = motion["uiprmd_m01_s06"].astype(np.float64)
  body = body_take[S.straight_frame(body_take)]
  rows = []
  timings = ["hdm05_bd_squat1Reps_001-004", "hdm05_tr_squat1Reps_041-044", "uiprmd_m01_s02"]
  for rule, sign in (("hips_sag", 1.0), ("hips_pike", -1.0)):
    for size in PUSH_UP_SIZES:
      det = fal = n_f = n_c = 0
      sev = []
      for take in timings:
        prog = S.rep_progress(motion[take].astype(np.float64))
        clean = S.press_composite(body, S.elbow_course(prog), "prone")
        seg = analyze_motion(clean, "push_up", fps=FPS).segmentation
        truth = [(r.start, r.end) for r in seg.reps]
        shift = np.zeros(len(prog))
        for i, (a_, b_) in enumerate(truth):
          if i % 2:
            shift[a_ : b_ + 1] = sign * size * np.clip(prog[a_ : b_ + 1], 0, 1)
        a = analyze_motion(
          S.press_composite(body, S.elbow_course(prog), "prone", hip_shift_mm=shift), "push_up", fps=FPS
        )
        idx = _match(a, truth)
        from perfectrep_jax.form import rules as R

        ex = R.load_rules()["push_up"]
        for i in range(len(truth)):
          if i % 2:
            n_f += 1
            det += _flags(a, idx[i], rule)
            sev.append(_severity(a, idx[i], rule, ex))
          else:
            n_c += 1
            fal += _flags(a, idx[i], rule)
      rows.append(
        (
          rule,
          "hips_drop" if sign > 0 else "hips_raise",
          f"{size:g} mm",
          det / max(n_f, 1),
          fal / max(n_c, 1),
          float(np.mean(sev)),
          n_f,
          "synthetic push-ups",
        )
      )
  return rows


def false_findings(motion, meta):
  """Correct exercise takes analysed with their own rules: share of repetitions with a finding."""
  families = {
    "squat": ("squat", "deep squat"),
    "lunge": ("inline lunge", "side lunge"),
    "sit to stand (squat rules)": ("sit to stand",),
  }
  out = []
  for family, prefixes in families.items():
    exercise = family.split(" (")[0] if "(" not in family else "squat"
    takes = [
      k
      for k, v in meta.items()
      if v.get("exercise") and v.get("correct") and v["description"].startswith(prefixes)
    ]
    reps = flagged = 0
    per_rule = collections.Counter()
    for take in takes:
      a = analyze_motion(motion[take], exercise, fps=FPS)
      for issues in a.assessment.rep_issues:
        reps += 1
        flagged += bool(issues)
        per_rule.update(issues)
    out.append((family, len(takes), reps, flagged / max(reps, 1), dict(per_rule)))
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="every fourth squat take only")
  parser.add_argument("--markdown", action="store_true", help="print markdown tables (for the README)")
  args = parser.parse_args(argv)
  motion, meta = shared.load_mocap()
  rows = fault_table(motion, meta, args.quick)
  if args.markdown:
    print(
      "| rule | fault | size | detected | false flags on untouched reps | mean severity | faulted reps | motion |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
      print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.0%} | {r[4]:.0%} | {r[5]:.2f} | {r[6]} | {r[7]} |")
    print()
    print("| correct takes | takes | reps | reps with any finding | by rule |")
    print("|---|---|---|---|---|")
    for fam, n, reps, rate, per in false_findings(motion, meta):
      print(
        f"| {fam} | {n} | {reps} | {rate:.0%} | {', '.join(f'{k} {v}' for k, v in sorted(per.items())) or '-'} |"
      )
  else:
    print(
      f"{'rule':14s} {'fault':14s} {'size':16s} {'detected':>8s} {'false':>6s} {'severity':>8s} {'n':>4s}  motion"
    )
    for r in rows:
      print(f"{r[0]:14s} {r[1]:14s} {r[2]:16s} {r[3]:8.0%} {r[4]:6.0%} {r[5]:8.2f} {r[6]:4d}  {r[7]}")
    print("\nfalse findings on correct exercise takes (share of repetitions with any failed rule):")
    for fam, n, reps, rate, per in false_findings(motion, meta):
      print(f"  {fam}: {n} takes, {reps} reps, {rate:.0%} ({per})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
