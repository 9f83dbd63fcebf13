"""The ``export-model`` and ``stream`` subcommands (added to ``perfectrep-jax`` by :func:`add_parsers`)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from perfectrep_jax.deploy.export import export_model
from perfectrep_jax.errors import UserError
from perfectrep_jax.weights import checkpoint_or_default
from perfectrep_jax.wild.detect import show_native_logs


def add_image_options(
  p, *, size_help: str, normalization_default: str | None, normalization_help: str
) -> None:
  """``--image-size W H`` and ``--normalization crop|image``: how 2D keypoints in pixels are
  normalised for a lifter (``infer`` and ``stream``)."""
  p.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"), default=None, help=size_help)
  p.add_argument(
    "--normalization", choices=("crop", "image"), default=normalization_default, help=normalization_help
  )


def add_detector_options(p, *, when: str = "", num_poses_help: str | None = None) -> None:
  """``--pose-model``, ``--verbose`` and (given its help) ``--num-poses``: the MediaPipe detector
  of ``detect``, ``infer --video`` and ``stream --video``; ``when`` says when it runs."""
  p.add_argument(
    "--pose-model",
    default=None,
    help=f"MediaPipe PoseLandmarker .task bundle{when} (default: built once into the cache; "
    "see perfectrep-jax pose-model)",
  )
  if num_poses_help is not None:
    p.add_argument("--num-poses", type=int, default=1, help=num_poses_help)
  p.add_argument(
    "--verbose", action="store_true", help=f"show MediaPipe's native log lines (LiteRT, XNNPACK){when}"
  )


def add_lifter_option(p, *, also: str = "") -> None:
  """``--checkpoint``: the lifter of ``infer`` and ``stream`` (``also``: what else it accepts);
  without it, the package's default lifter (``weights.checkpoint_or_default``)."""
  p.add_argument(
    "--checkpoint",
    default=None,
    help=f"lifter: model directory, run directory{also} (default: the package's default lifter)",
  )


def cmd_export_model(args) -> None:
  if args.out is None:  # one path given: the output; the model is the default lifter
    args.checkpoint, args.out = None, args.checkpoint
  checkpoint = checkpoint_or_default(args.checkpoint)
  platforms = tuple(p.strip() for p in args.platforms.split(",") if p.strip())
  manifest = export_model(
    checkpoint,
    args.out,
    args.format,
    frames=args.frames,
    batch=args.batch,
    platforms=platforms,
    step=args.step,
  )
  shape = "x".join(str(d) for d in manifest["input"]["shape"])
  print(
    f"exported {checkpoint} -> {args.out}: {args.format} {manifest['file']}, input {shape}, "
    f"max |output - JAX| {manifest['check']['max_abs_err']:.2g} (tolerance {manifest['check']['tolerance']:g})"
  )


def _writer(stream):
  def write(doc: dict) -> None:
    stream.write(json.dumps(doc, separators=(",", ":")) + "\n")
    stream.flush()

  return write


def rep_signal(exercise: str | None) -> str | None:
  """The repetition signal of an exercise name or alias (``None``: none of its own, or a hold)."""
  if not exercise:
    return None
  from perfectrep_jax.form import reps, rules  # lazy: scipy, paid only by stream --exercise

  table = rules.load_rules()
  signal = table[rules.resolve_exercise(exercise, table)].signal
  return signal if signal in reps.SIGNALS else None


