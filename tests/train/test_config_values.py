"""Bad values given as config overrides are refused in one line before the run directory is written."""

from __future__ import annotations

import re

import pytest
from absl import flags
from ml_collections import config_flags

from perfectrep_jax.errors import UserError
from perfectrep_jax.train import config_load
from perfectrep_jax.train.config_check import check_config
from tests.train.conftest import CONFIGS, run_cli

SMOKE = f"{CONFIGS / 'pretrain.py'}:smoke"


@pytest.mark.parametrize(
  "override,message",
  [
    ("model.num_heads=0", "model: num_heads must be in 1..65536, got 0"),
    ("data.clip_len=0", "data: clip_len must be positive, got 0"),
  ],
)
def test_bad_overrides_write_nothing(tmp_path, override, message):
  workdir = tmp_path / "run"
  proc = run_cli(["train", "--config", SMOKE, "--workdir", str(workdir), f"--config.{override}"], check=False)
  assert proc.returncode == 2 and message in proc.stderr, proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr
  assert not (workdir / "config.json").exists() and not (workdir / "model.json").exists()


def _parse(argv):
  argv = ["perfectrep-jax train", *argv]
  values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file(
    "config", None, "task config", flag_values=values, lock_config=True, sys_argv=argv
  )
  return config_load.parse_config_flags(values, argv, holder)


@pytest.mark.parametrize(
  "override,message",
  [
    ("model.mlp_ratio=0", "model: mlp_ratio must be in (0.0, 65536], got 0"),
    ("model.dim_feat=1000000000", "model: dim_feat must be in 1..65536"),
    ("model.depth=1000000", "model: depth must be in 1..1024"),
    ("data.stride=-3", "data: stride must be positive or None, got -3"),
  ],
)
def test_other_bad_values_are_found_by_the_config_check(override, message):
  config = _parse(["--config", SMOKE, f"--config.{override}"])
  with pytest.raises(UserError, match=re.escape(message)):
    check_config(config)


@pytest.mark.parametrize("override", ["optim.lr=1e5000", "optim.lr=" + "9" * 400, "optim.lr=nan"])
def test_non_finite_numbers_are_refused(override):
  config = _parse(["--config", SMOKE, f"--config.{override}"])
  with pytest.raises(UserError, match=r"optim.lr: must be a finite number, got (inf|nan)"):
    check_config(config)
  check_config(_parse(["--config", SMOKE, "--config.optim.lr=1e-4"]))


def test_the_mlp_baselines_widths_are_checked():
  config = _parse(["--config", SMOKE, "--config.model.name=mlp", "--config.model.mlp_hidden=0"])
  with pytest.raises(UserError, match=r"model: hidden must be in 1..65536, got 0"):
    check_config(config)
  check_config(_parse(["--config", SMOKE, "--config.model.name=mlp"]))


@pytest.mark.parametrize(
  "cycles,message",
  [
    ([], "one entry per cycle each for schedule sgdr (got 0, 0, 0)"),
    (["cycle_steps=(2,1)", "cycle_lr_factors=(1.0,)", "cycle_warmup_steps=(0,0)"], "(got 2, 1, 2)"),
    (
      ["cycle_steps=(2,1)", "cycle_lr_factors=(1.0,0.5)", "cycle_warmup_steps=(0,0)"],
      "add up to 3, total_steps is 4",
    ),
    (["cycle_steps=(2,2)", "cycle_lr_factors=(1.0,-1.0)", "cycle_warmup_steps=(0,0)"], "positive finite"),
    (
      ["cycle_steps=(2,2)", "cycle_lr_factors=(1.0,1.0)", "cycle_warmup_steps=(0,2)"],
      "longer than its warm-up",
    ),
  ],
)
def test_sgdr_cycles_must_fit_the_run(cycles, message):
  overrides = [f"--config.optim.{c}" for c in ["schedule=sgdr", *cycles]]
  config = _parse(["--config", SMOKE, "--config.total_steps=4", *overrides])
  with pytest.raises(UserError, match=re.escape(message)):
    check_config(config)


def test_sgdr_cycles_that_fit_pass():
  overrides = ["schedule=sgdr", "cycle_steps=(3,1)", "cycle_lr_factors=(1.0,0.5)", "cycle_warmup_steps=(1,0)"]
  check_config(
    _parse(["--config", SMOKE, "--config.total_steps=4", *[f"--config.optim.{o}" for o in overrides]])
  )
