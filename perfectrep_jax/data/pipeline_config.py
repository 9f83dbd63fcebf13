"""The input pipeline's settings: a plain dataclass, light to import.

``perfectrep_jax.data.pipeline`` reads them; the training configs (``train/config_base.py``) take
their ``data`` defaults from here, so the two never disagree.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """What the pipeline reads and how.

  Attributes:
    source: 'demo' (the demo mocap through fixed virtual cameras, cut in memory, nothing to
      prepare), 'mocap' (all the mocap of the data folder, a new virtual camera and
      detector-like 2D for every training clip: ``perfectrep_jax.data.mocap``) or a TFDS
      dataset 'NAME[/CONFIG]' prepared into ``data_dir`` (``perfectrep-jax prepare``).
    data_dir: TFDS data directory (TFDS sources only).
    split: 'train' or 'test'.
    batch_size: examples per batch in this process.
    seed: shuffling and augmentation seed.
    clip_len: frames per clip ('demo': any; TFDS: must match the prepared clips).
    stride: frames between clip starts ('demo' only; default clip_len // 3 train, clip_len test).
    shuffle: shuffle (reshuffled every epoch).
    num_epochs: passes over the data; None repeats forever.
    flip: random horizontal flip of input and target (p = 0.5).
    scale_range: (low, high) ratio of ``crop_scale_3d`` applied to the target (and the same map
      to the input's x, y), ``scale_mm`` updated; None: off.
    synthetic_2d: replace the 2D input by the target's x, y with confidence 1 (after the other
      augmentations), as upstream's ``synthetic`` / ``gt_2d``.
    film_noise: 'mocap' training clips: scale of the detector-like 2D noise (0: exact 2D).
    film_eval_noise: 'mocap' evaluation clips: the same for the fixed evaluation views.
    film_tilt_prob: 'mocap' training clips: how often the body is pitched and rolled.
    worker_count: grain worker processes (0: in this process).
    worker_buffer_size: batches each worker prepares ahead.
    read_threads: threads reading and augmenting examples.
    prefetch_buffer_size: examples read ahead by those threads.
  """

  source: str = "demo"
  data_dir: str | None = None
  split: str = "train"
  batch_size: int = 32
  seed: int = 0
  clip_len: int = 81
  stride: int | None = None
  shuffle: bool = True
  num_epochs: int | None = None
  flip: bool = True
  scale_range: tuple[float, float] | None = None
  synthetic_2d: bool = False
  film_noise: float = 1.0
  film_eval_noise: float = 0.0
  film_tilt_prob: float = 0.3
  worker_count: int = 0
  worker_buffer_size: int = 2
  read_threads: int = 4
  prefetch_buffer_size: int = 64

  def __post_init__(self):
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be positive, got {self.batch_size}")
    if self.clip_len < 1:
      raise ValueError(f"clip_len must be positive, got {self.clip_len}")
    if self.stride is not None and self.stride < 1:
      raise ValueError(f"stride must be positive or None, got {self.stride}")
    if self.num_epochs is not None and self.num_epochs < 1:
      raise ValueError(f"num_epochs must be positive or None, got {self.num_epochs}")

  @classmethod
  def from_config(cls, config, **overrides) -> PipelineConfig:
    """From a ``PipelineConfig``, ``ConfigDict`` or mapping; unknown keys are an error."""
    if isinstance(config, cls):
      items = dataclasses.asdict(config)
    elif config is None:
      items = {}
    else:
      items = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    items.update(overrides)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(items) - names)
    if unknown:
      raise ValueError(f"unknown pipeline settings {unknown}; known: {sorted(names)}")
    if isinstance(items.get("scale_range"), list):
      items["scale_range"] = tuple(items["scale_range"])
    return cls(**items)
