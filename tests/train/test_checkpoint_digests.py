"""Checkpoints carry a SHA-256 digest of what was saved, checked before a restore: flipped bytes
are a damaged checkpoint (set aside, the previous one used; one line from load_model), while a
checkpoint whose files are intact but do not fit the config is refused and left in place."""

from __future__ import annotations

import json

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.models import model_dir
from perfectrep_jax import digests
from perfectrep_jax.train import checkpoints as C
from tests.conftest import TINY


def _flip_16_bytes(step_dir, item="model"):
  """Flips 16 bytes in the middle of the item's largest file (its array data)."""
  target = max((p for p in (step_dir / item).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  data = bytearray(target.read_bytes())
  mid = len(data) // 2
  for i in range(mid, mid + 16):
    data[i] ^= 0xFF
  target.write_bytes(bytes(data))
  return target


def _save_two_steps(workdir, model):
  mngr = C.make_manager(workdir, keep=5)
  it = iter(grain.MapDataset.range(100).to_iter_dataset())
  opt = {"mu": jax.tree.map(jnp.zeros_like, model["params"])}
  for step in (1, 2):
    next(it)
    model = jax.tree.map(lambda x: x + 1.0, model)
    C.save(mngr, step, model=model, opt=opt, train={"step": step}, data_iter=it)
  C.write_digests(mngr)
  mngr.close()
  return opt


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _restore(workdir, model, opt):
  mngr = C.make_manager(workdir, keep=5)
  it = iter(grain.MapDataset.range(100).to_iter_dataset())
  try:
    return C.restore_latest(mngr, model=_abstract(model), opt=_abstract(opt), data_iter=it)
  finally:
    mngr.close()


MODEL = {"params": {"w": jnp.arange(4096, dtype=jnp.float32).reshape(64, 64)}, "stats": {}}


def test_every_step_gets_a_digest_that_matches(tmp_path):
  _save_two_steps(tmp_path, MODEL)
  for step in (1, 2):
    step_dir = tmp_path / "checkpoints" / str(step)
    recorded = json.loads((step_dir / digests.DIGEST_FILE).read_text())["files"]
    assert any(k.startswith("model/") for k in recorded) and any(k.startswith("opt/") for k in recorded)
    assert digests.verify(step_dir) is None


def test_sixteen_flipped_bytes_are_found_and_the_previous_step_restored(tmp_path, capsys):
  opt = _save_two_steps(tmp_path, MODEL)
  flipped = _flip_16_bytes(tmp_path / "checkpoints" / "2")
  problem = digests.verify(tmp_path / "checkpoints" / "2")
  assert problem.startswith(str(flipped.relative_to(tmp_path / "checkpoints" / "2")))
  assert "SHA-256" in problem and "\n" not in problem
  step, train, model, _ = _restore(tmp_path, MODEL, opt)
  assert step == 1 and train["step"] == 1
  np.testing.assert_array_equal(np.asarray(model["params"]["w"]), np.asarray(MODEL["params"]["w"]) + 1)
  out = capsys.readouterr().out
  assert "checkpoint at step 2 is unreadable" in out and "SHA-256" in out
  assert (tmp_path / "unreadable-checkpoint-2").is_dir()


def test_intact_checkpoint_that_does_not_fit_is_refused_not_set_aside(tmp_path):
  opt = _save_two_steps(tmp_path, MODEL)
  other = {"params": {"w": jnp.zeros((32, 64), jnp.float32)}, "stats": {}}
  with pytest.raises(UserError, match="does not fit this config") as err:
    _restore(tmp_path, other, opt)
  assert "\n" not in str(err.value)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2"]
  assert not list(tmp_path.glob("unreadable-checkpoint-*"))


def test_load_model_refuses_a_damaged_checkpoint_in_one_line(tmp_path):
  model = model_dir.build_model("lifter", TINY, seed=0)
  weights = model_dir.weights_of(model)
  (tmp_path / model_dir.MODEL_JSON).write_text(json.dumps(model_dir.model_meta(model)))
  _save_two_steps(tmp_path, weights)
  loaded, _ = model_dir.load_model(tmp_path, step=2)  # intact: loads
  _flip_16_bytes(tmp_path / "checkpoints" / "2")
  with pytest.raises(UserError, match=r"checkpoints/2: damaged checkpoint \(model/.* SHA-256") as err:
    model_dir.load_model(tmp_path, step=2)
  assert "\n" not in str(err.value)
