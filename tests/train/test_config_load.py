"""Every config problem a user can cause is one line (exit status 2), and train/eval answer --help."""

from __future__ import annotations

import re
import textwrap

import pytest
from absl import flags
from ml_collections import config_flags

from perfectrep_jax.errors import UserError
from perfectrep_jax.train import config_load
from tests.train.conftest import CONFIGS, load_config, run_cli

SMOKE = f"{CONFIGS / 'pretrain.py'}:smoke"


def _parse(argv):
  argv = ["perfectrep-jax train", *argv]
  values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file(
    "config", None, "task config", flag_values=values, lock_config=True, sys_argv=argv
  )
  return config_load.parse_config_flags(values, argv, holder)


def _write(tmp_path, name, body):
  path = tmp_path / name
  path.write_text(textwrap.dedent(body))
  return str(path)


@pytest.mark.parametrize(
  "make_argv, message",
  [
    (lambda d: ["--config", f"{d}/missing.py"], r"missing\.py: no such config file$"),
    (lambda d: ["--config", str(d)], "no such config file"),
    (
      lambda d: ["--config", _write(d, "syntax.py", "def get_config(:\n")],
      r"syntax\.py: syntax error, line 1",
    ),
    (lambda d: ["--config", _write(d, "noget.py", "x = 1\n")], r"noget\.py: defines no get_config"),
    (
      lambda d: [
        "--config",
        _write(d, "raises.py", "def get_config(v=None):\n  raise RuntimeError('boom')\n"),
      ],
      r"raises\.py: cannot load the config \(line 2\): RuntimeError: boom",
    ),
    (
      lambda d: ["--config", _write(d, "imports.py", "import nonexistent_module_xyz\n")],
      r"imports\.py: cannot load the config \(line 1\): ModuleNotFoundError",
    ),
    (
      lambda d: ["--config", f"{CONFIGS / 'pretrain.py'}:nope"],
      r"pretrain\.py:nope: unknown variant 'nope': full, lite, demo or smoke$",
    ),
    (
      lambda d: ["--config", SMOKE, "--config.optim.lrr=1"],
      r"^--config\.optim\.lrr: no such config field 'lrr'; did you mean \"lr\" instead of \"lrr\"\?$",
    ),
    (lambda d: ["--config", SMOKE, "--config.nope=1"], r"^--config\.nope: no such config field 'nope'$"),
    (
      lambda d: ["--config", SMOKE, "--config.optim.lr=abc"],
      r"flag --config\.optim\.lr=abc: could not convert string to float",
    ),
    (lambda d: ["--config", SMOKE, "--bogus"], "Unknown command line flag 'bogus'"),
  ],
)
def test_config_problems_are_one_line(tmp_path, make_argv, message):
  with pytest.raises(UserError, match=message) as err:
    _parse(make_argv(tmp_path))
  assert "\n" not in str(err.value) and "Traceback" not in str(err.value)


def test_a_good_config_with_overrides_loads():
  config = _parse(["--config", SMOKE, "--config.optim.lr=0.25", "--config.model.depth=2"])
  assert config.optim.lr == 0.25 and config.model.depth == 2


@pytest.mark.parametrize(
  "command, args, message",
  [
    ("train", ["--config", "missing.py"], "perfectrep-jax train: error: missing.py: no such config file"),
    (
      "eval",
      ["--config", SMOKE, "--config.optim.lrr=1"],
      "perfectrep-jax eval: error: --config.optim.lrr: no such config field 'lrr'; did you mean",
    ),
  ],
)
def test_the_commands_exit_2_with_one_line(tmp_path, command, args, message):
  proc = run_cli([command, *args, "--workdir", str(tmp_path / "w")], check=False)
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip().startswith(message) and len(proc.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "w").exists()


def test_sweep_config_problems_are_one_line(tmp_path):
  from perfectrep_jax.sweeps import spec as sweep

  path = _write(
    tmp_path,
    "s.py",
    f"""
      from perfectrep_jax.sweeps.spec import Sweep, axis
      def get_sweep(arg=None):
        return Sweep(config={str(CONFIGS / "pretrain.py") + ":smoke"!r},
                     grid=axis("optim.lrr", [1.0]))
      """,
  )
  with pytest.raises(
    UserError,
    match=r"run optim\.lrr=1\.0: --config\.optim\.lrr: no such config "
    r"field 'lrr'; did you mean",
  ) as err:
    sweep.check_runs(sweep.load_sweep(path).runs)
  assert "\\n" not in str(err.value) and "\\'" not in str(err.value)


@pytest.mark.parametrize(
  "command, flag", [("train", "--help"), ("train", "-h"), ("train", "--helpfull"), ("eval", "--help")]
)
def test_train_and_eval_answer_help(command, flag):
  proc = run_cli([command, flag])
  out = proc.stdout
  assert out.startswith(f"usage: perfectrep-jax {command} --config")
  assert "--workdir DIR" in out and "--config.KEY=VALUE" in out
  assert ("--step N" in out) == (command == "eval")
  for variant in ("pretrain.py:demo", "pretrain.py:full", "pose3d.py:smoke", "action.py:demo"):
    assert variant in out
  assert f"perfectrep-jax {command} --config " in out.split("examples:")[1]
  assert ("optim.lr = " in out) == (flag == "--helpfull")


@pytest.mark.parametrize("name", ["pretrain", "pose3d", "action"])
def test_help_lists_the_variants_each_config_has(name):
  """The variants the help lists (from each file's docstring) load, and they are all there is."""
  listed = [v for v, _ in config_load.variants(CONFIGS / f"{name}.py")]
  assert "smoke" in listed and "full" in listed
  for variant in listed:
    assert load_config(name, variant).task
  with pytest.raises(ValueError, match="unknown variant"):
    load_config(name, "nope")
  message = str(pytest.raises(ValueError, load_config, name, "nope").value)
  assert sorted(message.split(": ", 1)[1].replace(" or ", ", ").split(", ")) == sorted(listed)


@pytest.mark.parametrize(
  "override, message",
  [
    ("--config.data.scale_range=abc", "data.scale_range: two positive numbers (low, high)"),
    ("--config.eval.scale_range=2", "eval.scale_range: two positive numbers (low, high)"),
    ("--config.data.scale_range=(3.0,1.0)", "data.scale_range: two positive numbers"),
    ("--config.sharding_rules=1", "sharding_rules: pairs (logical axis, mesh axis or None)"),
  ],
)
def test_overrides_of_the_wrong_shape_are_refused_before_anything_runs(override, message):
  """config_flags accepts them (a string becomes a 1-tuple): check_config must not."""
  from perfectrep_jax.train.config_check import check_config

  config = _parse(["--config", SMOKE, override])
  with pytest.raises(UserError, match=re.escape(message)):
    check_config(config)
  check_config(_parse(["--config", SMOKE, "--config.data.scale_range=(1.0,3.0)"]))


def test_a_second_parse_in_one_process_does_not_keep_the_first_files_get_config(tmp_path):
  # ml_collections re-executes a config file into the module of the previous one (load_module).
  assert _parse(["--config", SMOKE]).task == "pretrain"
  with pytest.raises(UserError, match=r"noget\.py: defines no get_config"):
    _parse(["--config", _write(tmp_path, "noget.py", "x = 1\n")])
