"""Streaming lifting: same 3D as offline lifting once the window is full, same repetitions, bounded
delay, missing frames, people leaving, and bad input lines skipped."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from scipy.spatial import cKDTree

from perfectrep_jax.cli import main
from perfectrep_jax.deploy.online_reps import OnlineRepCounter
from perfectrep_jax.deploy.stream import StreamingLifter
from perfectrep_jax.deploy.stream_io import StreamRunner, parse_line
from perfectrep_jax.errors import UserError
from perfectrep_jax.form import kinematics
from perfectrep_jax.form.reps import segment_repetitions
from perfectrep_jax.models import model_dir
from perfectrep_jax.skeleton import JOINT_INDEX as J, coco_to_h36m
from perfectrep_jax.wild import lift
from tests.deploy.conftest import IMAGE_SIZE, MOCAP_FPS, filmed_take

SQUAT = "uiprmd_m01_s09"  # a held-out performer's ten deep squats


def per_frame_model(x):
  """A stand-in lifter whose output for a frame depends on that frame only."""
  y = np.array(x, dtype=np.float32, copy=True)
  y[..., 2] = 0.3 * x[..., 0] * x[..., 1] + 0.1 * x[..., 2] + 0.05 * x[..., 1] ** 2
  return y


class Oracle:
  """A stand-in lifter that knows the take: each input frame's 2D is looked up among the take's
  frames (nearest neighbour) and that frame's true 3D returned, so 3D and repetitions are real."""

  def __init__(self, coco, truth):
    x, _ = lift.normalize(coco_to_h36m(coco), "image", IMAGE_SIZE)
    self.tree, self.truth = cKDTree(x[..., :2].reshape(len(x), -1)), truth

  def __call__(self, batch):
    b, t = batch.shape[:2]
    _, idx = self.tree.query(batch[..., :2].reshape(b * t, -1))
    return self.truth[idx].reshape(batch.shape).astype(np.float32)


def _stream(lifter, coco, missing=()):
  out, arrived_at = [], {}
  for t in range(len(coco)):
    arrived_at[t] = t
    for r in lifter.push(t, None if t in missing else coco[t]):
      out.append((r, t))
  out += [(r, len(coco) - 1) for r in lifter.finish()]
  return out


@pytest.mark.parametrize("lookahead,hop", [(0, 1), (4, 1), (3, 5), (0, 26), (6, 20)])
def test_stream_equals_offline_lifting_for_a_per_frame_model(lookahead, hop):
  coco, _ = filmed_take(SQUAT)
  coco = coco[:200]
  lifter = StreamingLifter(
    per_frame_model,
    27,
    hop=hop,
    lookahead=lookahead,
    normalization="image",
    image_size=IMAGE_SIZE,
    units="pixel",
  )
  out = _stream(lifter, coco)
  assert [r.frame for r, _ in out] == list(range(len(coco)))
  # Bounded delay: every frame is written at most lookahead + hop - 1 frames after it arrived.
  assert max(written - r.frame for r, written in out[: -lifter.delay_frames or None]) <= lifter.delay_frames
  streamed = np.stack([r.joints for r, _ in out])
  offline, _ = lift.lift_keypoints(
    coco_to_h36m(coco),
    per_frame_model,
    27,
    fps=MOCAP_FPS,
    normalization="image",
    image_size=IMAGE_SIZE,
    flip=False,
    smooth_s=None,
    units="pixel",
  )
  np.testing.assert_allclose(streamed, offline, atol=1e-3)  # pixels; float32 round-off
  # One call per hop once the look-ahead has arrived, and one for what is left at the end.
  assert (len(coco) - lookahead) // hop <= lifter.model_calls <= (len(coco) - lookahead) // hop + 1


def _sideways_speed(x):
  """A stand-in lifter that answers, as every joint's y, how far the pelvis moves sideways from one
  row of its window to the next (its clock), and as x, z what a per-frame model would."""
  y = per_frame_model(x)
  pelvis = x[:, :, J["pelvis"], 0]
  y[..., 1] = np.abs(np.diff(pelvis, axis=1, append=pelvis[:, -1:]))[..., None]
  return y


