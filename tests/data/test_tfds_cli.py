"""TensorFlow's ``tfds build`` command line on the ``tfds-builders/`` entries, as tfds-builders/README.md says.

The ``tfds`` command line imports TensorFlow, Apache Beam and mlcroissant, which the project does not install;
this test runs in an environment that has them (``pip install -e . tensorflow-cpu apache-beam mlcroissant``)
and says so where they are missing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CLI_NEEDS = ("tensorflow", "apache_beam", "mlcroissant")


@pytest.mark.slow
def test_tfds_build_of_the_demo_entry_writes_what_the_pipeline_reads(tmp_path):
  missing = [m for m in CLI_NEEDS if importlib.util.find_spec(m) is None]
  if missing:
    pytest.skip(
      f"the tfds command line needs {', '.join(missing)} (not installed with the project; "
      "see tfds-builders/README.md)"
    )
  import tensorflow_datasets as tfds

  data_dir = tmp_path / "tfds"
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  # `tfds` is this module's console script; run it by module so that the test's interpreter is the one used.
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "tensorflow_datasets.scripts.cli.main",
      "build",
      "tfds-builders/demo",
      "--config",
      "clip27",
      "--data_dir",
      str(data_dir),
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  version_dir = data_dir / "demo" / "clip27" / "1.0.0"
  assert sorted(p.name.split(".")[0] for p in version_dir.glob("*.array_record*"))[:1] == ["demo-test"]
  builder = tfds.builder_from_directory(str(version_dir))
  assert builder.info.splits["train"].num_examples > 0 and builder.info.splits["test"].num_examples > 0
  source = builder.as_data_source(split="test")
  example = source[0]
  assert np.asarray(example["input_2d"]).shape == (27, 17, 3)
