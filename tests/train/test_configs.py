"""The configs: every key of PerfectRep's YAML files has a home and ``full`` reproduces it;
MotionBERT-Lite's model; every variant is valid; a bad config stops before anything runs.

The YAML files are upstream's, verbatim, in ``tests/train/upstream_configs/``; the table is
``perfectrep_jax/sweeps/upstream_yaml.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from perfectrep_jax.data import shared
from perfectrep_jax.sweeps import upstream_yaml
from perfectrep_jax.train.config_check import check_config
from tests.train.conftest import CONFIGS, load_config, run_cli

UPSTREAM = Path(__file__).parent / "upstream_configs"
VARIANTS = {
  "pretrain": ("full", "lite", "demo", "smoke"),
  "pose3d": ("full", "lite", "demo", "smoke"),
  "action": ("full", "demo", "smoke"),
}

# Keys the ``full`` variants do not reproduce yet, and the change that would: expected failures,
# strict, so a key that becomes reproduced must leave this list.
PENDING: dict = {}  # (file, key) -> the field a key still needs (strict xfail until it has it)


def _yaml(name: str) -> dict:
  return yaml.safe_load((UPSTREAM / name).read_text())


def _cases():
  for name, task in upstream_yaml.UPSTREAM_FILES.items():
    for key in _yaml(name):
      marks = [pytest.mark.xfail(strict=True, reason=PENDING[(name, key)])] if (name, key) in PENDING else []
      yield pytest.param(name, task, key, id=f"{name}:{key}", marks=marks)


def test_the_table_has_every_key_of_every_file():
  for name in upstream_yaml.UPSTREAM_FILES:
    keys, table = set(_yaml(name)), set(upstream_yaml.TABLES[name])
    assert keys - table == set(), f"{name}: keys without a home"
    assert table - keys == set(), f"{name}: table keys upstream does not have"
  assert set(PENDING) <= {(n, k) for n in upstream_yaml.TABLES for k in upstream_yaml.TABLES[n]}


@pytest.mark.parametrize("name, task, key", list(_cases()))
def test_full_reproduces_upstream(name, task, key):
  config = load_config(task, "full")
  home = upstream_yaml.TABLES[name][key]
  value = _yaml(name)[key]
  assert upstream_yaml.missing_fields(config, {key: home}) == {}, (
    f"{key}: {home.fields} not in configs/{task}.py:full"
  )
  if home.kind == "resource":
    stand_in = shared.data_root() / home.bundled
    assert stand_in.is_file() and stand_in.stem == Path(value).stem
  elif home.kind in ("field", "fixed"):
    got = home.read(config)
    assert upstream_yaml.same(got, value), f"{key}: upstream {value!r}, {task}:full {got!r}"
  else:
    assert home.kind in ("location", "unread") and home.note


@pytest.mark.parametrize("key", list(upstream_yaml.MOTIONBERT_LITE))
def test_lite_is_motionbert_lite(key):
  config = load_config("pretrain", "lite")
  want = _yaml("MB_lite.yaml")[key]
  got = upstream_yaml.MOTIONBERT_LITE[key].read(config)
  assert upstream_yaml.same(got, want), f"{key}: MB_lite {want!r}, pretrain:lite {got!r}"


def test_reading_back_catches_a_changed_value():
  config = load_config("pose3d", "full")
  table = upstream_yaml.TABLES["ft_3d_pose_config.yaml"]
  upstream = _yaml("ft_3d_pose_config.yaml")
  before = upstream_yaml.differences(config, table, upstream)
  config.optim.lr = 3e-4
  config.corruption.noise = True  # no effect: pose3d does not corrupt its input
  config.eval_every = 0
  after = upstream_yaml.differences(config, table, upstream)
  assert set(after) - set(before) == {"learning_rate", "no_eval"}
  assert after["learning_rate"] == "upstream 0.0002, config gives 0.0003"


@pytest.mark.parametrize("task, variant", [(t, v) for t, vs in VARIANTS.items() for v in vs])
def test_every_variant_is_valid(task, variant):
  config = load_config(task, variant)
  if (task, variant) == ("action", "full"):  # the dataset's action names must be given
    with pytest.raises(Exception, match="action.classes"):
      check_config(config)
    config.action.classes = ("squat", "deadlift", "pushup")
  if config.init.finetune:  # finetuning variants need the weights to start from
    with pytest.raises(Exception, match="init.finetune"):
      check_config(config)
    config.init.checkpoint = "runs/pretrain"
  check_config(config)


def test_a_bad_config_stops_before_anything_runs(tmp_path):
  """A bad field and a mesh that does not divide the devices: one error naming both, exit 2."""
  workdir = tmp_path / "run"
  proc = run_cli(
    [
      "train",
      "--config",
      f"{CONFIGS / 'pretrain.py'}:smoke",
      "--workdir",
      str(workdir),
      "--config.optim.schedule=cosine",
      "--config.mesh.fsdp=3",
    ],
    check=False,
    timeout=120,
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "optim.schedule: one of exponential, warmup_cosine, sgdr, constant, not 'cosine'" in proc.stderr
  assert "does not divide the 1 devices" in proc.stderr
  assert "Traceback" not in proc.stderr and not workdir.exists()


def test_scan_layers_with_dropout_is_refused_by_the_config_check():
  """A scanned depth is one module with no RNG state carried between depths: dropout in training
  is named in the config check's one error, not met as a traceback inside the jitted step."""
  config = load_config("pretrain", "smoke")
  config.scan_layers = True
  check_config(config)
  config.model.drop_rate = 0.1
  config.model.drop_path_rate = 0.2
  with pytest.raises(
    Exception,
    match=r"scan_layers: needs no dropout in training, not model.drop_rate 0.1, model.drop_path_rate 0.2",
  ):
    check_config(config)
