"""Every subcommand answers --help (exit status 0) with its arguments and examples; train and eval
with the config variants too, sweep with the sweeps there are."""

from __future__ import annotations

import shlex

import pytest

from perfectrep_jax import cli
from perfectrep_jax.cli_examples import EXAMPLES, sweeps_available


def _subcommands():
  sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
  return sub.choices


def _help(capsys, argv):
  with pytest.raises(SystemExit) as done:
    cli.main(argv)
  assert done.value.code == 0
  return capsys.readouterr().out


def test_every_subcommand_has_examples():
  assert set(_subcommands()) - set(cli.DELEGATED) == set(EXAMPLES)


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_subcommand_help_has_arguments_and_examples(capsys, command):
  out = _help(capsys, [command, "--help"])
  assert out.startswith(f"usage: perfectrep-jax {command}")
  assert "options:" in out and "examples:" in out
  parser = _subcommands()[command]
  for example in EXAMPLES[command]:
    assert f"  {example}" in out
    words = shlex.split(example.split("|")[-1].split(">")[0])
    assert words[:2] == ["perfectrep-jax", command]
    parser.parse_args(words[2:])  # each example is a valid command line (argparse exits if not)


def test_sweep_help_lists_the_sweeps(capsys):
  out = _help(capsys, ["sweep", "-h"])
  names = [name for name, _ in sweeps_available()]
  assert {"smoke", "demo_lr_depth"} <= set(names)
  listed = out.split("sweeps available")[1].split("examples:")[0]
  assert all(f"  {name} " in listed for name in names)


@pytest.mark.parametrize(
  "argv",
  [["train", "--help"], ["train", "-h"], ["train", "--helpfull"], ["eval", "--help"], ["publish", "--help"]],
)
def test_train_eval_and_publish_help_in_process(capsys, argv):
  assert cli.main(argv) == 0
  out = capsys.readouterr().out
  assert out.startswith(f"usage: perfectrep-jax {argv[0]} --config")
  assert "config variants" in out and "pretrain.py:demo" in out and "examples:" in out
