"""Config sweeps: grids of overrides over one task config, and the runs they name.

A sweep file (``configs/sweeps/NAME.py``) defines ``get_sweep(arg=None)`` returning a ``Sweep``::

    from perfectrep_jax.sweeps.spec import Sweep, axis, product, zipped

    def get_sweep(arg=None):
      return Sweep(
          config="../pretrain.py:demo",             # relative to this file
          grid=product(axis("optim.lr", [1e-3, 5e-4]),
                       zipped(axis("model.depth", [3, 5]), axis("model.dim_feat", [64, 128]))),
          fixed={"total_steps": 1500})              # every run; not part of the run names

``product`` takes every combination (the last grid varies fastest), ``zipped`` pairs grids element
by element, ``chain`` concatenates them. Each grid point is one run, in the run directory
``WORKDIR/<name>`` named by its overrides (``run_name``: ``optim.lr=1e-3_model.depth=3``), and run
as ``perfectrep-jax train --config CONFIG --workdir WORKDIR/<name> --config.KEY=VALUE ...``.

``perfectrep-jax sweep`` (``launch.add_parser``) runs the runs one after another, writes their job
scripts for SLURM or their commands for a TPU pod (``launch``), or tabulates their results
(``summary``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from absl import flags
from ml_collections import config_flags

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import import_python_file
from perfectrep_jax.train.config_load import parse_config_flags

Grid = list[dict[str, Any]]

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SAFE = re.compile(r"[^A-Za-z0-9._,=+-]")
MAX_NAME = 120


# ---------------------------------------------------------------------------- grids
def axis(field: str, values: Iterable[Any]) -> Grid:
  """One config field taking each of ``values``: ``[{field: v} for v in values]``."""
  if not isinstance(field, str) or not _FIELD.match(field):
    raise ValueError(f"axis: {field!r} is not a dotted config field such as 'optim.lr'")
  values = list(values)
  if not values:
    raise ValueError(f"axis {field}: no values")
  return [{field: v} for v in values]


def _merge(points: Sequence[Mapping[str, Any]], where: str) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for point in points:
    for key, value in point.items():
      if key in out:
        raise ValueError(f"{where}: {key} is set by two of the combined grids")
      out[key] = value
  return out


def product(*grids: Sequence[Mapping[str, Any]]) -> Grid:
  """Every combination of one point from each grid (the last grid varies fastest)."""
  return [_merge(points, "product") for points in itertools.product(*grids)]


def zipped(*grids: Sequence[Mapping[str, Any]]) -> Grid:
  """The i-th points of all grids together; the grids must be equally long."""
  lengths = {len(g) for g in grids}
  if len(lengths) > 1:
    raise ValueError(f"zipped: grids of different lengths {[len(g) for g in grids]}")
  return [_merge(points, "zipped") for points in zip(*grids)]


def chain(*grids: Sequence[Mapping[str, Any]]) -> Grid:
  """The points of each grid, one grid after the other."""
  return [dict(point) for grid in grids for point in grid]


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A grid of overrides over one config.

  Attributes:
    config: ``FILE.py[:variant]``, relative to the sweep file (or absolute).
    grid: one mapping of overrides per run (``axis``/``product``/``zipped``/``chain``).
    fixed: overrides every run shares; they are not part of the run names.
  """

  config: str
  grid: Sequence[Mapping[str, Any]] = ({},)
  fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------- values and names
def _value_text(value: Any, float_text, sequence_text) -> str:
  """``value`` as text: floats through ``float_text``, lists and tuples through ``sequence_text``,
  everything else (bools, None, ints, strings) as ``str``."""
  if isinstance(value, float):
    return float_text(value)
  if isinstance(value, (list, tuple)):
    return sequence_text(value)
  return str(value)


def format_value(value: Any) -> str:
  """A value as ``--config.KEY=VALUE`` text that ml_collections parses back to the same value."""

  def sequence(values) -> str:
    inner = ", ".join(repr(v) if isinstance(v, str) else format_value(v) for v in values)
    return f"({inner}{',' if len(values) == 1 else ''})"

  return _value_text(value, repr, sequence)


def _short_float(value: float) -> str:
  """The shorter of the decimal and the compact scientific form: 0.0001 -> 1e-4, 0.5 -> 0.5."""
  if not math.isfinite(value):
    return repr(value)
  text = repr(value)
  mantissa, exponent = f"{value:e}".split("e")
  mantissa = mantissa.rstrip("0").rstrip(".")
  sci = f"{mantissa}e{int(exponent)}"
  return sci if len(sci) < len(text) else text


def short_value(value: Any) -> str:
  """A value as it appears in run names and tables: 0.0001 -> 1e-4, (1.0, 3.0) -> 1.0,3.0."""
  return _value_text(value, _short_float, lambda values: ",".join(short_value(v) for v in values))


