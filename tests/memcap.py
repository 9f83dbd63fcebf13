"""Running a piece of code in a child process under an address-space cap and a time limit, so a
regression that allocates gigabytes or hangs fails its test instead of taking the machine down."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run_capped(code: str, mem_mb: int, timeout: float = 120.0) -> subprocess.CompletedProcess:
  """Runs ``code`` (dedented) in a fresh Python whose address space is capped at ``mem_mb`` MiB.

  BLAS and XLA get one thread each (thread stacks count against the cap).
  Returns:
    the completed process (text stdout and stderr); ``subprocess.TimeoutExpired`` past ``timeout``.
  """
  prelude = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({mem_mb} << 20, {mem_mb} << 20))\n"
  env = dict(
    os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", JAX_PLATFORMS="cpu"
  )
  return subprocess.run(
    [sys.executable, "-c", prelude + textwrap.dedent(code)],
    capture_output=True,
    text=True,
    timeout=timeout,
    env=env,
  )
