#!/usr/bin/env python
"""The README's default-lifter table ("What the default lifter reaches"), from the shipped weights.

    python benchmarks/lifter_figures.py [--model perfectrep_jax/weights/lifter] \
        [--mlp-run runs/lifter-mlp] [--write-readme]

Reads the held-out figures and the feedback agreement that ``perfectrep-jax publish`` recorded in the
model's ``model.json`` (clean and detector-like 2D, the held-out performers at unseen views, per
exercise), and, given ``--mlp-run`` (a run of ``configs/lifter.py:mlp``: the per-frame baseline
on the same data), evaluates that baseline the same two ways and keeps its figures in
``benchmarks/lifter_mlp.json``; without it, the figures kept there are reported (the baseline does
not change when the lifter does). With ``--write-readme`` the table replaces the block between
``<!-- lifter-figures:begin -->`` and ``<!-- lifter-figures:end -->`` in README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from perfectrep_jax.fileio import atomic_write_bytes, load_json, print_block
from perfectrep_jax.train.config_load import config_from_file

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- lifter-figures:begin -->", "<!-- lifter-figures:end -->"
MLP_FIGURES = ROOT / "benchmarks" / "lifter_mlp.json"  # the baseline's last evaluation
# Published anchors (Human3.6M, MPJPE): what lifting reaches with far more data and compute.
ANCHORS = (
  "MotionBERT: 16.9 mm from ground-truth 2D, 37.5-39.2 mm from a detector's 2D; "
  "VideoPose3D: 46.8 mm from CPN detections (both on Human3.6M, Protocol #1)"
)
TARGETS = {"clean_2d": (60.0, 40.0), "detector_2d": (75.0, 50.0)}  # MPJPE, P-MPJPE (issue 17)
INPUTS = {"clean_2d": "clean 2D", "detector_2d": "detector-like 2D"}  # the two evaluations publish makes
EXERCISES = ("deep squat", "squat", "sit to stand", "two-footed forward hops")


def mlp_figures(run: Path) -> dict:
  """The MLP baseline run's latest checkpoint evaluated as publish evaluates the lifter (clean and
  detector-like 2D), with ``step``, the schedule's ``total_steps`` and the weight of the velocity
  loss it trained with (``lambda_3d_velocity``)."""
  from perfectrep_jax.train.publish import held_out_figures

  config = config_from_file(ROOT / "configs" / "lifter.py", "mlp")  # the default's data, one cosine
  steps = [int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()]
  if not steps:
    raise SystemExit(f"{run}: no checkpoints")
  figures = held_out_figures(config, run, max(steps))
  trained = load_json(run / "config.json", "the baseline run's config.json")  # as that run was trained
  velocity = float(trained.get("loss", {}).get("lambda_3d_velocity", 0.0))
  return {
    **figures,
    "step": max(steps),
    "total_steps": trained["total_steps"],
    "lambda_3d_velocity": velocity,
  }


def baseline(run: Path | None, kept: Path) -> dict | None:
  """The MLP baseline's figures: evaluated from ``run`` and kept in ``kept``, else those kept
  there by an earlier evaluation, else None."""
  if run is not None:
    figures = mlp_figures(run)
    atomic_write_bytes(kept, (json.dumps(figures, indent=1) + "\n").encode())
    return figures
  return load_json(kept, "the MLP baseline's figures") if kept.is_file() else None


def table(header: list[str], rows: list[list]) -> list[str]:
  """A Markdown table's lines."""
  return [
    "| " + " | ".join(header) + " |",
    "|" + "---|" * len(header),
    *("| " + " | ".join(map(str, row)) + " |" for row in rows),
  ]


def stages(trained: dict) -> list[int]:
  """Steps of each run the weights went through, first to last (``trained.initialised_from``)."""
  chain = []
  while trained:
    chain.append(int(trained.get("step") or 0))
    trained = trained.get("initialised_from", {}).get("trained")
  return chain[::-1]


