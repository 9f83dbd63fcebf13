"""Shared test helpers: where the upstream parity fixtures live (../shared/fixtures/parity)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perfectrep_jax.data import shared
from perfectrep_jax.fileio import import_python_file
from perfectrep_jax.models.dstformer import DSTformerConfig

# A small random DSTformer lifter for tests of what runs a model, not of what it predicts.
TINY = DSTformerConfig(dim_feat=16, dim_rep=16, depth=1, num_heads=2, mlp_ratio=2, maxlen=9)

# ../shared beside the checkout (CI puts it there too), or $PERFECTREP_JAX_DATA.
SHARED_DIR = shared.candidate_roots()[0]
EXAMPLE_SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "make_example_keypoints.py"


def parity_path() -> Path:
  """Directory of the fixtures written by the upstream PyTorch code (see its README.md)."""
  return SHARED_DIR / "fixtures" / "parity"


@pytest.fixture(scope="session")
def parity_dir() -> Path:
  """``parity_path()``, skipping the test when the shared fixtures are not there."""
  path = parity_path()
  if not path.is_dir():
    if os.environ.get("CI"):  # CI always has ../shared: a missing fixture is a failure there
      pytest.fail(f"parity fixtures not found at {path}")
    pytest.skip(f"parity fixtures not found at {path}")
  return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
  """A model directory holding a small random DSTformer lifter (``TINY``, maxlen 9)."""
  from perfectrep_jax.models import model_dir

  out = tmp_path_factory.mktemp("tiny") / "model"
  model_dir.save_model_dir(out, model_dir.build_model("lifter", TINY, seed=3))
  return out


@pytest.fixture(scope="session")
def example_keypoints(tmp_path_factory) -> Path:
  """``examples/squat_vitpose.json`` as ``examples/make_example_keypoints.py`` writes it on demand
  (from the mocap of the data folder), in a temporary folder."""
  module = import_python_file(EXAMPLE_SCRIPT, "make_example_keypoints")
  return module.write_example(tmp_path_factory.mktemp("example") / "squat_vitpose.json")
