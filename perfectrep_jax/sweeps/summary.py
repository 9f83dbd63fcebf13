"""The results of a sweep: one row per run with its overrides, progress and best evaluation.

Read from each run directory: ``metrics.jsonl`` (the trainer's; evaluation lines carry
``"split": "test"``), ``config.json`` (``total_steps``) and ``sweep.json`` (the sweep runner's).
The best evaluation is the lowest ``mpjpe`` (pose tasks) or the highest ``top1`` (action).
A run is flagged (``flag``) when it diverged (a NaN or infinite loss or validation metric) or when
its validation metric never improved on its first evaluation: "done" is not "learned".
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perfectrep_jax.fileio import atomic_write_bytes
from perfectrep_jax.sweeps.spec import LoadedSweep, read_state, short_value

SKIP = {"step", "split", "eval_clips"}


def _read_jsonl(path: Path) -> list[dict]:
  """The JSON lines of ``path``, skipping a line cut short by a process that was killed."""
  out = []
  try:
    text = path.read_text()
  except FileNotFoundError:
    return out
  for line in text.splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue
    if isinstance(record, dict) and "step" in record:
      out.append(record)
  return out


def _finite(value: Any) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value)


def _metric(evals: Sequence[dict]) -> str:
  return "top1" if any("top1" in r for r in evals) else "mpjpe"


def best_eval(records: Sequence[dict]) -> dict | None:
  """The best evaluation line: highest ``top1`` if the lines have it, else lowest ``mpjpe``
  (NaN never; of equal ones the earliest)."""
  evals = [r for r in records if r.get("split") == "test"]
  key = _metric(evals)
  scored = [r for r in evals if _finite(r.get(key))]
  if not scored:
    return None
  if key == "top1":
    return max(scored, key=lambda r: (r["top1"], -r["step"]))
  return min(scored, key=lambda r: (r["mpjpe"], r["step"]))


def run_flag(records: Sequence[dict]) -> str:
  """Why a run's results should not be trusted, or '': it diverged (a non-finite loss or
  validation metric), or its validation metric never improved on its first evaluation."""
  for r in records:
    bad = [k for k in ("loss", "mpjpe", "top1") if k in r and not _finite(r[k])]
    if bad:
      return f"diverged: {bad[0]} {r[bad[0]]} at step {r['step']}"
  evals = [r for r in records if r.get("split") == "test"]
  key = _metric(evals)
  evals = sorted((r for r in evals if key in r), key=lambda r: r["step"])
  if len(evals) < 2:
    return ""
  first, later = evals[0], evals[1:]
  improved = (
    max(r[key] for r in later) > first[key] if key == "top1" else min(r[key] for r in later) < first[key]
  )
  if improved:
    return ""
  return (
    f"never improved: {key} {first[key]:.2f} at its first evaluation (step {first['step']}), "
    f"no better in {len(later)} later"
  )


def run_row(run_dir: Path) -> dict[str, Any]:
  """Status, steps and best evaluation of one run directory (overrides not included)."""
  records = _read_jsonl(run_dir / "metrics.jsonl")
  state = read_state(run_dir)
  try:
    total = int(json.loads((run_dir / "config.json").read_text())["total_steps"])
  except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
    total = None
  step = max((int(r["step"]) for r in records), default=None)
  if state.get("status") == "failed":
    status = "failed"
  elif step is not None and total is not None and step >= total:
    status = "done"
  elif records or state.get("status") == "running":
    status = "partial"
  else:
    status = "pending"
  row: dict[str, Any] = {"status": status, "flag": run_flag(records), "step": step, "total_steps": total}
  best = best_eval(records)
  if best is not None:
    row["best_step"] = best["step"]
    row.update(
      {k: v for k, v in best.items() if k not in SKIP and "/" not in k and isinstance(v, (int, float))}
    )
  return row


def summarize(loaded: LoadedSweep, workdir: str | Path) -> list[dict[str, Any]]:
  """One row per run of the sweep, in the sweep's order: run name, overrides, results."""
  rows = []
  for run in loaded.runs:
    rows.append({"run": run.name, **run.overrides, **run_row(Path(workdir) / run.name)})
  return rows


def _columns(rows: Sequence[dict]) -> list[str]:
  cols: list[str] = []
  for row in rows:
    cols += [k for k in row if k not in cols]
  return cols


def _best_index(rows: Sequence[dict]) -> int | None:
  """The best run that did not diverge."""
  rows = [r if not str(r.get("flag", "")).startswith("diverged") else {} for r in rows]
  if any("top1" in r for r in rows):
    scored = [(r["top1"], i) for i, r in enumerate(rows) if _finite(r.get("top1"))]
    return max(scored)[1] if scored else None
  scored = [(r["mpjpe"], i) for i, r in enumerate(rows) if _finite(r.get("mpjpe"))]
  return min(scored)[1] if scored else None