def uncertainty_line(calibration: dict) -> str:
  """What the lifter's own uncertainty is worth, as ``publish`` measured it."""
  rows = {r["threshold"]: r for r in calibration["table"]}
  head = (
    f"The lifter's own uncertainty (its direct and mirrored passes' disagreement), on the same held-out "
    f"takes from detector-like 2D: Spearman {calibration['spearman']:.2f} with the per-joint error"
  )
  t = calibration["threshold"]
  if t is None:
    enough = f" (at least {calibration['min_share']:.1%} of them)" if "min_share" in calibration else ""
    erring = [r for r in calibration["table"] if "ratio" in r]
    top = max(erring, key=lambda r: r["ratio"]) if erring else None
    most = (
      f"; the most it singles out: joints beyond {top['threshold']:.0%} of the body's height "
      f"({100 * top['share']:.2f}% of them) err {top['ratio']:.1f}x the rest"
      if top
      else ""
    )
    return (
      head + f"; no threshold marks joints{enough} that err {calibration['error_ratio']:g}x the rest{most}, "
      "so it is not used."
    )
  r = rows[t]
  return (
    head + f"; joints beyond {t:.0%} of the body's height ({100 * r['share']:.2f}% of them) err "
    f"{r['error_mm']:.0f} mm against {r['rest_error_mm']:.0f} mm for the rest ({r['ratio']:.1f}x), so "
    "`infer` leaves rules on them not judged."
  )


def margins_line(errors: dict) -> str:
  """The lifter's figure errors, and what the report does with them."""
  from perfectrep_jax.form.analyze import DEPTH_VIEW_DEG, VIEWS
  from perfectrep_jax.form.rules import format_figure

  key = "margin" if "margin" in errors else "median_abs"  # lifters published before margins: medians
  which = (
    f"The error that {errors.get('margin_quantile', 0.8):.0%} of the lifter's repetitions stay within"
    if key == "margin"
    else "The lifter's median error"
  )
  said = ", ".join(f"`{k}` {format_figure(v, k)}" for k, v in errors[key].items())
  line = (
    f"{which}, per form figure, measured on the training performers' exercise takes "
    f"({errors['views']} views of their own, detector-like 2D): {said}. A rule "
    "whose repetitions all sit within that of its limit is reported as borderline, not judged "
    "(`rules judged` above)."
  )
  by_view = {v: t.get(key, {}) for v, t in (errors.get("by_view") or {}).items()}
  if not by_view:
    return line
  figures = sorted({k for t in by_view.values() for k in t})
  rows = [
    [f"`{k}`"] + [format_figure(by_view[v][k], k) if k in by_view.get(v, {}) else "-" for v in VIEWS]
    for k in figures
  ]
  return (
    line + " By the view the lifted 3D is seen from (the hips' line against the camera's axis: side within "
    f"{DEPTH_VIEW_DEG:.0f} degrees, facing beyond {90 - DEPTH_VIEW_DEG:.0f}), where each view's own margin "
    "is used:\n\n" + "\n".join(table(["figure", *VIEWS], rows))
  )


def losses(mlp: dict) -> str:
  """What the baseline's loss left out, as a clause: ``""`` when it is not recorded."""
  if "lambda_3d_velocity" not in mlp:
    return ""
  if mlp["lambda_3d_velocity"] == 0:
    return "; position losses only: one frame at a time cannot follow the velocity term"
  return f"; velocity loss weight {mlp['lambda_3d_velocity']:g}"


def _mm(x) -> str:
  return "-" if x is None else f"{x:.1f} mm"


