"""PoseFormerV2's per-detector study on Human3.6M: one lifter per 2D source (ground truth, a
detector, a merge), trained and evaluated by the ``h36m_detectors`` sweep, joined into one table of
P1/P2 per action per source. Runs end to end on tiny files in Human3.6M's real layout (the bundled
mocap placed in its world, seen by its cameras; detectors = the projection plus noise)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from perfectrep_jax import skeleton
from perfectrep_jax.cli import main
from perfectrep_jax.data import cameras
from perfectrep_jax.data.builders.h36m import camera_table
from perfectrep_jax.data.prepare import prepare
from perfectrep_jax.sweeps.spec import load_sweep, parse_arg
from tests.data.test_builders import h36m_world

# (subject, action) -> (frames, start in the bundled take); S1 trains, S9 is tested.
TAKES = {
  ("S1", "Walking 1"): (120, 0),
  ("S1", "Sitting"): (120, 300),
  ("S9", "Walking 1"): (81, 600),
  ("S9", "Sitting"): (81, 800),
}
NOISE_PX = {"cpn_ft_h36m_dbb": 4.0, "sh_ft_h36m": 12.0}
SOURCES = ("gt", "cpn", "cpn_sh_average")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  raw = tmp_path_factory.mktemp("h36m_raw")
  positions = {}
  for (subject, action), (frames, start) in TAKES.items():
    positions.setdefault(subject, {})[action] = h36m_world(frames, start)
  np.savez(raw / "data_3d_h36m.npz", positions_3d=positions)
  intrinsics, _, extrinsics = camera_table()
  rng = np.random.default_rng(0)
  for name, noise in NOISE_PX.items():
    det = {}
    for (subject, action), world in ((k, positions[k[0]][k[1]]) for k in TAKES):
      world_mm = world[:, list(skeleton.H36M32_TO_H36M17)] * 1000.0
      det.setdefault(subject, {})[action] = [
        cameras.project(cameras.world_to_camera_quaternion(world_mm, *extrinsics[subject][c]), intr)
        + rng.normal(0.0, noise, (len(world), 17, 2))
        for c, intr in enumerate(intrinsics)
      ]
    np.savez(
      raw / f"data_2d_h36m_{name}.npz", positions_2d=det, metadata={"layout_name": "h36m", "num_joints": 17}
    )
  data_dir = tmp_path_factory.mktemp("tfds")
  for source in SOURCES:
    prepare(f"h36m/{source}81", str(raw), str(data_dir), progress=False)
  return data_dir


def test_sweep_arguments_are_typed_and_checked():
  opts = parse_arg("frames=81,sources=gt+cpn,flag", frames=243, sources=(), flag=False, name="x")
  assert opts == {"frames": 81, "sources": ("gt", "cpn"), "flag": True, "name": "x"}
  with pytest.raises(ValueError, match="unknown sweep argument 'framez'"):
    parse_arg("framez=81", frames=243)
  with pytest.raises(ValueError):
    parse_arg("frames=many", frames=243)


@pytest.mark.parametrize(
  "arg,message",
  [
    ("", "data_dir=DIR"),
    ("data_dir=/d,sources=gt+yolo", "unknown 2D sources ['yolo']"),
    ("data_dir=/d,frames=27", "frames must be 243 or 81"),
  ],
)
def test_detector_sweep_argument_errors(tmp_path, capsys, arg, message):
  assert main(["sweep", f"h36m_detectors:{arg}", "--workdir", str(tmp_path), "--list"]) == 2
  err = capsys.readouterr().err.strip()
  assert message in err and len(err.splitlines()) == 1


def test_every_source_is_a_config_at_243_and_81_frames(capsys, tmp_path):
  assert main(["sweep", "h36m_detectors:data_dir=/d", "--workdir", str(tmp_path), "--list"]) == 0
  runs = capsys.readouterr().out.strip().splitlines()
  names = [r.split("\t")[0] for r in runs]
  assert [n.split("~")[0] for n in names[:3]] == [
    "data.source=h36m-gt",
    "data.source=h36m-cpn",
    "data.source=h36m-sh",
  ]
  assert len(runs) == 8 and all(
    "--config.data.data_dir=/d" in r and "--config.init.finetune=False" in r for r in runs
  )


def test_one_table_of_p1_p2_per_action_per_2d_source(prepared, tmp_path, capsys):
  spec = f"h36m_detectors:data_dir={prepared},frames=81,variant=smoke,sources={'+'.join(SOURCES)}"
  work = tmp_path / "study"
  assert main(["sweep", spec, "--workdir", str(work)]) == 0
  capsys.readouterr()
  assert main(["sweep", spec, "--workdir", str(work), "--summary"]) == 0
  printed = capsys.readouterr().out
  assert "P1 / P2 (mm) per action" in printed and "per_action.csv" in printed

  table = json.loads((work / "per_action.json").read_text())
  labels = [f"h36m/{s}81" for s in SOURCES]
  assert table["runs"] == labels and table["actions"] == ["Sitting", "Walking", "mean"]
  runs = {r.overrides["data.source"]: work / r.name for r in load_sweep(spec).runs}
  for label in labels:
    run = runs[label]
    best = [
      json.loads(line)
      for line in (run / "metrics.jsonl").read_text().splitlines()
      if '"split": "test"' in line
    ][-1]
    own = json.loads((run / "eval" / f"step_{best['step']}" / "metrics.json").read_text())["per_action"]
    for action in ("Sitting", "Walking"):
      assert table["P1"][action][label] == pytest.approx(own[action]["P1"])
      assert table["P2"][action][label] == pytest.approx(own[action]["P2"])
      assert table["frames"][action][label] == own[action]["frames"] > 0
    assert table["P1"]["mean"][label] == pytest.approx(np.mean([own[a]["P1"] for a in own]))
    assert table["P1"]["mean"][label] == pytest.approx(best["mpjpe"], rel=1e-4)
  # Each source fed its own 2D: the same seed and schedule end at different errors.
  means = [table["P1"]["mean"][label] for label in labels]
  assert len(set(np.round(means, 3))) == len(means)

  with open(work / "per_action.csv", newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["action", *[f"{label} {k}" for label in labels for k in ("P1", "P2")]]
  assert [r[0] for r in rows[1:]] == ["Sitting", "Walking", "mean"]
  assert float(rows[1][1]) == pytest.approx(table["P1"]["Sitting"][labels[0]], abs=1e-4)
