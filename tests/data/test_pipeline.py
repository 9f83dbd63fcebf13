"""grain pipeline: determinism, process sharding, epochs, checkpointing, augmentation, eval."""

from __future__ import annotations

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from perfectrep_jax.data import clips, demo, pipeline
from perfectrep_jax.errors import UserError

T = 5


def fake_source(n: int = 40) -> list[dict]:
  """n tiny clips in the example layout (values encode the clip number; test data, not motion)."""
  rng = np.random.default_rng(0)
  out = []
  for i in range(n):
    target = rng.normal(size=(T, 17, 3)).astype(np.float32) * 0.3
    target[..., 2] -= target[0, 0, 2]
    out.append(
      {
        "input_2d": np.concatenate([target[..., :2], np.ones((T, 17, 1), np.float32)], -1),
        "target_3d": target,
        "scale_mm": np.full((T,), 500.0 + i, np.float32),
        "frame_index": np.arange(T, dtype=np.int32) + i,
        "resolution": np.array([1000, 1000], np.int32),
        "correct": -1,
        "source": f"clip{i}".encode(),
        "subject": b"s",
        "action": b"a",
        "camera": b"c",
        "reps": b"",
      }
    )
  return out


def config(**overrides):
  base = dict(batch_size=4, clip_len=T, seed=0, num_epochs=1, flip=False, worker_count=0, read_threads=1)
  base.update(overrides)
  return pipeline.PipelineConfig(**base)


def batches(cfg, shard=None, source=None, limit=None):
  it = pipeline.make_train_iterator(cfg, shard or grain.sharding.NoSharding(), source or fake_source())
  out = []
  for b in it:
    out.append(b)
    if limit and len(out) == limit:
      break
  return out


def same(a: dict, b: dict) -> bool:
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_batches_follow_the_data_contract():
  b = batches(config(flip=True, scale_range=(0.8, 1.0)), limit=1)[0]
  assert b["input_2d"].shape == (4, T, 17, 3) and b["input_2d"].dtype == np.float32
  assert b["target_3d"].shape == (4, T, 17, 3) and b["scale_mm"].shape == (4, T)
  assert b["frame_index"].dtype == np.int32 and b["index"].dtype == np.int64 and b["valid"].all()
  assert b["source"].dtype.kind == "U" and b["source"][0].startswith("clip")
  assert np.all(b["target_3d"][:, 0, 0, 2] == 0)


def test_same_seed_same_batches_and_another_seed_others():
  a = batches(config(flip=True, scale_range=(0.5, 1.0), seed=1))
  b = batches(config(flip=True, scale_range=(0.5, 1.0), seed=1))
  c = batches(config(flip=True, scale_range=(0.5, 1.0), seed=2))
  assert len(a) == len(b) == 10 and all(same(x, y) for x, y in zip(a, b))
  assert not all(np.array_equal(x["index"], y["index"]) for x, y in zip(a, c))


def test_two_processes_see_disjoint_shares_whose_union_is_the_epoch():
  shares = []
  for index in range(2):
    got = batches(config(), shard=grain.sharding.ShardOptions(index, 2, drop_remainder=True))
    shares.append(np.concatenate([b["index"] for b in got]))
  assert len(shares[0]) == len(shares[1]) == 20
  assert not set(shares[0]) & set(shares[1])
  assert sorted(np.concatenate(shares)) == list(range(40))


def test_uneven_shares_drop_the_remainder_so_processes_stay_in_step():
  counts = [
    len(
      batches(
        config(batch_size=1),
        shard=grain.sharding.ShardOptions(i, 3, drop_remainder=True),
        source=fake_source(10),
      )
    )
    for i in range(3)
  ]
  assert counts == [3, 3, 3]


def test_epochs_visit_every_clip_once_each_in_a_new_order():
  got = batches(config(num_epochs=2))
  order = np.concatenate([b["index"] for b in got])
  first, second = order[:40], order[40:]
  assert sorted(first) == sorted(second) == list(range(40))
  assert not np.array_equal(first, second)
  assert len(batches(config(shuffle=False, num_epochs=None), limit=25)) == 25  # endless


def test_restoring_state_mid_epoch_continues_with_the_exact_next_batch():
  cfg = config(flip=True, scale_range=(0.5, 1.0), num_epochs=3)
  it = pipeline.make_train_iterator(cfg, grain.sharding.NoSharding(), fake_source())
  for _ in range(13):  # into the second epoch, mid-way
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  fresh = pipeline.make_train_iterator(cfg, grain.sharding.NoSharding(), fake_source())
  fresh.set_state(state)
  assert all(same(next(fresh), e) for e in expected)


def test_iterator_checkpoints_with_orbax_checkpoint_manager(tmp_path):
  cfg = config(flip=True, num_epochs=None)
  it = pipeline.make_train_iterator(cfg, grain.sharding.NoSharding(), fake_source())
  for _ in range(7):
    next(it)
  options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
  with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as mngr:
    mngr.save(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
  expected = next(it)
  restored = pipeline.make_train_iterator(cfg, grain.sharding.NoSharding(), fake_source())
  with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as mngr:
    mngr.restore(
      mngr.latest_step(), args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored))
    )
  assert same(next(restored), expected)