def test_a_stream_at_another_rate_is_lifted_on_the_lifters_clock():
  coco, _ = filmed_take(SQUAT)
  coco = coco[:400].copy()
  coco[..., 0] += np.linspace(0.0, 200.0, len(coco))[:, None]  # squatting while walking sideways
  coco15 = lift.resample_frames(coco, MOCAP_FPS, 15.0)
  options = dict(normalization="image", image_size=IMAGE_SIZE, units="normalized")

  def stream(model, fps=None, model_fps=None, **timing):
    lifter = StreamingLifter(model, 27, fps=fps, model_fps=model_fps, **options, **timing)
    out = _stream(lifter, coco15)
    assert [r.frame for r, _ in out] == list(range(len(coco15)))
    return lifter, np.stack([r.joints for r, _ in out])

  plain, as_filmed = stream(_sideways_speed, lookahead=6)
  clock, on_clock = stream(_sideways_speed, 15.0, MOCAP_FPS, lookahead=6)
  assert (plain.lifted_at_fps, clock.lifted_at_fps) == (None, MOCAP_FPS)
  # the model saw the stream on its own clock: each row moves 15/50 of what a 15 fps frame does
  inside = slice(30, -10)
  ratio = np.median(on_clock[inside, :, 1]) / np.median(as_filmed[inside, :, 1])
  assert ratio == pytest.approx(15.0 / MOCAP_FPS, rel=0.05)
  # causal, a call per frame: the newest frame is the window's last sample, lifted as it is
  _, exact = stream(per_frame_model, lookahead=0)
  _, sampled = stream(per_frame_model, 15.0, MOCAP_FPS, lookahead=0)
  np.testing.assert_allclose(sampled[..., :2], exact[..., :2], atol=1e-5)
  rel = lambda y: y[..., 2] - y[:, J["pelvis"] : J["pelvis"] + 1, 2]  # noqa: E731
  np.testing.assert_allclose(rel(sampled), rel(exact), atol=1e-5)
  # a window must hold the frames it writes and one already written
  with pytest.raises(UserError, match="must fit in it"):
    StreamingLifter(per_frame_model, 5, lookahead=1, fps=15.0, model_fps=MOCAP_FPS, **options)


def test_real_dstformer_windows_once_the_window_is_full(parity_model_dir):
  """The converted upstream lifter: each streamed frame is the model's output for the window that
  ends ``lookahead`` frames after it (the same windows run offline as one batch), once full."""
  coco, _ = filmed_take(SQUAT)
  coco = coco[:80]
  model, _ = model_dir.load_model(parity_model_dir)
  apply = model_dir.make_apply_fn(model)
  w, look = 27, 2
  lifter = StreamingLifter(
    lambda x: np.asarray(apply(x)),
    w,
    lookahead=look,
    normalization="image",
    image_size=IMAGE_SIZE,
    units="normalized",
  )
  streamed = np.stack([r.joints for r, _ in _stream(lifter, coco)])
  x, _ = lift.normalize(coco_to_h36m(coco), "image", IMAGE_SIZE)
  ends = np.arange(w - 1, len(coco))
  windows = np.stack([x[e - w + 1 : e + 1] for e in ends])
  offline = np.asarray(apply(windows))[:, w - 1 - look]  # (N, 17, 3)
  frames = ends - look
  rel = lambda y: y - y[:, J["pelvis"] : J["pelvis"] + 1]  # noqa: E731
  np.testing.assert_allclose(rel(streamed[frames]), rel(offline), atol=1e-5)
  # Depth stays continuous: the pelvis depth changes between neighbouring frames as much as the
  # x, y of the pelvis do, not by a jump at every window.
  dz = np.abs(np.diff(streamed[frames, J["pelvis"], 2]))
  assert dz.max() < 0.05


def test_streamed_squats_give_the_offline_3d_and_the_same_repetitions():
  coco, truth = filmed_take(SQUAT)
  oracle = Oracle(coco, truth)
  lines = [json.dumps({"frame": t, "keypoints": np.round(k, 3).tolist()}) for t, k in enumerate(coco)]
  lifter = StreamingLifter(
    oracle, 27, lookahead=2, normalization="image", image_size=IMAGE_SIZE, units="normalized"
  )
  docs, warnings = [], []
  runner = StreamRunner(lifter, OnlineRepCounter(MOCAP_FPS), MOCAP_FPS, docs.append, warnings.append)
  runner.feed_lines(lines)
  summary = runner.finish()
  frames = [d for d in docs if "frame" in d and "event" not in d]
  streamed = np.array([d["joints_3d"] for d in frames])
  offline, _ = lift.lift_keypoints(
    coco_to_h36m(coco),
    oracle,
    27,
    fps=MOCAP_FPS,
    normalization="image",
    image_size=IMAGE_SIZE,
    flip=False,
    smooth_s=None,
  )
  assert warnings == [] and len(frames) == len(coco)
  np.testing.assert_allclose(streamed, offline, atol=1e-4)
  np.testing.assert_allclose(streamed, truth, atol=1e-4)
  # Ten squats, counted online as each completes, at the offline segmentation's turning points.
  reps = [d for d in docs if d.get("event") == "rep"]
  seg = segment_repetitions(offline, MOCAP_FPS, refine=False)
  assert summary["reps"] == len(reps) == len(seg.reps) == 10
  for online, off in zip(reps, seg.reps):
    assert abs(online["turn"] - off.turn) <= 0.4 * MOCAP_FPS
    # Reported once complete: after its turning point, before the next repetition's.
    assert online["turn"] < online["end"]
  ends = [d["end"] for d in reps]
  counts = {d["frame"]: d["reps"] for d in frames}
  assert all(counts[e] == k + 1 for k, e in enumerate(ends))


