"""The train/eval commands re-execute once with a glibc malloc that keeps its memory; tests call
main() with a list and never re-execute. The tunables' effect is checked on this machine's glibc."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from perfectrep_jax import hostmem


@pytest.fixture
def execs(monkeypatch):
  calls = []
  monkeypatch.setattr(hostmem.os, "execv", lambda path, args: calls.append((path, list(args))))
  monkeypatch.setattr(hostmem.sys, "platform", "linux")
  monkeypatch.delenv(hostmem.NO_REEXEC_ENV, raising=False)
  return calls


def test_reexecutes_once_with_the_tunables_added(execs, monkeypatch):
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2:glibc.rtld.x=1")
  hostmem.reexec_with_retained_heap([sys.executable, "-m", "x", "train"])
  assert execs == [(sys.executable, [sys.executable, "-m", "x", "train"])]
  set_ = hostmem.os.environ["GLIBC_TUNABLES"].split(":")
  assert set_[:2] == ["glibc.malloc.arena_max=2", "glibc.rtld.x=1"]  # the user's value is kept
  assert set_[2:] == [f"{k}={v}" for k, v in hostmem.MALLOC_TUNABLES.items() if k != "glibc.malloc.arena_max"]
  hostmem.reexec_with_retained_heap([sys.executable, "-m", "x", "train"])  # already set: no loop
  assert len(execs) == 1


def test_opt_out_and_other_systems(execs, monkeypatch):
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  monkeypatch.setenv(hostmem.NO_REEXEC_ENV, "1")
  hostmem.reexec_with_retained_heap([sys.executable])
  monkeypatch.delenv(hostmem.NO_REEXEC_ENV)
  monkeypatch.setattr(hostmem.sys, "platform", "darwin")
  hostmem.reexec_with_retained_heap([sys.executable])
  assert execs == []


def test_cli_reexecutes_train_only_from_the_command_line(execs, monkeypatch, capsys):
  from perfectrep_jax import cli

  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  monkeypatch.setattr(sys, "argv", ["perfectrep-jax", "train"])
  assert cli.main() == 2  # the fake execv returns; the command then says what it misses
  assert execs == [(sys.executable, [sys.executable, "-m", "perfectrep_jax.cli", "train"])]
  monkeypatch.delenv("GLIBC_TUNABLES")
  assert cli.main(["train"]) == 2  # called with a list (tests, scripts): no re-execution
  assert len(execs) == 1
  assert "--config is required" in capsys.readouterr().err


_FAULTS_OF_A_REUSED_BLOCK = textwrap.dedent("""
    import ctypes, resource, threading

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def touch(out):  # malloc, write and free 256 MiB from a worker thread, as XLA's runtime
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # does a step's temporaries
        block = libc.malloc(256 << 20)
        ctypes.memset(block, 1, 256 << 20)
        libc.free(block)
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    faults = []
    for _ in range(3):
        t = threading.Thread(target=touch, args=(faults,))
        t.start()
        t.join()
    print(faults[-1])
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables")
def test_retained_heap_faults_nothing_when_a_block_comes_back():
  def faults(tunables):
    env = {**hostmem.os.environ, "GLIBC_TUNABLES": tunables}
    out = subprocess.run(
      [sys.executable, "-c", _FAULTS_OF_A_REUSED_BLOCK], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout)

  # A block mapped afresh faults once per page: 65 536 pages of 4 KiB, or 128 of 2 MiB where the
  # kernel backs it with transparent huge pages (THP "always"); a retained block faults nothing.
  mapped_afresh = (256 << 20) // (2 << 20)
  assert faults("") >= mapped_afresh  # glibc's default
  # a thread's arena maps blocks over 64 MiB whatever mmap_max says: arena_max=1 is what keeps it
  assert faults("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776") >= mapped_afresh
  assert faults(hostmem.with_retained_heap("")) < 16
