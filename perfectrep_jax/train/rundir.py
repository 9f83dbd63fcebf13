"""What a training run directory promises: one run at a time, one model, and a status saying how
the last process left it.

- ``run.lock`` (:func:`lock_run`): held by the process that trains in the directory (process 0 of
  a multi-host job, for the whole job: its other processes learn the outcome from it). A second
  ``train`` on the same directory stops with one line naming the holder (pid, host, since). A
  lock whose process is gone (a crash, SIGKILL: the same host, a pid no longer running) is stale
  and taken over, with a note.
- :func:`check_model` (before anything is written): the directory's ``model.json`` must describe
  the model this config builds; a model directory written by ``convert`` (``params/``) is not a
  run directory and is never overwritten.
- ``status.json`` (:func:`write_status`): ``running``, ``finished`` or ``preempted`` (stopped by
  SIGTERM after saving a checkpoint: rerun the same command to resume).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import time
from pathlib import Path

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import atomic_write_bytes

LOCK_FILE = "run.lock"
STATUS_FILE = "status.json"
# Exit status of a run stopped by SIGTERM once its checkpoint is saved (128 + SIGTERM, as a shell
# reports a process the signal ended).
PREEMPTED_EXIT = 143


class Preempted(Exception):
  """The run was stopped by a signal after saving its checkpoint (the CLI exits 143)."""


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's live process
    return True
  return True


def _read_lock(path: Path) -> dict | None:
  try:
    doc = json.loads(path.read_text())
    return doc if isinstance(doc, dict) else {}
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}  # half-written or garbage: held by nobody we can name


class RunLock:
  """``WORKDIR/run.lock``, created atomically (``O_EXCL``) with who holds it."""

  def __init__(self, workdir: str | Path):
    self.path = Path(workdir) / LOCK_FILE
    self.held = False

  def acquire(self) -> "RunLock":
    """Takes the lock, or raises UserError naming its live holder.

    A lock left by a process that no longer runs on this host is taken over (said on stdout);
    one held on another host is trusted: only that host can tell whether its process lives.
    """
    self.path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
    for attempt in range(20):
      try:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
      except FileExistsError:
        holder = _read_lock(self.path)
        if holder is None:  # released meanwhile
          continue
        if not holder and attempt < 10:  # being written by its creator right now: look again
          time.sleep(0.2)
          continue
        pid, host = holder.get("pid"), holder.get("host")
        same_host = host == me["host"]
        if isinstance(pid, int) and same_host and pid != me["pid"] and _alive(pid):
          raise UserError(
            f"{self.path.parent}: in use by another train (pid {pid} on {host} since "
            f"{holder.get('since')}); wait for it, stop it, or use another --workdir"
          ) from None
        if isinstance(pid, int) and not same_host:
          raise UserError(
            f"{self.path.parent}: in use by another train (pid {pid} on {host} since "
            f"{holder.get('since')}); if that process is gone, delete {self.path}"
          ) from None
        # Stale: its process is gone (or it is this very process, e.g. a run started again in
        # the same Python): replace it atomically.
        if pid != me["pid"] or not same_host:
          print(
            f"note: {self.path} was left by pid {pid} on {host} (since {holder.get('since')}), "
            "which is not running; taking it over",
            flush=True,
          )
        atomic_write_bytes(self.path, (json.dumps(me) + "\n").encode())
        if (_read_lock(self.path) or {}).get("pid") != me["pid"]:
          continue  # another process took it over at the same moment: look again
        self.held = True
        return self
      with os.fdopen(fd, "w") as f:
        f.write(json.dumps(me) + "\n")
      self.held = True
      return self
    raise UserError(f"{self.path}: cannot take the lock (it keeps changing)")

  def release(self) -> None:
    """Removes the lock if it is still this process's."""
    if self.held:
      holder = _read_lock(self.path)
      if holder is not None and holder.get("pid") == os.getpid():
        self.path.unlink(missing_ok=True)
      self.held = False


@contextlib.contextmanager
def lock_run(workdir: str | Path):
  """Holds ``WORKDIR/run.lock`` for the body: process 0 takes it for the whole job; with several
  processes every one learns whether it got it, so all stop together if not.

  Raises:
    UserError: another live process holds it.
  """
  import jax

  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = RunLock(workdir).acquire()
    except UserError as e:
      error = e
  if jax.process_count() > 1:
    import numpy as np
    from jax.experimental import multihost_utils

    failed = int(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
    if failed and error is None:
      error = UserError(f"{workdir}: in use by another train (process 0 says who)")
  if error is not None:
    raise error
  try:
    yield lock
  finally:
    if lock is not None:
      lock.release()


def check_model(workdir: str | Path, meta: dict) -> None:
  """Refuses, before anything is written, a run directory whose model is not ``meta``'s.

  Args:
    meta: the ``model.json`` this config's model has (``model_dir.model_meta``).
  Raises:
    UserError: the directory holds a converted model (``params/``), or its ``model.json`` has
      another kind or config (the message names the first fields that differ).
  """
  # lazy on purpose: model_dir brings jax and flax, which the commands that only need this
  # module's exit status and Preempted (cli._run, every command) must not pay for
  from perfectrep_jax.models import model_dir

  workdir = Path(workdir)
  if (workdir / model_dir.PARAMS_DIR).exists():
    raise UserError(
      f"{workdir}: holds a model directory (written by convert), not a training run; "
      f"train in a new --workdir, starting from it with --config.init.checkpoint={workdir}"
    )
  path = workdir / model_dir.MODEL_JSON
  if not path.is_file():
    return
  try:
    old = json.loads(path.read_text())
    old_kind, old_config = old["kind"], old["config"]
  except (OSError, ValueError, KeyError, TypeError):
    if (workdir / "checkpoints").is_dir():
      raise UserError(
        f"{path}: unreadable, so the run's checkpoints cannot be matched to this "
        "config; restore it or use another --workdir"
      ) from None
    return  # nothing to resume: the file is rewritten
  if old_kind != meta["kind"]:
    raise UserError(
      f"{workdir}: holds a {old_kind} run; this config trains a {meta['kind']} (use another --workdir)"
    )
  new_config = meta["config"]
  diffs = [
    f"{k} {old_config.get(k)!r} -> {new_config.get(k)!r}"
    for k in sorted(set(old_config) | set(new_config))
    if old_config.get(k) != new_config.get(k)
  ]
  if diffs:
    more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
    raise UserError(
      f"{workdir}: its run has another model config ({', '.join(diffs[:3])}{more}); "
      "resume it with its own config, or train this one in another --workdir"
    )


def write_status(workdir: str | Path, status: str, **fields) -> None:
  """Writes ``WORKDIR/status.json`` (atomically): ``{"status": ..., "time": ..., **fields}``."""
  doc = {"status": status, "time": _now(), **fields}
  atomic_write_bytes(Path(workdir) / STATUS_FILE, (json.dumps(doc) + "\n").encode())


def read_status(workdir: str | Path) -> dict:
  """``status.json`` of a run directory, ``{}`` when there is none (or it is unreadable)."""
  try:
    doc = json.loads((Path(workdir) / STATUS_FILE).read_text())
    return doc if isinstance(doc, dict) else {}
  except (OSError, ValueError):
    return {}
