"""Every fenced command of README.md and the folder READMEs, checked against the code.

Fast (every run): each command is either understood here or listed in ``SKIP`` with a reason; a
``perfectrep-jax`` command's arguments parse with the CLI's own parser, its config variant and sweep
exist; a path into the repository that a command names exists; every extra an install line names
is in pyproject.toml; a Python block compiles.

Slow (``-m slow``): the commands that can run here run as written, from the repository root, with
their placeholders replaced by this test's small files (``runs/demo``: a small random lifter;
``squat.mp4``: opencv-doc's vtest.avi; ``my_detector``: a file of keypoint lines; cluster paths:
folders under a temporary directory; ``sbatch`` and ``gcloud``: stand-ins that record their
arguments; training: the ``smoke`` variant).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READMES = [
  "README.md",
  "tfds-builders/README.md",
  "launch/README.md",
  "benchmarks/README.md",
  "examples/README.md",
]
COMMAND_WORDS = (
  "perfectrep-jax",
  "python",
  "pip",
  "tfds",
  "launch/",
  "sbatch",
  "gcloud",
  "for ",
  "PROCESSES=",
  "CPU_DEVICES=",
  "my_detector",
  "nice ",
)

# Commands that cannot run here, by a pattern of their text: keep short, each with its reason.
SKIP = [
  (r"^pip install", "installs packages (the extras it names are checked against pyproject.toml)"),
  (r"^python -m pytest", "runs the test suite"),
  (
    r"^python -m venv ",
    "makes an environment and installs into it (its extra is checked against pyproject.toml)",
  ),
  (r"^(sbatch|gcloud) ", "needs a SLURM cluster or a TPU pod (tests/launch runs SLURM on localhost)"),
  (r"launch/local\.sh", "trains on every local device (tests/launch/test_launchers.py runs it)"),
  (r"^for s in .*h36m|h36m_detectors:data_dir=/data", "needs Human3.6M"),
  (r"^perfectrep-jax sweep demo_lr_depth --workdir \S+\s*(#.*)?$", "trains the whole grid (hours here)"),
  (r"^(nice -n \d+ )?python benchmarks/", "times or compiles the models for minutes (tests/benchmarks)"),
  (r"^tfds build", "needs TensorFlow, Apache Beam and mlcroissant (tests/data/test_tfds_cli.py)"),
  (r"DATASET\[/CONFIG\]|\s\[--", "the command's syntax (optional parts in brackets), not a command"),
  (r"--format tflite", "needs the litert extra in its own environment (README: Exporting a lifter)"),
  (r"^ruff format \. && ruff check \.$", "rewrites the tree; tests/test_style.py checks it, unchanged"),
]


# ---------------------------------------------------------------------------- extraction
def fenced_blocks(path: Path) -> list[tuple[str, str]]:
  """``[(language, text)]`` of the fenced blocks of a markdown file."""
  return [(m.group(1), m.group(2)) for m in re.finditer(r"(?ms)^```(\w*)\n(.*?)^```", path.read_text())]


def logical_lines(text: str) -> list[str]:
  """Shell lines of a block: continuations joined, quotes spanning lines joined, ``for ... done``
  loops kept whole, comment lines dropped."""
  out, current = [], ""
  for line in text.splitlines():
    if not current and (not line.strip() or line.lstrip().startswith("#")):
      continue
    if not current and out and line.startswith((" ", "\t")):  # an indented run-on of the line before
      out[-1] = f"{out[-1]} {line.strip()}"
      continue
    current = f"{current} {line.strip()}" if current else line.strip()
    if current.endswith("\\"):
      current = current[:-1].rstrip()
      continue
    try:
      shlex.split(current, comments=True)
    except ValueError:  # a quote still open
      continue
    if current.startswith("for ") and not re.search(r"\bdone\b", current):
      continue
    out.append(current)
    current = ""
  assert not current, f"unfinished shell line: {current!r}"
  return out


def commands() -> list[tuple[str, str]]:
  """``[(readme, command line)]`` of every shell block (an untagged block counts when all its
  lines start like commands: the layout block does not)."""
  found = []
  for name in READMES:
    path = REPO / name
    if not path.is_file():
      continue
    for lang, text in fenced_blocks(path):
      if lang not in ("bash", "sh", ""):
        continue
      raw = [line for line in text.splitlines() if line.strip() and not line.startswith((" ", "#"))]
      if lang == "" and not all(line.startswith(COMMAND_WORDS) for line in raw):
        continue
      lines = logical_lines(text)
      for line in lines:  # `pip install ... && CMD`: the install, then the command
        first, sep, rest = line.partition(" && ")
        found += (
          [(name, first), (name, rest)]
          if sep and first.startswith("pip install") and not rest.startswith("pip install")
          else [(name, line)]
        )
  return found


def python_blocks() -> list[tuple[str, str]]:
  return [
    (name, text)
    for name in READMES
    if (REPO / name).is_file()
    for lang, text in fenced_blocks(REPO / name)
    if lang == "python"
  ]


def skip_reason(line: str) -> str | None:
  return next((reason for pattern, reason in SKIP if re.search(pattern, line)), None)


def parts(line: str) -> list[list[str]]:
  """The simple commands of a line (split at ``&&``, ``|``, ``;``, redirections dropped)."""
  lex = shlex.shlex(line, posix=True, punctuation_chars=True)
  lex.whitespace_split = True
  lex.commenters = "#"
  out, cur, skip_next = [], [], False
  for tok in lex:
    if skip_next:
      skip_next = False
      continue
    if tok in ("&&", "|", ";", "||"):
      out.append(cur)
      cur = []
    elif tok in (">", "<", ">>"):
      skip_next = True
    else:
      cur.append(tok)
  out.append(cur)
  for c in out:  # `nice -n 10 CMD`, `VAR=value CMD`: the command is CMD
    if c[:2] == ["nice", "-n"]:
      del c[:3]
    while c and re.match(r"^[A-Z_]+=", c[0]):
      del c[0]
  return [c for c in out if c]


ALL = commands()


def _id(item):
  return f"{item[0]}: {item[1][:60]}"


# ---------------------------------------------------------------------------- fast checks
def test_the_readmes_have_commands():
  assert len(ALL) > 20 and {name for name, _ in ALL} >= {"README.md", "launch/README.md"}


def _check_perfectrep_command(argv: list[str]) -> None:
  from perfectrep_jax import cli
  from perfectrep_jax.train.config_load import config_from_file

  parser = cli.build_parser()
  sub = argv[0]
  if sub in cli.DELEGATED and sub not in ("train", "eval"):
    return  # its own flag parser; nothing here to check it against
  if sub in cli.DELEGATED:  # absl flags: the config and its variant must load
    flags = dict(a.split("=", 1) if "=" in a else (a, None) for a in argv[1:] if a.startswith("--"))
    spec = argv[argv.index("--config") + 1] if "--config" in argv else flags.get("--config")
    assert spec, f"{sub} without --config"
    file, _, variant = spec.partition(":")
    assert (REPO / file).is_file(), f"{file}: no such config"
    config_from_file(REPO / file, variant or None)
    return
  try:
    parser.parse_args(argv)
  except SystemExit as e:
    raise AssertionError(f"perfectrep-jax {shlex.join(argv)}: the CLI refuses these arguments") from e
  if sub == "sweep":
    name = argv[1].split(":")[0]
    assert (REPO / "configs" / "sweeps" / f"{name}.py").is_file(), f"no sweep {name}"


REPO_PATH = re.compile(r"^(configs|launch|examples|benchmarks|tests|tfds-builders)/[\w./-]*[\w/]$")


@pytest.mark.parametrize("item", ALL, ids=_id)
def test_each_command_fits_the_code_or_says_why_it_cannot_run(item):
  name, line = item
  for argv in parts(line):  # skipped or not, its arguments must fit the CLI
    if argv[0] == "perfectrep-jax" and not re.search(r"DATASET\[|\s\[--", line):
      _check_perfectrep_command(argv[1:])
  if skip_reason(line) is None:
    for argv in parts(line):
      if argv[0] == "perfectrep-jax":
        continue
      elif argv[0] == "python" and len(argv) > 1 and argv[1].endswith(".py"):
        assert (REPO / argv[1]).is_file(), f"{argv[1]}: no such script"
      elif argv[0] not in ("my_detector", "bash", "cat"):
        raise AssertionError(
          f"{name}: `{line}` is neither understood by this test nor in its SKIP "
          "list (add it there, with the reason it cannot run here)"
        )
  for argv in parts(line):  # what a command names in the repository exists, skipped or not
    for tok in argv:
      path = tok.split(":")[0] if tok.startswith("configs/") else tok
      if (
        REPO_PATH.match(path)
        and "DIR" not in path
        and "<" not in path
        and path != "examples/squat_vitpose.json"
      ):
        assert (REPO / path).exists(), f"{name}: `{line}` names {path}, which does not exist"


def test_every_extra_the_readmes_name_is_defined():
  defined = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
  named = set()
  for name in READMES + [".ci/run"]:
    if (REPO / name).is_file():
      for group in re.findall(r"\.\[([\w,-]+)\]", (REPO / name).read_text()):
        named.update(group.split(","))
  assert named and named <= defined, f"extras named but not defined: {sorted(named - defined)}"


@pytest.mark.parametrize("item", python_blocks(), ids=_id)
def test_python_blocks_compile(item):
  compile(item[1], item[0], "exec")


# ---------------------------------------------------------------------------- slow: run them
def _need(what: str):
  if os.environ.get("CI"):
    pytest.fail(f"{what} (CI installs it)")
  pytest.skip(what)


@pytest.fixture(scope="module")
def place(tmp_path_factory):
  """The test's small files, and the substitutions that put them in the commands."""
  from perfectrep_jax.models import model_dir
  from perfectrep_jax.models.dstformer import DSTformerConfig

  tmp = tmp_path_factory.mktemp("readme")
  cfg = DSTformerConfig(dim_feat=16, dim_rep=16, depth=1, num_heads=2, mlp_ratio=2, maxlen=27)
  model_dir.save_model_dir(tmp / "runs" / "demo", model_dir.build_model("lifter", cfg, seed=0))
  # keypoint lines for `stream`: a standing person swaying, COCO-17 pixels
  base = [
    (960, 300),
    (970, 290),
    (950, 290),
    (985, 295),
    (935, 295),
    (1010, 380),
    (910, 380),
    (1030, 470),
    (890, 470),
    (1040, 550),
    (880, 550),
    (990, 560),
    (930, 560),
    (995, 700),
    (925, 700),
    (1000, 840),
    (920, 840),
  ]
  lines = []
  for t in range(40):
    dy = 40 * (1 - abs((t % 20) - 10) / 10)
    kp = [[x, y + dy * (i >= 5), 0.9] for i, (x, y) in enumerate(base)]
    lines.append(f'{{"frame": {t}, "keypoints": {kp}}}')
  (tmp / "keypoints.jsonl").write_text("\n".join(lines) + "\n")
  bin_dir = tmp / "bin"
  bin_dir.mkdir()
  for tool in ("sbatch", "gcloud"):  # stand-ins: record what they were asked
    (bin_dir / tool).write_text(f'#!/bin/bash\necho "{tool} $*" >> "{tmp}/calls.log"\n')
    (bin_dir / tool).chmod(0o755)
  subs = [
    (
      r"configs/pretrain\.py:demo --workdir runs/demo",
      f"configs/pretrain.py:smoke --workdir {tmp}/runs/trained",
    ),
    (r"(?<![\w/])runs/", f"{tmp}/runs/"),
    (r"(?<![\w/])(out|exported)/", rf"{tmp}/\1/"),
    (r"(/mnt)?/shared/runs/", f"{tmp}/shared/runs/"),
    (r"--checkpoint DIR", f"--checkpoint {tmp}/runs/demo"),
    (r"(?<![\w/])(squat\.mp4|squat_2d\.json|keypoints\.jsonl|motion\.jsonl|runs\.sh)", rf"{tmp}/\1"),
    (r"^my_detector", f"cat {tmp}/keypoints.jsonl"),
  ]
  return {"tmp": tmp, "subs": subs, "bin": bin_dir}


