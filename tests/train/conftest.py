"""Helpers for trainer tests: configs from configs/, and runs in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perfectrep_jax.train.config_load import config_from_file

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def load_config(name: str, variant: str):
  """``configs/<name>.py:get_config(variant)`` as ml_collections would load it."""
  return config_from_file(CONFIGS / f"{name}.py", variant)


def run_cli(
  args: list[str], env: dict | None = None, timeout: int = 600, check: bool = True
) -> subprocess.CompletedProcess:
  """Runs ``perfectrep-jax ARGS`` in a fresh Python process."""
  full_env = dict(os.environ, **(env or {}))
  proc = subprocess.run(
    [sys.executable, "-m", "perfectrep_jax.cli", *args],
    cwd=REPO,
    env=full_env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  if check and proc.returncode != 0:
    raise AssertionError(
      f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
  return proc


def read_metrics(workdir: Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def smoke_args():
  return ["--config", str(CONFIGS / "pretrain.py") + ":smoke"]
