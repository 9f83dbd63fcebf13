"""Weights the project trains and ships: ``weights/lifter/``, the default lifter.

``perfectrep-jax infer``, ``stream`` and ``export-model`` use it when no ``--checkpoint`` is given.
It is a model directory (``model.json`` + ``params/``) written by ``perfectrep-jax publish`` from a
run of ``configs/lifter.py:default``; its ``model.json`` records the config, the data, the commit
and the held-out figures, and ``README.md`` beside it the licences of the data it learned from.
"""

from __future__ import annotations

from pathlib import Path

from perfectrep_jax.errors import UserError

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_LIFTER = WEIGHTS_DIR / "lifter"


def default_lifter() -> Path:
  """The shipped default lifter's model directory.

  Raises:
    UserError: this install has none (a checkout before the first ``publish``).
  """
  if not (DEFAULT_LIFTER / "model.json").is_file():
    raise UserError(
      f"no default lifter in this install ({DEFAULT_LIFTER}); give --checkpoint DIR, "
      "or train and publish one: perfectrep-jax train --config configs/lifter.py:default "
      "--workdir runs/lifter && perfectrep-jax publish --config configs/lifter.py:default "
      "--workdir runs/lifter"
    )
  return DEFAULT_LIFTER


def checkpoint_or_default(checkpoint: str | Path | None) -> Path:
  """``checkpoint`` when given (an explicit choice always wins), else the default lifter."""
  return Path(checkpoint) if checkpoint else default_lifter()