def _video(place) -> None:
  """squat.mp4: opencv-doc's vtest.avi (real footage), and MediaPipe with its model."""
  if not (place["tmp"] / "squat.mp4").exists():
    dirs = (os.environ.get("OPENCV_DOC_DATA", ""), "/usr/share/doc/opencv-doc/examples/data")
    found = [Path(d) / "vtest.avi" for d in dirs if d and (Path(d) / "vtest.avi").is_file()]
    if not found:
      _need("opencv-doc's vtest.avi not found")
    if importlib.util.find_spec("mediapipe") is None:
      _need("the video extra (mediapipe) is not installed")
    (place["tmp"] / "squat.mp4").symlink_to(found[0])


@pytest.mark.slow
@pytest.mark.parametrize("readme", READMES)
def test_the_commands_that_can_run_here_run(readme, place):
  lines = [line for name, line in ALL if name == readme]
  if not lines:
    pytest.skip(f"{readme} has no commands")
  env = dict(
    os.environ,
    PATH=f"{place['bin']}:{Path(sys.executable).parent}:{os.environ['PATH']}",
    PERFECTREP_JAX_NO_REEXEC="1",
  )
  ran, failures = 0, []
  for line in lines:
    if skip_reason(line):
      continue
    if "squat.mp4" in line:
      _video(place)
    if "--format onnx" in line and importlib.util.find_spec("onnxruntime") is None:
      _need("the deploy extra (onnxruntime) is not installed")
    command = line
    for pattern, replacement in place["subs"]:
      command = re.sub(pattern, replacement, command)
    proc = subprocess.run(
      ["bash", "-o", "pipefail", "-c", command],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=900,
    )
    ran += 1
    if proc.returncode != 0:
      failures.append(f"`{line}` (run as `{command}`) exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
  assert not failures, "\n".join(failures)
  if ran == 0:
    pytest.skip(f"every command of {readme} is in SKIP (see the fast test for why)")


@pytest.mark.slow
def test_the_python_snippets_run(tmp_path):
  """tfds-builders/README.md's custom Human3.6M config, on tiny files in the layout it reads."""
  import numpy as np

  from perfectrep_jax.fileio import import_python_file

  builders = import_python_file(REPO / "tests" / "data" / "test_builders.py", "readme_builders")
  h36m_world = builders.h36m_world

  raw = tmp_path / "raw" / "h36m"
  raw.mkdir(parents=True)
  positions = {"S1": {"Walking 1": h36m_world(30, 0)}, "S9": {"Sitting": h36m_world(12, 200)}}
  np.savez(raw / "data_3d_h36m.npz", positions_3d=positions)
  rng = np.random.default_rng(0)
  for det in ("cpn_ft_h36m_dbb", "sh_ft_h36m"):
    det_pos = {
      s: {
        a: [
          np.concatenate([rng.uniform(0, 1000, (len(p), 17, 2)), rng.uniform(0.2, 1, (len(p), 17, 1))], -1)
          for _ in range(4)
        ]
        for a, p in acts.items()
      }
      for s, acts in positions.items()
    }
    np.savez(raw / f"data_2d_h36m_{det}.npz", positions_2d=det_pos, metadata={"layout_name": "h36m"})
  for name, text in python_blocks():
    code = text.replace('"raw/h36m"', repr(str(raw))).replace('"data"', repr(str(tmp_path / "data")))
    proc = subprocess.run(
      [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{name}: {proc.stderr[-2000:]}"
  assert list((tmp_path / "data" / "h36m" / "cpn_sh").glob("*/*.array_record*"))
