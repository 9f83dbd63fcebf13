"""Every config variant names its data, the demo set is said to be one, and both batch sizes
divide over the data-parallel devices and processes."""

from __future__ import annotations

import ml_collections
import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.train import config_load, trainer
from perfectrep_jax.train.config_base import base_config
from perfectrep_jax.train.config_check import check_config, describe_data
from tests.train.conftest import CONFIGS, load_config, run_cli

ALL_VARIANTS = [
  (path.stem, name) for path in sorted(CONFIGS.glob("*.py")) for name, _ in config_load.variants(path)
]


@pytest.mark.parametrize("name, variant", ALL_VARIANTS)
def test_every_variant_names_its_data(name, variant):
  assert load_config(name, variant).data.source


def test_lite_trains_on_fit3d_like_full_and_demo_says_so():
  for name in ("pretrain", "pose3d"):
    assert load_config(name, "lite").data.source == load_config(name, "full").data.source == "fit3d/clip243"
  line = describe_data(load_config("pretrain", "demo"))
  assert line.startswith("data: demo, the small bundled demo mocap; not a benchmark")
  config = load_config("pretrain", "full")
  config.data.data_dir = "/data/tfds"
  assert describe_data(config) == "data: fit3d/clip243 from /data/tfds"


def test_a_config_without_data_is_refused():
  config = base_config("pretrain")
  assert config.data.source == ""
  with pytest.raises(UserError, match="data.source: name the data"):
    check_config(config)


def _config(batch, eval_batch):
  return ml_collections.ConfigDict(dict(batch_size=batch, eval=dict(batch_size=eval_batch)))


def test_both_batch_sizes_divide_over_devices_and_processes():
  trainer.check_batch_sizes(_config(16, 32), data_parallel=8, processes=2)
  with pytest.raises(
    UserError, match="^eval.batch_size 12 must divide by the data-parallel mesh size 8 and the 2 processes$"
  ):
    trainer.check_batch_sizes(_config(16, 12), data_parallel=8, processes=2)
  with pytest.raises(UserError, match="^eval.batch_size 9 .* size 1 and the 2 processes"):
    trainer.check_batch_sizes(_config(16, 9), data_parallel=1, processes=2)
  with pytest.raises(UserError, match="^batch_size 6 "):
    trainer.check_batch_sizes(_config(6, 16), data_parallel=4, processes=1)


@pytest.mark.parametrize("command", ["train", "eval"])
def test_an_eval_batch_that_does_not_divide_stops_at_once(tmp_path, command):
  proc = run_cli(
    [
      command,
      "--config",
      f"{CONFIGS / 'pretrain.py'}:smoke",
      "--workdir",
      str(tmp_path / "w"),
      "--config.eval.batch_size=6",
    ],
    check=False,
    timeout=300,
    env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip() == (
    f"perfectrep-jax {command}: error: eval.batch_size 6 must divide "
    "by the data-parallel mesh size 4 and the 1 processes"
  )
  assert not (tmp_path / "w").exists()
