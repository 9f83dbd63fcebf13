"""The bundled demo data: real mocap, split by performer, plausible virtual cameras."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfectrep_jax.data import cameras, clips, demo, shared


@pytest.fixture(scope="module")
def sources():
  return {split: demo.demo_source(split, 27) for split in demo.SPLITS}


def test_demo_is_the_real_mocap_of_the_data_folder_with_its_provenance():
  motion, meta = demo.load_takes()
  assert len(motion) == 37 and sum(len(m) for m in motion.values()) == 46643
  assert all(m.shape[1:] == (17, 3) for m in motion.values())
  readme = (shared.data_root() / shared.MOCAP_DIR / "README.md").read_text()
  assert "PDDL" in readme and "mocap.cs.cmu.edu" in readme and "EIA-0196217" in readme
  with np.load(shared.data_root() / shared.MOCAP_DIR / "mocap_h36m17.npz") as npz:
    for take in ("uiprmd_m01_s01", "cmu_10_01"):
      np.testing.assert_array_equal(motion[take], npz[take])


def test_split_is_by_performer(sources):
  _, meta = demo.load_takes()
  subjects = {
    split: {meta[s.source.rsplit("_cam", 1)[0]]["subject"] for s in src.sequences}
    for split, src in sources.items()
  }
  assert subjects["test"] == {"uiprmd_s09", "uiprmd_s10"}
  assert not subjects["train"] & subjects["test"]
  assert {"cmu_10", "cmu_11", "cmu_14"} <= subjects["train"]
  assert {f"uiprmd_s0{i}" for i in range(1, 9)} <= subjects["train"]


def test_views_per_take(sources):
  train_takes = {s.source.rsplit("_cam", 1)[0] for s in sources["train"].sequences}
  test_takes = {s.source.rsplit("_cam", 1)[0] for s in sources["test"].sequences}
  assert len(sources["train"].sequences) == 4 * len(train_takes)
  assert len(sources["test"].sequences) == 2 * len(test_takes) and len(test_takes) == 3


def test_cameras_are_plausible_and_see_every_joint():
  motion, meta = demo.load_takes()
  for take in ("uiprmd_m01_s01", "uiprmd_m05_s10", "cmu_11_01"):
    split = demo.split_of(meta[take])
    ankles = motion[take][:, [3, 6], 2].min(axis=1)
    floor = np.percentile(ankles, 1) - demo.ANKLE_HEIGHT_MM
    for rotation, centre in demo.camera_views(take, motion[take], split):
      distance = np.linalg.norm(centre[:2] - motion[take][:, 0, :2].mean(0))
      assert 2500 <= distance <= demo.MAX_DISTANCE_MM * 1.1
      assert 1000 <= centre[2] - floor <= 1800
      pixels = cameras.project(cameras.world_to_camera_rt(motion[take], rotation, centre), demo.INTRINSICS)
      assert np.all((pixels >= 0) & (pixels <= 1000))


def test_clips_follow_the_contract_and_go_back_to_mm(sources):
  src = sources["test"]
  example = src[5]
  assert example["input_2d"].shape == (27, 17, 3) and example["input_2d"].dtype == np.float32
  assert example["target_3d"][0, 0, 2] == 0
  np.testing.assert_array_equal(example["input_2d"][..., :2], example["target_3d"][..., :2])
  assert np.abs(example["input_2d"][..., :2]).max() <= 1
  motion, meta = demo.load_takes()
  take, k = example["source"].rsplit("_cam", 1)
  rotation, centre = demo.camera_views(take, motion[take], "test")[int(k)]
  cam = cameras.world_to_camera_rt(motion[take][example["frame_index"]], rotation, centre)
  truth = cam - cam[:, :1]
  mm = clips.denormalize_mm(example["target_3d"], example["scale_mm"])
  np.testing.assert_allclose(mm[..., 2], truth[..., 2], atol=0.05)
  assert np.linalg.norm(mm - truth, axis=-1).mean() < 40  # the 2.5D approximation of x, y
  assert example["action"] in {"deep squat", "sit to stand"}
  reps = json.loads(example["reps"])
  assert reps == meta[take]["rep_frames"] and example["correct"] == 1


def test_demo_data_is_deterministic():
  a = demo.take_sequences("uiprmd_m01_s03", *[x["uiprmd_m01_s03"] for x in demo.load_takes()])
  b = demo.take_sequences("uiprmd_m01_s03", *[x["uiprmd_m01_s03"] for x in demo.load_takes()])
  for sa, sb in zip(a, b):
    np.testing.assert_array_equal(sa.input_2d, sb.input_2d)
    np.testing.assert_array_equal(sa.target_3d, sb.target_3d)
  c = demo.take_sequences("uiprmd_m01_s03", *[x["uiprmd_m01_s03"] for x in demo.load_takes()], seed=1)
  assert not np.array_equal(a[0].input_2d, c[0].input_2d)


def test_unknown_split_is_an_error():
  with pytest.raises(ValueError, match="split"):
    demo.demo_sequences("validation")