def test_worker_processes_give_the_same_batches_and_resume():
  cfg = config(num_epochs=None, flip=True, worker_count=2)
  serial = batches(config(num_epochs=None, flip=True), limit=6)
  it = pipeline.make_train_iterator(cfg, grain.sharding.NoSharding(), fake_source())
  parallel = [next(it) for _ in range(3)]
  state = it.get_state()
  parallel += [next(it) for _ in range(3)]
  assert all(same(a, b) for a, b in zip(serial, parallel))
  resumed = pipeline.make_train_iterator(cfg, grain.sharding.NoSharding(), fake_source())
  resumed.set_state(state)
  assert same(next(resumed), parallel[3])


def test_augment_keeps_millimetres_and_pairs_input_with_target():
  example = pipeline.decode(demo.demo_source("test", 27)[3])
  mm = clips.denormalize_mm(example["target_3d"], example["scale_mm"])
  for seed in range(6):
    out = pipeline.augment(
      example, np.random.default_rng(seed), flip=True, scale_range=(0.5, 1.0), synthetic_2d=False
    )
    mm_out = clips.denormalize_mm(out["target_3d"], out["scale_mm"])
    # the scale augmentation leaves millimetres alone; the flip mirrors them
    assert np.allclose(mm_out, mm, atol=0.05) or np.allclose(mm_out, clips.flip_data(mm), atol=0.05)
    np.testing.assert_allclose(out["input_2d"][..., :2], out["target_3d"][..., :2], atol=1e-5)
    assert out["target_3d"][0, 0, 2] == 0
    extent = max(np.ptp(out["target_3d"][..., 0]), np.ptp(out["target_3d"][..., 1]))
    assert 1.0 - 1e-5 <= extent <= 2.0 + 1e-5
  flips = [
    not np.allclose(
      pipeline.augment(example, np.random.default_rng(s), flip=True, scale_range=None, synthetic_2d=False)[
        "target_3d"
      ],
      example["target_3d"],
    )
    for s in range(40)
  ]
  assert 10 < sum(flips) < 30


def test_synthetic_2d_replaces_the_input():
  example = pipeline.decode(fake_source(1)[0])
  example["input_2d"] = np.zeros_like(example["input_2d"])
  out = pipeline.augment(example, np.random.default_rng(0), flip=False, scale_range=None, synthetic_2d=True)
  np.testing.assert_array_equal(out["input_2d"][..., :2], example["target_3d"][..., :2])
  assert np.all(out["input_2d"][..., 2] == 1)


def test_eval_goes_over_the_split_once_in_order_padded():
  source = fake_source(10)
  per_process = []
  for index in range(2):
    ds = pipeline.eval_dataset(config(), shard=grain.sharding.ShardOptions(index, 2), source=source)
    got = list(ds)
    assert len(got) == 2 and all(b["input_2d"].shape == (4, T, 17, 3) for b in got)
    per_process.append(np.concatenate([b["index"][b["valid"]] for b in got]))
    padding = np.concatenate([b["index"][~b["valid"]] for b in got])
    assert np.all(padding == -1)
  assert sorted(np.concatenate(per_process)) == list(range(10))
  assert list(per_process[0]) == [0, 2, 4, 6, 8]
  single = list(pipeline.eval_dataset(config(batch_size=3), shard=grain.sharding.NoSharding(), source=source))
  np.testing.assert_array_equal(np.concatenate([b["index"] for b in single])[:10], np.arange(10))
  np.testing.assert_array_equal(single[0]["target_3d"], np.stack([s["target_3d"] for s in source[:3]]))


def test_demo_source_by_name_and_bad_sources():
  cfg = pipeline.PipelineConfig.from_config(
    {"source": "demo", "clip_len": 27, "batch_size": 2, "split": "test"}
  )
  src = pipeline.load_source(cfg)
  assert len(src) == len(demo.demo_source("test", 27))
  with pytest.raises(UserError, match="data_dir"):
    pipeline.load_source(pipeline.PipelineConfig(source="fit3d"))
  with pytest.raises(UserError, match="not prepared"):
    pipeline.load_source(pipeline.PipelineConfig(source="fit3d", data_dir="/nonexistent/tfds"))
  with pytest.raises(ValueError, match="unknown pipeline settings"):
    pipeline.PipelineConfig.from_config({"batchsize": 2})


def test_make_global_batch_on_the_mesh():
  mesh = jax.make_mesh((len(jax.devices()),), ("data",))
  local = batches(config(batch_size=len(jax.devices()) * 2), limit=1)[0]
  out = pipeline.make_global_batch(local, mesh, jax.sharding.PartitionSpec("data"))
  assert "source" not in out and set(out) >= {"input_2d", "target_3d", "scale_mm", "index", "valid"}
  assert out["input_2d"].shape == local["input_2d"].shape
  assert out["input_2d"].sharding.spec == jax.sharding.PartitionSpec("data")
  np.testing.assert_array_equal(np.asarray(out["target_3d"]), local["target_3d"])
