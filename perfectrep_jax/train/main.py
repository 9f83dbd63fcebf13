"""``perfectrep-jax train`` and ``perfectrep-jax eval``: absl flags with ml_collections configs.

    perfectrep-jax train --config configs/pretrain.py:demo --workdir runs/demo \
        [--config.optim.lr=1e-4 ...]
    perfectrep-jax eval  --config configs/pretrain.py:demo --workdir runs/demo [--step N]

Rerunning ``train`` with the same workdir resumes from its latest checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import atomic_write_bytes
from perfectrep_jax.train import aot, trainer
from perfectrep_jax.train.config_check import check_config
from perfectrep_jax.train.config_load import HELP_FLAGS, help_text, parse_config_flags
from perfectrep_jax.train.publish import publish
from perfectrep_jax.train.sharding import initialize_distributed_from_config
from perfectrep_jax.wild.agreement import ERROR_RATIO

_FLAGS = flags.FlagValues()
_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "task config: configs/<task>.py[:variant]", lock_config=True, flag_values=_FLAGS
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "run directory (checkpoints, metrics, config)", flag_values=_FLAGS
)
_STEP = flags.DEFINE_integer(
  "step", None, "eval: checkpoint step (default: best, else latest)", flag_values=_FLAGS
)
_OUT = flags.DEFINE_string(
  "out",
  None,
  "publish: model directory to write (default: the package's default lifter, perfectrep_jax/weights/lifter)",
  flag_values=_FLAGS,
)


def parse(command: str, argv: list[str]):
  """Parses ``argv`` (the words after the subcommand) into (config, workdir, step)."""
  parse_config_flags(_FLAGS, [f"perfectrep-jax {command}", *argv], _CONFIG)
  if _CONFIG.value is None:
    raise UserError("--config is required, e.g. --config configs/pretrain.py:demo")
  if not _WORKDIR.value:
    raise UserError("--workdir is required")
  return _CONFIG.value, _WORKDIR.value, _STEP.value


def run(command: str, argv: list[str]) -> None:
  if command == "compile":  # flags of its own (--topology, --json, --search-mesh), no workdir
    aot.run(argv)
    return
  if any(word in HELP_FLAGS for word in argv):  # absl's own --help would list its internal flags
    print(help_text(command, full="--helpfull" in argv), flush=True)
    return
  config, workdir, step = parse(command, argv)
  initialize_distributed_from_config(config)  # before anything asks JAX for its devices
  check_config(config)
  if command == "train":
    metrics = trainer.train_and_evaluate(config, workdir)
    if metrics:
      summary = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if "/" not in k)
      print(f"done: {summary}", flush=True)
  elif command == "eval":
    result = trainer.evaluate(config, workdir, step=step)
    print(result.table, flush=True)
    if result.files:
      out = Path(workdir) / "eval" / (f"step_{step}" if step is not None else "best")
      for name, data in result.files.items():
        atomic_write_bytes(out / name, data)
      print(f"tables and plots: {out}", flush=True)
  elif command == "publish":
    summary = publish(config, workdir, out=_OUT.value, step=step)
    for name, figures in summary["held_out"].items():
      print(
        f"held out, {name}: MPJPE {figures['mpjpe']:.1f} mm, P-MPJPE {figures['p_mpjpe']:.1f} mm "
        f"({figures['eval_clips']:.0f} clips)",
        flush=True,
      )
    u = summary["uncertainty"]
    print(
      f"uncertainty: joints beyond {u['threshold']} of the body's height are not judged "
      f"(they err {ERROR_RATIO:g}x the rest or more; Spearman {u['spearman']} with the error)"
      if u["threshold"] is not None
      else f"uncertainty: no threshold tells the wrong joints (Spearman {u['spearman']}); not used",
      flush=True,
    )
    for name in ("clean_2d", "detector_2d"):
      f = summary["feedback"][name]
      print(
        f"feedback, {name}: same findings in {f['same_findings']} of {f['views']} held-out exercise "
        f"views, false findings in {f['with_false_findings']}, scores within 10 points in "
        f"{f['score_within_10']} ({f['judged_score_within_10']} on the rules judged, "
        f"{f['score_range_within_10']} within 10 of the report's range), repetitions exact "
        f"in {f['reps_exact']}",
        flush=True,
      )
    what = "feedback measured again for" if "feedback_measured" in summary else "published"
    print(
      f"{what} step {summary['trained']['step']} of {workdir} -> {summary['out']} "
      f"({summary['weight_bytes'] / 2**20:.1f} MiB)",
      flush=True,
    )
  else:
    raise ValueError(command)


if __name__ == "__main__":
  run(sys.argv[1], sys.argv[2:])
