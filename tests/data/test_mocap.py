"""The default lifter's data: all the mocap, split by performer, filmed by a new camera per clip."""

from __future__ import annotations

import numpy as np
import pytest

from perfectrep_jax import skeleton
from perfectrep_jax.data import cameras, clips, mocap, pipeline, shared

J = skeleton.JOINT_INDEX
BONES = ((1, 2), (2, 3), (4, 5), (5, 6), (11, 12), (12, 13), (14, 15), (15, 16))


@pytest.fixture(scope="module")
def windows():
  return {split: mocap.mocap_clips(split, 27) for split in mocap.SPLITS}


def _bone_lengths(x: np.ndarray) -> np.ndarray:
  return np.stack([np.linalg.norm(x[:, a] - x[:, b], axis=-1) for a, b in BONES], axis=-1)


def test_every_take_is_used_and_the_split_is_by_performer(windows):
  _, meta = shared.load_mocap()
  used = {split: {w[i]["subject"] for i in range(0, len(w), 5)} for split, w in windows.items()}
  assert used["test"] <= set(mocap.TEST_SUBJECTS) and not used["train"] & set(mocap.TEST_SUBJECTS)
  assert set(windows["train"].takes) | set(windows["test"].takes) == set(meta)
  assert {t for t in windows["test"].takes if t.startswith("hdm05")}  # HDM05 tr is held out
  assert all(w.shape == (27, 17, 3) for w in (windows["train"][0]["world"], windows["test"][-1]["world"]))


def test_clean_film_is_the_projection_with_the_wild_head(windows):
  example = windows["train"][40]
  filmed = mocap.film(example["world"], np.random.default_rng(3), mocap.FilmConfig(noise=0.0, tilt_prob=0.0))
  x, y = filmed["input_2d"], filmed["target_3d"]
  assert x.shape == y.shape == (27, 17, 3) and np.all(x[..., 2] == 1.0)
  body = [j for j in range(17) if j != J["head"]]
  np.testing.assert_allclose(x[:, body, :2], y[:, body, :2], atol=1e-5)
  # The input's head is the middle of the eyes: between the nose and the head top in the image.
  nose, top, head_in = y[:, J["nose"], :2], y[:, J["head"], :2], x[:, J["head"], :2]
  assert np.all(np.linalg.norm(head_in - nose, axis=-1) < np.linalg.norm(top - nose, axis=-1))
  assert np.abs(x[..., :2]).max() <= 1.0 and y[0, 0, 2] == 0.0
  # Back in millimetres the limbs keep their lengths, up to the 2.5D frame's perspective error
  # (x, y are the projection scaled by one factor per frame: up to ~15% at 2 m with a wide lens).
  mm = clips.denormalize_mm(y, filmed["scale_mm"])
  ratio = _bone_lengths(mm).mean(axis=0) / _bone_lengths(example["world"]).mean(axis=0)
  assert np.all(np.abs(ratio - 1) < 0.16), ratio
  assert abs(np.mean(ratio) - 1) < 0.06


def test_tilted_bodies_and_new_cameras_every_draw(windows):
  world = windows["train"][100]["world"]
  film = mocap.FilmConfig(noise=0.0, tilt_prob=1.0, pitch_deg=(85.0, 95.0), roll_deg=(0.0, 0.0))
  a = mocap.film(world, np.random.default_rng(1), film)
  b = mocap.film(world, np.random.default_rng(2), film)
  assert not np.allclose(a["input_2d"], b["input_2d"])
  for filmed in (a, b):
    mm = clips.denormalize_mm(filmed["target_3d"], filmed["scale_mm"])
    ratio = _bone_lengths(mm).mean(axis=0) / _bone_lengths(world).mean(axis=0)
    assert np.all(np.abs(ratio - 1) < 0.16) and abs(np.mean(ratio) - 1) < 0.06
  # The camera draw covers portrait and landscape and the whole circle around the body.
  rng = np.random.default_rng(0)
  sizes, azimuths = set(), []
  for _ in range(60):
    rotation, centre, intr = mocap.place_camera(world, rng, mocap.FilmConfig())
    sizes.add((intr.res_w, intr.res_h))
    offset = centre - world.reshape(-1, 3).mean(axis=0)
    azimuths.append(np.degrees(np.arctan2(offset[1], offset[0])))
    pixels = cameras.project(cameras.world_to_camera_rt(world, rotation, centre), intr)
    assert np.all((pixels >= 0) & (pixels <= [intr.res_w, intr.res_h]))
  assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes)
  assert np.histogram(azimuths, bins=4, range=(-180, 180))[0].min() >= 5


def test_detector_noise_drops_and_lowers_confidence(windows):
  world = windows["train"][7]["world"]
  noisy = mocap.film(
    world, np.random.default_rng(5), mocap.FilmConfig(noise=1.0, drop_prob=0.2, noise_level=(1.0, 1.0))
  )
  x = noisy["input_2d"]
  dropped = x[..., 2] == 0
  assert dropped.any() and np.all(x[dropped] == 0.0)
  kept = ~dropped
  assert x[..., 2][kept].min() < 0.99 and x[..., 2][kept].max() <= 1.0
  body = [j for j in range(17) if j != J["head"]]
  error = np.linalg.norm(x[..., :2] - noisy["target_3d"][..., :2], axis=-1)[:, body][kept[:, body]]
  assert 0.002 < np.median(error) < 0.1  # about 1-3% of the body's size, as a detector


def test_eval_views_are_fixed_and_the_pipeline_films_training_clips(windows):
  evaluation = pipeline.load_source(pipeline.PipelineConfig(source="mocap", split="test", clip_len=27))
  first, again = evaluation[3], evaluation[3]
  np.testing.assert_array_equal(first["input_2d"], again["input_2d"])
  assert np.all(first["input_2d"][..., 2] == 1.0)  # clean 2D by default
  noisy = pipeline.load_source(
    pipeline.PipelineConfig(source="mocap", split="test", clip_len=27, film_eval_noise=1.0)
  )
  assert not np.allclose(noisy[3]["input_2d"], first["input_2d"])
  # each clip is its own view: evaluation must not merge overlapping clips' frames across them
  assert first["camera"] == "virtual/3" and evaluation[4]["camera"] == "virtual/4"
  it = pipeline.make_train_iterator(
    pipeline.PipelineConfig(source="mocap", clip_len=27, batch_size=4, read_threads=1, prefetch_buffer_size=4)
  )
  batch = next(it)
  assert batch["input_2d"].shape == (4, 27, 17, 3) and batch["target_3d"].shape == (4, 27, 17, 3)
  assert "world" not in batch and batch["scale_mm"].shape == (4, 27)
