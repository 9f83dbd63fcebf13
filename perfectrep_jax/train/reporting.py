"""What a run tells the person watching it: a progress bar, TensorBoard, ``metrics.jsonl``, tables.

Each line of ``WORKDIR/metrics.jsonl`` is one JSON object with ``step`` and the figures: training
lines carry the losses averaged over the log interval, ``lr``, ``grad_norm`` and ``clips_per_s``;
evaluation lines carry ``mpjpe`` / ``p_mpjpe`` / ... (or ``top1`` for the action task) and
``"split": "test"``. An evaluation's files (JSON / CSV tables, PNG plots: ``EvalResult.files``) go
to ``WORKDIR/eval/step_<N>/``. Only process 0 writes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import atomic_write_bytes


class Reporter:
  def __init__(self, workdir: Path, total_steps: int, batch_size: int, enabled: bool = True):
    self.enabled = enabled
    self.workdir = Path(workdir)
    self.batch_size = batch_size
    self.total_steps = total_steps
    self._last_time = time.perf_counter()
    self._last_step: int | None = None
    self._bar = None
    self._writer = None
    self._jsonl = None
    if not enabled:
      return
    from tqdm.auto import tqdm

    self._bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True, mininterval=1.0)
    try:
      from tensorboardX import SummaryWriter

      self._writer = SummaryWriter(str(workdir / "tensorboard"))
    except ImportError:  # TensorBoard events are optional
      self._writer = None
    self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")

  def advance(self, step: int) -> None:
    if self._bar is not None:
      if self._bar.n == 0 and step > 1:
        self._bar.n = step - 1  # resumed run
      self._bar.update(step - self._bar.n)

  def _write(self, record: dict[str, Any]) -> None:
    if self._jsonl is not None:
      self._jsonl.write(json.dumps(record) + "\n")
      self._jsonl.flush()
    if self._writer is not None:
      prefix = "eval/" if record.get("split") else "train/"
      for k, v in record.items():
        if isinstance(v, (int, float)) and k != "step":
          self._writer.add_scalar(prefix + k, v, record["step"])
      self._writer.flush()

  def train(self, step: int, interval: Sequence[dict[str, np.ndarray]]) -> None:
    """Averages the per-step figures of the last interval; stops the run on a NaN loss."""
    record: dict[str, Any] = {"step": step}
    for key in interval[0]:
      record[key] = float(np.mean([np.asarray(m[key]) for m in interval]))
    if not math.isfinite(record.get("loss", 0.0)):
      if self.enabled:  # on record, so that a sweep's summary can say the run diverged
        self._write(record)
      raise UserError(
        f"training diverged: loss is {record['loss']} at step {step} "
        "(lower optim.lr, enable optim.clip_norm, or check the data)"
      )
    now = time.perf_counter()
    if self._last_step is not None:
      record["clips_per_s"] = (step - self._last_step) * self.batch_size / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    if not self.enabled:
      return
    self._write(record)
    if self._bar is not None:
      post = {"loss": f"{record['loss']:.4f}"}
      if "clips_per_s" in record:
        post["clips/s"] = f"{record['clips_per_s']:.1f}"
      self._bar.set_postfix(post, refresh=False)

  def eval(self, step: int, result) -> None:
    if not self.enabled:
      return
    self._write({"step": step, "split": "test", **result.metrics})
    files = getattr(result, "files", None) or {}
    for name, data in files.items():
      if Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"evaluation file name {name!r} must be a plain file name")
      atomic_write_bytes(self.workdir / "eval" / f"step_{step}" / name, data)
    text = f"\n=== evaluation at step {step} ===\n{result.table}\n"
    if self._bar is not None:
      self._bar.write(text)
    else:
      print(text, flush=True)
    self._last_time = time.perf_counter()  # evaluation time is not training throughput

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._writer is not None:
      self._writer.close()
    if self._jsonl is not None:
      self._jsonl.close()