def cmd_stream(args) -> None:
  # lazy on purpose: scipy and the lifting code load in seconds, which every other command (this
  # module is read whenever perfectrep-jax parses its arguments) must not pay for
  from perfectrep_jax.deploy.online_reps import OnlineRepCounter
  from perfectrep_jax.deploy.stream import StreamingLifter
  from perfectrep_jax.deploy import stream_io

  frames = None
  size = tuple(args.image_size) if args.image_size else None
  fps = args.fps
  if args.video:
    show_native_logs(args.verbose)
    frames = stream_io.video_keypoints(args.video, args.pose_model)
    first = next(frames, None)
    if first is None:
      raise UserError(f"{args.video}: no frames")
    fps, size = args.fps or first[2], size or first[3]
  fps = float(fps or 30.0)
  if fps <= 0:
    raise UserError(f"--fps must be positive, got {fps}")
  normalization = args.normalization or ("image" if size else "crop")
  checkpoint = checkpoint_or_default(args.checkpoint)
  lift_fn, window, source = stream_io.make_lift_fn(checkpoint, args.window, args.flip)
  max_gap = args.max_gap if args.max_gap is not None else int(round(fps))
  lifter = StreamingLifter(
    lift_fn,
    window,
    hop=args.hop,
    lookahead=args.lookahead,
    normalization=normalization,
    image_size=size,
    units=args.units,
    flip=args.flip,
    max_gap=max_gap,
    fps=fps,
    model_fps=stream_io.lifter_fps(checkpoint),  # lifted on the clock it was trained at
  )
  write = _writer(sys.stdout)
  warn = lambda text: print(f"perfectrep-jax stream: {text}", file=sys.stderr, flush=True)  # noqa: E731
  runner = stream_io.StreamRunner(
    lifter, OnlineRepCounter(fps, signal=rep_signal(args.exercise)), fps, write, warn
  )
  try:
    write(stream_io.start_event(lifter, fps, source))
    try:
      if frames is not None:
        runner.feed(first[0], first[1])
        for frame, keypoints, _, _ in frames:
          runner.feed(frame, keypoints)
      else:
        runner.feed_lines(stream_io.read_lines(getattr(sys.stdin, "buffer", sys.stdin)))
    except KeyboardInterrupt:  # Ctrl-C ends a live stream: write what is pending, then stop
      runner.finish()
      raise
    except BrokenPipeError:
      raise
    except Exception as e:  # whatever stopped it, the reader gets its end line
      runner.end(error=str(e).splitlines()[0][:300] if str(e) else type(e).__name__)
      raise
    runner.finish()
  except BrokenPipeError:  # the reader went away (`| head`): stop quietly
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def add_parsers(sub: argparse._SubParsersAction) -> None:
  """Adds ``export-model`` and ``stream`` to the ``perfectrep-jax`` subcommands."""
  p = sub.add_parser("export-model", help="export a lifter as StableHLO, ONNX or TFLite for serving")
  p.add_argument(
    "checkpoint",
    help="model directory (perfectrep-jax convert) or training run directory; "
    "with one path, that path is OUT and the model is the package's default lifter",
  )
  p.add_argument("out", nargs="?", default=None, help="new directory for manifest.json and the model file")
  p.add_argument(
    "--format",
    required=True,
    choices=("stablehlo", "onnx", "tflite"),
    help="stablehlo: jax.export; onnx: onnxruntime (needs the torch and deploy extras); "
    "tflite: LiteRT (needs the litert extra)",
  )
  p.add_argument("--frames", type=int, default=None, help="frames per clip T (default the model's maxlen)")
  p.add_argument(
    "--batch",
    type=int,
    default=None,
    help="fixed batch size (default: any batch for stablehlo and onnx, 1 for tflite)",
  )
  p.add_argument(
    "--platforms",
    default="cpu,cuda",
    help="stablehlo: comma-separated platforms to lower for (cpu, cuda, rocm, tpu)",
  )
  p.add_argument("--step", type=int, default=None, help="checkpoint step of a run directory")
  p.set_defaults(func=cmd_export_model)

  p = sub.add_parser("stream", help="lift JSON lines of 2D keypoints (stdin) to 3D in real time")
  add_lifter_option(p, also=" or an export-model artifact directory")
  p.add_argument("--video", default=None, help="read a video through MediaPipe instead of standard input")
  add_detector_options(p, when=" (with --video)")
  p.add_argument(
    "--max-gap",
    type=int,
    default=None,
    help="frames without the person before they count as gone (default 1 s)",
  )
  p.add_argument(
    "--window",
    type=int,
    default=None,
    help="frames per model call (default the model's maxlen, or the artifact's frames)",
  )
  p.add_argument("--hop", type=int, default=1, help="frames written per model call (default 1)")
  p.add_argument(
    "--lookahead",
    type=int,
    default=0,
    help="frames of future context; delay = lookahead + hop - 1 frames (default 0: causal)",
  )
  p.add_argument("--fps", type=float, default=None, help="frame rate (default the video's, else 30)")
  add_image_options(
    p,
    size_help="image width and height in pixels (enables image normalisation)",
    normalization_default=None,
    normalization_help="default 'image' when the image size is known, else 'crop' (box of each window)",
  )
  p.add_argument(
    "--units",
    choices=("pixel", "normalized"),
    default="pixel",
    help="pixel: x, y on the image, z in pixels; normalized: the model's frame (image normalisation)",
  )
  p.add_argument("--flip", action="store_true", help="flip test-time augmentation (twice the compute)")
  p.add_argument(
    "--exercise",
    default=None,
    help="count on the exercise's own signal (squat: legs, deadlift: hip hinge, push-up "
    "and bench press: elbows), so walking or stretching between sets is not a "
    "repetition (default: the whole body's flexion)",
  )
  p.set_defaults(func=cmd_stream)
