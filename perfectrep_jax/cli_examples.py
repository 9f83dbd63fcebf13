"""Examples at the end of every ``perfectrep-jax COMMAND --help`` (and, for ``sweep``, the sweeps
``configs/sweeps/`` holds). ``train`` and ``eval`` print theirs from ``train/config_load.py``."""

from __future__ import annotations

import argparse
import ast
import textwrap
from pathlib import Path

EXAMPLES = {
  "convert": [
    "perfectrep-jax convert best_epoch.bin models/perfectrep",
    "perfectrep-jax convert MB_ft_h36m.bin models/motionbert --num-heads 8",
    "perfectrep-jax convert action_best_epoch.bin models/backbone --part backbone",
  ],
  "predict": ["perfectrep-jax predict --checkpoint runs/demo --input clips.npy --output pred.npy"],
  "export": [
    "perfectrep-jax export runs/demo best_epoch.bin",
    "perfectrep-jax export runs/demo best_epoch_500.bin --step 500",
  ],
  "prepare": [
    "perfectrep-jax prepare demo --data-dir ~/tensorflow_datasets",
    "perfectrep-jax prepare fit3d --manual-dir /data/fit3d --data-dir /data/tfds",
    "perfectrep-jax prepare h36m/cpn --manual-dir /data/h36m --data-dir /data/tfds",
  ],
  "analyze": [
    "perfectrep-jax analyze out/X3D.json --exercise squat --out out/",
    "perfectrep-jax analyze joints.npy --exercise deadlift --fps 25 --up z --out report/",
  ],
  "infer": [
    "perfectrep-jax infer --checkpoint runs/demo --keypoints squat_vitpose.json "
    "--out out/ --fps 25 --exercise squat",
    "perfectrep-jax infer --checkpoint runs/demo --video squat.mp4 --exercise squat --out out/",
  ],
  "detect": [
    "perfectrep-jax detect squat.mp4 --out squat_2d.json",
    "perfectrep-jax detect photo.jpg --out photo_2d.json --num-poses 2",
  ],
  "pose-model": ["perfectrep-jax pose-model", "perfectrep-jax pose-model --out pose_landmarker.task"],
  "export-model": [
    "perfectrep-jax export-model runs/demo exported/hlo --format stablehlo",
    "perfectrep-jax export-model runs/demo exported/onnx --format onnx --frames 27",
  ],
  "stream": [
    "my_detector | perfectrep-jax stream --checkpoint runs/demo --image-size 1920 1080 "
    "--fps 30 > motion.jsonl",
    "perfectrep-jax stream --checkpoint runs/demo --video squat.mp4",
  ],
  "sweep": [
    "perfectrep-jax sweep smoke --workdir runs/sweep-smoke",
    "perfectrep-jax sweep demo_lr_depth --workdir runs/demo-lr-depth --summary",
    "perfectrep-jax sweep pretrain_scale:gpu --workdir /shared/runs/scale --emit slurm --num-devices 8",
  ],
}


def sweeps_available() -> list[tuple[str, str]]:
  """(name, the start of its docstring) of each sweep in ``configs/sweeps/`` (here, or in the
  repository this package is in); the files are read, not run."""
  for folder in (Path("configs/sweeps"), Path(__file__).resolve().parents[1] / "configs" / "sweeps"):
    files = sorted(p for p in folder.glob("*.py") if p.name != "__init__.py") if folder.is_dir() else []
    if files:
      out = []
      for path in files:
        try:
          doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        except SyntaxError:
          doc = "(does not parse)"
        first = " ".join(doc.strip().split("\n\n")[0].split())  # the first paragraph
        if len(first) > 90:
          first = first[:87].rsplit(" ", 1)[0].rstrip(",;:") + "..."
        out.append((path.stem, first))
      return out
  return []


def epilog(command: str) -> str | None:
  lines = []
  if command == "sweep":
    found = sweeps_available()
    width = max((len(name) for name, _ in found), default=0)
    lines += [
      "sweeps available (configs/sweeps/NAME.py; or give a path):",
      *[f"  {name:<{width}}  {text}" for name, text in found],
      "",
    ]
  if command in EXAMPLES:
    lines += ["examples:", *[f"  {e}" for e in EXAMPLES[command]]]
  return "\n".join(lines) or None


def add_examples(subparsers: argparse._SubParsersAction) -> None:
  """Gives each subcommand's ``--help`` its examples (kept as written, not re-wrapped)."""
  for name, parser in subparsers.choices.items():
    text = epilog(name)
    if text and parser.add_help:
      parser.epilog = text
      parser.formatter_class = argparse.RawDescriptionHelpFormatter
      if parser.description:  # no longer wrapped by argparse: wrapped here
        parser.description = textwrap.fill(" ".join(parser.description.split()), 79)
