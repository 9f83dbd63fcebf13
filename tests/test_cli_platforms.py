"""JAX's platform on machines without an accelerator: the CPU, without libtpu's failed TPU search
(a command's one-line error then stands alone: tests/train/test_data_and_batches.py)."""

from __future__ import annotations

from perfectrep_jax import cli


def test_no_accelerator_means_cpu_and_the_users_choice_wins(monkeypatch):
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  monkeypatch.setattr(cli.glob, "glob", lambda pattern: [])
  cli.use_cpu_without_accelerators()
  assert cli.os.environ["JAX_PLATFORMS"] == "cpu"
  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  cli.use_cpu_without_accelerators()
  assert cli.os.environ["JAX_PLATFORMS"] == "cuda"  # set by the user: left alone
  monkeypatch.delenv("JAX_PLATFORMS")
  monkeypatch.setattr(cli.glob, "glob", lambda pattern: ["/dev/nvidia0"] if "nvidia" in pattern else [])
  cli.use_cpu_without_accelerators()
  assert "JAX_PLATFORMS" not in cli.os.environ  # a GPU here: JAX chooses
