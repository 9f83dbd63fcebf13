"""orbax checkpoints of a training run: model, optimizer, progress and the data iterator.

``WORKDIR/checkpoints/<step>/`` holds four items:
  model:  the weights (parameters and BatchNorm statistics), the layout ``load_model`` reads;
  opt:    the optax state;
  train:  JSON progress (step, best metric so far and its step);
  data:   the grain iterator's state, so a resumed run sees exactly the batches it would have.

The latest ``keep`` checkpoints are kept, and the best one by the task's validation metric.
Saving is asynchronous; restoring walks back from the latest step and skips (with a warning) a
checkpoint that cannot be read, so a corrupt latest checkpoint costs the steps since the one
before it, never the run. Every committed step gets ``digest.json`` (SHA-256 of its files,
:mod:`perfectrep_jax.train.digests`), checked before it is restored: changed bytes make it
unreadable. A step whose files are intact but do not fit this config's model or optimizer is not
damaged: it is refused in one line and left where it is.
"""

from __future__ import annotations

import logging
import shutil
import weakref
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from perfectrep_jax import digests
from perfectrep_jax.errors import UserError

log = logging.getLogger(__name__)
# Steps a manager started saving whose digest is not written yet (written once committed).
_UNSIGNED: "weakref.WeakKeyDictionary[ocp.CheckpointManager, list[int]]" = weakref.WeakKeyDictionary()

CHECKPOINT_DIR = "checkpoints"
ITEMS = ("model", "opt", "train", "data")


def best_rank(metrics: dict) -> tuple[float, int]:
  """How ``BestN`` ranks a checkpoint's metrics, higher ranks kept: the lowest ``best`` (every
  task's ``EvalResult.best_metric`` is lower-is-better: MPJPE, or minus top-1), and of equal ones
  the latest step, which is the step the trainer's ``progress['best_step']`` names."""
  best = float(metrics["best"])
  return (-best if best == best else -float("inf")), int(metrics.get("step", 0))  # NaN: last


def make_manager(workdir: str | Path, keep: int) -> ocp.CheckpointManager:
  """A CheckpointManager keeping the latest ``keep`` steps and the best by ``best_rank``."""
  policy = ocm.AnyPreservationPolicy(
    [
      ocm.LatestN(n=keep),
      ocm.BestN(get_metric_fn=best_rank, reverse=False, n=1, keep_checkpoints_without_metrics=False),
    ]
  )
  options = ocp.CheckpointManagerOptions(
    preservation_policy=policy, create=True, enable_async_checkpointing=True
  )
  import grain

  handlers = {
    "model": ocp.StandardCheckpointHandler(),
    "opt": ocp.StandardCheckpointHandler(),
    "train": ocp.JsonCheckpointHandler(),
    "data": grain.checkpoint.CheckpointHandler(),
  }
  return ocp.CheckpointManager(
    Path(workdir).absolute() / CHECKPOINT_DIR, options=options, item_handlers=handlers
  )


def save(
  mngr: ocp.CheckpointManager,
  step: int,
  *,
  model: Any,
  opt: Any,
  train: dict,
  data_iter,
  metric: float | None = None,
  force: bool = False,
) -> bool:
  """Starts an asynchronous save of every item at ``step``; ``metric``: the evaluation of these
  weights, lower is better (``EvalResult.best_metric``)."""
  import grain

  args = ocp.args.Composite(
    model=ocp.args.StandardSave(model),
    opt=ocp.args.StandardSave(opt),
    train=ocp.args.JsonSave(train),
    data=grain.checkpoint.CheckpointSave(data_iter),
  )
  metrics = {"best": float(metric), "step": int(step)} if metric is not None else None
  write_digests(mngr)  # of the steps committed before this one (waits for the previous save)
  check_free_space(Path(mngr.directory), step, (model, opt))
  saved = mngr.save(step, args=args, metrics=metrics, force=force)
  if saved:
    _UNSIGNED.setdefault(mngr, []).append(int(step))
  return saved


# Room left beyond a checkpoint's array bytes (its metadata, the data iterator, the digest).
_SPACE_MARGIN = 1 << 20


