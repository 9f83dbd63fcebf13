"""MPI-INF-3DHP (Mehta et al., 3DV 2017) from the P-STMO-format ``.npz`` files.

``data_train_3dhp.npz`` ``data[sequence][0][camera]`` and ``data_test_3dhp.npz``
``data[TSn]`` hold ``data_3d`` (frames, 17, 3) camera-frame millimetres and ``data_2d``
(frames, 17, 2) pixels, in the 17-joint 3DHP order (mapped to H36M here); test sequences also
hold ``valid`` (frames,), and only valid frames are kept (``frame_index`` still numbers the
original frames). Images are 2048 x 2048, except test TS5 and TS6 (1920 x 1080).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from perfectrep_jax import skeleton
from perfectrep_jax.data.builders.common import ClipBuilder, clip_configs, millimetres_per_unit, read_npz_dict
from perfectrep_jax.data.sequences import Sequence, make_sequence
from perfectrep_jax.errors import UserError

FILES = {"train": "data_train_3dhp.npz", "test": "data_test_3dhp.npz"}
WIDE_TEST_SEQUENCES = ("TS5", "TS6")


def resolution(split: str, sequence: str) -> tuple[int, int]:
  """(w, h) of the images of a sequence."""
  return (1920, 1080) if split == "test" and sequence in WIDE_TEST_SEQUENCES else (2048, 2048)


def _to_h36m(anim: dict, path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
  """(camera mm (T, 17, 3), pixels (T, 17, 2)) in H36M order from one P-STMO record."""
  try:
    data_3d = np.asarray(anim["data_3d"], np.float64)
    data_2d = np.asarray(anim["data_2d"], np.float64)
  except (KeyError, TypeError) as e:
    raise UserError(f"{path}: {where} has no {e}") from None
  if data_3d.ndim != 3 or data_3d.shape[1:] != (17, 3) or data_2d.shape[:2] != data_3d.shape[:2]:
    raise UserError(
      f"{path}: {where} must hold data_3d (frames, 17, 3) and data_2d (frames, 17, 2), "
      f"got {data_3d.shape} and {data_2d.shape}"
    )
  order = list(skeleton.MPI_INF_3DHP_TO_H36M)
  cam = data_3d[:, order]
  return cam * millimetres_per_unit(cam), data_2d[:, order, :2]


class MpiInf3dhp(ClipBuilder):
  """MPI-INF-3DHP clips (array_record)."""

  name = "mpi_inf_3dhp"
  BUILDER_CONFIGS = clip_configs()
  DESCRIPTION = "MPI-INF-3DHP (Mehta et al., 3DV 2017) from P-STMO-format npz files."
  HOMEPAGE = "https://vcai.mpi-inf.mpg.de/3dhp-dataset"
  CITATION = """@inproceedings{mono-3dhp2017, author={Mehta, Dushyant and Rhodin, Helge and Casas, Dan and
Fua, Pascal and Sotnychenko, Oleksandr and Xu, Weipeng and Theobalt, Christian}, title={Monocular 3D Human
Pose Estimation In The Wild Using Improved CNN Supervision}, booktitle={3DV}, year={2017}}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
MPI-INF-3DHP needs a licence (https://vcai.mpi-inf.mpg.de/3dhp-dataset). Convert it with P-STMO's
scripts (https://github.com/paTRICK-swk/P-STMO, common/data_to_npz_3dhp.py and
data_to_npz_3dhp_test.py) and put both outputs in the manual directory:
  data_train_3dhp.npz   data[sequence][0][camera] = {data_3d, data_2d}
  data_test_3dhp.npz    data[TSn] = {data_3d, data_2d, valid}
These npz files hold pickled Python objects: use files you trust.
"""

  def iter_sequences(self, split: str, root: Path | None) -> Iterator[Sequence]:
    path = root / FILES[split]
    data = read_npz_dict(path, "data")
    if not isinstance(data, dict):
      raise UserError(f"{path}: 'data' must be a dict of sequences, got {type(data).__name__}")
    for name in sorted(data):
      w, h = resolution(split, name)
      if split == "train":
        record = data[name]
        views = record[0] if isinstance(record, (list, tuple)) else record
        for camera in sorted(views, key=str):
          cam, pixels = _to_h36m(views[camera], path, f"{name}/{camera}")
          subject = str(name).split(" ")[0]
          yield make_sequence(
            source=f"{str(name).replace(' ', '_')}_cam{camera}",
            subject=subject,
            action="unlabelled",
            camera=str(camera),
            points_cam_mm=cam,
            pixels=pixels,
            res_w=w,
            res_h=h,
          )
      else:
        cam, pixels = _to_h36m(data[name], path, name)
        valid = np.asarray(data[name].get("valid", np.ones(len(cam))), bool).reshape(-1)
        if len(valid) != len(cam):
          raise UserError(f"{path}: {name} has {len(valid)} valid flags for {len(cam)} frames")
        keep = np.nonzero(valid)[0]
        if not len(keep):
          logging.warning("mpi_inf_3dhp: %s has no valid frame, skipped", name)
          continue
        yield make_sequence(
          source=str(name),
          subject=str(name),
          action="unlabelled",
          camera="test",
          points_cam_mm=cam[keep],
          pixels=pixels[keep],
          res_w=w,
          res_h=h,
          frame_ids=keep,
        )
