"""``perfectrep-jax prepare DATASET``: run a TFDS builder into ``array_record`` files."""

from __future__ import annotations

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


def prepare(dataset: str, manual_dir: str | None, data_dir: str, *, config=None,
            progress: bool = True) -> dict:
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
            raise UserError(f"manual directory {path} is empty")
        download_config = tfds.download.DownloadConfig(manual_dir=str(path))
    check_sources = getattr(builder, "check_sources", None)
    if check_sources is not None and not already:
        check_sources()  # raw data readable before TFDS creates any folder
    start = time.perf_counter()
    if not already:
        tfds.display_progress_bar(progress)  # TFDS's tqdm bars: examples per split, shuffling
        builder.download_and_prepare(download_config=download_config)
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