def check_free_space(directory: Path, step: int, trees: Any) -> None:
  """Refuses a save the disk cannot hold before orbax's threads start writing it (a full disk
  there fails in each thread, each logging a traceback); the checkpoints before it are kept."""
  need = sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(trees))
  probe = directory
  while not probe.exists() and probe != probe.parent:  # not made yet on this host
    probe = probe.parent
  try:
    free = shutil.disk_usage(probe).free
  except OSError:  # a file system that does not say: orbax's own errors remain
    return
  if need + need // 10 + _SPACE_MARGIN > free:
    raise UserError(
      f"{directory}: no space left for the checkpoint of step {step} (it needs about "
      f"{(need + _SPACE_MARGIN) / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free); "
      "the checkpoints saved before it are kept"
    )


def write_digests(mngr: ocp.CheckpointManager) -> None:
  """Waits for the pending save and writes the digest of every step this manager saved that has
  none yet (process 0; the others' files are on the same shared directory)."""
  try:
    mngr.wait_until_finished()
  except Exception as e:  # orbax's writer threads report a full disk as a ValueError
    if "No space left on device" in str(e) or "os_error_code='28'" in str(e):
      raise UserError(
        f"{mngr.directory}: no space left on device while saving a checkpoint; "
        "the checkpoints saved before it are kept"
      ) from None
    raise
  pending = _UNSIGNED.pop(mngr, [])
  if jax.process_index() != 0:
    return
  for step in pending:
    step_dir = Path(mngr.directory) / str(step)
    if step_dir.is_dir() and not digests.has_digest(step_dir):
      digests.write(step_dir, ITEMS)


def restore_latest(
  mngr: ocp.CheckpointManager, *, model: Any, opt: Any, data_iter
) -> tuple[int, dict, Any, Any] | None:
  """Restores the newest readable checkpoint into the given abstract targets.

  Args:
    model, opt: pytrees of ``jax.ShapeDtypeStruct`` (with shardings) to restore into.
    data_iter: the grain iterator; its state is set in place.
  Returns:
    ``(step, train_json, model, opt)``, or None when there is no readable checkpoint.
  """
  import grain

  for step in sorted(mngr.all_steps(), reverse=True):
    step_dir = Path(mngr.directory) / str(step)
    first = digests.verify(step_dir)
    signed = digests.has_digest(step_dir)
    try:
      if first is not None:
        raise ValueError(first)
      restored = mngr.restore(
        step,
        args=ocp.args.Composite(
          model=ocp.args.StandardRestore(model),
          opt=ocp.args.StandardRestore(opt),
          train=ocp.args.JsonRestore(),
          data=grain.checkpoint.CheckpointRestore(data_iter),
        ),
      )
    except Exception as e:  # a damaged step: set it aside, fall back to the one before
      if first is None:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        if signed:  # its files are as saved: it is this config that does not fit them
          raise UserError(
            f"{step_dir}: does not fit this config's model or optimizer ({first}); "
            "resume with the run's own config, or use another --workdir"
          ) from None
      aside = _set_aside(mngr, step)
      log.warning("checkpoint at step %d is unreadable (%s); moved to %s", step, first, aside)
      print(
        f"warning: checkpoint at step {step} is unreadable ({first}); moved it to {aside} "
        "and fell back to the previous one",
        flush=True,
      )
      continue
    return step, dict(restored["train"]), restored["model"], restored["opt"]
  return None


def _set_aside(mngr: ocp.CheckpointManager, step: int) -> Path | None:
  """Renames a damaged step directory (kept for inspection, never deleted) so it can be rewritten."""
  if jax.process_index() != 0:
    return None
  src = Path(mngr.directory) / str(step)
  dst = Path(mngr.directory).parent / f"unreadable-checkpoint-{step}"
  n = 1
  while dst.exists():
    dst = dst.with_name(f"unreadable-checkpoint-{step}.{n}")
    n += 1
  if src.exists():
    src.rename(dst)
  mngr.reload()
  return dst


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of ``tree`` carrying ``shardings`` (restore targets)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
