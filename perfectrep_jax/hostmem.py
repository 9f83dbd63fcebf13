"""Host memory: a glibc malloc that keeps its memory, on huge pages, for long CPU jobs.

XLA's CPU runtime allocates a jitted step's temporaries (3.6 GB for the full-size train step at
T 243, batch 1) as one block, from a worker thread, on every call. glibc serves that thread from
a secondary arena, whose heaps are at most 64 MiB, so the block is ``mmap``-ed and ``munmap``-ed
each call and the kernel zeroes it again on first touch: 1.1 million 4 KiB page faults per step
with the defaults, 1.9 thousand 2 MiB ones with huge pages alone, 20% of the process's CPU time
in ``clear_page`` either way (``perf record``; ``benchmarks/README.md``). These tunables make
the memory stay:

- ``glibc.malloc.hugetlb=1``: transparent huge pages for what malloc maps (glibc >= 2.35);
- ``glibc.malloc.arena_max=1``: every thread allocates from the main arena, which grows with
  ``brk`` and has no size limit;
- ``glibc.malloc.mmap_max=0``: no block gets a mapping of its own;
- ``glibc.malloc.trim_threshold``: the top of the heap is never handed back.

After the first step the process faults nothing: its resident size stays at its peak, as with an
accelerator's memory pool. Older glibc ignores tunables it does not know. glibc reads
``GLIBC_TUNABLES`` only when a process starts, so the process re-executes itself once.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

MALLOC_TUNABLES = {
  "glibc.malloc.hugetlb": "1",
  "glibc.malloc.arena_max": "1",
  "glibc.malloc.mmap_max": "0",
  "glibc.malloc.trim_threshold": str(1 << 40),
}
NO_REEXEC_ENV = "PERFECTREP_JAX_NO_REEXEC"  # set to anything: never re-execute


def with_retained_heap(tunables: str) -> str:
  """``GLIBC_TUNABLES`` with ``MALLOC_TUNABLES`` added; a tunable already named keeps its value."""
  named = {item.split("=", 1)[0] for item in tunables.split(":") if item}
  added = [f"{k}={v}" for k, v in MALLOC_TUNABLES.items() if k not in named]
  return ":".join(filter(None, [tunables, *added]))


def reexec_with_retained_heap(command: list[str]) -> None:
  """Replaces this process by ``command`` with ``MALLOC_TUNABLES`` added to ``GLIBC_TUNABLES``.

  Returns without doing anything off Linux, when every tunable is already named (so at most
  once; a user's own value for any of them is kept), or when ``$PERFECTREP_JAX_NO_REEXEC`` is
  set.

  Args:
    command: the full command line to run, ``[sys.executable, ...]``.
  """
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  wanted = with_retained_heap(tunables)
  if not sys.platform.startswith("linux") or wanted == tunables or os.environ.get(NO_REEXEC_ENV):
    return
  os.environ["GLIBC_TUNABLES"] = wanted
  sys.stdout.flush()
  sys.stderr.flush()
  os.execv(command[0], command)


def cpu_model() -> str:
  """The CPU's model name (``/proc/cpuinfo``), named beside every timing the benchmarks print."""
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"
