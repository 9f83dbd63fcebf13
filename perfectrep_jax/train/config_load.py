"""Task configs on the command line: absl flags with ml_collections ``config_flags``.

``parse_config_flags`` parses ``--config FILE[:VARIANT] --config.KEY=VALUE ...`` and turns every
problem a user can cause (a missing or unreadable file, a syntax error, a config that raises, an
unknown variant, an override of a field that does not exist or with a value of the wrong type, an
unknown flag) into one ``UserError`` line naming the file or the flag. ``variants`` and
``help_text`` describe the configs in ``configs/`` for ``perfectrep-jax train --help``.
"""

from __future__ import annotations

import ast
import re
import sys
import traceback
from pathlib import Path

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import import_python_file
from perfectrep_jax.train.config_base import base_config

HELP_FLAGS = ("-h", "--help", "--helpfull", "--helpshort", "-?")
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.*)$")


def _config_spec(argv: list[str]) -> str | None:
  """The value of ``--config`` in ``argv`` (the last one, as absl takes it), or None."""
  spec = None
  for i, word in enumerate(argv):
    if word in ("--config", "-config") and i + 1 < len(argv):
      spec = argv[i + 1]
    elif word.startswith(("--config=", "-config=")):
      spec = word.split("=", 1)[1]
  return spec


def _one_line(text: str) -> str:
  return " ".join(str(text).split())


def _strip_type(message: str) -> str:
  """'ValueError: unknown variant' -> 'unknown variant' (the type says nothing to a user)."""
  m = _EXC_LINE.match(message.strip())
  return m.group(2) if m and m.group(1) in ("ValueError", "TypeError", "KeyError") else message


def _line_in(file: str, frames) -> str:
  """' (line N)' of the innermost traceback frame in ``file``, or ''."""
  lines = [f.lineno for f in frames if Path(f.filename).resolve() == Path(file).resolve()]
  return f" (line {lines[-1]})" if lines else ""


def _unknown_field(e: KeyError, argv: list[str]) -> str:
  """ml_collections' KeyError for ``--config.optim.lrr=1``: "'lrr'\\nDid you mean "lr" ...?"."""
  text = str(e.args[0]) if e.args else ""
  first, _, hint = text.partition("\n")
  key = first.strip("'\"")
  flags = [w.split("=", 1)[0] for w in argv if w.startswith("--config.")]
  named = [f for f in flags if key in f[len("--config.") :].split(".")]
  where = named[-1] if named else f"--config.{key}"
  hint = f"; {hint.strip()[0].lower()}{hint.strip()[1:]}" if hint.strip() else ""
  return f"{where}: no such config field {key!r}{hint}"


def _from_flag_error(message: str, spec: str | None) -> str:
  """absl's message for a flag; config files that raise come wrapped with their traceback."""
  if "Error whilst parsing config file" not in message:
    return _one_line(message)
  lines = [ln for ln in message.splitlines() if ln.strip()]
  last = lines[-1].strip()
  name = re.escape(Path((spec or "").split(":", 1)[0]).name)
  where = [m.group(1) for ln in lines if (m := re.search(rf'File "(?:.*/)?{name}", line (\d+)', ln))]
  # A ValueError is how get_config says "unknown variant": its own message is the whole story.
  line = f" (line {where[-1]})" if where and not last.startswith("ValueError:") else ""
  return f"{spec}: {_strip_type(last)}{line}"


def _load_error(spec: str | None, e: Exception) -> str:
  """What a config file raised while loading, with its line in that file."""
  file = (spec or "").split(":", 1)[0]
  if isinstance(e, AttributeError) and "attribute 'get_config'" in str(e):
    return f"{file}: defines no get_config(variant) returning a ConfigDict"
  line = _line_in(file, traceback.extract_tb(e.__traceback__)) if file else ""
  return f"{spec}: cannot load the config{line}: {type(e).__name__}: {_one_line(e)}"


