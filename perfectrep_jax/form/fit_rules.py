"""Fits the squat thresholds of ``rules.json`` on labelled motion capture.

The bundled mocap has, for UI-PRMD subjects s01-s08, a correct and a deliberately faulty
(``correct: false``) set of ten deep squats. The thresholds are fitted on subjects s01-s04 only
(:data:`FIT_SUBJECTS`) and checked on s05-s08 (:data:`TEST_SUBJECTS`, see the tests), so the rules
are judged on people they were not tuned on.

For every rule whose ``source`` starts with ``fitted``: ``good`` is the 10th percentile of the
correct repetitions' figure (90th when lower is better: nine correct repetitions in ten pass) and
``bad`` the median of the faulty repetitions. The figures are measured against the capture's own
vertical (the mocap is Z-up), the one a lifted motion's estimated vertical stands in for.

It also refits how far a person standing tall leans the mid-ankle -> thorax line forward of the
vertical (:data:`perfectrep_jax.form.kinematics.STANDING_LEAN_DEG`, which ``estimate_up`` takes
back), on the training performers' upright takes of the whole data folder.

Run ``python -m perfectrep_jax.form.fit_rules`` to print the fitted values, ``--write`` to store
the thresholds in the bundled ``rules.json``.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

import numpy as np

from perfectrep_jax.data import mocap as mocap_data, shared
from perfectrep_jax.data.demo import load_takes
from perfectrep_jax.form import kinematics
from perfectrep_jax.form.analyze import analyze_motion

FIT_SUBJECTS = ("s01", "s02", "s03", "s04")
TEST_SUBJECTS = ("s05", "s06", "s07", "s08")
MOCAP_FPS = 50.0


def squat_take_ids(subject: str) -> tuple[str, str]:
  """(correct, faulty) take ids of a UI-PRMD subject's deep squats."""
  return f"uiprmd_m01_{subject}", f"uiprmd_m01_{subject}_inc"


def rep_figures(subjects, motion: dict[str, np.ndarray]) -> tuple[list[dict], list[dict]]:
  """Per-repetition figures of the subjects' correct and faulty deep squats."""
  correct, faulty = [], []
  for s in subjects:
    ok, bad = squat_take_ids(s)
    correct += analyze_motion(motion[ok], "squat", fps=MOCAP_FPS, up="z").figures
    faulty += analyze_motion(motion[bad], "squat", fps=MOCAP_FPS, up="z").figures
  return correct, faulty


# A take whose most extended frames are this far off the vertical is not standing (lying down,
# on hands and knees): it tells nothing about how people stand.
UPRIGHT_DEG = 15.0


def standing_leans(motion: dict[str, np.ndarray], meta: dict[str, dict], split: str = "train") -> np.ndarray:
  """Per upright take of ``split`` (at least 2 s): how far its standing mid-ankle -> thorax line
  (``estimate_up`` with no lean taken back) leans forward of the capture's vertical, degrees
  (negative: backward)."""
  out = []
  for take in sorted(motion):
    if mocap_data.split_of(meta[take]) != split or len(motion[take]) < 2 * MOCAP_FPS:
      continue
    x = np.asarray(motion[take], np.float64)
    line = kinematics.estimate_up(x, standing_lean_deg=0.0)
    if np.degrees(np.arccos(np.clip(line[2], -1.0, 1.0))) > UPRIGHT_DEG:
      continue
    front = kinematics.body_axes(x[kinematics.extended_frames(x)])[2].mean(axis=0)
    front[2] = 0.0
    out.append(np.degrees(np.arcsin(line @ (front / np.linalg.norm(front)))))
  return np.array(out)


def fit_standing_lean() -> float:
  """:data:`~perfectrep_jax.form.kinematics.STANDING_LEAN_DEG`: the median of
  :func:`standing_leans` over the training performers, to 0.1 degree."""
  return round(float(np.median(standing_leans(*shared.load_mocap()))), 1)


def fit_thresholds(
  rules_doc: dict, correct: list[dict], faulty: list[dict]
) -> dict[str, tuple[float, float]]:
  """``good`` and ``bad`` of every fitted squat rule.

  Raises:
    ValueError: a fitted figure does not separate correct from faulty repetitions.
  """
  out = {}
  for rule in rules_doc["exercises"]["squat"]["rules"]:
    if not rule["source"].startswith("fitted"):
      continue
    c = np.array([f[rule["figure"]] for f in correct if f[rule["figure"]] is not None])
    b = np.array([f[rule["figure"]] for f in faulty if f[rule["figure"]] is not None])
    higher = rule["better"] == "higher"
    good = float(np.quantile(c, 0.1 if higher else 0.9))
    bad = float(np.median(b))
    if (bad >= good) if higher else (bad <= good):
      raise ValueError(
        f"figure {rule['figure']} does not separate correct from faulty squats "
        f"(good {good:.3f}, bad {bad:.3f})"
      )
    out[rule["id"]] = (round(good, 3), round(bad, 3))
  return out


def bundled_rules_path() -> Path:
  return Path(str(resources.files("perfectrep_jax.form").joinpath("rules.json")))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--write", action="store_true", help="store the fitted values in rules.json")
  args = parser.parse_args(argv)
  path = bundled_rules_path()
  doc = json.loads(path.read_text())
  motion, _ = load_takes()
  correct, faulty = rep_figures(FIT_SUBJECTS, motion)
  fitted = fit_thresholds(doc, correct, faulty)
  for rule in doc["exercises"]["squat"]["rules"]:
    if rule["id"] in fitted:
      rule["good"], rule["bad"] = fitted[rule["id"]]
      print(f"squat.{rule['id']}: {rule['figure']} good {rule['good']} bad {rule['bad']}")
  print(f"kinematics.STANDING_LEAN_DEG: {fit_standing_lean()} (now {kinematics.STANDING_LEAN_DEG})")
  if args.write:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
  main()
