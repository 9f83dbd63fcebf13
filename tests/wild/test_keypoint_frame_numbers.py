"""Frame numbers in keypoint files are the file's word: big gaps are shortened (and said), absurd
numbers refused in one line, never a recording as long as the numbers say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.wild import keypoints as K
from tests.memcap import run_capped
from tests.wild.test_wild_keypoints import _person


def _alphapose(frames):
  return [
    {"image_id": f"{t}.jpg", "keypoints": _person(i).ravel().tolist(), "idx": 1} for i, t in enumerate(frames)
  ]


def _mmpose(frames):
  return [
    {
      "frame_id": t,
      "instances": [{"keypoints": _person(i)[:, :2].tolist(), "keypoint_scores": [0.9] * 17, "track_id": 1}],
    }
    for i, t in enumerate(frames)
  ]


@pytest.mark.parametrize("make", [_alphapose, _mmpose])
def test_a_huge_gap_is_shortened_and_said(tmp_path, make):
  path = tmp_path / "kp.json"
  path.write_text(json.dumps(make([0, 1, 2, 100_000_000, 100_000_001])))
  kf = K.read_keypoints(path)
  # 3 frames, the gap shortened to MAX_FRAME_GAP empty frames, 2 frames.
  assert kf.num_frames == 5 + K.MAX_FRAME_GAP
  assert kf.frame_ids[:3].tolist() == [0, 1, 2] and kf.frame_ids[-2:].tolist() == [100_000_000, 100_000_001]
  assert np.all(np.diff(kf.frame_ids) > 0)
  assert kf.tracks[0].num_detected == 5
  assert kf.tracks[0].present[-2:].all() and not kf.tracks[0].present[3:-2].any()
  assert len(kf.notes) == 1 and "between 2 and 100000000" in kf.notes[0] and str(path) in kf.notes[0]
  # Small gaps are kept as they are: nothing to say.
  path.write_text(json.dumps(make([0, 5, 40])))
  kf = K.read_keypoints(path)
  assert kf.frame_ids.tolist() == list(range(41)) and kf.notes == []


def test_frames_zero_and_a_hundred_million_read_in_bounded_memory(tmp_path):
  # 600 bytes used to become a 100-million-frame array (14 GB); under a 1 GiB cap it must read.
  path = tmp_path / "kp.json"
  path.write_text(json.dumps(_alphapose([0, 100_000_000])))
  proc = run_capped(
    f"""
        from perfectrep_jax.wild.keypoints import load_person
        kp, kf, track = load_person({str(path)!r})
        print(kp.shape, kf.notes[0])
    """,
    mem_mb=1024,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.startswith(f"({2 + K.MAX_FRAME_GAP}, 17, 3)")
  assert "shortened" in proc.stdout


@pytest.mark.parametrize(
  "frame_id,match",
  [
    (10**30, "out of range"),
    ("seven", "not a number"),
    (2.5, "not a whole number"),
    (float("inf"), "not a whole number"),
    ([3], "not a number"),
  ],
)
def test_bad_frame_numbers_are_one_line_errors(tmp_path, frame_id, match):
  path = tmp_path / "kp.json"
  doc = _mmpose([0, 1])
  doc[1]["frame_id"] = frame_id
  path.write_text(json.dumps(doc))
  with pytest.raises(UserError, match=match) as err:
    K.read_keypoints(path)
  assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_alphapose_image_id_with_a_huge_number(tmp_path):
  path = tmp_path / "kp.json"
  doc = _alphapose([0, 1])
  doc[1]["image_id"] = "frame_" + "9" * 5000 + ".jpg"
  path.write_text(json.dumps(doc))
  with pytest.raises(UserError, match="out of range") as err:
    K.read_keypoints(path)
  assert len(str(err.value)) < 300


def test_infer_says_which_gap_it_shortened(tiny_model_dir, tmp_path, capsys):
  from perfectrep_jax.cli import main

  path = tmp_path / "kp.json"
  path.write_text(json.dumps(_alphapose(list(range(30)) + list(range(100_000_000, 100_000_030)))))
  code = main(
    [
      "infer",
      "--checkpoint",
      str(tiny_model_dir),
      "--keypoints",
      str(path),
      "--out",
      str(tmp_path / "out"),
      "--no-render",
    ]
  )
  err = capsys.readouterr().err
  assert code == 0, err
  assert (
    f"note: {path}: no frame between 29 and 100000000 (99999970 frames); the gap is shortened to "
    f"{K.MAX_FRAME_GAP} empty frames" in err
  )
  meta = json.loads((tmp_path / "out" / "X3D.json").read_text())
  assert len(meta["frame_ids"]) == 60 + K.MAX_FRAME_GAP and meta["frame_ids"][-1] == 100_000_029
