#!/usr/bin/env python
"""The README's demo table ("What the demo shows"), regenerated: trains the demo DSTformer and the
per-frame MLP baseline on the same data and budget, and reads the untrained DSTformer's figures off
the DSTformer run's evaluation at step 0 (``eval_at_start``, same initialisation).

    python benchmarks/demo_figures.py [--workdir runs/demo-figures] [--write-readme]

Runs ``perfectrep-jax train --config configs/pretrain.py:demo`` twice (the DSTformer, then
:data:`MLP_FLAGS`; about 6 and 4 minutes on 2 CPU cores); a run an earlier call finished is not
trained again (its wall time is kept in ``WORKDIR/timings.json``). Figures are the per-action means of P1
(MPJPE) and P2 (P-MPJPE) on the held-out subjects, from ``WORKDIR/<run>/eval/step_<N>/metrics.json``.
With ``--write-readme`` the table and its lines (date, machine, command) replace the block between
``<!-- demo-figures:begin -->`` and ``<!-- demo-figures:end -->`` in README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from perfectrep_jax.fileio import print_block

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BEGIN, END = "<!-- demo-figures:begin -->", "<!-- demo-figures:end -->"
# Both train on the position losses only (the demo config's): the MLP sees one frame at a time and
# could not follow a velocity term anyway.
MLP_FLAGS = ["--config.model.name=mlp"]
RUNS = {"dstformer": [], "mlp": MLP_FLAGS}


def train(variant: str, workdir: Path, name: str) -> float:
  """Trains one run (resuming a finished one is a no-op); returns its wall time in seconds."""
  cmd = [
    sys.executable,
    "-m",
    "perfectrep_jax.cli",
    "train",
    "--config",
    f"{ROOT / 'configs' / 'pretrain.py'}:{variant}",
    "--workdir",
    str(workdir / name),
    "--config.eval_at_start=True",
    *RUNS[name],
  ]
  print("+", " ".join(cmd), flush=True)
  start = time.perf_counter()
  subprocess.run(cmd, check=True, cwd=ROOT)
  return time.perf_counter() - start


def evaluation(run_dir: Path, step: int | None = None) -> dict:
  """``{"step", "p1", "p2"}`` of the evaluation at ``step`` (default: the last), per-action means."""
  steps = sorted(
    int(p.name.split("_", 1)[1]) for p in (run_dir / "eval").glob("step_*") if (p / "metrics.json").is_file()
  )
  if not steps:
    raise SystemExit(f"{run_dir}: no evaluations (eval/step_*/metrics.json); did it train?")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise SystemExit(f"{run_dir}: no evaluation at step {step} (there are {steps})")
  doc = json.loads((run_dir / "eval" / f"step_{step}" / "metrics.json").read_text())
  actions = doc["per_action"].values()
  return {
    "step": step,
    "p1": sum(a["P1"] for a in actions) / len(actions),
    "p2": sum(a["P2"] for a in actions) / len(actions),
    "steps": steps,
  }


def machine() -> str:
  from perfectrep_jax.hostmem import cpu_model

  cpu = cpu_model()
  return f"{cpu}, {len(os.sched_getaffinity(0))} cores"


def compared(former: float, mlp: float) -> str:
  """Which of the two ends lower (P1), and by how much of the other's error."""
  if former <= mlp:
    return f"The DSTformer ends {100 * (1 - former / mlp):.0f}% below the MLP (P1)."
  return (
    f"The MLP ends {100 * (1 - mlp / former):.0f}% below the DSTformer (P1): on this budget the "
    "per-frame model learns faster; the default lifter below is the DSTformer trained to the end."
  )


def block(workdir: Path, seconds: dict[str, float], command: str, when: str, where: str) -> str:
  """The README block: the table, how the DSTformer compares, and when, where and how it was made."""
  former, mlp = evaluation(workdir / "dstformer"), evaluation(workdir / "mlp")
  untrained = evaluation(workdir / "dstformer", 0)
  steps = former["step"]
  rows = [
    f"| model (same data, same {steps}-step budget) | P1 MPJPE | P2 P-MPJPE |",
    "|---|---|---|",
    f"| untrained DSTformer (step 0 of the run below) | {untrained['p1']:.1f} mm | {untrained['p2']:.1f} mm |",
    f"| per-frame MLP lifter (`{' '.join(MLP_FLAGS)}`, 2 residual blocks of 1024) | {mlp['p1']:.1f} mm "
    f"| {mlp['p2']:.1f} mm |",
    f"| DSTformer | {former['p1']:.1f} mm | {former['p2']:.1f} mm |",
  ]
  lines = ["", compared(former["p1"], mlp["p1"])]
  middle = [s for s in former["steps"] if 0 < s < steps]
  if middle:
    mid = evaluation(workdir / "dstformer", middle[-1])
    lines[-1] += (
      f" Halfway, at step {mid['step']} of the same schedule, it stood at {mid['p1']:.1f} mm "
      f"(P2 {mid['p2']:.1f} mm)."
    )
  timing = ", ".join(f"{name} {seconds[name] / 60:.1f} min" for name in RUNS if name in seconds)
  lines.append(
    f"Measured {when} on {where}"
    + (f" (training wall time: {timing})" if timing else "")
    + f" by `{command}`."
  )
  return "\n".join([BEGIN, *rows, *lines, END])


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="demo_figures.py", description=__doc__.split("\n\n")[0])
  p.add_argument(
    "--workdir",
    default=str(ROOT / "runs" / "demo-figures"),
    help="where the two runs go (default runs/demo-figures)",
  )
  p.add_argument("--variant", default="demo", help="configs/pretrain.py variant (default demo)")
  p.add_argument("--no-train", action="store_true", help="only read runs already in --workdir")
  p.add_argument("--write-readme", action="store_true", help="replace the demo block of README.md")
  args = p.parse_args(argv)
  workdir = Path(args.workdir).resolve()
  timings = workdir / "timings.json"  # training wall times, kept for a later --no-train
  seconds = json.loads(timings.read_text()) if timings.is_file() else {}
  if not args.no_train:
    for name in RUNS:
      status = workdir / name / "status.json"
      if name in seconds and status.is_file() and json.loads(status.read_text()).get("status") == "finished":
        continue  # trained by an earlier call: its wall time is the one recorded then
      seconds[name] = train(args.variant, workdir, name)
      timings.write_text(json.dumps(seconds))
  shown = ["python benchmarks/demo_figures.py"] + (
    ["--variant", args.variant] if args.variant != "demo" else []
  )
  text = block(
    workdir,
    seconds,
    " ".join(shown),
    datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    machine(),
  )
  print_block(text, BEGIN, END, README if args.write_readme else None)
  return 0


if __name__ == "__main__":
  sys.exit(main())