def test_missing_frames_and_a_person_who_leaves():
  coco, truth = filmed_take(SQUAT)
  oracle = Oracle(coco[:160], truth[:160])
  coco = coco[:160].copy()
  coco[20, :5, 2] = 0.0  # a frame without the head
  coco[21, 9, :2] = np.nan  # a wrist without coordinates
  gone = set(range(60, 100))  # 40 frames out of view, longer than max_gap = 10
  blink = {30, 31}  # two frames without a detection
  lifter = StreamingLifter(
    oracle, 27, hop=2, normalization="image", image_size=IMAGE_SIZE, units="normalized", max_gap=10
  )
  out = [r for r, _ in _stream(lifter, coco, missing=gone | blink)]
  assert [r.frame for r in out] == list(range(160))
  by = {r.frame: r for r in out}
  assert all(not by[f].detected and by[f].joints is not None for f in blink)
  # Held while the gap lasts max_gap frames, then nothing until the person is back.
  assert all(by[f].joints is not None for f in range(60, 70))
  assert all(by[f].joints is None for f in range(70, 100))
  assert by[100].detected and by[100].joints[J["pelvis"], 2] == pytest.approx(0.0, abs=1e-9)
  np.testing.assert_allclose(by[20].joints, truth[20], atol=1e-4)


def test_online_counts_equal_the_true_counts_on_every_exercise_take():
  from perfectrep_jax.data.demo import load_takes

  motion, meta = load_takes()
  wrong = {}
  for take in sorted(k for k, v in meta.items() if v.get("exercise")):
    counter = OnlineRepCounter(MOCAP_FPS)
    for t, value in enumerate(kinematics.flexion(motion[take])):  # as update(t, pose), faster
      counter.update_signal(t, value)
    counter.finish()
    # takes.json counts turning points; a repetition the take cuts is said as partial.
    if len(counter.reps) != meta[take]["reps"]:
      wrong[take] = len(counter.reps)
  assert wrong == {}


def test_counter_ignores_jitter_and_drops_an_interrupted_repetition():
  coco, truth = filmed_take(SQUAT)
  rng = np.random.default_rng(0)
  counter = OnlineRepCounter(MOCAP_FPS)
  still = truth[0] + rng.normal(scale=0.003, size=(300, 17, 3))
  assert all(counter.update(t, p) is None for t, p in enumerate(still)) and counter.count == 0
  counter = OnlineRepCounter(MOCAP_FPS)
  seg = segment_repetitions(truth, MOCAP_FPS, refine=False)
  first = seg.reps[1]
  for t in range(first.start - 20, first.turn):
    counter.update(t, truth[t])
  counter.interrupt()  # the person left at the bottom of the squat
  for t in range(first.turn + 200, first.turn + 260):
    counter.update(t, truth[first.start - 20])
  assert counter.finish() is None and counter.count == 0


@pytest.mark.parametrize(
  "text,message",
  [
    ("{not json", "not JSON"),
    ('{"frame": 3}', "no 'keypoints'"),
    ('{"frame": -1, "keypoints": null}', "non-negative integer"),
    ('{"keypoints": [1, 2]}', "triplets"),
    ('{"keypoints": [[1, 2, 3]]}', "1 keypoints"),
    ('{"keypoints": [["a", 2, 1]]}', "not a list of numbers"),
    ('"hello"', "expected a JSON object"),
  ],
)
def test_parse_line_errors(text, message):
  with pytest.raises(ValueError, match=message):
    parse_line(text)


