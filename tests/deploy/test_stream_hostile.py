"""The stream survives any line (deeply nested, huge numbers, garbage, wrong shapes, not UTF-8, too
long) and any absence (a person gone for longer than a window, longer than --max-gap); the ``end``
line is always written."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from perfectrep_jax.cli import main
from perfectrep_jax.deploy import stream_io
from perfectrep_jax.deploy.online_reps import OnlineRepCounter
from perfectrep_jax.deploy.stream import StreamingLifter
from perfectrep_jax.deploy.stream_io import LineError, StreamRunner, parse_line, read_lines
from tests.deploy.conftest import filmed_take
from tests.deploy.test_stream import SQUAT, per_frame_model

HOSTILE = [
  "[" * 100_000 + "]" * 100_000,  # nested past the recursion limit
  '{"frame": 3, "keypoints": [[' + "9" * 5000 + ", 1, 1]]}",  # a 5000-digit number
  '{"frame": ' + "7" * 4000 + ', "keypoints": null}',  # an int() reads, too big a frame
  '{"frame": 100000000000000000000, "keypoints": null}',
  '{"keypoints": {"nose": [1, 2, 3]}}',
  '{"keypoints": [[[[1, 2, 3]]]]}',
  '{"keypoints": [[1, 2, 3], [4, 5]]}',  # ragged
  '{"keypoints": [[1, 2, 3, 4]]}',
  '{"keypoints": "' + "x" * 1000 + '"}',
  "\x00\x01\x02garbage",
  "12",
  "null null",
  '{"keypoints": [' + ",".join(["[1e400, 2, 1]"] * 17) + "]}",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_any_line_is_a_line_error(text):
  with pytest.raises(LineError) as err:
    parse_line(text)
  assert len(str(err.value)) < 200


def test_read_lines_bounds_a_line_and_reports_bad_bytes():
  raw = b'{"keypoints": null}\n' + b"x" * 5000 + b"\n\xff\xfe\n" + b'{"frame": 9, "keypoints": null}\n'
  out = list(read_lines(io.BytesIO(raw), max_bytes=1000))
  assert out[0] == '{"keypoints": null}\n' and out[3] == '{"frame": 9, "keypoints": null}\n'
  assert isinstance(out[1], LineError) and "longer than 1000 bytes" in str(out[1])
  assert isinstance(out[2], LineError) and "UTF-8" in str(out[2])
  # Text streams (a test's StringIO) read the same way.
  assert list(read_lines(io.StringIO("a\nb"))) == ["a\n", "b"]


def test_an_absence_longer_than_the_window_and_longer_than_max_gap():
  # Crop normalisation, window 9: out of view 20 frames (more than a window, less than max_gap
  # 30), then 50 (more than max_gap), then back; a frame whose joints are all at one point.
  coco, _ = filmed_take(SQUAT)
  coco = coco[:200].copy()
  gone = set(range(40, 60)) | set(range(100, 150))
  coco[170, :, :2] = 5.0
  lifter = StreamingLifter(per_frame_model, 9, max_gap=30, normalization="crop")
  out = []
  for t in range(200):
    out += lifter.push(t, None if t in gone else coco[t])
  out += lifter.finish()
  assert [r.frame for r in out] == list(range(200))
  by = {r.frame: r for r in out}
  assert all(by[f].joints is not None and not by[f].detected for f in range(40, 60))
  assert all(np.isfinite(by[f].joints).all() for f in range(40, 60))
  assert all(by[f].joints is not None for f in range(100, 130))  # held max_gap frames
  assert all(by[f].joints is None for f in range(130, 150))  # then gone
  assert by[150].detected and not by[170].detected


def test_cli_stream_survives_hostile_lines_and_absence(tiny_model_dir, monkeypatch, capsys):
  coco, _ = filmed_take(SQUAT)
  good = [json.dumps({"frame": t, "keypoints": np.round(coco[t], 2).tolist()}) for t in range(30)]
  nobody = [json.dumps({"frame": t, "keypoints": None}) for t in range(30, 70)]
  back = [json.dumps({"frame": t, "keypoints": np.round(coco[t], 2).tolist()}) for t in range(70, 80)]
  text = "\n".join(good[:10] + HOSTILE + good[10:] + nobody + back) + "\n"
  monkeypatch.setattr("sys.stdin", io.StringIO(text))
  assert main(["stream", "--checkpoint", str(tiny_model_dir), "--max-gap", "15"]) == 0
  out, err = capsys.readouterr()
  docs = [json.loads(line) for line in out.splitlines()]
  frames = [d for d in docs if "event" not in d]
  assert [d["frame"] for d in frames] == list(range(80))
  assert all(d["joints_3d"] is not None for d in frames[30:45])  # held max_gap frames
  assert all(d["joints_3d"] is None for d in frames[45:70]) and frames[70]["detected"]
  assert docs[-1]["event"] == "end" and docs[-1]["bad_lines"] == len(HOSTILE) and docs[-1]["frames"] == 80
  assert len(err.strip().splitlines()) == len(HOSTILE) and "Traceback" not in err


def test_the_end_line_is_written_when_the_model_fails(tiny_model_dir, monkeypatch, capsys):
  calls = []

  def failing(x):
    calls.append(1)
    if len(calls) > 5:
      raise RuntimeError("device lost\nsecond line")
    return per_frame_model(x)

  monkeypatch.setattr(stream_io, "make_lift_fn", lambda path, window, flip: (failing, 9, "stub"))
  coco, _ = filmed_take(SQUAT)
  lines = [json.dumps({"frame": t, "keypoints": np.round(coco[t], 2).tolist()}) for t in range(20)]
  monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
  with pytest.raises(RuntimeError, match="device lost"):
    main(["stream", "--checkpoint", str(tiny_model_dir)])
  docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert docs[-1]["event"] == "end" and docs[-1]["error"] == "device lost"
  assert docs[-1]["frames"] == len([d for d in docs if "event" not in d]) > 0


def test_runner_counts_line_errors_from_the_reader():
  lifter = StreamingLifter(per_frame_model, 9)
  docs, warnings = [], []
  runner = StreamRunner(lifter, OnlineRepCounter(30.0), 30.0, docs.append, warnings.append)
  runner.feed_lines(read_lines(io.BytesIO(b"\xff\n" + b"y" * 50 + b"\n" + b'{"keypoints": null}\n'), 20))
  runner.finish()
  assert runner.bad_lines == 2 and len(warnings) == 2 and docs[-1]["frames"] == 1