def parse_config_flags(values, argv: list[str], holder):
  """Parses ``argv`` (program name first) into the absl ``values``; returns the config or None.

  Args:
    values: the ``absl.flags.FlagValues`` holding a ``config_flags.DEFINE_config_file`` flag.
    argv: the words to parse, the program's name first.
    holder: what ``DEFINE_config_file`` returned.
  Raises:
    UserError: one line for any problem of the config file, its variant or the overrides.
  """
  import ml_collections
  from absl import flags

  spec = _config_spec(argv[1:])
  if spec is not None:
    file = spec.split(":", 1)[0]
    if not file:
      raise UserError(f"--config {spec!r}: give a config file, e.g. configs/pretrain.py:demo")
    if not Path(file).is_file():
      raise UserError(
        f"{file}: no such config file"
        + ("" if Path(file).suffix == ".py" else " (a config is a .py file with get_config)")
      )
  # ml_collections loads the file with SourceFileLoader.load_module under "<flag>_config", which
  # re-executes into a module already in sys.modules: a second parse in one process (tests, sweeps)
  # would keep the first file's get_config when the second defines none.
  sys.modules.pop(f"{holder.name}_config", None)
  try:
    values.unparse_flags()
    values(argv)
  except flags.Error as e:
    raise UserError(_from_flag_error(str(e), spec)) from None
  except (KeyError, AttributeError) as e:
    missing = e if isinstance(e, KeyError) else e.__context__
    overriding = any(
      f.name == "_parse" and "config_flags" in f.filename for f in traceback.extract_tb(e.__traceback__)
    )
    if overriding and isinstance(missing, KeyError):  # --config.KEY of a field that does not exist
      raise UserError(_unknown_field(missing, argv)) from None
    raise UserError(_load_error(spec, e)) from None
  except SyntaxError as e:
    raise UserError(f"{e.filename or spec}: syntax error, line {e.lineno}: {e.msg}") from None
  except Exception as e:  # noqa: BLE001  a config file is the user's Python: its error is theirs
    raise UserError(_load_error(spec, e)) from None
  config = holder.value
  if config is not None and not isinstance(config, ml_collections.ConfigDict):
    error = vars(config).get("_error")
    if isinstance(error, Exception):  # config_flags keeps a file it could not read as an error object
      last = [ln for ln in str(error).splitlines() if ln.strip()][-1].strip()
      raise UserError(f"{spec}: cannot read the config ({last})")
    raise UserError(f"{spec}: get_config() returned {type(config).__name__}, not a ConfigDict")
  return config


# ---------------------------------------------------------------------------- help
def configs_dir() -> Path | None:
  """``configs/`` of the current directory, else of the repository this package is in."""
  for path in (Path("configs"), Path(__file__).resolve().parents[2] / "configs"):
    if path.is_dir() and any(path.glob("*.py")):
      return path
  return None


def variants(path: Path) -> list[tuple[str, str]]:
  """(name, description) of each variant a config file's docstring lists under ``Variants``; the
  file is read, not run."""
  doc = ast.get_docstring(ast.parse(path.read_text())) or ""
  out: list[list[str]] = []
  inside = False
  for line in doc.splitlines():
    if line.startswith("Variants"):
      inside = True
    elif inside:
      m = re.match(r"^  ([A-Za-z_][\w-]*):\s+(.*)$", line)
      if m:
        out.append([m.group(1), m.group(2).strip()])
      elif out and line.startswith("   "):  # the description goes on
        out[-1][1] += " " + line.strip()
      else:
        break
  return [(name, text) for name, text in out]


def config_from_file(path: str | Path, variant: str | None = None):
  """``get_config(variant)`` of the config file at ``path`` (``get_config()`` without a variant),
  as ``--config PATH[:VARIANT]`` builds it before any ``--config.key=value``."""
  module = import_python_file(path, f"_perfectrep_config_{Path(path).stem}")
  return module.get_config(*([variant] if variant else []))


def _data_of(path: Path, variant: str) -> str:
  """``data.source`` of a config variant ('?' when the file cannot say)."""
  try:
    return str(config_from_file(path, variant).data.source or "?")
  except Exception:  # noqa: BLE001  help must print whatever a config file does
    return "?"