def run_name(overrides: Mapping[str, Any]) -> str:
  """A stable, file-system-safe directory name for a run: ``key=value`` joined by ``_``.

  ``{"optim.lr": 0.0001, "model.depth": 3}`` -> ``optim.lr=1e-4_model.depth=3``. Characters other
  than letters, digits and ``. _ , = + -`` become ``-``; a name that had to be changed that way,
  or is longer than 120 characters, ends in ``~`` and 8 hex digits of a hash of the overrides, so
  distinct overrides keep distinct names. No overrides: ``base``.
  """
  if not overrides:
    return "base"
  raw = "_".join(f"{k}={short_value(v)}" for k, v in overrides.items())
  safe = _SAFE.sub("-", raw)
  if safe == raw and len(raw) <= MAX_NAME:
    return raw
  digest = hashlib.sha1(
    json.dumps([[k, format_value(v)] for k, v in overrides.items()]).encode()
  ).hexdigest()[:8]
  return f"{safe[: MAX_NAME - 9]}~{digest}"


def parse_arg(arg: str | None, **defaults: Any) -> dict[str, Any]:
  """A sweep file's ``:arg`` as ``key=value,key=value`` over typed defaults (big_vision's habit).

  Each value takes its default's type (bool from true/false/1/0; a tuple default splits its value
  on ``+``); a key without ``=value`` sets a bool to True.

  Raises:
    ValueError: an unknown key or a value of the wrong type (``load_sweep`` reports it as the
      sweep file's error).
  """
  out = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, has_value, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"unknown sweep argument {key!r}; known: {sorted(defaults)}")
    default = defaults[key]
    if isinstance(default, bool):
      if has_value and value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"{key} must be true or false, not {value!r}")
      out[key] = not has_value or value.lower() in ("true", "1")
    elif isinstance(default, tuple):
      out[key] = tuple(v for v in value.split("+") if v)
    else:
      out[key] = type(default)(value) if default is not None else value
  return out


# ---------------------------------------------------------------------------- runs
@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a sweep: its name, its named overrides and the flags of its train command."""

  name: str
  config: str  # FILE.py[:variant] as the train command gets it
  overrides: dict[str, Any]  # the grid point (named)
  fixed: dict[str, Any]  # shared by every run

  @property
  def flags(self) -> list[str]:
    """``--config.KEY=VALUE`` for the shared overrides, then the run's own."""
    return [f"--config.{k}={format_value(v)}" for k, v in {**self.fixed, **self.overrides}.items()]

  def train_args(self, workdir: str | Path) -> list[str]:
    """The words after ``perfectrep-jax train`` for this run in ``workdir`` (the run's own)."""
    return ["--config", self.config, "--workdir", str(workdir), *self.flags]


@dataclasses.dataclass(frozen=True)
class LoadedSweep:
  """A sweep file's ``Sweep`` with its config resolved and its runs expanded."""

  spec: str  # what the user named: PATH[:arg] or NAME[:arg]
  path: Path  # the sweep file
  config_file: Path  # absolute
  variant: str | None
  runs: tuple[Run, ...]

  def config_spec(self, relative_to: Path | None = None) -> str:
    """``FILE.py[:variant]``, relative to ``relative_to`` when the file lies under it."""
    path = self.config_file
    if relative_to is not None:
      try:
        path = path.relative_to(Path(relative_to).resolve())
      except ValueError:
        pass
    return f"{path}:{self.variant}" if self.variant is not None else str(path)


def _split_spec(spec: str) -> tuple[str, str | None]:
  """``path.py:arg`` or ``name:arg`` -> (file or name, ``arg``); ``arg`` may hold colons and
  slashes (``data_dir=/data``); the colon of a Windows drive is not a separator."""
  if ".py:" in spec:
    head, _, tail = spec.partition(".py:")
    return head + ".py", tail
  start = 2 if len(spec) > 2 and spec[1] == ":" and spec[0].isalpha() and spec[2] in "/\\" else 0
  colon = spec.find(":", start)
  if colon > 0 and not spec.endswith(".py"):
    return spec[:colon], spec[colon + 1 :]
  return spec, None


def find_sweep_file(name: str) -> Path:
  """A sweep file by path, or by name in ``configs/sweeps/`` of the current directory or of the
  repository this package is in."""
  candidates = [Path(name)]
  if not name.endswith(".py"):
    repo_sweeps = Path(__file__).resolve().parents[2] / "configs" / "sweeps"
    candidates += [Path("configs/sweeps") / f"{name}.py", repo_sweeps / f"{name}.py"]
  for path in candidates:
    if path.is_file():
      return path.resolve()
  tried = ", ".join(str(p) for p in candidates)
  raise UserError(f"sweep {name!r}: no such file (tried {tried})")


