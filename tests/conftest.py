"""Shared test helpers: where the upstream parity fixtures live (../shared/fixtures/parity)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# ../shared beside the checkout (CI puts it there too).
SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


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
