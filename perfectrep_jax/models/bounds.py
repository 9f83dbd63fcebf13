"""Bounds of a model config, checked before anything is allocated: a model.json or a config
override cannot ask for a model this process could never build. Shared by every model's config,
with their common reading from and writing to ``model.json``'s dict (``ModelConfig``)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

MAX_WIDTH = 1 << 16
MAX_DEPTH = 1024
MAX_JOINTS = 4096
MAX_MAXLEN = 1 << 20
MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32 weights (MotionBERT's largest: 42 million)


def short_repr(value: Any, limit: int = 60) -> str:
  """``value`` for an error message: its repr when short and plain, else its type."""
  text = (
    repr(value)
    if isinstance(value, (int, float, str, bool, type(None), list))
    else (f"a {type(value).__name__}")
  )
  return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(name: str, value: Any, low: int, high: int) -> None:
  """``value`` is an integer (not a bool) in [low, high], or a ValueError names the field."""
  if not isinstance(value, int) or isinstance(value, bool):
    raise ValueError(f"{name} must be an integer, got {short_repr(value)}")
  if not low <= value <= high:
    raise ValueError(f"{name} must be in {low}..{high}, got {short_repr(value)}")


def check_choice(name: str, value: Any, choices) -> None:
  """``value`` is one of ``choices``, or a ValueError names the field and what it may be."""
  if value not in choices:
    raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {short_repr(value)}")


def check_ints(config: Any, bounds: dict[str, tuple[int, int]]) -> None:
  """Each integer field of ``config`` named in ``bounds`` in its ``(low, high)`` (``check_int``)."""
  for name, (low, high) in bounds.items():
    check_int(name, getattr(config, name), low, high)


# The integer fields every model config has: what a clip is (channels in, joints, frames).
CLIP_BOUNDS = {"dim_in": (1, MAX_WIDTH), "num_joints": (1, MAX_JOINTS), "maxlen": (1, MAX_MAXLEN)}


def check_real(
  name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> None:
  """``value`` is a finite number in the range, or a ValueError names the field."""
  if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
    raise ValueError(f"{name} must be a finite number, got {short_repr(value)}")
  if value < low or value > high or (low_open and value == low) or (high_open and value == high):
    raise ValueError(
      f"{name} must be in {'(' if low_open else '['}{low}, {high}"
      f"{')' if high_open else ']'}, got {short_repr(value)}"
    )


def check_parameter_count(n: int, what: str) -> None:
  if n > MAX_PARAMETERS:
    raise ValueError(f"this {what} would have {n:,} parameters (more than {MAX_PARAMETERS:,})")


class ModelConfig:
  """What every model config dataclass shares: its ``model.json`` dict, written and read back.

  ``config_name`` names the config in errors, with its article (``"a DSTformer"``).
  """

  config_name: ClassVar[str] = "a model"

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)  # nested configs become dicts too

  @classmethod
  def from_dict(cls, d: dict[str, Any]):
    """The config of a mapping of its fields, refusing any other kind of value or a field it lacks."""
    return cls(**cls.checked_fields(d))

  @classmethod
  def checked_fields(cls, d: Any) -> dict[str, Any]:
    """``d`` as a dict of this config's fields, or a ValueError: not a mapping, or a field it lacks."""
    if not isinstance(d, dict):
      raise ValueError(f"{cls.config_name} config is a mapping of fields, not {type(d).__name__}")
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      name = cls.config_name.split(" ", 1)[1]
      raise ValueError(f"unknown {name} config fields: {short_repr(sorted(map(str, unknown)))}")
    return dict(d)


@dataclasses.dataclass(frozen=True)
class LifterConfig(ModelConfig):
  """What every lifter reads and writes: clips of shape (B, T <= maxlen, num_joints, dim_in) to
  (B, T, num_joints, dim_out); ``drop_rate`` is its dropout. The DSTformer and the MLP baseline
  take the same clips, so they are compared on the same data."""

  dim_in: int = 3
  dim_out: int = 3
  num_joints: int = 17
  maxlen: int = 243
  drop_rate: float = 0.0

  def check_clip(self, widths: dict[str, tuple[int, int]]) -> None:
    """The clip's integer fields (``CLIP_BOUNDS``), the given ``widths`` and the dropout rate."""
    check_ints(self, {**CLIP_BOUNDS, **widths})
    check_real("drop_rate", self.drop_rate, 0.0, 1.0, high_open=True)
