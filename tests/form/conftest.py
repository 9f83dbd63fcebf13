"""Fixtures for the form-analysis tests: the bundled real motion capture and cached analyses."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from perfectrep_jax.data.demo import load_takes
from perfectrep_jax.form.analyze import analyze_motion

MOCAP_FPS = 50.0


@pytest.fixture(scope="session")
def mocap():
  """(motion, meta): take id -> (T, 17, 3) world mm (Z up, 50 fps), take id -> takes.json entry."""
  return load_takes()


@functools.lru_cache(maxsize=None)
def _analysed(take: str, exercise: str | None):
  motion, _ = load_takes()
  return analyze_motion(motion[take], exercise, fps=MOCAP_FPS)


@pytest.fixture(scope="session")
def analysed():
  """``analysed(take, exercise)``: the analysis of a bundled take, computed once per process."""
  return _analysed


def _random_similarity(seed: int):
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  if np.linalg.det(q) < 0:
    q[:, 0] *= -1
  return q, rng.normal(size=3) * 1000.0, float(rng.uniform(0.0005, 3.0))


@pytest.fixture(scope="session")
def similarity():
  """``similarity(seed) -> (rotation (3, 3), translation (3,), scale)``: any rigid frame and unit."""
  return _random_similarity
