"""Fixtures for the deployment tests: small model directories and a bundled exercise take in 2D."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from perfectrep_jax.data import cameras, demo
from perfectrep_jax.skeleton import H36M_FOR_COCO, JOINT_INDEX as J
from tests.conftest import TINY  # noqa: F401  (tests import it from here)

IMAGE_SIZE = (demo.INTRINSICS.res_w, demo.INTRINSICS.res_h)
MOCAP_FPS = 50.0


@pytest.fixture(scope="session")
def parity_model_dir(parity_dir, tmp_path_factory):
  """The upstream lifter checkpoint of the parity fixtures (maxlen 27), converted."""
  from perfectrep_jax.interop.convert import convert_checkpoint

  out = tmp_path_factory.mktemp("parity") / "pose"
  convert_checkpoint(parity_dir / "pose_best_epoch.bin", out, num_heads=4)
  return out


@functools.lru_cache(maxsize=4)
def filmed_take(take: str) -> tuple[np.ndarray, np.ndarray]:
  """A bundled mocap take seen by the first test camera of the demo data set.

  Returns:
    ``(coco, truth)``: (T, 17, 3) COCO-17 pixels with confidence 1, as a detector would give
    them, and (T, 17, 3) the true 3D in the model's normalised camera frame for image
    normalisation (x, y as the input, z the depth in the same scale, 0 at the first pelvis).
  """
  motion, _ = demo.load_takes()
  rotation, centre = demo.camera_views(take, motion[take], "test")[0]
  cam = cameras.world_to_camera_rt(motion[take], rotation, centre)
  pixels = cameras.project(cam, demo.INTRINSICS)
  coco = np.concatenate([pixels[:, list(H36M_FOR_COCO)], np.ones(pixels.shape[:2] + (1,))], axis=-1)
  image = cameras.to_image_frame(pixels, cam, cameras.image_scale_factor(pixels, cam))
  scale = min(IMAGE_SIZE) / 2.0
  truth = (image - np.array([IMAGE_SIZE[0] / 2.0, IMAGE_SIZE[1] / 2.0, 0.0])) / scale
  truth[..., 2] -= truth[0, J["pelvis"], 2]
  return coco, truth