def block(meta: dict, mlp: dict | None, when: str, command: str) -> str:
  """The README block: pose errors, per exercise, the baseline, feedback agreement, anchors."""
  held, feedback = meta["held_out"], meta.get("feedback", {})
  trained = meta["trained"]
  cfg = trained["config"]
  rows = table(
    ["2D input", "MPJPE", "P-MPJPE", "depth error", "PCK@150 mm", "target (MPJPE / P-MPJPE)"],
    [
      [label, _mm(f["mpjpe"]), _mm(f["p_mpjpe"]), _mm(f.get("depth_mm")), f"{f['pck150']:.1f}%"]
      + [f"<= {TARGETS[name][0]:.0f} / {TARGETS[name][1]:.0f} mm"]
      for name, label in INPUTS.items()
      for f in [held[name]]
    ],
  )
  lines = [
    "",
    "Per exercise (MPJPE, clean / detector-like 2D):",
    "",
    "| exercise | clean 2D | detector-like 2D |",
    "|---|---|---|",
  ]
  for ex in EXERCISES:
    clean = held["clean_2d"]["per_action_mpjpe"].get(ex)
    noisy = held["detector_2d"]["per_action_mpjpe"].get(ex)
    if clean is not None:
      lines.append(f"| {ex} | {_mm(clean)} | {_mm(noisy)} |")
  if mlp is not None:
    ratio = 1 - held["clean_2d"]["mpjpe"] / mlp["clean_2d"]["mpjpe"]
    schedule = f"its {mlp['total_steps']}-step schedule"
    at = (
      f"at the end of {schedule}"
      if mlp["step"] >= mlp["total_steps"]
      else f"at step {mlp['step']} of {schedule}"
    )
    lines += [
      "",
      f"The per-frame MLP baseline (`configs/lifter.py:mlp`) trained on the same data and 2D (batches "
      f"of {cfg['batch_size']} clips{losses(mlp)}), "
      f"evaluated {at}: {_mm(mlp['clean_2d']['mpjpe'])} / {_mm(mlp['detector_2d']['mpjpe'])} MPJPE "
      f"(clean / detector-like 2D); the DSTformer is {100 * ratio:.0f}% below it from clean 2D (target: "
      "at least 30%).",
    ]
  if feedback:
    lines += [
      "",
      "Feedback from lifted 2D against feedback from the true 3D, on the held-out performers' "
      "exercise takes (each filmed whole from "
      f"{feedback.get('views_per_take', 2)} unseen views; `perfectrep_jax/wild/agreement.py`):",
      "",
      *table(
        ["2D input", "views", "same findings", "with a false finding", "scores within 10"]
        + ["... on the judged rules", "... of the score's range", "reps exact", "mean score gap"]
        + ["rules judged"],
        [
          [label, s["views"], s["same_findings"], s["with_false_findings"], s["score_within_10"]]
          + [s.get("judged_score_within_10", "-"), s.get("score_range_within_10", "-")]
          + [s["reps_exact"], f"{s['mean_score_diff']:.1f}"]
          + [f"{100 * s['rules_judged']:.0f}%" if "rules_judged" in s else "-"]
          for name, label in INPUTS.items()
          for s in [feedback[name]]
        ],
      ),
    ]
  if "figure_errors" in meta:
    lines += ["", margins_line(meta["figure_errors"])]
  if "uncertainty" in meta:
    lines += ["", uncertainty_line(meta["uncertainty"])]
  model = cfg["model"]
  chain = stages(trained)
  steps = (
    f"{sum(chain)} steps in {len(chain)} runs ({' + '.join(map(str, chain))}, each initialised from the last)"
    if len(chain) > 1
    else f"step {trained['step']}"
  )
  lines += [
    "",
    f"Anchors: {ANCHORS}.",
    f"Model: dim {model['dim_feat']}, depth {model['depth']}, {model['maxlen']} frames, "
    f"{meta['weight_bytes'] / 2**20:.1f} MiB; {steps} of `configs/lifter.py:default`, "
    f"commit {trained['commit'][:12]}. Written {when} by `{command}`.",
  ]
  return "\n".join([BEGIN, *rows, *lines, END])


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="lifter_figures.py", description=__doc__.split("\n\n")[0])
  p.add_argument("--model", default=str(ROOT / "perfectrep_jax" / "weights" / "lifter"))
  p.add_argument("--mlp-run", default=None, help="run directory of the MLP baseline")
  p.add_argument("--write-readme", action="store_true")
  args = p.parse_args(argv)
  meta_path = Path(args.model) / "model.json"
  if not meta_path.is_file():
    raise SystemExit(f"{meta_path}: no published lifter (perfectrep-jax publish writes it)")
  meta = json.loads(meta_path.read_text())
  mlp = baseline(Path(args.mlp_run) if args.mlp_run else None, MLP_FIGURES)
  command = "python benchmarks/lifter_figures.py" + (" --mlp-run RUN" if args.mlp_run else "")
  text = block(meta, mlp, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), command)
  print_block(text, BEGIN, END, ROOT / "README.md" if args.write_readme else None)
  return 0


if __name__ == "__main__":
  sys.exit(main())
