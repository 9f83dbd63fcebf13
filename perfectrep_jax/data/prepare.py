"""``perfectrep-jax prepare DATASET``: run a TFDS builder into ``array_record`` files."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import tensorflow_datasets as tfds

from perfectrep_jax.errors import UserError


def split_name(dataset: str) -> tuple[str, str | None]:
  """'h36m/cpn' -> ('h36m', 'cpn'); 'demo' -> ('demo', None)."""
  name, _, config = dataset.partition("/")
  return name, (config or None)


def make_builder(dataset: str, data_dir: str, config=None) -> tfds.core.DatasetBuilder:
  """The builder for 'NAME' or 'NAME/CONFIG' (or a ``BuilderConfig`` object) writing to ``data_dir``."""
  from perfectrep_jax.data.builders import BUILDERS

  name, config_name = split_name(dataset)
  if name not in BUILDERS:
    raise UserError(f"unknown dataset {name!r}; known: {', '.join(sorted(BUILDERS))}")
  cls = BUILDERS[name]
  if config is None and config_name is not None:
    known = [c.name for c in cls.BUILDER_CONFIGS]
    if config_name not in known:
      raise UserError(f"unknown config {config_name!r} of {name}; known: {', '.join(known)}")
    config = config_name
  return cls(config=config, data_dir=data_dir)


def manual_files(builder) -> str:
  """The raw files a builder reads from its manual directory, in one line.

  Taken from the indented layout lines of its ``MANUAL_DOWNLOAD_INSTRUCTIONS`` (first word of
  each); for Human3.6M, ``<detector>`` becomes the config's detectors (none for ground truth).
  """
  text = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None) or ""
  files = [m.group(1) for m in re.finditer(r"(?m)^ {2,}([^\s(][^\s]*)", text)]
  detectors = getattr(builder.builder_config, "detectors", None)
  if detectors is not None:
    expanded = []
    for f in files:
      if "<detector>" in f:
        expanded += [f.replace("<detector>", d) for d in detectors]
      else:
        expanded.append(f)
    files = expanded
  return ", ".join(files) if files else "the files its MANUAL_DOWNLOAD_INSTRUCTIONS name"


def _new_paths(builder, data_dir: str) -> list[Path]:
  """What a build may create in ``data_dir`` (outermost first), for removal after a failure."""
  root = Path(data_dir).expanduser()
  name_dir = root / builder.name
  config_dir = name_dir / builder.builder_config.name
  return [
    root,
    root / "downloads",
    name_dir,
    name_dir / ".config",
    config_dir,
    config_dir / str(builder.version),
  ]


def _entries(folders: list[Path]) -> dict[Path, set[str]]:
  return {f: {e.name for e in f.iterdir()} for f in folders if f.is_dir()}


def _remove_created(candidates: list[Path], existed: set[Path], entries: dict[Path, set[str]]) -> None:
  """Removes what a failed build created: folders that were not there before (with what TFDS put
  in them), and what it added to the folders of ``entries`` (``downloads/extracted``, TFDS's
  temporary version folders beside versions that were there)."""
  for folder, names in entries.items():
    for entry in folder.iterdir() if folder.is_dir() else ():
      if entry.name not in names:
        if entry.is_dir():
          shutil.rmtree(entry, ignore_errors=True)
        else:
          entry.unlink(missing_ok=True)
  for path in reversed(candidates):
    if path not in existed and path.exists():
      shutil.rmtree(path, ignore_errors=True)


def prepare(
  dataset: str, manual_dir: str | None, data_dir: str, *, config=None, progress: bool = True
) -> dict:
  """Builds a dataset (all its splits) into ``data_dir``; does nothing when already built.

  Args:
    dataset: 'demo', 'fit3d', 'h36m', 'mpi_inf_3dhp', optionally '/CONFIG' (e.g. 'h36m/cpn',
      'demo/clip27'); without one, the builder's first config.
    manual_dir: folder with the licensed raw files (``None`` for 'demo').
    data_dir: where TFDS writes ``NAME/CONFIG/VERSION/*.array_record``.
    config: a ``BuilderConfig`` object instead of a named one (e.g. a custom ``H36MConfig``).
    progress: show TFDS's progress bars (tqdm).
  Returns:
    summary: ``dataset`` (name/config), ``path``, ``version``, ``splits`` {split: clips},
    ``clip_len``, ``seconds``, ``already_prepared``.
  Raises:
    UserError: unknown dataset or config, missing or empty manual directory, missing or
      unreadable raw file.
  """
  builder = make_builder(dataset, data_dir, config)
  needs_manual = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
  already = builder.is_prepared()
  download_config = None
  if needs_manual and not already:
    if manual_dir is None:
      raise UserError(f"{builder.name} needs --manual-dir:\n{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    path = Path(manual_dir).expanduser()
    if not path.is_dir():
      raise UserError(f"manual directory {path} does not exist")
    if not any(path.iterdir()):
      raise UserError(
        f"manual directory {path} is empty; {builder.name}/{builder.builder_config.name} "
        f"reads {manual_files(builder)} from it"
      )
    download_config = tfds.download.DownloadConfig(manual_dir=str(path))
  check_sources = getattr(builder, "check_sources", None)
  if check_sources is not None and not already:
    check_sources()  # raw data readable before TFDS creates any folder
  start = time.perf_counter()
  if not already:
    tfds.display_progress_bar(progress)  # TFDS's tqdm bars: examples per split, shuffling
    candidates = _new_paths(builder, data_dir)
    existed = {p for p in candidates if p.exists()}
    entries = _entries([candidates[1], candidates[4]])  # downloads/, NAME/CONFIG/
    try:
      builder.download_and_prepare(download_config=download_config)
    except BaseException:  # a failed build leaves nothing behind: no downloads/, .config/, empty folders
      _remove_created(candidates, existed, entries)
      raise
  info = builder.info
  return {
    "dataset": f"{builder.name}/{builder.builder_config.name}",
    "path": str(builder.data_dir),
    "version": str(builder.version),
    "splits": {name: int(split.num_examples) for name, split in info.splits.items()},
    "clip_len": int(builder.builder_config.clip_len),
    "seconds": round(time.perf_counter() - start, 2),
    "already_prepared": already,
  }
