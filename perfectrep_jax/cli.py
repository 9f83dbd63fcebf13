"""``perfectrep-jax``: one entry point, one subcommand per job, each delegating to its module.

Errors a user can cause (``perfectrep_jax.errors.UserError``) end the program with one line on
standard error and exit status 2; nothing half-written is left behind by any subcommand.

A subcommand imports the modules that do its work inside its function, on purpose: they bring
jax and flax, TensorFlow, matplotlib or MediaPipe (seconds each on a small machine), which
``--help`` and the other subcommands must not pay for, and ``train`` re-executes itself with a
retained heap (``hostmem``) before any of them is loaded. What every command needs is imported here.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

import numpy as np

from perfectrep_jax.cli_examples import add_examples
from perfectrep_jax.deploy.cli import (
  add_detector_options,
  add_lifter_option,
  add_image_options,
  add_parsers as add_deploy_parsers,
)
from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import os_error_text, save_npy_atomic
from perfectrep_jax.hostmem import reexec_with_retained_heap
from perfectrep_jax.sweeps.launch import add_parser as add_sweep_parser
from perfectrep_jax.train.rundir import PREEMPTED_EXIT, Preempted
from perfectrep_jax.weights import checkpoint_or_default
from perfectrep_jax.wild.detect import build_pose_model, detect_keypoints, show_native_logs


# ---------------------------------------------------------------------------- helpers
def load_npy(path: str | Path) -> np.ndarray:
  """Reads a .npy array of numbers, refusing pickled objects, with errors naming the file."""
  path = Path(path)
  if not path.is_file():
    raise UserError(f"{path}: no such file")
  try:
    arr = np.load(path, allow_pickle=False)
  except Exception as e:  # numpy raises many kinds for a file that is not an array
    raise UserError(f"{path}: not a readable .npy array ({e})") from None
  if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
    raise UserError(f"{path}: expected a numeric array, got {getattr(arr, 'dtype', type(arr))}")
  return arr


# ---------------------------------------------------------------------------- subcommands
def cmd_convert(args) -> None:
  from perfectrep_jax.interop.convert import convert_checkpoint

  model, meta = convert_checkpoint(args.src, args.out_dir, num_heads=args.num_heads, part=args.part)
  cfg = meta["config"]
  backbone = cfg.get("backbone", cfg)
  n_params = sum(int(np.prod(v.shape)) for v in _param_leaves(model))
  heads_from = meta.get("num_heads_from")
  if heads_from == "assumed":
    heads = (
      f"heads {backbone['num_heads']} ASSUMED: the checkpoint does not record them; "
      "if it was trained with another count, convert again with --num-heads N"
    )
  else:
    source = "--num-heads" if heads_from == "num_heads argument" else heads_from
    heads = f"heads {backbone['num_heads']} (from {source})"
  print(
    f"converted {args.src} -> {args.out_dir}: {meta['kind']} "
    f"(dim_feat {backbone['dim_feat']}, depth {backbone['depth']}, maxlen "
    f"{backbone['maxlen']}; {n_params:,} parameters); {heads}"
  )


def _param_leaves(model):
  import jax
  from flax import nnx

  return jax.tree.leaves(nnx.state(model, nnx.Param))


def predict_array(
  model_path: str | Path, x: np.ndarray, *, source: str = "input", batch_size: int = 64
) -> np.ndarray:
  """Runs a lifter on (B, T, J, C) / (T, J, C) or an action model on (N, M, T, J, C)."""
  from perfectrep_jax.models.model_dir import load_model, make_apply_fn

  model, meta = load_model(model_path)
  cfg = meta["config"]
  backbone = cfg.get("backbone", cfg)
  joints, dim_in, maxlen = backbone["num_joints"], backbone["dim_in"], backbone["maxlen"]
  want = "(B, T, J, C)" if meta["kind"] == "lifter" else "(N, M, T, J, C)"
  squeeze = meta["kind"] == "lifter" and x.ndim == 3
  if squeeze:
    x = x[None]
  if x.ndim != len(want.split(",")) or x.shape[-2:] != (joints, dim_in):
    raise UserError(
      f"{source}: expected a {meta['kind']} input of shape {want} with J={joints}, "
      f"C={dim_in}; got {tuple(x.shape)}"
    )
  t = x.shape[-3]
  if t > maxlen or t < 1:
    raise UserError(
      f"{source}: {t} frames; this model takes 1 to {maxlen} frames per clip "
      "(use `perfectrep-jax infer` to lift longer sequences in windows)"
    )
  if not np.all(np.isfinite(x)):
    raise UserError(f"{source}: contains NaN or infinite values")
  apply = make_apply_fn(model)
  x = x.astype(np.float32)
  out = np.concatenate([np.asarray(apply(x[i : i + batch_size])) for i in range(0, x.shape[0], batch_size)])
  return out[0] if squeeze else out


def cmd_predict(args) -> None:
  x = load_npy(args.input)
  out = predict_array(args.checkpoint, x, source=args.input, batch_size=args.batch_size)
  save_npy_atomic(args.output, out)
  print(f"wrote {args.output}: {tuple(out.shape)} float32")


def cmd_export(args) -> None:
  from perfectrep_jax.interop.convert import export_checkpoint

  dst = export_checkpoint(args.model_dir, args.dst, step=args.step)
  print(f"exported {args.model_dir} -> {dst} (PyTorch layout, keys prefixed 'module.')")


def cmd_prepare(args) -> None:
  from perfectrep_jax.data.prepare import prepare

  summary = prepare(args.dataset, args.manual_dir, args.data_dir)
  splits = ", ".join(f"{k} {v}" for k, v in summary.get("splits", {}).items())
  state = "already prepared" if summary.get("already_prepared") else "prepared"
  print(
    f"{summary['dataset']} {state} at {summary['path']} ({splits} clips of {summary.get('clip_len')} frames)"
  )


def cmd_analyze(args) -> None:
  from perfectrep_jax.form.analyze import analyze_file
  from perfectrep_jax.form.report import score_range

  report = analyze_file(args.input, args.exercise, args.out, fps=args.fps, up=args.up, rules_path=args.rules)
  ex = report.get("exercise", "the exercise")
  if report.get("exercise_confidence") is not None:
    ex += f" (recognised, {report['exercise_confidence']:.0%} sure)"
  partial = f" (+{report['num_partial']} partial)" if report.get("num_partial") else ""
  held = f", held {report['hold_s']:.1f} s" if report.get("hold_s") is not None else ""
  score = score_range(report["score"], report.get("score_low")) or f"{report['score']:.0f}"
  print(
    f"{report['num_reps']} repetitions{partial} of {ex}{held}, score {score}/100; report: {Path(args.out) / 'report.html'}"
  )
  for line in report["feedback"]:
    print(f"  - {line}")


def _classifier(path: str | None):
  """joints (T, 17, 3) -> exercise name, from an action-model directory that lists its classes."""
  if not path:
    return None
  from perfectrep_jax.models.model_dir import load_model, make_apply_fn

  model, meta = load_model(path)
  classes = meta.get("classes")
  if meta["kind"] != "action" or not classes:
    raise UserError(f"{path}: not an action classifier with named classes")
  if meta.get("action_input") != "3d":
    raise UserError(
      f"{path}: classifies 2D keypoints; infer needs one trained on 3D (--config.action.input=3d)"
    )
  from perfectrep_jax.models.heads import normalize_clip_3d

  apply = make_apply_fn(model)
  maxlen = meta["config"]["backbone"]["maxlen"]

  def classify(joints: np.ndarray) -> str:
    """(T, 17, 3) lifted joints -> the most likely exercise name (last maxlen frames)."""
    clip = normalize_clip_3d(np.asarray(joints, np.float32)[-maxlen:])[None, None]
    return classes[int(np.asarray(apply(clip)).argmax(-1)[0])]

  return classify


def cmd_infer(args) -> None:
  from perfectrep_jax.models.model_dir import load_model, make_apply_fn
  from perfectrep_jax.wild.infer import figure_margins, infer, uncertainty_threshold
  from perfectrep_jax.wild.lift import trained_fps

  if args.keypoints is None and args.video is None:
    raise UserError("infer needs --keypoints, or --video to detect them")
  checkpoint = checkpoint_or_default(args.checkpoint)
  model, meta = load_model(checkpoint)
  if meta["kind"] not in ("lifter", "mlp_lifter"):
    raise UserError(f"{checkpoint}: a {meta['kind']} model; infer needs a 3D lifter")
  if args.checkpoint is None:
    print(f"lifter: the default one ({checkpoint})")
  keypoints, video, fps = args.keypoints, args.video, args.fps
  image_size = tuple(args.image_size) if args.image_size else None
  if keypoints is None:  # 2D detection first, with MediaPipe (the video extra)
    show_native_logs(args.verbose)
    found = detect_keypoints(
      video, Path(args.out) / "keypoints_2d.json", args.pose_model, num_poses=args.num_poses
    )
    print(
      f"2D: a person in {found['frames_with_person']} of {found['frames']} frames of {video}; "
      f"wrote {found['path']}"
    )
    keypoints, video = found["path"], None
    fps, image_size = fps or found["fps"] or None, image_size or tuple(found["image_size"])
  result = infer(
    keypoints,
    make_apply_fn(model),
    meta["config"]["maxlen"],
    args.out,
    video=video,
    fps=fps,
    person=args.person,
    image_size=image_size,
    normalization=args.normalization,
    all_people=args.all_people,
    exercise=args.exercise,
    classify=_classifier(args.action_checkpoint),
    flip=not args.no_flip,
    units=args.units,
    body_height_mm=args.body_height_mm,
    render=not args.no_render,
    frames_video=args.video,
    overlay=args.overlay,
    max_uncertainty=uncertainty_threshold(meta),
    figure_margins=figure_margins(meta),
    model_fps=trained_fps(meta),
  )
  for note in result["file"].get("notes", []):
    print(f"note: {note}", file=sys.stderr)
  for pid, person in result["people"].items():
    figures = ", ".join(
      f"{k} {person[k]}" for k in ("frames", "num_reps", "score") if person.get(k) is not None
    )
    files = ", ".join(str(v) for v in person.get("files", {}).values())
    print(f"person {pid}: {figures}; wrote {files}")


def cmd_detect(args) -> None:
  show_native_logs(args.verbose)
  found = detect_keypoints(args.source, args.out, args.pose_model, num_poses=args.num_poses)
  print(f"a person in {found['frames_with_person']} of {found['frames']} frame(s); wrote {found['path']}")


def cmd_pose_model(args) -> None:
  print(f"wrote {build_pose_model(args.out, args.wheel)}")


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="perfectrep-jax",
    description="PerfectRep / MotionBERT DSTformer in JAX: convert, predict, export, train, "
    "infer and analyse 3D human motion.",
  )
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for name, text in DELEGATED.items():
    sub.add_parser(name, help=text + f"; see `perfectrep-jax {name} --help`", add_help=False)

  p = sub.add_parser("convert", help="import a PyTorch checkpoint (best_epoch.bin) as a model dir")
  p.add_argument("src", help="PyTorch checkpoint written by torch.save (PerfectRep or MotionBERT)")
  p.add_argument("out_dir", help="new directory for model.json and the orbax weights")
  p.add_argument(
    "--num-heads",
    type=int,
    default=None,
    help="attention heads: shapes cannot tell them; read from the checkpoint's "
    "training arguments where it carries them, else 8, said on the output line",
  )
  p.add_argument(
    "--part",
    choices=("auto", "backbone"),
    default="auto",
    help="'backbone' takes only the DSTformer out of an action model",
  )
  p.set_defaults(func=cmd_convert)

  p = sub.add_parser("predict", help="run a model on a .npy array (eval mode)")
  p.add_argument("--checkpoint", required=True, help="model directory or training run directory")
  p.add_argument("--input", required=True, help="lifter: (B,T,17,3); action: (N,M,T,17,3)")
  p.add_argument("--output", required=True, help="where to write the output .npy")
  p.add_argument("--batch-size", type=int, default=64)
  p.set_defaults(func=cmd_predict)

  p = sub.add_parser("export", help="write a model dir as an upstream PyTorch best_epoch.bin")
  p.add_argument("model_dir", help="model directory or training run directory")
  p.add_argument("dst", help="output .bin file")
  p.add_argument("--step", type=int, default=None, help="checkpoint step of a run (default last)")
  p.set_defaults(func=cmd_export)

  p = sub.add_parser("prepare", help="build a TFDS dataset (fit3d, h36m, mpi_inf_3dhp, demo)")
  p.add_argument("dataset", help="NAME or NAME/CONFIG, e.g. h36m/cpn or demo/clip27")
  p.add_argument("--manual-dir", default=None, help="where the licensed raw files are")
  p.add_argument("--data-dir", required=True, help="TFDS data directory to write into")
  p.set_defaults(func=cmd_prepare)

  p = sub.add_parser("analyze", help="count repetitions and assess form from 3D joints")
  p.add_argument("input", help="(T, 17, 3) joints: .npy, or the X3D.json infer writes")
  p.add_argument(
    "--exercise",
    default=None,
    help="squat, deadlift, bench_press, push_up, plank, lunge, jumping_jack, or a name "
    "people use (bench, bench press, sumo deadlift, RDL, press-up, forearm plank: "
    "variants share their lift's rules); default: recognised from the motion",
  )
  p.add_argument("--out", required=True, help="directory for report.html and report.json")
  p.add_argument(
    "--fps",
    type=float,
    default=None,
    help="frames per second (default: the rate infer recorded, in X3D.json or the "
    ".json beside an .npy; 30 when the file carries none)",
  )
  p.add_argument(
    "--up", default=None, help="the vertical: z, -y, or a,b,c (default: found from the skeleton)"
  )
  p.add_argument("--rules", default=None, help="a rules JSON replacing the bundled thresholds")
  p.set_defaults(func=cmd_analyze)

  p = sub.add_parser("infer", help="video keypoints -> 3D motion, rendering and form report")
  add_lifter_option(p)
  p.add_argument(
    "--keypoints",
    default=None,
    help="ViTPose / AlphaPose / MMPose JSON (COCO-17 or Halpe-26) or (T, 17, 2|3) .npy; "
    "without it, 2D keypoints are detected in --video with MediaPipe",
  )
  p.add_argument(
    "--video",
    default=None,
    help="the video: its size and frame rate, or (without --keypoints) its 2D keypoints",
  )
  add_detector_options(p, when=" (with --video)", num_poses_help="people to detect per frame")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--fps", type=float, default=None)
  p.add_argument("--person", default=None, help="track id to lift (default: most present)")
  p.add_argument("--all-people", action="store_true", help="lift every track")
  p.add_argument("--exercise", default=None, help="exercise name (default: classifier or none)")
  p.add_argument(
    "--action-checkpoint",
    default=None,
    help="action classifier naming the exercise when --exercise is not given",
  )
  add_image_options(
    p,
    size_help="video size when there is no --video (needed for --units pixel)",
    normalization_default="crop",
    normalization_help="2D normalisation: 'crop' to the person (upstream default) or 'image'",
  )
  p.add_argument(
    "--units",
    choices=("normalized", "pixel", "metric"),
    default="normalized",
    help="3D output frame: upstream's normalised camera frame, pixel-aligned, or "
    "millimetres from --body-height-mm",
  )
  p.add_argument("--body-height-mm", type=float, default=None, help="for --units metric")
  p.add_argument("--no-flip", action="store_true", help="no flip test-time augmentation")
  p.add_argument("--no-render", action="store_true", help="skip the MP4/GIF animation")
  p.add_argument(
    "--overlay",
    action="store_true",
    help="with --video: also write overlay.mp4, the video with the skeleton, the "
    "repetition count and the findings drawn on it",
  )
  p.set_defaults(func=cmd_infer)

  p = sub.add_parser("detect", help="2D COCO-17 keypoints of a video or image with MediaPipe Pose")
  p.add_argument("source", help="a video (people tracked frame to frame) or an image")
  p.add_argument("--out", required=True, help="keypoint JSON to write (MMPose layout, every frame)")
  add_detector_options(p, num_poses_help="most people per frame")
  p.set_defaults(func=cmd_detect)

  p = sub.add_parser("pose-model", help="build the MediaPipe PoseLandmarker bundle detect uses")
  p.add_argument(
    "--out", default=None, help="the .task file (default: the cache, or $PERFECTREP_JAX_POSE_MODEL)"
  )
  p.add_argument(
    "--wheel",
    default=None,
    help="a mediapipe==0.10.21 wheel to take the models from (default: pip download it)",
  )
  p.set_defaults(func=cmd_pose_model)

  add_deploy_parsers(sub)  # export-model, stream

  add_sweep_parser(sub)  # sweep

  add_examples(sub)  # every --help ends with examples
  return parser


DELEGATED = {
  "train": "train and evaluate a task config in a run directory (resumes)",
  "eval": "evaluate a run directory's best (or --step) checkpoint on the test split",
  "publish": "write a lifter run's best checkpoint with its held-out figures as the "
  "default lifter (or --out DIR)",
  "compile": "compile the train step for a TPU slice without one (libtpu): memory "
  "per chip, FLOPs, estimated step time and MFU, collectives",
}


# Device files of a TPU (v4: accel, v5e/v6e: vfio) or a GPU (NVIDIA, AMD) on this machine.
ACCELERATOR_DEVICES = ("/dev/accel*", "/dev/vfio/[0-9]*", "/dev/nvidia[0-9]*", "/dev/kfd")


def use_cpu_without_accelerators() -> None:
  """On a machine with neither a TPU nor a GPU, JAX runs on the CPU without first asking libtpu
  (installed by the ``tpu`` extra for ``compile``), which otherwise prints its failed TPU search on
  every command. ``compile`` reaches TPU topologies without it; ``JAX_PLATFORMS`` set by the user wins."""
  if os.environ.get("JAX_PLATFORMS") or any(glob.glob(p) for p in ACCELERATOR_DEVICES):
    return
  os.environ["JAX_PLATFORMS"] = "cpu"  # child processes (re-exec, sweeps) too
  if "jax" in sys.modules:  # imported already: before any backend starts, the config still counts
    sys.modules["jax"].config.update("jax_platforms", "cpu")


def main(argv: list[str] | None = None) -> int:
  use_cpu_without_accelerators()
  from_command_line = argv is None
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] in DELEGATED:  # absl flags with ml_collections --config.x=y overrides
    if from_command_line:  # a long job: a malloc that keeps its memory (hostmem.py)
      reexec_with_retained_heap([sys.executable, "-m", "perfectrep_jax.cli", *argv])
    from perfectrep_jax.train.main import run

    return _run(argv[0], lambda: run(argv[0], argv[1:]))
  args = build_parser().parse_args(argv)
  return _run(args.command, lambda: args.func(args))


def _run(command: str, job) -> int:
  """Runs a command: exit status 0, 2 with one line for a user's mistake or a file system that
  refuses (read-only, full), 130 when interrupted."""
  try:
    job()
  except UserError as e:
    print(f"perfectrep-jax {command}: error: {e}", file=sys.stderr)
    return 2
  except OSError as e:  # the file system refused (read-only, full, a file in the way): one line
    print(f"perfectrep-jax {command}: error: {os_error_text(e)}", file=sys.stderr)
    return 2
  except Preempted as e:  # SIGTERM: checkpoint saved; non-zero so a scheduler or sweep reruns it
    print(f"perfectrep-jax {command}: {e}", file=sys.stderr)
    return PREEMPTED_EXIT
  except KeyboardInterrupt:
    print(f"perfectrep-jax {command}: interrupted", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
