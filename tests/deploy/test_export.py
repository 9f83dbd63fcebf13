"""export-model: artifacts reload in a fresh process without the model code and match the JAX model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from perfectrep_jax.cli import main
from perfectrep_jax.deploy import export, runtime
from perfectrep_jax.errors import UserError
from perfectrep_jax.models import model_dir
from perfectrep_jax.models.heads import ActionConfig
from tests.deploy.conftest import TINY

# Runs an artifact with jax / onnxruntime and numpy only, in a process that never imports the
# project, and prints the largest difference to the expected output.
FRESH = textwrap.dedent("""
    import json, sys
    import numpy as np
    art, data = sys.argv[1], np.load(sys.argv[2])
    manifest = json.load(open(art + "/manifest.json"))
    x, want = data["x"], data["y"]
    if manifest["kind"] == "stablehlo":
        from jax import export
        exp = export.deserialize(bytearray(open(art + "/model.stablehlo", "rb").read()))
        got = np.asarray(exp.call(x))
    else:
        import onnxruntime as ort
        sess = ort.InferenceSession(art + "/model.onnx", providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert not any(m.startswith("perfectrep_jax") for m in sys.modules), "imported the project"
    print(json.dumps({"err": float(np.abs(got - want).max()), "shape": list(got.shape)}))
""")


def _probe(model_path, batch, frames, seed=0):
  model, _ = model_dir.load_model(model_path)
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, size=(batch, frames, 17, 3)).astype(np.float32)
  return x, np.asarray(model_dir.make_apply_fn(model)(x))


def _run_fresh(artifact, x, y, tmp_path):
  data = tmp_path / f"probe_{x.shape[0]}.npz"
  np.savez(data, x=x, y=y)
  script = tmp_path / "fresh.py"
  script.write_text(FRESH)
  res = subprocess.run(
    [sys.executable, str(script), str(artifact), str(data)],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=tmp_path,
  )
  assert res.returncode == 0, res.stderr[-2000:]
  return json.loads(res.stdout.strip().splitlines()[-1])


def test_stablehlo_reloads_in_a_fresh_process_with_any_batch(tiny_model_dir, tmp_path, capsys):
  out = tmp_path / "hlo"
  assert main(["export-model", str(tiny_model_dir), str(out), "--format", "stablehlo", "--frames", "7"]) == 0
  assert "max |output - JAX|" in capsys.readouterr().out
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["input"]["shape"] == ["batch", 7, 17, 3] and manifest["output"]["shape"] == [
    "batch",
    7,
    17,
    3,
  ]
  assert manifest["check"]["max_abs_err"] <= 1e-4 and set(manifest["platforms"]) == {"cpu", "cuda"}
  assert manifest["normalization"]["modes"].keys() == {"crop", "image"}
  assert manifest["model"]["config"]["maxlen"] == TINY.maxlen
  for batch in (1, 5):
    x, y = _probe(tiny_model_dir, batch, 7, seed=batch)
    res = _run_fresh(out, x, y, tmp_path)
    assert res["shape"] == [batch, 7, 17, 3] and res["err"] <= 1e-4
  # The project's runtime gives the same, and refuses a shape the artifact was not made for.
  lifter = runtime.load(out)
  x, y = _probe(tiny_model_dir, 2, 7)
  np.testing.assert_allclose(lifter(x), y, atol=1e-4)
  with pytest.raises(runtime.ArtifactError, match="expected input"):
    lifter(np.zeros((1, 9, 17, 3), np.float32))


def test_stablehlo_with_a_fixed_batch(tiny_model_dir, tmp_path):
  out = tmp_path / "hlo4"
  manifest = export.export_model(tiny_model_dir, out, "stablehlo", batch=4, platforms=("cpu",))
  assert manifest["input"]["shape"] == [4, 9, 17, 3]
  lifter = runtime.load(out)
  x, y = _probe(tiny_model_dir, 4, 9)
  np.testing.assert_allclose(lifter(x), y, atol=1e-4)
  with pytest.raises(runtime.ArtifactError, match="batch 4"):
    lifter(x[:2])


def test_onnx_reloads_in_onnxruntime_in_a_fresh_process(parity_model_dir, tmp_path):
  pytest.importorskip("torch")
  pytest.importorskip("onnxscript")
  pytest.importorskip("onnxruntime")
  out = tmp_path / "onnx"
  manifest = export.export_model(parity_model_dir, out, "onnx")
  assert manifest["input"]["shape"] == ["batch", 27, 17, 3]
  assert manifest["check"]["max_abs_err"] <= 1e-4
  for batch in (1, 3):
    x, y = _probe(parity_model_dir, batch, 27, seed=10 + batch)
    res = _run_fresh(out, x, y, tmp_path)
    assert res["shape"] == [batch, 27, 17, 3] and res["err"] <= 1e-4


@pytest.mark.slow
def test_tflite_runs_in_litert(tiny_model_dir, tmp_path):
  pytest.importorskip("litert_torch")
  out = tmp_path / "tflite"
  manifest = export.export_model(tiny_model_dir, out, "tflite")
  assert manifest["input"]["shape"] == [1, 9, 17, 3] and manifest["check"]["max_abs_err"] <= 1e-4
  x, y = _probe(tiny_model_dir, 1, 9)
  np.testing.assert_allclose(runtime.load(out)(x), y, atol=1e-4)


def _no_leftovers(parent):
  return [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
  "args,message",
  [
    (["--frames", "10"], "1 to 9 frames"),
    (["--frames", "0"], "1 to 9 frames"),
    (["--batch", "0"], "at least 1"),
  ],
)
def test_bad_options_end_in_one_line_and_leave_nothing(tiny_model_dir, tmp_path, capsys, args, message):
  out = tmp_path / "art"
  assert main(["export-model", str(tiny_model_dir), str(out), "--format", "stablehlo", *args]) == 2
  err = capsys.readouterr().err.strip()
  assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
  assert not out.exists() and _no_leftovers(tmp_path)


def test_missing_checkpoint_and_existing_output(tiny_model_dir, tmp_path, capsys):
  assert main(["export-model", str(tmp_path / "nope"), str(tmp_path / "a"), "--format", "onnx"]) == 2
  assert "no such directory" in capsys.readouterr().err
  taken = tmp_path / "taken"
  taken.mkdir()
  (taken / "keep.txt").write_text("mine")
  assert main(["export-model", str(tiny_model_dir), str(taken), "--format", "stablehlo"]) == 2
  assert "not empty" in capsys.readouterr().err and (taken / "keep.txt").read_text() == "mine"


def test_action_models_are_refused(tmp_path):
  action = model_dir.build_model("action", ActionConfig(backbone=TINY, num_classes=3, hidden_dim=8))
  model_dir.save_model_dir(tmp_path / "action", action)
  with pytest.raises(UserError, match="action model"):
    export.export_model(tmp_path / "action", tmp_path / "out", "stablehlo")


def test_a_failed_export_removes_its_temporary_directory(tiny_model_dir, tmp_path, monkeypatch):
  def broken(*args, **kwargs):
    raise RuntimeError("exporter crashed")

  monkeypatch.setattr(export, "write_stablehlo", broken)
  with pytest.raises(RuntimeError, match="crashed"):
    export.export_model(tiny_model_dir, tmp_path / "out", "stablehlo")
  assert not (tmp_path / "out").exists() and _no_leftovers(tmp_path)


def test_runtime_reports_damaged_artifacts(tiny_model_dir, tmp_path):
  out = tmp_path / "hlo"
  export.export_model(tiny_model_dir, out, "stablehlo", platforms=("cpu",))
  (out / "model.stablehlo").write_bytes(b"not a serialised export")
  with pytest.raises(runtime.ArtifactError, match="cannot load"):
    runtime.load(out)
  (out / "manifest.json").write_text("{")
  with pytest.raises(runtime.ArtifactError, match="corrupt JSON"):
    runtime.load(out)
  with pytest.raises(runtime.ArtifactError, match="not an exported model"):
    runtime.load(tiny_model_dir)
