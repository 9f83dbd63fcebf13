"""What is written into a shell or job script holds no control characters; odd sweep paths fail in one line."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from perfectrep_jax import cli
from perfectrep_jax.errors import UserError
from perfectrep_jax.sweeps import launch as sweep_launch, spec as sweep
from tests.train.conftest import CONFIGS


@pytest.fixture
def loaded(tmp_path):
  path = tmp_path / "grid.py"
  path.write_text(
    "from perfectrep_jax.sweeps.spec import Sweep, axis\n"
    + textwrap.dedent(f"""
      def get_sweep(arg=None):
        return Sweep(config={str(CONFIGS / "pretrain.py")!r} + ":smoke",
                     grid=axis("optim.lr", [1e-3, 1e-4]), fixed={{"total_steps": 4}})
      """)
  )
  return sweep.load_sweep(str(path))


@pytest.mark.parametrize(
  "options", ["--nodes=2\nrm -rf ~", "--nodes=2\r", "-J a\x1b[2J", "--comment='a\nb'", "--comment='a\tb'"]
)
def test_sbatch_options_with_control_characters_are_refused(loaded, tmp_path, options):
  with pytest.raises(UserError, match="--sbatch .* contains a control character") as e:
    sweep_launch.emit_slurm(loaded, tmp_path / "w", sbatch_options=options)
  assert "\n" not in str(e.value) and "\r" not in str(e.value)
  assert not (tmp_path / "w").exists()  # nothing written
  sweep_launch.emit_slurm(loaded, tmp_path / "w", sbatch_options="--nodes=2\t-t 1:00:00")
  script = (tmp_path / "w" / loaded.runs[0].name / "job.sbatch").read_text()  # a tab separates
  assert {"#SBATCH --nodes=2", "#SBATCH -t 1:00:00"} <= set(script.splitlines())


def test_other_values_written_into_scripts_are_checked(loaded, tmp_path, monkeypatch):
  with pytest.raises(UserError, match="--workdir .* contains a control character"):
    sweep_launch.emit_slurm(loaded, tmp_path / "w\nx")
  with pytest.raises(UserError, match="the sweep .* contains a control character"):
    sweep_launch.emit_slurm(dataclasses.replace(loaded, spec="grid.py\nreboot"), tmp_path / "w")
  with pytest.raises(UserError, match="a value of the job script"):
    sweep_launch.render_sbatch("#!/bin/bash\n", loaded.runs[0], tmp_path, ["--output=a\nb"], "c")
  weird = tmp_path / "cwd\tdir"
  weird.mkdir()
  monkeypatch.chdir(weird)
  with pytest.raises(UserError, match="the current directory .* contains a control character"):
    sweep_launch.emit_slurm(loaded, tmp_path / "w")


def test_a_file_that_is_not_a_sweep_is_one_line(tmp_path, capsys):
  for target in ("/etc/passwd", str(tmp_path)):
    status = cli.main(["sweep", target, "--workdir", str(tmp_path / "w"), "--list"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
  assert "/etc/passwd: not a sweep file" in cli_error("/etc/passwd", tmp_path, capsys)


def cli_error(target, tmp_path, capsys) -> str:
  cli.main(["sweep", target, "--workdir", str(tmp_path / "w"), "--list"])
  return capsys.readouterr().err
