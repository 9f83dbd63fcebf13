"""The benchmark scripts, imported as modules for their tests (they are not on ``sys.path``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfectrep_jax.fileio import import_python_file

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def benchmark_script():
  """``benchmark_script("latency")``: ``benchmarks/latency.py`` as a fresh module."""
  return lambda name: import_python_file(BENCHMARKS / f"{name}.py", f"perfectrep_benchmarks_{name}")
