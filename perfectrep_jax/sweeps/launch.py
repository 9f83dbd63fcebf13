"""Where a sweep's runs go: one after another on this machine, SLURM job scripts, TPU-pod commands.

Every run lives in ``WORKDIR/<run name>``; ``sweep.json`` there records the config and flags it was
made with (and, for local runs, whether it finished), so rerunning a sweep skips finished runs
and refuses to reuse a run directory for different settings.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import unicodedata
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import atomic_write_bytes
from perfectrep_jax.sweeps import summary
from perfectrep_jax.sweeps.spec import (
  LoadedSweep,
  Run,
  check_runs,
  load_sweep,
  read_state,
  write_state,
)
from perfectrep_jax.train import rundir

LOG_FILE = "train.log"
JOB_FILE = "job.sbatch"
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- run state
def settings(loaded: LoadedSweep, run: Run) -> dict:
  """What makes a run the run it is: the config file, variant and flags."""
  return {"config": loaded.config_spec(None), "flags": run.flags}


def check_settings(loaded: LoadedSweep, workdir: Path) -> None:
  """Refuses run directories that were made with other settings than this sweep gives them."""
  clashes = []
  for run in loaded.runs:
    old = read_state(Path(workdir) / run.name).get("settings")
    if old is not None and old != settings(loaded, run):
      clashes.append(f"{Path(workdir) / run.name}: made with {old['config']} {' '.join(old['flags'])}")
  if clashes:
    raise UserError(
      "run directories hold runs with other settings (use another --workdir):\n  " + "\n  ".join(clashes)
    )


# ---------------------------------------------------------------------------- local runs
def train_in_subprocess(run: Run, run_dir: Path) -> int:
  """Runs ``perfectrep-jax train`` for ``run`` in a fresh process, its output shown and appended
  to ``RUN_DIR/train.log``; returns its exit status. Ctrl-C stops it cleanly (SIGTERM: the
  trainer saves a checkpoint) and is raised again."""
  cmd = [sys.executable, "-m", "perfectrep_jax.cli", "train", *run.train_args(run_dir)]
  run_dir.mkdir(parents=True, exist_ok=True)
  with open(run_dir / LOG_FILE, "ab") as log:
    log.write(f"$ {shlex.join(cmd)}\n".encode())
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
      while chunk := os.read(proc.stdout.fileno(), 65536):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        log.write(chunk)
      return proc.wait()
    except KeyboardInterrupt:
      proc.terminate()
      proc.wait()
      raise


def run_local(
  loaded: LoadedSweep,
  workdir: str | Path,
  *,
  fail_fast: bool = False,
  train: Callable[[Run, Path], int] = train_in_subprocess,
) -> dict[str, str]:
  """Runs the sweep's runs one after another; returns {run name: 'done' | 'failed' | 'preempted' |
  'skipped'}.

  Every config is built and validated (fields, values, the mesh on this machine's devices)
  before the first run starts. Runs that finished before are skipped; a run that was stopped
  (preempted: SIGTERM, exit status 143, ``status.json`` says so) resumes from its checkpoint. A failed run does not stop the others unless ``fail_fast``.

  Raises:
    UserError: a config is invalid, a run directory holds another run, or runs failed.
  """
  workdir = Path(workdir)
  check_runs(loaded.runs, mesh_devices=True)
  check_settings(loaded, workdir)
  results: dict[str, str] = {}
  total = len(loaded.runs)
  for i, run in enumerate(loaded.runs, 1):
    run_dir = workdir / run.name
    state = read_state(run_dir)
    if state.get("status") == "done" and rundir.read_status(run_dir).get("status") != "preempted":
      print(f"[{i}/{total}] {run.name}: finished before, skipped", flush=True)
      results[run.name] = "skipped"
      continue
    print(f"[{i}/{total}] {run.name}: perfectrep-jax train {shlex.join(run.train_args(run_dir))}", flush=True)
    base = {"sweep": loaded.spec, "name": run.name, "settings": settings(loaded, run)}
    write_state(run_dir, {**base, "status": "running"})
    code = train(run, run_dir)
    results[run.name] = "done" if code == 0 else "preempted" if code == rundir.PREEMPTED_EXIT else "failed"
    write_state(run_dir, {**base, "status": results[run.name], "exit_status": code})
    if results[run.name] == "preempted":
      print(
        f"[{i}/{total}] {run.name}: preempted (checkpoint saved); rerunning the sweep resumes it", flush=True
      )
      if fail_fast:
        break
    elif code != 0:
      print(f"[{i}/{total}] {run.name}: failed (exit status {code}); log: {run_dir / LOG_FILE}", flush=True)
      if fail_fast:
        break
  rows = summary.summarize(loaded, workdir)
  print(summary.format_table(rows), flush=True)
  summary.write_csv(rows, workdir / "summary.csv")
  failed = [name for name, status in results.items() if status == "failed"]
  preempted = [name for name, status in results.items() if status == "preempted"]
  if failed:
    raise UserError(
      f"{len(failed)} of {total} runs failed: {', '.join(failed)} "
      f"(logs: {workdir}/<run>/{LOG_FILE})" + (f"; {len(preempted)} preempted" if preempted else "")
    )
  if preempted:
    raise UserError(
      f"{len(preempted)} of {total} runs were preempted before finishing: "
      f"{', '.join(preempted)}; run the sweep again to resume them"
    )
  return results


# ---------------------------------------------------------------------------- SLURM
_ALIASES = {
  "-J": "--job-name",
  "-o": "--output",
  "-D": "--chdir",
  "-e": "--error",
  "-N": "--nodes",
  "-n": "--ntasks",
  "-t": "--time",
  "-p": "--partition",
  "-A": "--account",
  "-G": "--gpus",
  "-c": "--cpus-per-task",
}


def check_script_text(value: str, what: str, allow: str = "") -> str:
  """``value`` unchanged, or a UserError when it holds a control character: a newline in what
  is written into a job script (a directive, a comment, a path) would start a raw shell line
  there, and SLURM ignores every ``#SBATCH`` after the first command."""
  bad = sorted({ch for ch in str(value) if unicodedata.category(ch) == "Cc" and ch not in allow})
  if bad:
    shown = str(value) if len(str(value)) <= 80 else str(value)[:77] + "..."
    raise UserError(
      f"{what} {shown!r} contains a control character "
      f"({', '.join(repr(ch) for ch in bad)}); not allowed in a job script"
    )
  return value


def _canonical(option: str) -> str:
  """The long name of an sbatch option as written in a directive: '-J x' -> '--job-name'."""
  name = option.split("=", 1)[0].split()[0]
  return _ALIASES.get(name, name)


def sbatch_directives(options: str) -> list[str]:
  """``"--nodes=2 -J name --gpus-per-node 8"`` -> ``["--nodes=2", "-J name", "--gpus-per-node 8"]``
  (one entry per ``#SBATCH`` line)."""
  check_script_text(options, "--sbatch", allow="\t")  # tabs may separate options
  try:
    words = shlex.split(options)
  except ValueError as e:
    raise UserError(f"--sbatch {options!r}: {e}") from None
  for word in words:
    check_script_text(word, "--sbatch")
  out: list[str] = []
  for word in words:
    if word.startswith("-"):
      out.append(word)
    elif out and " " not in out[-1] and "=" not in out[-1]:
      out[-1] += " " + shlex.quote(word)
    else:
      raise UserError(f"--sbatch {options!r}: {word!r} is not an sbatch option")
  return out


def render_sbatch(template: str, run: Run, run_dir: Path, options: Sequence[str], comment: str) -> str:
  """The template with ``options`` as ``#SBATCH`` directives (replacing the template's own for the
  same option) and ``set -- <train arguments>`` right after the directives, so the template's
  ``"$@"`` is this run's arguments."""
  for text in (*options, comment):
    check_script_text(text, "a value of the job script")
  ours = {_canonical(o) for o in options}
  lines = template.splitlines()
  kept, last_directive = [], 0
  for line in lines:
    if line.startswith("#SBATCH"):
      if _canonical(line[len("#SBATCH") :].strip()) in ours:
        continue
      kept.append(line)
      last_directive = len(kept)
    else:
      kept.append(line)
  if last_directive == 0:
    last_directive = 1 if kept and kept[0].startswith("#!") else 0
  insert = [f"#SBATCH {o}" for o in options]
  insert += ["", f"# {comment}", f"set -- {shlex.join(run.train_args(run_dir))}"]
  return "\n".join(kept[:last_directive] + insert + kept[last_directive:]) + "\n"


def default_template() -> Path:
  for path in (REPO / "launch" / "slurm.sbatch", Path("launch/slurm.sbatch")):
    if path.is_file():
      return path
  raise UserError("launch/slurm.sbatch not found; give the batch script with --template")


def emit_slurm(
  loaded: LoadedSweep,
  workdir: str | Path,
  *,
  template: str | Path | None = None,
  sbatch_options: str = "",
  num_devices: int | None = None,
) -> list[str]:
  """Writes ``WORKDIR/<run>/job.sbatch`` for every run; returns the lines to print: comments, a
  check that ``sbatch`` exists (one message and exit status 127 when it does not) and one
  ``sbatch`` command per run (the output can be piped to ``bash``).

  The scripts use absolute paths and ``--chdir`` to the current directory, so they can be
  submitted from anywhere on a file system the cluster shares.
  """
  workdir = Path(workdir).resolve()
  for value, what in (
    (loaded.spec, "the sweep"),
    (str(workdir), "--workdir"),
    (str(Path.cwd()), "the current directory"),
    *((run.name, "the run name") for run in loaded.runs),
  ):
    check_script_text(value, what)
  check_runs(loaded.runs, mesh_devices=num_devices)
  check_settings(loaded, workdir)
  template_path = Path(template) if template else default_template()
  if not template_path.is_file():
    raise UserError(f"{template_path}: no such batch script")
  text = template_path.read_text()
  extra = sbatch_directives(sbatch_options)
  config = loaded.config_spec(None)
  lines = [
    f"# {len(loaded.runs)} SLURM job scripts for {loaded.spec} in {workdir} (from {template_path})",
    # piped into bash on a machine without SLURM: one line saying so, not one per job
    "command -v sbatch >/dev/null 2>&1 || { echo \"sbatch not found: SLURM's client is not "
    "installed here or not on PATH; run these lines on the cluster's login node (the job "
    f'scripts are in {shlex.quote(str(workdir))}/*/{JOB_FILE})" >&2; exit 127; }}',
  ]
  for run in loaded.runs:
    run = dataclasses.replace(run, config=config)
    run_dir = workdir / run.name
    ours = [f"--job-name={run.name}"[:200], f"--output={run_dir}/slurm-%j.out", f"--chdir={Path.cwd()}"]
    given = {_canonical(o) for o in extra}
    options = [o for o in ours if _canonical(o) not in given] + extra
    script = render_sbatch(
      text, run, run_dir, options, f"run {run.name} of sweep {loaded.spec} (perfectrep-jax sweep --emit)"
    )
    atomic_write_bytes(run_dir / JOB_FILE, script.encode(), mode=0o755)
    state = read_state(run_dir)
    write_state(
      run_dir,
      {
        **state,
        "sweep": loaded.spec,
        "name": run.name,
        "settings": settings(loaded, run),
        "emitted": "slurm",
      },
    )
    lines.append(f"sbatch {shlex.quote(str(run_dir / JOB_FILE))}")
  return lines


# ---------------------------------------------------------------------------- TPU pods
def emit_tpu(
  loaded: LoadedSweep,
  workdir: str,
  *,
  tpu: str | None = None,
  zone: str | None = None,
  project: str | None = None,
  repo_dir: str = "~/perfectrep-jax",
  num_devices: int | None = None,
) -> list[str]:
  """One ``gcloud compute tpus tpu-vm ssh ... --worker=all --command=...`` line per run, running
  ``launch/tpu_pod.sh`` on every worker of the pod slice, one run after the other.

  Paths are as the workers see them: the config relative to the repository (``repo_dir`` on every
  worker), ``workdir`` as given (a directory every worker shares: NFS / Filestore, or gcsfuse).
  Writes nothing here.
  """
  check_runs(loaded.runs, mesh_devices=num_devices)
  try:
    loaded.config_file.relative_to(Path.cwd().resolve())
  except ValueError:
    raise UserError(
      f"{loaded.config_file} is outside the current directory; run --emit tpu from "
      "the repository's root so the workers find the config in their checkout"
    ) from None
  config = loaded.config_spec(Path.cwd())
  if repo_dir.startswith("~/"):
    cd = "cd ~/" + shlex.quote(repo_dir[2:])
  else:
    cd = "cd " + shlex.quote(repo_dir)
  target = [
    shlex.quote(tpu) if tpu else '"$TPU_NAME"',
    f"--zone={shlex.quote(zone)}" if zone else '--zone="$ZONE"',
  ]
  if project:
    target.append(f"--project={shlex.quote(project)}")
  lines = [
    f"# {len(loaded.runs)} runs of {loaded.spec} on a TPU pod slice, one after the other"
    + ("" if tpu and zone else "; set TPU_NAME and ZONE first")
  ]
  for run in loaded.runs:
    run = dataclasses.replace(run, config=config)
    remote = f"{cd} && bash launch/tpu_pod.sh " + shlex.join(
      run.train_args(f"{workdir.rstrip('/')}/{run.name}")
    )
    lines.append(
      f"gcloud compute tpus tpu-vm ssh {' '.join(target)} --worker=all --command={shlex.quote(remote)}"
    )
  return lines


def add_parser(subparsers) -> None:
  """Adds ``perfectrep-jax sweep`` to the CLI's subcommands."""
  p = subparsers.add_parser(
    "sweep",
    help="run, submit or summarise a grid of configs (configs/sweeps/*.py)",
    description="Runs a sweep's runs one after another in WORKDIR/<run name> (finished runs "
    "are skipped), writes SLURM job scripts or TPU-pod commands for them "
    "(--emit), or tabulates their best metrics (--summary).",
  )
  p.add_argument("sweep", help="configs/sweeps/NAME.py[:arg], or NAME[:arg]")
  p.add_argument("--workdir", required=True, help="directory holding one directory per run")
  mode = p.add_mutually_exclusive_group()
  mode.add_argument(
    "--emit",
    choices=("slurm", "tpu"),
    default=None,
    help="slurm: write WORKDIR/<run>/job.sbatch and print the sbatch commands; "
    "tpu: print one gcloud tpu-vm ssh --worker=all command per run",
  )
  mode.add_argument(
    "--summary",
    action="store_true",
    help="print the runs with their best metrics, flagging (!) runs that diverged "
    "or never improved on their first evaluation; write WORKDIR/summary.csv "
    "(and, for pose runs, per_action.csv/.json: P1/P2 per action per run)",
  )
  mode.add_argument("--list", action="store_true", help="print the runs and their flags")
  p.add_argument(
    "--num-devices",
    type=int,
    default=None,
    help="--emit: check each run's mesh against this many devices (the cluster's)",
  )
  p.add_argument("--fail-fast", action="store_true", help="stop the local sweep at a failed run")
  p.add_argument(
    "--template",
    default=None,
    help="--emit slurm: the batch script to start from (default launch/slurm.sbatch)",
  )
  p.add_argument(
    "--sbatch",
    default="",
    help="--emit slurm: extra sbatch options baked into each script, e.g. "
    '--sbatch="--nodes=2 --ntasks-per-node=8 --gpus-per-node=8"',
  )
  p.add_argument("--tpu", default=None, help="--emit tpu: TPU VM name (default: $TPU_NAME)")
  p.add_argument("--zone", default=None, help="--emit tpu: zone (default: $ZONE)")
  p.add_argument("--project", default=None, help="--emit tpu: Google Cloud project")
  p.add_argument(
    "--repo-dir",
    default="~/perfectrep-jax",
    help="--emit tpu: where this repository is checked out on every TPU worker",
  )
  p.set_defaults(func=command)


def command(args) -> None:
  """``perfectrep-jax sweep``: dispatches to list / summary / emit / local runs."""
  loaded = load_sweep(args.sweep)
  workdir = Path(args.workdir)
  if args.list:
    for run in loaded.runs:
      print(f"{run.name}\t{' '.join(run.flags)}")
    return
  if args.summary:
    rows = summary.summarize(loaded, workdir)
    print(summary.format_table(rows))
    path = summary.write_csv(rows, workdir / "summary.csv")
    print(f"wrote {path}")
    table = summary.per_action(loaded, workdir)
    if table is not None:  # pose runs: P1 / P2 per action per run, side by side
      print("\nP1 / P2 (mm) per action at each run's best evaluation:")
      print(summary.format_per_action(table))
      print("wrote " + ", ".join(str(p) for p in summary.write_per_action(table, workdir)))
    return
  if args.emit == "slurm":
    for line in emit_slurm(
      loaded, workdir, template=args.template, sbatch_options=args.sbatch, num_devices=args.num_devices
    ):
      print(line)
    return
  if args.emit == "tpu":
    for line in emit_tpu(
      loaded,
      args.workdir,
      tpu=args.tpu,
      zone=args.zone,
      project=args.project,
      repo_dir=args.repo_dir,
      num_devices=args.num_devices,
    ):
      print(line)
    return
  run_local(loaded, workdir, fail_fast=args.fail_fast)
