"""Form rules per exercise: thresholds from a config file, a 0-100 score and plain-language feedback.

The thresholds are data, in ``rules.json`` beside this module (or a file given by the user, same
layout). Each rule looks at one per-repetition figure (:data:`perfectrep_jax.form.figures.FIGURES`)
and has a ``good`` value (no penalty at or beyond it) and a ``bad`` value (full penalty at or
beyond it), linear in between; ``better`` says which direction is good. A repetition's score is
100 minus the weighted penalties (the weights of an exercise add up to 100); the set's score is
the mean over repetitions. The squat thresholds are fitted on labelled motion capture by
:mod:`perfectrep_jax.form.fit_rules`; the other exercises carry textbook coaching values, each
rule saying where its numbers come from.
"""

from __future__ import annotations

import dataclasses
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np

from perfectrep_jax.errors import UserError
from perfectrep_jax.form.figures import FIGURES
from perfectrep_jax.form.reps import HOLD, SIGNALS

GENERIC = "generic"
# A repetition fails a rule when its penalty is above this fraction of the rule's weight.
FAIL_LEVEL = 0.25


@dataclasses.dataclass(frozen=True)
class Rule:
  """One check on one figure; see the module docstring."""

  id: str
  figure: str
  better: str  # "higher" or "lower"
  good: float
  bad: float
  weight: float
  finding: str  # what is wrong, as a coach would say it
  advice: str  # what to do about it
  praise: str  # said when every repetition passes
  source: str  # where the thresholds come from

  @property
  def fail_value(self) -> float:
    """The figure's value at which a repetition starts failing the rule (severity
    :data:`FAIL_LEVEL`)."""
    return self.good + FAIL_LEVEL * (self.bad - self.good)

  def severity(self, value: float | None) -> float:
    """0 at or beyond ``good``, 1 at or beyond ``bad``, linear in between; 0 for ``None``."""
    if value is None or not np.isfinite(value):
      return 0.0
    frac = (self.good - value) / (self.good - self.bad)
    return float(np.clip(frac, 0.0, 1.0))


@dataclasses.dataclass(frozen=True)
class ExerciseRules:
  """The rules of one exercise, the posture that tells its vertical, and its other names."""

  name: str
  posture: str
  aliases: tuple[str, ...]
  rules: tuple[Rule, ...]
  signal: str | None = None  # its own repetition signal (reps.SIGNALS, reps.HOLD), None: the pose
  note: str = ""  # which variants share these rules


