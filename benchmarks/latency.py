"""Lifting latency on this machine: JAX on CPU, the StableHLO artifact and onnxruntime, per
clip of the model's length (243 frames; 27 at ``demo``) and per streamed frame, at the ``demo``,
``lite`` and ``full`` model sizes, with the real-time factor at
30 fps. Prints the tables and, with ``--write-readme``, puts them into ``benchmarks/README.md``
under their own heading (the rest of that file is left as it is).

    python benchmarks/latency.py                                  # demo, lite, full; windows 243, 27
    python benchmarks/latency.py --sizes lite --windows 27 --repeats 2

Weights are random (speed does not depend on them). Each figure is the best of ``--repeats`` timed
runs after a warm-up call (compilation and session creation excluded). The streamed figure runs
:class:`perfectrep_jax.deploy.stream.StreamingLifter` end to end (buffer, fill, COCO to H36M,
normalisation, the model call, depth alignment) with a model call for every frame (hop 1); a hop of
H divides the model's share by H and adds H - 1 frames of delay.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from perfectrep_jax.deploy import export, runtime
from perfectrep_jax.deploy.stream import StreamingLifter
from perfectrep_jax.hostmem import cpu_model
from perfectrep_jax.models import model_dir
from perfectrep_jax.models.dstformer import DSTformerConfig
from perfectrep_jax.train.config_base import DEMO_MODEL, FULL_MODEL, LIFTER_MODEL, LITE_MODEL

# demo and lifter (the shipped default, configs/lifter.py): maxlen 27
SIZES = {"demo": DEMO_MODEL, "lifter": LIFTER_MODEL, "lite": LITE_MODEL, "full": FULL_MODEL}
FPS = 30.0
FRAME_MS = 1000.0 / FPS
HEADING = "## Latency: exported lifters and streaming"
README = Path(__file__).resolve().parent / "README.md"


def best_ms(fn, x: np.ndarray, repeats: int) -> float:
  """Best wall time of ``fn(x)`` over ``repeats`` runs, in ms, after one warm-up call."""
  np.asarray(fn(x))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    np.asarray(fn(x))
    times.append(time.perf_counter() - start)
  return 1000.0 * min(times)


def stream_ms_per_frame(fn, window: int, frames: int, coco: np.ndarray, hop: int = 1) -> float:
  """ms per frame of a causal stream with a model call every ``hop`` frames, once the window is full."""
  lifter = StreamingLifter(lambda x: x, window, hop=hop, normalization="image", image_size=(1000, 1000))
  for t in range(window):  # fill the window without the model (it was warmed up already)
    lifter.push(t, coco[t % len(coco)])
  lifter.lift_fn = fn
  start = time.perf_counter()
  for t in range(window, window + frames):
    lifter.push(t, coco[t % len(coco)])
  return 1000.0 * (time.perf_counter() - start) / frames


def fake_detections(n: int = 64, seed: int = 0) -> np.ndarray:
  """(n, 17, 3) COCO-17 pixel keypoints of a person moving a little, confidence 0.9."""
  rng = np.random.default_rng(seed)
  base = rng.uniform(350, 650, size=(17, 2))
  wobble = 20.0 * np.sin(np.arange(n) / 5.0)[:, None, None]
  xy = base[None] + wobble + rng.normal(scale=2.0, size=(n, 17, 2))
  return np.concatenate([xy, np.full((n, 17, 1), 0.9)], axis=-1)


def backends(size: str, window: int, workdir: Path, with_onnx: bool):
  """``[(name, fn)]``: the JAX model and its StableHLO and ONNX exports for ``window`` frames."""
  cfg = DSTformerConfig(**SIZES[size])
  path = workdir / f"{size}_model"
  if not path.exists():
    model_dir.save_model_dir(path, model_dir.build_model("lifter", cfg))
  model, _ = model_dir.load_model(path)
  apply = model_dir.make_apply_fn(model)
  out = [("JAX (jit, CPU)", lambda x: np.asarray(apply(x)))]
  art = workdir / f"{size}_{window}_stablehlo"
  if not art.exists():
    export.export_model(path, art, "stablehlo", frames=window, platforms=("cpu",))
  out.append(("StableHLO artifact", runtime.load(art)))
  if with_onnx:
    art = workdir / f"{size}_{window}_onnx"
    if not art.exists():
      export.export_model(path, art, "onnx", frames=window)
    out.append(("onnxruntime (CPU)", runtime.load(art)))
  return out


def measure(
  sizes, windows, repeats: int, stream_frames: int, with_onnx: bool, workdir: Path
) -> tuple[list[dict], dict[int, float]]:
  """Times every backend at every size and window: ``(rows, stream overhead ms per window)``."""
  coco = fake_detections()
  rows, overhead = [], {}
  for size in sizes:
    for window in windows:
      if window > SIZES[size]["maxlen"]:
        continue
      if window not in overhead:  # the stream's own work per frame, without a model
        overhead[window] = stream_ms_per_frame(lambda x: x, window, 200, coco)
      for name, fn in backends(size, window, workdir, with_onnx):
        x = np.random.default_rng(0).uniform(-1, 1, size=(1, window, 17, 3)).astype(np.float32)
        call = best_ms(fn, x, repeats)
        frames = max(2, min(stream_frames, int(20000 / max(call, 1.0))))
        per_frame = stream_ms_per_frame(fn, window, frames, coco)
        # The smallest hop that should keep up (10% to spare), then measured over three
        # calls' worth of frames.
        hop = max(1, math.ceil(1.1 * call / max(FRAME_MS - overhead[window], 1e-6)))
        hop_ms = stream_ms_per_frame(fn, window, 3 * hop, coco, hop) if hop < window else None
        rows.append(
          {
            "backend": name,
            "size": size,
            "window": window,
            "call_ms": call,
            "stream_ms": per_frame,
            "hop": hop,
            "hop_ms": hop_ms,
          }
        )
        print(
          f"  {size:4s} {name:20s} window {window:3d}: {call:9.1f} ms/call, "
          f"{per_frame:9.1f} ms/frame streamed, hop {hop}: "
          f"{hop_ms if hop_ms is None else round(hop_ms, 1)} ms/frame",
          flush=True,
        )
  return rows, overhead


def tables(
  rows: list[dict],
  overhead: dict[int, float],
  machine: str,
  command: str = "python benchmarks/latency.py --write-readme",
) -> str:
  """The two markdown tables: whole clips (each size's own clip length, ``maxlen``: 243 frames at
  lite and full, 27 at demo), and streaming."""
  lines = [
    HEADING,
    "",
    f"`{command}` on {machine}. Random weights; best of the "
    "timed runs after a warm-up; batch 1. Real-time factor (RTF) = time per frame / "
    f"{FRAME_MS:.1f} ms (30 fps): below 1 keeps up with the camera.",
    "",
    "### A whole clip of the model's length (offline lifting)",
    "",
    "| size | backend | clip frames | ms per clip | ms per frame | RTF at 30 fps |",
    "|---|---|---:|---:|---:|---:|",
  ]
  for r in rows:
    clip = SIZES[r["size"]]["maxlen"]
    if r["window"] == clip:
      per = r["call_ms"] / clip
      lines.append(
        f"| {r['size']} | {r['backend']} | {clip} | {r['call_ms']:.0f} | {per:.1f} | {per / FRAME_MS:.2f} |"
      )
  lines += [
    "",
    "### Streaming (`perfectrep-jax stream`, causal, one model call per frame)",
    "",
    "A model call lifts the last `window` frames; with `--hop H` one call writes H frames, so "
    "the model's share per frame is divided by H and the delay grows by H - 1 frames. "
    "The last columns take the smallest hop H that should keep up with 30 fps with 10% to "
    "spare, measure the stream with it, and give the delay it brings (H - 1 frames plus one "
    "model call). The stream's own work per frame (buffer, fill, normalisation, depth "
    "alignment, no model): " + ", ".join(f"{ms:.1f} ms at window {w}" for w, ms in overhead.items()) + ".",
    "",
    "| size | backend | window | ms per call | ms per frame (hop 1) | RTF (hop 1) | "
    "hop H | ms per frame (hop H) | RTF (hop H) | delay (hop H) |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    rtf = r["stream_ms"] / FRAME_MS
    if r["hop_ms"] is None:
      tail = "none | - | - | -"
    else:
      delay = ((r["hop"] - 1) * FRAME_MS + r["call_ms"]) / 1000
      tail = f"{r['hop']} | {r['hop_ms']:.1f} | {r['hop_ms'] / FRAME_MS:.2f} | {delay:.2f} s"
    lines.append(
      f"| {r['size']} | {r['backend']} | {r['window']} | {r['call_ms']:.1f} | "
      f"{r['stream_ms']:.1f} | {rtf:.2f} | {tail} |"
    )
  return "\n".join(lines) + "\n"


def write_readme(section: str, path: Path = README) -> None:
  """Replaces this benchmark's section of ``path`` (from its heading to the next ``## ``), or
  appends it; every other part of the file stays as it is."""
  text = path.read_text() if path.exists() else "# Benchmarks\n"
  pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text, count=1)
  else:
    text = text.rstrip("\n") + "\n\n" + section
  path.write_text(text.rstrip("\n") + "\n")


def machine_description() -> str:
  cpu = cpu_model()
  import jax

  try:
    import onnxruntime

    ort = f", onnxruntime {onnxruntime.__version__}"
  except ImportError:
    ort = ""
  return f"{os.cpu_count()} cores of {cpu} (jax {jax.__version__}{ort})"


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--sizes", default="demo,lite,full")
  ap.add_argument("--windows", default="243,27")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--stream-frames", type=int, default=30, help="streamed frames timed per row (at most)")
  ap.add_argument("--no-onnx", action="store_true", help="skip onnxruntime (no torch/onnx installed)")
  ap.add_argument("--workdir", default=None, help="keep models and exports here (default a temp dir)")
  ap.add_argument("--write-readme", action="store_true")
  args = ap.parse_args(argv)
  sizes = [s for s in args.sizes.split(",") if s]
  unknown = [s for s in sizes if s not in SIZES]
  if unknown or not sizes:
    ap.error(f"--sizes: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(SIZES)}")
  windows = [int(w) for w in args.windows.split(",") if w]
  too_long = [s for s in sizes if not any(w <= SIZES[s]["maxlen"] for w in windows)]
  if too_long:
    ap.error(
      f"--windows {args.windows}: longer than the clips of {', '.join(too_long)} "
      f"(maxlen {', '.join(str(SIZES[s]['maxlen']) for s in too_long)}): nothing to time"
    )
  with tempfile.TemporaryDirectory() as tmp:
    workdir = Path(args.workdir or tmp)
    workdir.mkdir(parents=True, exist_ok=True)
    rows, overhead = measure(sizes, windows, args.repeats, args.stream_frames, not args.no_onnx, workdir)
  shown = list(sys.argv[1:] if argv is None else argv)
  section = tables(rows, overhead, machine_description(), " ".join(["python benchmarks/latency.py", *shown]))
  print(section)
  if args.write_readme:
    write_readme(section)
    print(f"wrote {README}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