def _shorten(text: str, width: int) -> str:
  if len(text) <= width:
    return text
  return text[: width - 3].rsplit(" ", 1)[0].rstrip(",;:(") + "..."


def help_text(command: str, full: bool = False) -> str:
  """``perfectrep-jax train|eval|publish --help``: arguments, the config variants, examples."""
  what = {
    "train": "Trains and evaluates a task config in a run directory. Rerunning with the same "
    "--workdir resumes from its latest checkpoint.",
    "eval": "Evaluates a run directory's best checkpoint (best.json; or --step N) on the "
    "test split, and writes its tables and plots under WORKDIR/eval/.",
    "publish": "Writes a lifter run's best checkpoint (or --step N) as a model directory with its "
    "held-out figures, the feedback check and the uncertainty calibration in model.json "
    "(by default over the package's default lifter).",
  }[command]
  extra = {"eval": "[--step N] ", "publish": "[--step N] [--out DIR] "}.get(command, "")
  lines = [
    f"usage: perfectrep-jax {command} --config FILE.py[:VARIANT] --workdir DIR "
    f"{extra}[--config.KEY=VALUE ...]",
    "",
    what,
    "",
    "arguments:",
    "  --config FILE.py[:VARIANT]  task config: a Python file whose get_config(variant) returns a ConfigDict",
    "  --workdir DIR               run directory (config.json, model.json, checkpoints/, "
    "metrics.jsonl, best.json)",
  ]
  if command in ("eval", "publish"):
    lines.append("  --step N                    checkpoint step (default: the best, else the latest)")
  if command == "publish":
    lines.append(
      "  --out DIR                   model directory to write (default: perfectrep_jax/weights/lifter)"
    )
  lines += [
    "  --config.KEY=VALUE          override a config field, e.g. --config.optim.lr=1e-4 "
    "--config.batch_size=64",
    "  -h, --help                  this help; --helpfull also lists every config field",
    "",
  ]
  where = configs_dir()
  if where is None:
    lines.append(
      "config variants: no configs/ folder here or beside the package (the task "
      "configs are in the repository's configs/)"
    )
  else:
    lines.append(f"config variants (--config {where}/FILE.py:VARIANT):")
    found = [
      (f"{path.name}:{name}", f"[{_data_of(path, name)}] {text}")
      for path in sorted(where.glob("*.py"))
      for name, text in variants(path)
    ]
    width = max((len(spec) for spec, _ in found), default=0)
    lines += [f"  {spec:<{width}}  {_shorten(text, 96 - width)}" for spec, text in found]
    lines.append("  [data.source: the data each variant trains on; demo is the small bundled demo set]")
  example = "configs/pretrain.py:demo" if where is None else f"{where}/pretrain.py:demo"
  lines += ["", "examples:"]
  if command == "train":
    lines += [
      f"  perfectrep-jax train --config {example} --workdir runs/demo",
      f"  perfectrep-jax train --config {example} --workdir runs/demo-lr "
      "--config.optim.lr=5e-4 --config.total_steps=2000",
    ]
  elif command == "publish":
    lifter = "configs/lifter.py:default" if where is None else f"{where}/lifter.py:default"
    lines += [
      f"  perfectrep-jax publish --config {lifter} --workdir runs/lifter",
      f"  perfectrep-jax publish --config {lifter} --workdir runs/lifter --out models/my-lifter",
    ]
  else:
    lines += [
      f"  perfectrep-jax eval --config {example} --workdir runs/demo",
      f"  perfectrep-jax eval --config {example} --workdir runs/demo --step 500",
    ]
  if full:
    lines += [
      "",
      "config fields (--config.KEY=VALUE; defaults of the base config, which each variant changes):",
    ]
    lines += [f"  {key} = {value!r}" for key, value in _flatten(base_config("pretrain"))]
  return "\n".join(lines)


def _flatten(config, prefix: str = ""):
  import ml_collections

  for key in config.keys():
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      yield from _flatten(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value