def _key(name: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def load_rules(path: str | Path | None = None) -> dict[str, ExerciseRules]:
  """Reads a rules file (default: the bundled ``rules.json``).

  Raises:
    UserError: the file is missing, not JSON, or a rule is malformed (named in the message).
  """
  try:
    if path is None:
      text = resources.files("perfectrep_jax.form").joinpath("rules.json").read_text()
      where = "bundled rules.json"
    else:
      where = str(path)
      text = Path(path).read_text()
    data = json.loads(text)
  except FileNotFoundError as e:
    raise UserError(f"{path}: rules file not found") from e
  except (ValueError, RecursionError) as e:  # also a number of more than 4300 digits
    raise UserError(f"{where}: not valid JSON ({str(e)[:200] or 'nested too deeply'})") from e
  out = {}
  for name, ex in data.get("exercises", {}).items():
    rules = []
    for r in ex.get("rules", []):
      try:
        rule = Rule(**r)
      except TypeError as e:
        raise UserError(f"{where}: exercise {name!r}: malformed rule {r.get('id')!r} ({e})") from e
      if rule.figure not in FIGURES:
        raise UserError(f"{where}: exercise {name!r}, rule {rule.id!r}: unknown figure {rule.figure!r}")
      if (
        rule.better not in ("higher", "lower")
        or rule.good == rule.bad
        or (rule.better == "higher") != (rule.good > rule.bad)
      ):
        raise UserError(
          f"{where}: exercise {name!r}, rule {rule.id!r}: 'good' must be on the '{rule.better}' side of 'bad'"
        )
      rules.append(rule)
    total = sum(r.weight for r in rules)
    if rules and abs(total - 100.0) > 1e-6:
      raise UserError(f"{where}: exercise {name!r}: rule weights add up to {total}, not 100")
    signal = ex.get("signal")
    if signal is not None and signal not in SIGNALS + (HOLD,):
      raise UserError(
        f"{where}: exercise {name!r}: unknown repetition signal {signal!r} "
        f"(one of {', '.join(SIGNALS + (HOLD,))})"
      )
    out[name] = ExerciseRules(
      name,
      ex.get("posture", "standing"),
      tuple(ex.get("aliases", ())),
      tuple(rules),
      signal,
      str(ex.get("note", "")),
    )
  if GENERIC not in out:
    raise UserError(f"{where}: needs a '{GENERIC}' exercise for motions without their own rules")
  return out


def resolve_exercise(name: str | None, table: dict[str, ExerciseRules]) -> str:
  """The table's name for an exercise name or alias ('Deep squat' -> 'squat'); unknown -> generic."""
  if not name:
    return GENERIC
  k = _key(name)
  for ex in table.values():
    if k == _key(ex.name) or k in {_key(a) for a in ex.aliases}:
      return ex.name
  return GENERIC


def format_figure(value: float, figure: str) -> str:
  """A figure's value as a report says it (``38°``, ``0.12 body``, ``1.4 s``)."""
  unit = FIGURES[figure][1]
  if unit == "deg":
    return f"{value:.0f}\u00b0"
  if unit == "s":
    return f"{value:.1f} s"
  if unit == "ratio":
    return f"{value:.2f}"
  return f"{value:.2f} {unit}"


@dataclasses.dataclass(frozen=True)
class Finding:
  """A rule that some repetitions failed."""

  rule: str
  figure: str
  message: str
  reps: tuple[int, ...]  # indices of the failing repetitions
  severity: float  # mean penalty fraction over all repetitions, 0-1
  typical: float  # median of the figure over the failing repetitions


@dataclasses.dataclass(frozen=True)
class Assessment:
  """Scores and feedback for a set of repetitions."""

  score: float  # 0-100, higher is better form
  rep_scores: tuple[float, ...]
  rep_issues: tuple[tuple[str, ...], ...]  # failed rule ids per repetition
  findings: tuple[Finding, ...]  # worst first
  praise: tuple[str, ...]  # rules every repetition passed
  penalties: dict[str, float]  # rule id -> mean points lost
  rep_severities: tuple[dict[str, float], ...] = ()  # per repetition, rule id -> severity 0-1
  # the score if every rule not judged cost what it could at worst (== score when all were judged)
  score_low: float | None = None
  rep_scores_low: tuple[float, ...] = ()  # the same per repetition


def assess(
  figures: list[dict[str, float | None]],
  exercise: ExerciseRules,
  not_judged: dict[str, str] | None = None,
  worst_severities: dict[str, tuple[float, ...]] | None = None,
) -> Assessment:
  """Applies an exercise's rules to the repetitions' figures.

  A figure that is ``None`` in a repetition (the input could not support it there) costs no
  points and is never a finding; a rule is praised only when every repetition was judged and
  passed.

  Args:
    figures: one dict of figures per repetition (:func:`perfectrep_jax.form.figures.rep_figures`).
    exercise: the rules.
    not_judged: rule id -> why the input cannot support it: such a rule is skipped (no
      finding, no praise, no points).
    worst_severities: rule id (of ``not_judged``) -> per repetition, the largest severity the
      input leaves possible (a borderline figure worsened by its error margin); a rule not
      judged and not given here could be anything up to 1. They make ``score_low``: the score
      is a range, ``score_low`` to ``score``, when rules were not judged.
  Returns:
    the :class:`Assessment`; with no repetitions the score is 0 and one finding says so.
  """
  n = len(figures)
  if n == 0:
    return Assessment(
      0.0,
      (),
      (),
      (
        Finding(
          "no_reps", "", "No repetitions were found, so the form could not be judged.", (), 1.0, float("nan")
        ),
      ),
      (),
      {},
      score_low=0.0,
    )
  sev = np.array([[rule.severity(f.get(rule.figure)) for rule in exercise.rules] for f in figures]).reshape(
    n, -1
  )
  weights = np.array([rule.weight for rule in exercise.rules])
  findings, praise, issues = [], [], [[] for _ in range(n)]
  not_judged = not_judged or {}
  worst = sev.copy()
  for k, rule in enumerate(exercise.rules):
    if rule.id in not_judged:
      worst[:, k] = (worst_severities or {}).get(rule.id, 1.0)
      sev[:, k] = 0.0
      continue
    failing = [i for i in range(n) if sev[i, k] > FAIL_LEVEL]
    for i in failing:
      issues[i].append(rule.id)
    if failing:
      typical = float(np.median([figures[i][rule.figure] for i in failing]))
      target = ("at least " if rule.better == "higher" else "at most ") + format_figure(
        rule.good, rule.figure
      )
      msg = (
        f"{rule.finding} in {len(failing)} of {n} repetitions "
        f"({FIGURES[rule.figure][0].split(' (')[0]}: typically {format_figure(typical, rule.figure)}, aim for {target}). "
        f"{rule.advice}"
      )
      findings.append(
        (
          float(sev[:, k].mean() * rule.weight),
          Finding(rule.id, rule.figure, msg, tuple(failing), float(sev[:, k].mean()), typical),
        )
      )
    elif not np.any(sev[:, k] > 0) and all(f.get(rule.figure) is not None for f in figures):
      praise.append(rule.praise)
  rep_scores = 100.0 - sev @ weights if len(weights) else np.full(n, 100.0)
  rep_low = 100.0 - worst @ weights if len(weights) else np.full(n, 100.0)
  findings.sort(key=lambda t: -t[0])
  penalties = {rule.id: float(sev[:, k].mean() * rule.weight) for k, rule in enumerate(exercise.rules)}
  severities = tuple({rule.id: float(sev[i, k]) for k, rule in enumerate(exercise.rules)} for i in range(n))
  return Assessment(
    float(np.mean(rep_scores)),
    tuple(float(s) for s in rep_scores),
    tuple(tuple(i) for i in issues),
    tuple(f for _, f in findings),
    tuple(praise),
    penalties,
    severities,
    float(np.mean(rep_low)),
    tuple(float(s) for s in rep_low),
  )