def load_sweep(spec: str) -> LoadedSweep:
  """Imports ``PATH[:arg]`` (or ``NAME[:arg]`` from ``configs/sweeps/``) and expands its runs."""
  name, arg = _split_spec(spec)
  path = find_sweep_file(name)
  if path.suffix != ".py":
    raise UserError(f"{path}: not a sweep file (a Python file defining get_sweep(arg=None))")
  try:
    module = import_python_file(path, f"_perfectrep_sweep_{path.stem}")
  except Exception as e:  # a user's Python file: any error is theirs
    raise UserError(f"{path}: cannot import the sweep file: {type(e).__name__}: {e}") from None
  get = getattr(module, "get_sweep", None)
  if get is None:
    raise UserError(f"{path}: defines no get_sweep(arg=None)")
  try:
    sweep = get(arg) if arg is not None else get()
  except (ValueError, TypeError, KeyError) as e:
    raise UserError(f"{path}: get_sweep({arg!r}): {e}") from None
  if not isinstance(sweep, Sweep):
    raise UserError(f"{path}: get_sweep() returned {type(sweep).__name__}, not a Sweep")
  return expand(sweep, path, spec)


def expand(sweep: Sweep, path: Path, spec: str = "") -> LoadedSweep:
  """Checks a ``Sweep`` and names its runs (in grid order)."""
  cfg_name, variant = _split_spec(sweep.config)
  config_file = (path.parent / cfg_name).resolve()
  if not config_file.is_file():
    raise UserError(f"{path}: config {sweep.config!r}: no such file {config_file}")
  fixed = dict(sweep.fixed)
  runs: list[Run] = []
  seen: dict[str, dict] = {}
  for point in sweep.grid:
    point = dict(point)
    bad = [k for k in (*point, *fixed) if not isinstance(k, str) or not _FIELD.match(k)]
    if bad:
      raise UserError(f"{path}: not dotted config fields: {bad}")
    both = sorted(set(point) & set(fixed))
    if both:
      raise UserError(f"{path}: {both} set both in the grid and in fixed")
    name = run_name(point)
    if name in seen:
      raise UserError(f"{path}: two runs named {name} ({seen[name]} and {point})")
    seen[name] = point
    runs.append(Run(name=name, config="", overrides=point, fixed=fixed))
  if not runs:
    raise UserError(f"{path}: the grid has no runs")
  loaded = LoadedSweep(spec=spec or str(path), path=path, config_file=config_file, variant=variant, runs=())
  config = loaded.config_spec(Path.cwd())
  return dataclasses.replace(loaded, runs=tuple(dataclasses.replace(r, config=config) for r in runs))


# ---------------------------------------------------------------------------- configs
def build_config(run: Run):
  """The run's config as ``perfectrep-jax train`` would build it (same flag parsing)."""
  argv = ["perfectrep-jax sweep", "--config", run.config, *run.flags]
  values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file(
    "config", None, "task config", flag_values=values, lock_config=True, sys_argv=argv
  )
  try:
    return parse_config_flags(values, argv, holder)
  except UserError as e:
    raise UserError(f"run {run.name}: {e}") from None


def check_runs(runs: Sequence[Run], *, mesh_devices: int | None | bool = True) -> list:
  """Builds and validates every run's config before anything runs; returns the configs.

  Args:
    mesh_devices: True checks the mesh against this machine's devices (local runs); an int
      against that many devices (the cluster's, for emitted jobs); None or False skips it.

  Raises:
    UserError: listing every run with a problem, and the problems.
  """
  # lazy on purpose: these bring jax, which perfectrep-jax's argument parser (it reads this module
  # for the sweep command, whatever the command) must not load
  from perfectrep_jax.train.config_check import check_config
  from perfectrep_jax.train.sharding import mesh_shape

  configs, problems = [], []
  for run in runs:
    try:
      config = build_config(run)
    except UserError as e:
      problems.append(str(e))
      continue
    configs.append(config)
    found: list[str] = []
    try:
      check_config(config)
    except UserError as e:
      found = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
    if mesh_devices is not True:  # the mesh is the cluster's business, not this machine's
      found = [p for p in found if not p.startswith("mesh")]
      if isinstance(mesh_devices, int) and not isinstance(mesh_devices, bool):
        try:
          mesh_shape(dict(config.mesh), mesh_devices)
        except UserError as e:
          found.append(f"mesh: {e}")
    problems += [f"run {run.name}: {p}" for p in found]
  if problems:
    raise UserError("invalid sweep:\n  " + "\n  ".join(problems))
  return configs


# ---------------------------------------------------------------------------- command line


STATE_FILE = "sweep.json"  # per run directory: what the sweep launched there and how it ended


def read_state(run_dir: Path) -> dict:
  try:
    return json.loads((Path(run_dir) / STATE_FILE).read_text())
  except (FileNotFoundError, json.JSONDecodeError):
    return {}


def write_state(run_dir: Path, state: dict) -> None:
  """Writes ``sweep.json`` through a temporary file (never half-written)."""
  run_dir = Path(run_dir)
  run_dir.mkdir(parents=True, exist_ok=True)
  tmp = run_dir / f".{STATE_FILE}.tmp"
  tmp.write_text(json.dumps(state, indent=2) + "\n")
  os.replace(tmp, run_dir / STATE_FILE)
