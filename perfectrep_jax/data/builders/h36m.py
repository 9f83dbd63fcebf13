"""Human3.6M from the VideoPose3D-format ``.npz`` files.

3D: ``data_3d_h36m.npz`` ``positions_3d[subject][action]`` (frames, 32, 3) world metres, of which
the 17 H36M joints are kept, turned into each of the four cameras (calibration bundled in
``resources/h36m_cameras.json``). 2D: the distorted projection (config ``gt``), or detections from
``data_2d_h36m_<detector>.npz`` ``positions_2d[subject][action][camera]`` (frames, 17, 2 or 3 with
confidence; COCO-layout files are mapped to H36M), several detectors merged per config:
``manual`` (the first detector, ``manual_joints`` from the second), ``average``, or
``weighted_average`` (by confidence). Subjects S1, S5, S6, S7, S8 train; S9, S11 test.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from perfectrep_jax import skeleton
from perfectrep_jax.data import cameras
from perfectrep_jax.data.builders.common import ClipBuilder, ClipConfig, read_npz_dict
from perfectrep_jax.data.bundled import resource_path
from perfectrep_jax.data.sequences import Sequence, make_sequence
from perfectrep_jax.errors import UserError

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
FILE_3D = "data_3d_h36m.npz"
MERGES = ("single", "manual", "average", "weighted_average")


@dataclasses.dataclass(eq=False, kw_only=True)
class H36MConfig(ClipConfig):
  """Where the 2D input comes from.

  Attributes:
    detectors: names ``<d>`` of ``data_2d_h36m_<d>.npz`` files; empty: the projected ground truth.
    merge: 'single' (one detector), 'manual', 'average' or 'weighted_average'.
    manual_joints: H36M joint indices taken from the second detector when ``merge='manual'``.
  """

  detectors: tuple[str, ...] = ()
  merge: str = "single"
  manual_joints: tuple[int, ...] = ()

  def __post_init__(self):
    if self.merge not in MERGES:
      raise ValueError(f"merge must be one of {MERGES}, got {self.merge!r}")
    needed = {"single": (0, 1), "manual": (2, 2), "average": (2, None), "weighted_average": (2, None)}[
      self.merge
    ]
    n = len(self.detectors)
    if self.detectors and (n < needed[0] or (needed[1] is not None and n > needed[1])):
      raise ValueError(f"merge {self.merge!r} does not fit {n} detectors {self.detectors}")
    if self.merge == "manual" and not self.manual_joints:
      raise ValueError("merge 'manual' needs manual_joints")


@functools.lru_cache(maxsize=1)
def camera_table() -> tuple[
  list[cameras.Intrinsics], list[str], dict[str, list[tuple[np.ndarray, np.ndarray]]]
]:
  """(intrinsics of the 4 cameras, their ids, subject -> [(orientation (4,), centre mm (3,))] * 4)."""
  with resource_path("h36m_cameras.json").open("r") as f:
    table = json.load(f)
  intrinsics = [
    cameras.Intrinsics(
      f=tuple(c["focal_length"]),
      c=tuple(c["center"]),
      k=tuple(c["radial_distortion"]),
      p=tuple(c["tangential_distortion"]),
      res_w=c["res_w"],
      res_h=c["res_h"],
    )
    for c in table["cameras"]
  ]
  ids = [c["id"] for c in table["cameras"]]
  extrinsics = {
    s: [(np.asarray(c["orientation"]), np.asarray(c["translation"])) for c in cams]
    for s, cams in table["extrinsics"].items()
  }
  return intrinsics, ids, extrinsics


def merge_detections(dets: list[np.ndarray], merge: str, manual_joints=()) -> np.ndarray:
  """Merges the 2D of several detectors for one camera view.

  Args:
    dets: each (T, 17, 3) pixels and confidence (1 where a detector gives none), same T.
    merge: 'single', 'manual', 'average' or 'weighted_average'.
  Returns:
    (T, 17, 3): 'manual' = the first detector with ``manual_joints`` from the second;
    'average' = mean of x, y and confidence; 'weighted_average' = x, y weighted by confidence
    (plain mean where all are 0), confidence the mean.
  """
  stack = np.stack(dets)
  if merge == "single":
    return stack[0]
  if merge == "manual":
    out = stack[0].copy()
    out[:, list(manual_joints)] = stack[1][:, list(manual_joints)]
    return out
  conf = stack[..., 2:3]
  if merge == "average":
    return stack.mean(axis=0)
  total = conf.sum(axis=0)
  weighted = (stack[..., :2] * conf).sum(axis=0) / np.where(total > 0, total, 1.0)
  xy = np.where(total > 0, weighted, stack[..., :2].mean(axis=0))
  return np.concatenate([xy, conf.mean(axis=0)], axis=-1)


def _as_h36m_2d(keypoints: np.ndarray, layout: str, path: Path) -> np.ndarray:
  """(T, 17, 2|3) of a detector file to (T, 17, 3) in H36M order, confidence 1 when absent."""
  keypoints = np.asarray(keypoints, np.float64)
  if keypoints.ndim != 3 or keypoints.shape[1] != 17 or keypoints.shape[2] not in (2, 3):
    raise UserError(f"{path}: 2D keypoints must be (frames, 17, 2 or 3), got {keypoints.shape}")
  if keypoints.shape[2] == 2:
    keypoints = np.concatenate([keypoints, np.ones(keypoints.shape[:2] + (1,))], axis=-1)
  if layout == "coco":
    keypoints = skeleton.coco_to_h36m(keypoints)
  return keypoints


# VideoPose3D's detection files (data_2d_h36m_<file>.npz), by short name.
DETECTOR_FILES = {"cpn": "cpn_ft_h36m_dbb", "sh": "sh_ft_h36m", "detectron": "detectron_ft_h36m"}
EXTREMITIES = (3, 6, 13, 16)  # H36M feet and wrists: where detectors disagree most
_CPN, _SH, _DET = DETECTOR_FILES["cpn"], DETECTOR_FILES["sh"], DETECTOR_FILES["detectron"]
# The 2D sources of the per-detector study (PoseFormerV2's): name -> (what, H36MConfig fields). Each
# is a config at 243 frames (``h36m/<name>``) and at 81 (``h36m/<name>81``).
SOURCES_2D = {
  "gt": ("the projected ground truth", {}),
  "cpn": ("VideoPose3D's fine-tuned CPN detections", {"detectors": (_CPN,)}),
  "sh": ("fine-tuned Stacked Hourglass detections", {"detectors": (_SH,)}),
  "detectron": ("fine-tuned Detectron (Mask R-CNN) detections", {"detectors": (_DET,)}),
  "cpn_sh_average": ("the mean of CPN and SH", {"detectors": (_CPN, _SH), "merge": "average"}),
  "cpn_sh_detectron_average": (
    "the mean of CPN, SH and Detectron",
    {"detectors": (_CPN, _SH, _DET), "merge": "average"},
  ),
  "cpn_sh_detectron_weighted": (
    "CPN, SH and Detectron weighted by confidence",
    {"detectors": (_CPN, _SH, _DET), "merge": "weighted_average"},
  ),
  "cpn_sh_manual": (
    "CPN with the feet and wrists of SH",
    {"detectors": (_CPN, _SH), "merge": "manual", "manual_joints": EXTREMITIES},
  ),
}


class H36M(ClipBuilder):
  """Human3.6M clips (array_record)."""

  name = "h36m"
  BUILDER_CONFIGS = [
    *(
      H36MConfig(name=name, description=f"2D input: {text}.", **source)
      for name, (text, source) in SOURCES_2D.items()
    ),
    *(
      H36MConfig(
        name=f"{name}81",
        clip_len=81,
        train_stride=27,
        test_stride=81,
        description=f"81-frame clips; 2D input: {text}.",
        **source,
      )
      for name, (text, source) in SOURCES_2D.items()
    ),
  ]
  DESCRIPTION = "Human3.6M (Ionescu et al., TPAMI 2014) from VideoPose3D-format npz files."
  HOMEPAGE = "http://vision.imar.ro/human3.6m"
  CITATION = """@article{h36m_pami, author={Ionescu, Catalin and Papava, Dragos and Olaru, Vlad and
Sminchisescu, Cristian}, title={Human3.6M: Large Scale Datasets and Predictive Methods for 3D Human
Sensing in Natural Environments}, journal={TPAMI}, volume={36}, number={7}, pages={1325-1339}, year={2014}}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Human3.6M needs a licence from http://vision.imar.ro/human3.6m. Prepare the VideoPose3D files
(https://github.com/facebookresearch/VideoPose3D/blob/main/DATASETS.md) and put them in the
manual directory:
  data_3d_h36m.npz                 positions_3d[subject][action]: (frames, 32, 3) world metres
  data_2d_h36m_<detector>.npz      positions_2d[subject][action][camera]: (frames, 17, 2|3) pixels
                                   (only for configs that use detections, e.g. cpn_ft_h36m_dbb)
These npz files hold pickled Python objects: use files you trust.
"""

  def _detections(self, root: Path) -> list[tuple[dict, str, Path]]:
    out = []
    for name in self.builder_config.detectors:
      path = root / f"data_2d_h36m_{name}.npz"
      positions = read_npz_dict(path, "positions_2d")
      try:
        metadata = read_npz_dict(path, "metadata")
      except UserError:
        metadata = {}
      layout = metadata.get("layout_name", "h36m") if isinstance(metadata, dict) else "h36m"
      out.append((positions, layout, path))
    return out

  def iter_sequences(self, split: str, root: Path | None) -> Iterator[Sequence]:
    config = self.builder_config
    positions = read_npz_dict(root / FILE_3D, "positions_3d")
    detections = self._detections(root)
    intrinsics, cam_ids, extrinsics = camera_table()
    subjects = TRAIN_SUBJECTS if split == "train" else TEST_SUBJECTS
    for subject in subjects:
      if subject not in positions:
        logging.warning("h36m: %s has no subject %s", root / FILE_3D, subject)
        continue
      for action in sorted(positions[subject]):
        raw = np.asarray(positions[subject][action], np.float64)
        if raw.ndim != 3 or raw.shape[1:] != (32, 3):
          raise UserError(f"{root / FILE_3D}: {subject}/{action} must be (frames, 32, 3), got {raw.shape}")
        world_mm = raw[:, list(skeleton.H36M32_TO_H36M17)] * 1000.0
        for c, (intr, cam_id) in enumerate(zip(intrinsics, cam_ids)):
          dets = []
          for det_positions, layout, path in detections:
            try:
              dets.append(_as_h36m_2d(det_positions[subject][action][c], layout, path))
            except (KeyError, IndexError):
              dets = None
              logging.warning("h36m: %s has no %s/%s camera %d, skipped", path, subject, action, c)
              break
          if dets is None:
            continue
          length = min([len(world_mm)] + [len(d) for d in dets])
          orientation, centre = extrinsics[subject][c]
          cam = cameras.world_to_camera_quaternion(world_mm[:length], orientation, centre)
          pixels = cameras.project(cam, intr)
          inputs = (
            merge_detections([d[:length] for d in dets], config.merge, config.manual_joints) if dets else None
          )
          yield make_sequence(
            source=f"{subject}_{action.replace(' ', '-')}_{cam_id}",
            subject=subject,
            action=action.split(" ")[0],
            camera=cam_id,
            points_cam_mm=cam,
            pixels=pixels,
            res_w=intr.res_w,
            res_h=intr.res_h,
            input_px=inputs,
          )
