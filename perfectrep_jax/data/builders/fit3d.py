"""Fit3D (Fieraru et al., AAAI 2021): fitness exercises, 4 cameras, mocap ground truth.

Read from Fit3D's own layout, as PerfectRep's ``compress_fit3d.py`` does: world joints to each
camera (``(X - T) R^T``), the distorted projection to 2D pixels (900 x 900 images), subjects s08
and s09 held out for test, one sequence per subject x exercise x camera, the exercise as action and
the repetition annotations of ``rep_ann.json`` kept with every clip.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from perfectrep_jax import skeleton
from perfectrep_jax.data import cameras
from perfectrep_jax.data.builders.common import ClipBuilder, ClipConfig, clip_configs, millimetres_per_unit
from perfectrep_jax.data.sequences import Sequence, make_sequence
from perfectrep_jax.errors import UserError

RES = 900
INFO_FILE = "fit3d_info.json"


@dataclasses.dataclass(eq=False, kw_only=True)
class Fit3DConfig(ClipConfig):
  """Attributes: test_subjects: subjects held out for the test split (upstream: s08, s09)."""

  test_subjects: tuple[str, ...] = ("s08", "s09")


def find_root(manual_dir: Path) -> Path:
  """The folder holding ``fit3d_info.json``: ``manual_dir`` itself, or its ``fit3d_train``/``fit3d`` child."""
  for candidate in (manual_dir, manual_dir / "fit3d_train", manual_dir / "fit3d"):
    if (candidate / INFO_FILE).is_file():
      return candidate
  raise UserError(f"no {INFO_FILE} in {manual_dir} (nor in its fit3d_train/ or fit3d/ folder)")


def _read_json(path: Path):
  if not path.is_file():
    raise UserError(f"missing file {path}")
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise UserError(f"{path} is not valid JSON: {e}") from None


def subject_dir(root: Path, subject: str) -> Path:
  """``root/train/<subject>`` (Fit3D's layout) or ``root/<subject>``."""
  for candidate in (root / "train" / subject, root / subject):
    if candidate.is_dir():
      return candidate
  raise UserError(f"no folder for subject {subject} under {root}/train or {root}")


def read_camera(path: Path) -> tuple[np.ndarray, np.ndarray, cameras.Intrinsics]:
  """Camera JSON: ``extrinsics`` R (3, 3), T (3,) or (1, 3); ``intrinsics_w_distortion`` f, c, k, p."""
  params = _read_json(path)
  try:
    ext, intr = params["extrinsics"], params["intrinsics_w_distortion"]
    rotation = np.asarray(ext["R"], np.float64).reshape(3, 3)
    centre = np.asarray(ext["T"], np.float64).reshape(3)
    flat = {k: np.asarray(intr[k], np.float64).reshape(-1) for k in ("f", "c", "k", "p")}
  except (KeyError, ValueError, TypeError) as e:
    raise UserError(f"{path}: unexpected camera parameters ({e})") from None
  return (
    rotation,
    centre,
    cameras.Intrinsics(
      f=tuple(flat["f"]), c=tuple(flat["c"]), k=tuple(flat["k"]), p=tuple(flat["p"]), res_w=RES, res_h=RES
    ),
  )


class Fit3D(ClipBuilder):
  """Fit3D clips (array_record)."""

  name = "fit3d"
  BUILDER_CONFIGS = clip_configs(Fit3DConfig, note=", as upstream")
  DESCRIPTION = "Fit3D fitness exercises (Fieraru et al., AAAI 2021), 4 cameras, clips for 2D-to-3D lifting."
  HOMEPAGE = "https://fit3d.imar.ro"
  CITATION = """@inproceedings{fieraru2021aifit, title={AIFit: Automatic 3D Human-Interpretable Feedback
Models for Fitness Training}, author={Fieraru, Mihai and Zanfir, Mihai and Pirlea, Silviu-Cristian
and Olaru, Vlad and Sminchisescu, Cristian}, booktitle={CVPR}, year={2021}}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Fit3D needs a licence: register at https://fit3d.imar.ro, download the training archive
(fit3d_train.tar.gz) and extract it, then pass the folder that holds fit3d_info.json (or its
parent) as the manual directory. Layout read:
  fit3d_info.json                      all_camera_names, train_subj_names, subj_to_act
  train/<subject>/joints3d_25/<action>.json                     {"joints3d_25": [frames][25][3]}
  train/<subject>/camera_parameters/<camera>/<action>.json      extrinsics R, T; intrinsics_w_distortion f, c, k, p
  train/<subject>/rep_ann.json                                  repetition annotations per action
"""

  def iter_sequences(self, split: str, root: Path | None) -> Iterator[Sequence]:
    root = find_root(root)
    info = _read_json(root / INFO_FILE)
    try:
      camera_names = list(info["all_camera_names"])
      subjects = list(info["train_subj_names"])
      subj_to_act = info["subj_to_act"]
    except (KeyError, TypeError) as e:
      raise UserError(f"{root / INFO_FILE}: missing {e}") from None
    held_out = set(self.builder_config.test_subjects)
    missing = sorted(held_out - set(subjects))
    if missing:
      raise UserError(f"test subjects {missing} are not in {root / INFO_FILE} ({subjects})")
    for subject in subjects:
      if (subject in held_out) != (split == "test"):
        continue
      folder = subject_dir(root, subject)
      ann_path = folder / "rep_ann.json"
      annotations = _read_json(ann_path) if ann_path.is_file() else {}
      for action in subj_to_act[subject]:
        joints = _read_json(folder / "joints3d_25" / f"{action}.json")
        try:
          world = skeleton.fit3d_to_h36m(np.asarray(joints["joints3d_25"], np.float64))
        except (KeyError, ValueError, TypeError) as e:
          raise UserError(
            f"{folder / 'joints3d_25' / action}.json: expected joints3d_25 of shape (frames, 25, 3) ({e})"
          ) from None
        unit = millimetres_per_unit(world)  # Fit3D stores metres
        world = world * unit
        reps = json.dumps(annotations[action]) if action in annotations else ""
        for camera in camera_names:
          rotation, centre, intr = read_camera(folder / "camera_parameters" / camera / f"{action}.json")
          cam = cameras.world_to_camera_rt(world, rotation, centre * unit)
          yield make_sequence(
            source=f"{subject}_{action}_{camera}",
            subject=subject,
            action=action,
            camera=camera,
            points_cam_mm=cam,
            pixels=cameras.project(cam, intr),
            res_w=RES,
            res_h=RES,
            reps=reps,
          )
