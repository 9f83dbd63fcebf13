"""The train/eval commands re-execute once with glibc's huge-page malloc; tests call main() with a
list and never re-execute."""

from __future__ import annotations

import sys

import pytest

from perfectrep_jax import hostmem


@pytest.fixture
def execs(monkeypatch):
    calls = []
    monkeypatch.setattr(hostmem.os, "execv", lambda path, args: calls.append((path, list(args))))
    monkeypatch.setattr(hostmem.sys, "platform", "linux")
    monkeypatch.delenv(hostmem.NO_REEXEC_ENV, raising=False)
    return calls


def test_reexecutes_once_with_the_tunable_added(execs, monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    hostmem.reexec_with_huge_pages([sys.executable, "-m", "x", "train"])
    assert execs == [(sys.executable, [sys.executable, "-m", "x", "train"])]
    assert hostmem.os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    hostmem.reexec_with_huge_pages([sys.executable, "-m", "x", "train"])  # already set: no loop
    assert len(execs) == 1


def test_opt_out_and_other_systems(execs, monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setenv(hostmem.NO_REEXEC_ENV, "1")
    hostmem.reexec_with_huge_pages([sys.executable])
    monkeypatch.delenv(hostmem.NO_REEXEC_ENV)
    monkeypatch.setattr(hostmem.sys, "platform", "darwin")
    hostmem.reexec_with_huge_pages([sys.executable])
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
