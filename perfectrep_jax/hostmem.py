"""Host memory: glibc's malloc with transparent huge pages for long CPU jobs.

XLA maps a jitted step's temporaries afresh on every call (about 5 GB for the lite train step at
T 243). With glibc's default malloc and 4 KiB pages that is over a million minor page faults per
step, a quarter of the step's time on CPU (``benchmarks/README.md``). ``glibc.malloc.hugetlb=1``
(glibc >= 2.35; older versions ignore it) makes malloc ask for transparent huge pages for those
blocks. glibc reads ``GLIBC_TUNABLES`` only when a process starts, so the process re-executes
itself once with it set.
"""

from __future__ import annotations

import os
import sys

MALLOC_TUNABLE = "glibc.malloc.hugetlb=1"
NO_REEXEC_ENV = "PERFECTREP_JAX_NO_REEXEC"  # set to anything: never re-execute


def reexec_with_huge_pages(command: list[str]) -> None:
    """Replaces this process by ``command`` with the tunable added to ``GLIBC_TUNABLES``.

    Returns without doing anything off Linux, when the tunable is already set (so at most once), or
    when ``$PERFECTREP_JAX_NO_REEXEC`` is set.

    Args:
      command: the full command line to run, ``[sys.executable, ...]``.
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if not sys.platform.startswith("linux") or MALLOC_TUNABLE in tunables or os.environ.get(NO_REEXEC_ENV):
        return
    os.environ["GLIBC_TUNABLES"] = ":".join(filter(None, [tunables, MALLOC_TUNABLE]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