def _cell(value: Any, metric: bool) -> str:
  if value is None:
    return "-"
  if metric and isinstance(value, float):
    return f"{value:.2f}"
  return short_value(value)


def format_table(rows: Sequence[dict]) -> str:
  """An aligned text table; the best run is marked with ``*`` and named below it, flagged runs
  (``run_flag``) with ``!`` and a line each saying why."""
  if not rows:
    return "(no runs)"
  cols = [c for c in _columns(rows) if c != "flag"]  # flags are said below the table
  metric_from = cols.index("best_step") if "best_step" in cols else len(cols)
  best = _best_index(rows)
  cells = [["", *cols]]
  for i, row in enumerate(rows):
    mark = ("*" if i == best else "") + ("!" if row.get("flag") else "")
    cells.append([mark, *[_cell(row.get(c), j > metric_from) for j, c in enumerate(cols)]])
  widths = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
  if best is not None:
    row = rows[best]
    key = "top1" if "top1" in row else "mpjpe"
    lines.append(f"best: {row['run']} ({key} {row[key]:.2f} at step {row['best_step']})")
  lines += [f"flagged: {row['run']}: {row['flag']}" for row in rows if row.get("flag")]
  return "\n".join(lines)


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
  """Writes the rows as CSV (every column of any row; empty where a row has none), atomically."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=_columns(rows), lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow(
      {
        k: ("" if v is None else (short_value(v) if isinstance(v, (list, tuple)) else v))
        for k, v in row.items()
      }
    )
  return atomic_write_bytes(path, buf.getvalue().encode())


# ---------------------------------------------------------------------------- per-action table
def _label(loaded: LoadedSweep, run) -> str:
  """A run's column name: the value of the one field the grid varies, else the run name."""
  varied = {k for r in loaded.runs for k in r.overrides}
  if len(varied) == 1:
    return short_value(next(iter(run.overrides.values())))
  return run.name


def per_action(loaded: LoadedSweep, workdir: str | Path) -> dict[str, Any] | None:
  """P1 / P2 per action per run at each run's best evaluation (PoseFormerV2's detector table).

  Reads ``WORKDIR/<run>/eval/step_<best>/metrics.json`` (its ``per_action``, written by every pose
  evaluation). Returns ``None`` when no run has one, else::

      {"runs": [label, ...], "actions": [...],
       "P1": {action: {label: mm}}, "P2": {...}, "frames": {action: {label: n}}}

  with a last action ``"mean"``: each run's mean over its actions (each action weighs the same, as
  upstream reports it). Runs without a finished evaluation are left out of ``runs``.
  """
  out: dict[str, Any] = {"runs": [], "actions": [], "P1": {}, "P2": {}, "frames": {}}
  for run in loaded.runs:
    run_dir = Path(workdir) / run.name
    best = best_eval(_read_jsonl(run_dir / "metrics.jsonl"))
    if best is None or "top1" in best:
      continue
    try:
      doc = json.loads((run_dir / "eval" / f"step_{best['step']}" / "metrics.json").read_text())
      table = doc["per_action"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
      continue
    label = _label(loaded, run)
    out["runs"].append(label)
    for action, entry in table.items():
      if action not in out["actions"]:
        out["actions"].append(action)
      for key in ("P1", "P2", "frames"):
        out[key].setdefault(action, {})[label] = entry[key]
    for key in ("P1", "P2"):
      values = [float(v[key]) for v in table.values()]
      out[key].setdefault("mean", {})[label] = sum(values) / len(values)
  if not out["runs"]:
    return None
  out["actions"].append("mean")
  return out


def format_per_action(table: dict[str, Any]) -> str:
  """Actions down, runs across, ``P1 / P2`` in mm in each cell."""
  cells = [["action", *table["runs"]]]
  for action in table["actions"]:
    row = [action]
    for label in table["runs"]:
      p1, p2 = table["P1"].get(action, {}).get(label), table["P2"].get(action, {}).get(label)
      row.append("-" if p1 is None else f"{p1:.1f} / {p2:.1f}")
    cells.append(row)
  widths = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def write_per_action(table: dict[str, Any], workdir: str | Path) -> tuple[Path, Path]:
  """``per_action.csv`` (action, then ``<run> P1`` and ``<run> P2`` columns) and ``per_action.json``."""
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(["action", *[f"{label} {key}" for label in table["runs"] for key in ("P1", "P2")]])
  for action in table["actions"]:
    writer.writerow(
      [
        action,
        *[
          ("" if (v := table[key].get(action, {}).get(label)) is None else f"{v:.4f}")
          for label in table["runs"]
          for key in ("P1", "P2")
        ],
      ]
    )
  workdir = Path(workdir)
  return (
    atomic_write_bytes(workdir / "per_action.csv", buf.getvalue().encode()),
    atomic_write_bytes(workdir / "per_action.json", json.dumps(table, indent=1).encode()),
  )
