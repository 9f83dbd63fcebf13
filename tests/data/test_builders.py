"""TFDS builders, each built from tiny files written here in that dataset's exact layout.

The motion in these files is a few frames of the bundled real mocap placed in each dataset's
world; the expected 2D and 3D are recomputed here from the raw files, independently of the
builders' code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from perfectrep_jax import skeleton
from perfectrep_jax.data import cameras, clips, demo, pipeline, shared
from perfectrep_jax.data.builders import H36MConfig, Fit3DConfig, ClipConfig
from perfectrep_jax.data.builders.h36m import merge_detections
from perfectrep_jax.data.prepare import prepare
from perfectrep_jax.errors import UserError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _quiet_tfds():
  tfds.disable_progress_bar()


def mocap(frames: int, start: int = 0) -> np.ndarray:
  """(frames, 17, 3) real motion, world mm, Z up, centred on the pelvis of the first frame."""
  take = demo.load_takes()[0]["uiprmd_m01_s02"][start : start + frames].astype(np.float64)
  return take - take[:1, :1] * np.array([1, 1, 0])


def distorted(points_cam, f, c, k, p):
  """The Human3.6M / Fit3D camera model, written out again for the tests."""
  x = np.clip(points_cam[..., 0] / points_cam[..., 2], -1, 1)
  y = np.clip(points_cam[..., 1] / points_cam[..., 2], -1, 1)
  r2 = x * x + y * y
  radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
  tan = p[0] * x + p[1] * y
  u = x * (radial + tan) + p[0] * r2
  v = y * (radial + tan) + p[1] * r2
  return np.stack([f[0] * u + c[0], f[1] * v + c[1]], -1)


def built(builder_cls, tmp_path, config, manual_dir=None):
  builder = builder_cls(config=config, data_dir=str(tmp_path / "tfds"))
  dl = tfds.download.DownloadConfig(manual_dir=str(manual_dir)) if manual_dir else None
  builder.download_and_prepare(download_config=dl)
  return builder


def examples(builder, split):
  ds = builder.as_data_source(split=split)
  return [pipeline.decode(ds[i]) for i in range(len(ds))]


# =============================================================================== Fit3D
FIT3D_CAMS = {"50591643": (30.0, 3.2), "58860488": (-60.0, 4.0)}  # azimuth deg, distance m
FIT3D_INTR = {
  "f": [[1100.0, 1095.0]],
  "c": [[452.0, 448.0]],
  "k": [[-0.2, 0.1, 0.0]],
  "p": [[0.001, -0.0005]],
}
FIT3D_TAKES = {
  "s03": {"squat": (20, 0), "deadlift": (12, 300)},
  "s08": {"squat": (5, 100)},
  "s09": {"squat": (18, 500)},
}


def fit3d_camera(azimuth, distance):
  a = np.deg2rad(azimuth)
  centre = np.array([distance * np.cos(a), distance * np.sin(a), 1.4])
  return cameras.look_at_rotation(centre, np.array([0.0, 0.0, 0.9])), centre


@pytest.fixture(scope="module")
def fit3d_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("fit3d_raw") / "fit3d_train"
  info = {
    "all_camera_names": list(FIT3D_CAMS),
    "train_subj_names": list(FIT3D_TAKES),
    "subj_to_act": {s: list(a) for s, a in FIT3D_TAKES.items()},
  }
  root.mkdir()
  (root / "fit3d_info.json").write_text(json.dumps(info))
  for subject, actions in FIT3D_TAKES.items():
    folder = root / "train" / subject
    (folder / "joints3d_25").mkdir(parents=True)
    for action, (frames, start) in actions.items():
      h36m = mocap(frames, start) / 1000.0  # Fit3D stores metres
      extra = h36m[:, [3, 6, 13, 16, 3, 6, 13, 16]] + 0.05
      (folder / "joints3d_25" / f"{action}.json").write_text(
        json.dumps({"joints3d_25": np.concatenate([h36m, extra], 1).tolist()})
      )
      for cam, (azimuth, distance) in FIT3D_CAMS.items():
        rotation, centre = fit3d_camera(azimuth, distance)
        (folder / "camera_parameters" / cam).mkdir(parents=True, exist_ok=True)
        (folder / "camera_parameters" / cam / f"{action}.json").write_text(
          json.dumps(
            {
              "extrinsics": {"R": rotation.tolist(), "T": [centre.tolist()]},
              "intrinsics_wo_distortion": {"f": FIT3D_INTR["f"], "c": FIT3D_INTR["c"]},
              "intrinsics_w_distortion": FIT3D_INTR,
            }
          )
        )
    if subject == "s03":
      (folder / "rep_ann.json").write_text(json.dumps({"squat": [[0, 9], [9, 19]]}))
  return root.parent


def test_fit3d_builder(fit3d_dir, tmp_path):
  config = Fit3DConfig(name="tiny", clip_len=9, train_stride=3, test_stride=9)
  from perfectrep_jax.data.builders import Fit3D

  builder = built(Fit3D, tmp_path, config, fit3d_dir)
  assert builder.info.splits["train"].num_examples == 2 * (4 + 2)
  assert builder.info.splits["test"].num_examples == 2 * (1 + 2)
  assert list(tmp_path.glob("tfds/fit3d/tiny/1.0.0/*.array_record*"))
  train, test = examples(builder, "train"), examples(builder, "test")
  assert {e["subject"] for e in train} == {"s03"} and {e["subject"] for e in test} == {"s08", "s09"}
  for e in train + test:
    subject, action, cam = e["subject"], e["action"], e["camera"]
    frames, start = FIT3D_TAKES[subject][action]
    world = mocap(frames, start)[e["frame_index"]]
    rotation, centre = fit3d_camera(*FIT3D_CAMS[cam])
    cam_mm = (world - centre * 1000) @ rotation.T
    px = distorted(cam_mm, *[np.ravel(FIT3D_INTR[k]) for k in "fckp"])
    np.testing.assert_allclose(e["input_2d"][..., :2], px / 900 * 2 - 1, atol=1e-5)
    np.testing.assert_array_equal(e["input_2d"][..., :2], e["target_3d"][..., :2])
    assert np.all(e["resolution"] == 900) and e["target_3d"][0, 0, 2] == 0
    mm = clips.denormalize_mm(e["target_3d"], e["scale_mm"])
    np.testing.assert_allclose(mm[..., 2], cam_mm[..., 2] - cam_mm[:, :1, 2], atol=0.05)
    expected_reps = json.dumps([[0, 9], [9, 19]]) if (subject, action) == ("s03", "squat") else ""
    assert e["reps"] == expected_reps
  short = [e for e in test if e["subject"] == "s08"]
  assert all(e["frame_index"].max() <= 4 and len(e["frame_index"]) == 9 for e in short)


def test_fit3d_errors(tmp_path, fit3d_dir):
  (tmp_path / "raw").mkdir()
  (tmp_path / "raw" / "notes.txt").write_text("not fit3d")
  with pytest.raises(UserError, match="fit3d_info.json"):
    prepare("fit3d/clip81", str(tmp_path / "raw"), str(tmp_path / "tfds"), progress=False)
  broken = tmp_path / "broken"
  shutil.copytree(fit3d_dir, broken)
  os.remove(broken / "fit3d_train" / "train" / "s09" / "joints3d_25" / "squat.json")
  with pytest.raises(UserError, match="squat.json"):
    prepare("fit3d/clip81", str(broken), str(tmp_path / "tfds2"), progress=False)
  assert not list((tmp_path / "tfds2").glob("fit3d/clip81/1.0.0/*.array_record*"))


def test_a_failed_prepare_leaves_nothing_behind(tmp_path, fit3d_dir):
  (tmp_path / "raw").mkdir()
  (tmp_path / "raw" / "notes.txt").write_text("not fit3d")
  with pytest.raises(UserError, match="fit3d_info.json"):
    prepare("fit3d/clip81", str(tmp_path / "raw"), str(tmp_path / "tfds"), progress=False)
  assert not (tmp_path / "tfds").exists()  # no downloads/, fit3d/.config/, empty config folders
  # in a data directory with other datasets, only what this build created goes
  kept = tmp_path / "shared_tfds"
  (kept / "downloads" / "mine").mkdir(parents=True)
  (kept / "fit3d" / "clip243" / "1.0.0").mkdir(parents=True)
  before = sorted(p.relative_to(kept) for p in kept.rglob("*"))
  broken = tmp_path / "broken"
  shutil.copytree(fit3d_dir, broken)
  os.remove(broken / "fit3d_train" / "train" / "s09" / "joints3d_25" / "squat.json")
  with pytest.raises(UserError, match="squat.json"):
    prepare("fit3d/clip81", str(broken), str(kept), progress=False)
  assert sorted(p.relative_to(kept) for p in kept.rglob("*")) == before


@pytest.mark.parametrize(
  "dataset,files",
  [
    ("fit3d", "fit3d_info.json, train/<subject>/joints3d_25/<action>.json"),
    ("h36m/gt", "reads data_3d_h36m.npz from it"),
    ("h36m/cpn", "data_3d_h36m.npz, data_2d_h36m_cpn_ft_h36m_dbb.npz"),
    ("mpi_inf_3dhp", "data_train_3dhp.npz, data_test_3dhp.npz"),
  ],
)
def test_an_empty_manual_dir_names_the_files_it_needs(tmp_path, dataset, files):
  (tmp_path / "raw").mkdir()
  with pytest.raises(UserError, match="is empty") as e:
    prepare(dataset, str(tmp_path / "raw"), str(tmp_path / "tfds"), progress=False)
  assert files in str(e.value) and "\n" not in str(e.value)


def test_the_prepare_command_suggested_for_a_missing_dataset_has_its_manual_dir(tmp_path):
  with pytest.raises(UserError, match="not prepared") as e:
    pipeline.load_source(pipeline.PipelineConfig(source="h36m/cpn", data_dir=str(tmp_path)))
  assert (
    f"`perfectrep-jax prepare h36m/cpn --manual-dir DIR --data-dir {tmp_path}`, DIR holding "
    "data_3d_h36m.npz, data_2d_h36m_cpn_ft_h36m_dbb.npz"
  ) in str(e.value)


# =============================================================================== Human3.6M
H36M_FRAMES = {("S1", "Walking 1"): (30, 0), ("S9", "Sitting"): (12, 200)}


def h36m_world(frames, start):
  """(frames, 32, 3) metres: the 17 H36M joints at their places among 32, the rest near the pelvis."""
  h17 = mocap(frames, start) / 1000.0
  out = np.tile(h17[:, :1], (1, 32, 1)) + 0.01
  out[:, list(skeleton.H36M32_TO_H36M17)] = h17
  return out


@pytest.fixture(scope="module")
def h36m_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("h36m_raw")
  positions = {}
  for (subject, action), (frames, start) in H36M_FRAMES.items():
    positions.setdefault(subject, {})[action] = h36m_world(frames, start)
  np.savez(root / "data_3d_h36m.npz", positions_3d=positions)
  rng = np.random.default_rng(0)
  det_a, det_b = {}, {}
  for (subject, action), (frames, _) in H36M_FRAMES.items():
    det_a.setdefault(subject, {})[action] = [
      np.concatenate([rng.uniform(0, 1000, (frames, 17, 2)), rng.uniform(0.2, 1, (frames, 17, 1))], -1)
      for _ in range(4)
    ]
    cams_b = 3 if subject == "S9" else 4  # detector B misses S9's last camera
    det_b.setdefault(subject, {})[action] = [rng.uniform(0, 1000, (frames + 5, 17, 2)) for _ in range(cams_b)]
  np.savez(
    root / "data_2d_h36m_detA.npz", positions_2d=det_a, metadata={"layout_name": "h36m", "num_joints": 17}
  )
  np.savez(
    root / "data_2d_h36m_detB.npz", positions_2d=det_b, metadata={"layout_name": "coco", "num_joints": 17}
  )
  return root, det_a, det_b


def test_h36m_builder_ground_truth_2d(h36m_dir, tmp_path):
  from perfectrep_jax.data.builders import H36M
  from perfectrep_jax.data.builders.h36m import camera_table

  root = h36m_dir[0]
  config = H36MConfig(name="tiny_gt", clip_len=8, train_stride=4, test_stride=8)
  builder = built(H36M, tmp_path, config, root)
  assert builder.info.splits["train"].num_examples == 4 * 6  # S1: 30 frames -> 6 windows per camera
  assert builder.info.splits["test"].num_examples == 4 * 1  # S9: 12 frames -> 1 window
  table = json.loads((REPO / "perfectrep_jax/data/resources/h36m_cameras.json").read_text())
  for e in examples(builder, "train") + examples(builder, "test"):
    assert e["action"] in {"Walking", "Sitting"}
    c = [cam["id"] for cam in table["cameras"]].index(e["camera"])
    intr, ext = table["cameras"][c], table["extrinsics"][e["subject"]][c]
    q = np.asarray(ext["orientation"])
    w, x, y, z = q
    rot = np.array(
      [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
      ]
    )
    frames, start = H36M_FRAMES[(e["subject"], "Walking 1" if e["action"] == "Walking" else "Sitting")]
    world = h36m_world(frames, start)[e["frame_index"]] * 1000
    cam32 = (world - np.asarray(ext["translation"])) @ rot
    cam17 = cam32[:, [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]]
    px = distorted(
      cam17, intr["focal_length"], intr["center"], intr["radial_distortion"], intr["tangential_distortion"]
    )
    w_, h_ = intr["res_w"], intr["res_h"]
    np.testing.assert_allclose(e["input_2d"][..., :2], px / w_ * 2 - [1, h_ / w_], atol=1e-5)
    assert tuple(e["resolution"]) == (w_, h_)
    mm = clips.denormalize_mm(e["target_3d"], e["scale_mm"])
    np.testing.assert_allclose(mm[..., 2], cam17[..., 2] - cam17[:, :1, 2], atol=0.05)
  assert camera_table()[1] == [c["id"] for c in table["cameras"]]


def test_h36m_builder_merges_detectors_manually(h36m_dir, tmp_path):
  from perfectrep_jax.data.builders import H36M

  root, det_a, det_b = h36m_dir
  config = H36MConfig(
    name="tiny_manual",
    detectors=("detA", "detB"),
    merge="manual",
    manual_joints=(9, 10),
    clip_len=8,
    train_stride=4,
    test_stride=8,
  )
  builder = built(H36M, tmp_path, config, root)
  assert builder.info.splits["test"].num_examples == 3  # the camera detB lacks is skipped
  for e in examples(builder, "train") + examples(builder, "test"):
    action = "Walking 1" if e["action"] == "Walking" else "Sitting"
    c = ["54138969", "55011271", "58860488", "60457274"].index(e["camera"])
    w, h = e["resolution"]
    a = det_a[e["subject"]][action][c][e["frame_index"]]
    b = skeleton.coco_to_h36m(det_b[e["subject"]][action][c][e["frame_index"]])
    expected = a.copy()
    expected[:, [9, 10], :2] = b[:, [9, 10]]
    expected[:, [9, 10], 2] = 1.0  # detector B has no confidence
    np.testing.assert_allclose(e["input_2d"][..., :2], expected[..., :2] / w * 2 - [1, h / w], atol=1e-5)
    np.testing.assert_allclose(e["input_2d"][..., 2], expected[..., 2], atol=1e-6)


def test_merge_detections_average_and_weighted():
  a = np.zeros((2, 17, 3))
  b = np.zeros((2, 17, 3))
  a[..., :2], a[..., 2] = 10.0, 0.9
  b[..., :2], b[..., 2] = 20.0, 0.1
  b[1, 5, 2] = 0.0
  a[1, 5, 2] = 0.0  # nobody confident: plain mean
  avg = merge_detections([a, b], "average")
  np.testing.assert_allclose(avg[0, 0], [15.0, 15.0, 0.5])
  weighted = merge_detections([a, b], "weighted_average")
  np.testing.assert_allclose(weighted[0, 0], [11.0, 11.0, 0.5])
  np.testing.assert_allclose(weighted[1, 5], [15.0, 15.0, 0.0])
  manual = merge_detections([a, b], "manual", (3,))
  assert manual[0, 3, 0] == 20 and manual[0, 4, 0] == 10
  with pytest.raises(ValueError):
    H36MConfig(name="x", detectors=("a",), merge="average")
  with pytest.raises(ValueError):
    H36MConfig(name="x", detectors=("a", "b"), merge="manual")


# =============================================================================== MPI-INF-3DHP
def mpi_record(frames, start, res, seed):
  """P-STMO record: data_3d camera mm and data_2d pixels in the 3DHP joint order."""
  rotation, centre = fit3d_camera(20.0 * seed, 4000.0)
  cam = cameras.world_to_camera_rt(mocap(frames, start), rotation, centre)
  intr = cameras.Intrinsics(f=(1500.0, 1500.0), c=(res[0] / 2, res[1] / 2), res_w=res[0], res_h=res[1])
  px = cameras.project(cam, intr)
  order = list(skeleton.MPI_INF_3DHP_TO_H36M)
  data_3d, data_2d = np.zeros_like(cam), np.zeros_like(px)
  data_3d[:, order], data_2d[:, order] = cam, px
  return {"data_3d": data_3d.astype(np.float32), "data_2d": data_2d.astype(np.float32)}, cam, px


@pytest.fixture(scope="module")
def mpi_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("mpi_raw")
  truth = {}
  train = {}
  for seq, frames in (("S1 Seq1", 20), ("S2 Seq2", 10)):
    views = {}
    for cam in (0, 2):
      views[cam], *truth[(seq, cam)] = mpi_record(frames, 10 * cam, (2048, 2048), cam + 1)
    train[seq] = [views]
  test = {}
  for seq, res in (("TS1", (2048, 2048)), ("TS5", (1920, 1080))):
    record, *truth[(seq, None)] = mpi_record(16, 400, res, 3)
    record["valid"] = np.ones(16, bool)
    record["valid"][[0, 5]] = False
    test[seq] = record
  np.savez(root / "data_train_3dhp.npz", data=train)
  np.savez(root / "data_test_3dhp.npz", data=test)
  return root, truth


def test_mpi_inf_3dhp_builder(mpi_dir, tmp_path):
  from perfectrep_jax.data.builders import MpiInf3dhp

  root, truth = mpi_dir
  builder = built(
    MpiInf3dhp, tmp_path, ClipConfig(name="tiny", clip_len=7, train_stride=3, test_stride=7), root
  )
  assert builder.info.splits["train"].num_examples == 2 * 5 + 2 * 2
  assert builder.info.splits["test"].num_examples == 2 * 2  # 14 valid frames -> 2 clips each
  for e in examples(builder, "train") + examples(builder, "test"):
    if e["camera"] == "test":
      key = (e["source"], None)
      assert 0 not in e["frame_index"] and 5 not in e["frame_index"]
      assert tuple(e["resolution"]) == ((1920, 1080) if e["source"] == "TS5" else (2048, 2048))
    else:
      key = (e["source"].rsplit("_cam", 1)[0].replace("_", " "), int(e["camera"]))
      assert e["subject"] == key[0].split(" ")[0]
    cam, px = truth[key]
    w, h = e["resolution"]
    np.testing.assert_allclose(e["input_2d"][..., :2], px[e["frame_index"]] / w * 2 - [1, h / w], atol=1e-5)
    mm = clips.denormalize_mm(e["target_3d"], e["scale_mm"])
    ref = cam[e["frame_index"]]
    np.testing.assert_allclose(mm[..., 2], ref[..., 2] - ref[:, :1, 2], atol=0.1)


# =============================================================================== demo
@pytest.fixture(scope="module")
def demo_subset():
  return {split: demo.demo_sequences(split)[:2] for split in demo.SPLITS}


def test_demo_builder_matches_the_in_memory_clips(demo_subset, tmp_path, monkeypatch):
  from perfectrep_jax.data.builders import demo as demo_builder

  monkeypatch.setattr(demo_builder.demo, "demo_sequences", lambda split: demo_subset[split])
  summary = prepare("demo/clip27", None, str(tmp_path / "tfds"), progress=False)
  memory = {
    split: demo.ClipSource(demo_subset[split], 27, 9 if split == "train" else 27) for split in demo.SPLITS
  }
  assert summary["splits"] == {s: len(m) for s, m in memory.items()}
  assert summary["dataset"] == "demo/clip27" and summary["clip_len"] == 27 and not summary["already_prepared"]
  assert prepare("demo/clip27", None, str(tmp_path / "tfds"), progress=False)["already_prepared"]
  builder = tfds.builder("demo/clip27", data_dir=str(tmp_path / "tfds"))
  stored = {(e["source"], tuple(e["frame_index"])): e for e in examples(builder, "test")}
  for i in range(len(memory["test"])):
    want = pipeline.decode(memory["test"][i])
    got = stored[(want["source"], tuple(want["frame_index"]))]
    for key in ("input_2d", "target_3d", "scale_mm", "resolution"):
      np.testing.assert_array_equal(got[key], want[key])
    assert (
      got["action"] == want["action"] and got["reps"] == want["reps"] and got["correct"] == want["correct"]
    )
  # the pipeline reads the prepared files by name
  cfg = pipeline.PipelineConfig(
    source="demo/clip27",
    data_dir=str(tmp_path / "tfds"),
    clip_len=27,
    batch_size=4,
    num_epochs=1,
    worker_count=0,
  )
  got = list(pipeline.make_train_iterator(cfg))
  assert len(got) == len(memory["train"]) // 4 and got[0]["input_2d"].shape == (4, 27, 17, 3)
  with pytest.raises(UserError, match="27 frames"):
    pipeline.load_source(
      pipeline.PipelineConfig(source="demo/clip27", data_dir=str(tmp_path / "tfds"), clip_len=81)
    )


# =============================================================================== prepare and packaging
def test_prepare_user_errors(tmp_path):
  with pytest.raises(UserError, match="unknown dataset"):
    prepare("coco", None, str(tmp_path))
  with pytest.raises(UserError, match="unknown config"):
    prepare("h36m/clip9", "x", str(tmp_path))
  with pytest.raises(UserError, match="manual-dir"):
    prepare("h36m", None, str(tmp_path))
  with pytest.raises(UserError, match="does not exist"):
    prepare("h36m", str(tmp_path / "missing"), str(tmp_path))
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="empty"):
    prepare("mpi_inf_3dhp", str(tmp_path / "empty"), str(tmp_path))
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "readme.txt").write_text("x")
  with pytest.raises(UserError, match="data_3d_h36m.npz"):
    prepare("h36m", str(tmp_path / "other"), str(tmp_path / "out"), progress=False)
  (tmp_path / "other" / "data_train_3dhp.npz").write_bytes(b"not a zip")
  with pytest.raises(UserError, match="cannot read"):
    prepare("mpi_inf_3dhp", str(tmp_path / "other"), str(tmp_path / "out"), progress=False)


def test_works_from_an_installed_copy_of_the_package(tmp_path):
  site = tmp_path / "site"
  shutil.copytree(
    REPO / "perfectrep_jax", site / "perfectrep_jax", ignore=shutil.ignore_patterns("__pycache__")
  )
  code = (
    "import perfectrep_jax, pathlib\n"
    "from perfectrep_jax.data.builders import Fit3D, Demo\n"
    "from perfectrep_jax.data import demo, corruption\n"
    f"assert pathlib.Path(perfectrep_jax.__file__).is_relative_to({str(site)!r})\n"
    f"assert str(Fit3D.code_path).startswith({str(site)!r})\n"
    "src = demo.demo_source('test', 27)\n"
    "assert len(src) > 0 and src[0]['input_2d'].shape == (27, 17, 3)\n"
    "print(corruption.load_statistics().weight.shape)\n"
  )
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", shared.ENV_VAR)}
  env["PYTHONPATH"] = str(site)
  # An installed copy has no checkout beside the data folder: it is named by the variable.
  env[shared.ENV_VAR] = str(shared.data_root())
  result = subprocess.run(
    [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0, result.stderr
  assert "(17,)" in result.stdout
  del env[shared.ENV_VAR]  # without it, one line saying where it looked
  result = subprocess.run(
    [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
  )
  assert result.returncode != 0 and shared.ENV_VAR in result.stderr.strip().splitlines()[-1]


def test_no_top_level_datasets_module_from_the_repository_root():
  # Python puts the working directory first on sys.path: a `datasets/` folder there imported as an
  # empty namespace package in place of Hugging Face's `datasets` (a late AttributeError).
  code = (
    "import importlib.util, json; s = importlib.util.find_spec('datasets'); "
    "print(json.dumps([] if s is None else [s.origin or ''] + list(s.submodule_search_locations or [])))"
  )
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
  )
  assert result.returncode == 0, result.stderr
  found = [p for p in json.loads(result.stdout) if p and Path(p).resolve().is_relative_to(REPO)]
  assert found == [], f"`import datasets` from the repository root finds {found}"


def test_top_level_datasets_folder_shadows_nothing(tmp_path):
  fake = tmp_path / "hf" / "datasets"
  fake.mkdir(parents=True)
  (fake / "__init__.py").write_text("IS_HUGGING_FACE = True\n")
  env = dict(os.environ, PYTHONPATH=str(tmp_path / "hf"))
  code = "import datasets; print(datasets.IS_HUGGING_FACE)"
  result = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
  )
  assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr


@pytest.mark.parametrize(
  "name,cls_name", [("fit3d", "Fit3D"), ("h36m", "H36M"), ("mpi_inf_3dhp", "MpiInf3dhp"), ("demo", "Demo")]
)
def test_tfds_cli_folders_load_the_package_builders(name, cls_name):
  import perfectrep_jax.data.builders as builders

  folder = REPO / "tfds-builders" / name
  with tfds.core.utils.add_sys_path(folder.parent):
    cls = tfds.core.community.builder_cls_from_module(f"{name}.{name}_dataset_builder")
  assert issubclass(cls, getattr(builders, cls_name)) and cls.name == name
