"""A one-node SLURM cluster on localhost for tests: munged, slurmctld and slurmd as root.

Everything lives in a fresh temporary directory (configuration, state, spool, logs, a munge key
and socket) with ports of its own, so it neither needs nor disturbs a system installation. Debian's
``slurm-wlm`` and ``munge`` packages provide the programs; ``ensure_installed`` installs them with
apt-get when they are missing and this process may (root, apt-get present).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PROGRAMS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sinfo")
PACKAGES = ("slurm-wlm", "munge")


class Unavailable(Exception):
  """SLURM cannot be installed or started here; the message says why."""


def missing_programs() -> list[str]:
  return [p for p in PROGRAMS if shutil.which(p) is None]


def ensure_installed(timeout: float = 900) -> None:
  """Installs slurm-wlm and munge with apt-get if their programs are missing.

  Raises:
    Unavailable: not root, no apt-get, or the installation failed.
  """
  missing = missing_programs()
  if not missing:
    return
  if os.geteuid() != 0 or shutil.which("apt-get") is None:
    raise Unavailable(
      f"{', '.join(missing)} not installed, and installing Debian's "
      f"{' '.join(PACKAGES)} needs root and apt-get"
    )
  env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
  try:
    for cmd in (
      ["apt-get", "update", "-qq"],
      ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
      proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
      if proc.returncode != 0:
        raise Unavailable(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
  except subprocess.TimeoutExpired:
    raise Unavailable(f"installing {' '.join(PACKAGES)} took over {timeout:.0f} s") from None
  still = missing_programs()
  if still:
    raise Unavailable(f"{', '.join(still)} still missing after installing {' '.join(PACKAGES)}")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def slurm_conf(root: Path, cpus: int, ctld_port: int, slurmd_port: int) -> str:
  """A minimal configuration: one node 'localhost' with ``cpus`` CPUs, one partition 'debug'."""
  return f"""\
ClusterName=perfectreptest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=3600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _tail(path: Path, n: int = 15) -> str:
  try:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
  except FileNotFoundError:
    return f"({path.name} not written)"


def _stop(proc: subprocess.Popen) -> None:
  if proc.poll() is None:
    proc.send_signal(signal.SIGTERM)
    try:
      proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


@contextlib.contextmanager
def local_cluster(cpus: int = 2, start_timeout: float = 60) -> Iterator[dict]:
  """Starts munged, slurmctld and slurmd; yields {'env': environment for sbatch & co, 'root':
  the cluster directory}; stops them (by their own process ids) and removes the directory.

  Raises:
    Unavailable: not root, or a daemon did not come up (its log is in the message).
  """
  if os.geteuid() != 0:
    raise Unavailable("slurmd must run as root to start jobs")
  # munged wants every directory above its socket searchable by all users
  root = Path(tempfile.mkdtemp(prefix="perfectrep-slurm-", dir="/tmp"))
  root.chmod(0o755)
  procs: list[subprocess.Popen] = []
  munged_pid = None
  try:
    for d in ("state", "spool"):
      (root / d).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    proc = subprocess.run(
      [
        "munged",
        f"--socket={root}/munge.socket",
        f"--pid-file={root}/munged.pid",
        f"--log-file={root}/munged.log",
        f"--seed-file={root}/munged.seed",
        f"--key-file={key}",
      ],
      capture_output=True,
      text=True,
      timeout=30,
    )
    if proc.returncode != 0:
      raise Unavailable(f"munged did not start: {proc.stderr.strip()}")
    munged_pid = int((root / "munged.pid").read_text())
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, cpus, _free_port(), _free_port()))
    env = dict(os.environ, SLURM_CONF=str(conf))
    for cmd, log in (
      (["slurmctld", "-D", "-i", "-f", str(conf)], "slurmctld.out"),
      (["slurmd", "-D", "-N", "localhost", "-f", str(conf)], "slurmd.out"),
    ):
      with open(root / log, "wb") as out:
        procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + start_timeout
    state = ""
    while time.monotonic() < deadline:
      if any(p.poll() is not None for p in procs):
        break
      state = subprocess.run(
        ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True
      ).stdout.strip()
      if state == "idle":
        break
      time.sleep(0.5)
    if state != "idle":
      raise Unavailable(
        f"the SLURM node did not become idle (state {state!r}):\n"
        f"slurmctld.log:\n{_tail(root / 'slurmctld.log')}\n"
        f"slurmd.log:\n{_tail(root / 'slurmd.log')}"
      )
    yield {"env": env, "root": root}
  finally:
    for proc in reversed(procs):
      _stop(proc)
    if munged_pid is not None:
      with contextlib.suppress(ProcessLookupError):
        os.kill(munged_pid, signal.SIGTERM)
    shutil.rmtree(root, ignore_errors=True)


def wait_for_job(job_id: str, env: dict, timeout: float) -> dict[str, str]:
  """Polls ``scontrol show job`` until the job ends; returns its fields (JobState, ExitCode...)."""
  deadline = time.monotonic() + timeout
  fields: dict[str, str] = {}
  while time.monotonic() < deadline:
    out = subprocess.run(
      ["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True
    ).stdout
    fields = dict(word.split("=", 1) for word in out.split() if "=" in word)
    if fields.get("JobState") in (
      "COMPLETED",
      "FAILED",
      "CANCELLED",
      "TIMEOUT",
      "NODE_FAIL",
      "OUT_OF_MEMORY",
      "PREEMPTED",
      "BOOT_FAIL",
      "DEADLINE",
    ):
      return fields
    time.sleep(2)
  subprocess.run(["scancel", job_id], env=env, capture_output=True)
  raise TimeoutError(f"job {job_id} still {fields.get('JobState')} after {timeout:.0f} s")