def test_parse_line_formats():
  kp = np.arange(51, dtype=float).reshape(17, 3)
  assert parse_line(json.dumps({"frame": 4, "keypoints": kp.tolist()}))[0] == 4
  np.testing.assert_array_equal(parse_line(json.dumps({"keypoints": kp.ravel().tolist()}))[1], kp)
  np.testing.assert_array_equal(parse_line(json.dumps(kp[:, :2].tolist()))[1][:, 2], 1.0)
  halpe = np.ones((26, 3))
  assert parse_line(json.dumps(halpe.tolist()))[1].shape == (17, 3)
  assert parse_line('{"frame": 2, "keypoints": null}') == (2, None)
  assert parse_line("[]") == (None, None)


def test_cli_stream_reports_bad_lines_and_goes_on(parity_model_dir, monkeypatch, capsys):
  coco, _ = filmed_take(SQUAT)
  good = [json.dumps({"frame": t, "keypoints": np.round(coco[t], 2).tolist()}) for t in range(40)]
  lines = (
    good[:5]
    + [
      "{broken",
      '{"frame": 2, "keypoints": null}',
      '{"keypoints": [[1, 2, 3]]}',
      '{"frame": 5, "keypoints": [[1e999, 0, 1]]}',
    ]
    + good[5:]
    + [""]
  )
  monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
  code = main(
    [
      "stream",
      "--checkpoint",
      str(parity_model_dir),
      "--image-size",
      "1000",
      "1000",
      "--lookahead",
      "2",
      "--window",
      "20",
    ]
  )
  out, err = capsys.readouterr()
  assert code == 0
  docs = [json.loads(line) for line in out.splitlines()]
  assert docs[0]["event"] == "start" and docs[0]["window"] == 20 and docs[0]["delay_frames"] == 2
  frames = [d["frame"] for d in docs if "event" not in d]
  assert frames == list(range(40))
  assert docs[-1]["event"] == "end" and docs[-1]["bad_lines"] == 4 and docs[-1]["frames"] == 40
  reported = err.strip().splitlines()
  assert len(reported) == 4 and all("skipped" in r for r in reported)
  assert "line 6:" in reported[0] and "does not come after frame 4" in reported[1]
  assert "Traceback" not in err


@pytest.mark.parametrize(
  "args,message",
  [
    (["--window", "28"], "1 to 27 frames"),
    (["--lookahead", "20", "--hop", "7"], "lookahead + hop < window"),
    (["--units", "normalized"], "image normalisation"),
  ],
)
def test_cli_stream_option_errors(parity_model_dir, monkeypatch, capsys, args, message):
  monkeypatch.setattr("sys.stdin", io.StringIO(""))
  assert main(["stream", "--checkpoint", str(parity_model_dir), *args]) == 2
  err = capsys.readouterr().err.strip()
  assert message in err and len(err.splitlines()) == 1


def test_cli_stream_missing_checkpoint(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr("sys.stdin", io.StringIO(""))
  assert main(["stream", "--checkpoint", str(tmp_path / "none")]) == 2
  assert "no such directory" in capsys.readouterr().err


def test_stream_runs_an_exported_artifact(tiny_model_dir, tmp_path):
  from perfectrep_jax.deploy import export
  from perfectrep_jax.deploy.stream_io import lifter_fps, make_lift_fn

  assert lifter_fps(tiny_model_dir) is None  # a model.json that does not say: lifted as it comes
  trained = tmp_path / "trained"
  shutil.copytree(tiny_model_dir, trained)
  meta = json.loads((trained / "model.json").read_text())
  (trained / "model.json").write_text(json.dumps({**meta, "data": {"fps": 50}}))
  assert lifter_fps(trained) == 50.0
  export.export_model(trained, tmp_path / "hlo", "stablehlo", frames=9, platforms=("cpu",))
  assert lifter_fps(tmp_path / "hlo") == 50.0  # the artifact's manifest carries the clock
  fn, window, desc = make_lift_fn(tmp_path / "hlo", None, flip=True)
  assert window == 9 and "stablehlo" in desc
  with pytest.raises(UserError, match="exported for 9-frame windows"):
    make_lift_fn(tmp_path / "hlo", 5, flip=False)
  coco, _ = filmed_take(SQUAT)
  model, _ = model_dir.load_model(tiny_model_dir)
  apply = model_dir.make_apply_fn(model)
  results = []
  for fn_ in (fn, lambda x: np.asarray(apply(x))):
    lifter = StreamingLifter(fn_, 9, flip=True)
    results.append(np.stack([r.joints for r, _ in _stream(lifter, coco[:30])]))
  np.testing.assert_allclose(results[0], results[1], atol=1e-2)  # pixels (crop scale ~ 300 px)
