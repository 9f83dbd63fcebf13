"""A full disk while checkpointing ends in one line and keeps the checkpoints saved before."""

from __future__ import annotations

import collections

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.train import checkpoints as C

MODEL = {"params": {"w": jnp.arange(4096, dtype=jnp.float32).reshape(64, 64)}, "stats": {}}
OPT = {"mu": {"w": jnp.zeros((64, 64), jnp.float32)}}


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def test_a_save_the_disk_cannot_hold_is_refused_before_writing(tmp_path, monkeypatch):
  mngr = C.make_manager(tmp_path, keep=5)
  it = iter(grain.MapDataset.range(100).to_iter_dataset())
  next(it)
  C.save(mngr, 1, model=MODEL, opt=OPT, train={"step": 1}, data_iter=it)
  C.write_digests(mngr)
  usage = collections.namedtuple("usage", "total used free")
  monkeypatch.setattr(C.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 40_000, 40_000))
  later = jax.tree.map(lambda x: x + 1.0, MODEL)
  with pytest.raises(
    UserError,
    match=r"checkpoints: no space left for the checkpoint of step 2 "
    r"\(it needs about 1.0 MiB, 0.0 MiB are free\); the "
    r"checkpoints saved before it are kept",
  ):
    C.save(mngr, 2, model=later, opt=OPT, train={"step": 2}, data_iter=it)
  mngr.close()
  assert sorted(p.name for p in (tmp_path / C.CHECKPOINT_DIR).iterdir()) == ["1"]
  monkeypatch.undo()
  mngr = C.make_manager(tmp_path, keep=5)
  try:
    restored = C.restore_latest(
      mngr,
      model=_abstract(MODEL),
      opt=_abstract(OPT),
      data_iter=iter(grain.MapDataset.range(100).to_iter_dataset()),
    )
  finally:
    mngr.close()
  assert restored is not None and restored[0] == 1
  np.testing.assert_array_equal(restored[2]["params"]["w"], MODEL["params"]["w"])


def test_a_full_disk_reported_by_orbax_threads_is_one_line(tmp_path, monkeypatch):
  mngr = C.make_manager(tmp_path, keep=5)

  def full(*_args):
    raise ValueError(
      'RESOURCE_EXHAUSTED: Error writing local file "x/_sharding": Failed to write '
      "10539 bytes to file 11: No space left on device [os_error_code='28']"
    )

  monkeypatch.setattr(mngr, "wait_until_finished", full)
  with pytest.raises(
    UserError,
    match="no space left on device while saving a checkpoint; the checkpoints saved before it are kept",
  ):
    C.write_digests(mngr)
  monkeypatch.undo()
  mngr.close()
