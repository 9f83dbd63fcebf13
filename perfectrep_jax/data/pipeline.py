"""grain input pipelines: clips -> shard by process -> shuffle -> augment -> batch -> prefetch.

Training::

    it = make_train_iterator(config)            # grain.DatasetIterator, endless unless num_epochs
    batch = next(it)                            # dict of numpy arrays, leading axis batch_size
    arrays = make_global_batch(batch, mesh, P(("data", "fsdp")))

The iterator's state goes into an orbax ``CheckpointManager`` next to the model::

    mngr.save(step, args=ocp.args.Composite(state=..., data=grain.checkpoint.CheckpointSave(it)))
    mngr.restore(step, args=ocp.args.Composite(state=..., data=grain.checkpoint.CheckpointRestore(it)))

and a restored iterator yields exactly the batches the original would have yielded next
(shuffling and augmentation draw from seeds and element positions only).

Evaluation: ``eval_dataset(config)`` goes over a split once, in order, unshuffled and
unaugmented; the last batches are padded with copies whose ``valid`` is False, so every process
gets the same number of equally shaped batches.

A batch holds every example field stacked (see ``sequences.clip_example``; strings as numpy
``str`` arrays) plus ``index`` (int64, position of the clip in its split, -1 for padding) and
``valid`` (bool).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import grain
import jax
import numpy as np

from perfectrep_jax.data import clips, mocap
from perfectrep_jax.data.pipeline_config import PipelineConfig
from perfectrep_jax.errors import UserError

STRING_FIELDS = ("source", "subject", "action", "camera", "reps")


# ----------------------------------------------------------------------------------- sources
def load_source(config: PipelineConfig):
  """The random-access clips of ``config.split`` (a grain data source).

  Raises:
    UserError: a TFDS dataset that is not prepared, or whose clips are not ``clip_len`` long.
  """
  if config.source == "demo":
    from perfectrep_jax.data.demo import demo_source

    return demo_source(config.split, config.clip_len, config.stride, 0)
  if config.source == "mocap":
    windows = mocap.mocap_clips(config.split, config.clip_len, config.stride)
    if config.split == "train":
      return windows  # filmed in ``train_dataset``, a new camera per clip and pass
    return mocap.FilmedClips(windows, mocap.FilmConfig(noise=config.film_eval_noise), mocap.EVAL_SEED)
  import tensorflow_datasets as tfds

  import perfectrep_jax.data.builders  # noqa: F401  (registers the builders)

  if config.data_dir is None:
    raise UserError(f"source {config.source!r} needs data_dir (where `perfectrep-jax prepare` wrote it)")
  try:
    builder = tfds.builder(config.source, data_dir=config.data_dir)
  except Exception as e:  # unknown name or config
    raise UserError(f"cannot open dataset {config.source!r}: {e}") from None
  if not builder.is_prepared():
    if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
      from perfectrep_jax.data.prepare import manual_files

      raise UserError(
        f"dataset {config.source!r} is not prepared in {config.data_dir}: run "
        f"`perfectrep-jax prepare {config.source} --manual-dir DIR --data-dir "
        f"{config.data_dir}`, DIR holding {manual_files(builder)}"
      )
    raise UserError(
      f"dataset {config.source!r} is not prepared in {config.data_dir}: run "
      f"`perfectrep-jax prepare {config.source} --data-dir {config.data_dir}`"
    )
  stored = builder.info.features["input_2d"].shape[0]
  if stored != config.clip_len:
    raise UserError(f"{config.source} holds clips of {stored} frames, the config asks for {config.clip_len}")
  if config.split not in builder.info.splits:
    raise UserError(f"{config.source} has no split {config.split!r} ({list(builder.info.splits)})")
  return builder.as_data_source(split=config.split)


class PaddedSource:
  """A source padded to ``length`` by copies of its first example marked invalid.

  Every example gains ``index`` (its position, -1 for padding) and ``valid``.
  """

  def __init__(self, source, length: int | None = None):
    self.source = source
    self.size = len(source)
    self.length = self.size if length is None else length
    if self.length < self.size or (self.size == 0 and self.length > 0):
      raise ValueError(f"cannot pad {self.size} examples to {self.length}")

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if index < self.size:
      example = dict(self.source[index])
      example["index"], example["valid"] = np.int64(index), np.bool_(True)
    else:
      example = dict(self.source[0])
      example["index"], example["valid"] = np.int64(-1), np.bool_(False)
    return example


# ----------------------------------------------------------------------------------- per example
def decode(example: Mapping) -> dict:
  """TFDS or in-memory example -> numpy fields (strings as ``str``, ``correct`` int32)."""
  out = {}
  for key, value in example.items():
    if isinstance(value, bytes):
      value = value.decode("utf-8")
    elif key == "correct":
      value = np.int32(value)
    out[key] = value
  return out


def augment(example: dict, rng: np.random.Generator, *, flip: bool, scale_range, synthetic_2d: bool) -> dict:
  """CPU augmentation of one clip (upstream ``Augmenter3D`` + the 2D it implies).

  Args:
    example: decoded example.
    rng: this element's Generator (grain derives it from the seed and the position).
    flip: flip input and target together with probability 0.5.
    scale_range: re-normalise the target with ``crop_scale_3d`` at a random ratio; the input's
      x, y (where confident) get the same map and ``scale_mm`` follows; None: off.
    synthetic_2d: input = target x, y with confidence 1.
  Returns:
    the example with new ``input_2d``, ``target_3d``, ``scale_mm``.
  """
  out = dict(example)
  target = np.asarray(out["target_3d"], np.float32)
  inputs = np.asarray(out["input_2d"], np.float32)
  if scale_range is not None:
    scaled, origin, side = clips.crop_scale_3d_affine(target, scale_range, rng)
    if side > 0:
      target = clips.first_root_depth_to_zero(scaled).astype(np.float32)
      if not synthetic_2d:  # (otherwise the input is replaced below)
        mapped = (inputs[..., :2] - origin.astype(np.float32)) * np.float32(2 / side) - 1
        inputs = inputs.copy()
        inputs[..., :2] = np.where(inputs[..., 2:3] > 0, mapped, inputs[..., :2])
      out["scale_mm"] = (np.asarray(out["scale_mm"], np.float64) * side / 2).astype(np.float32)
  if flip and rng.random() < 0.5:
    target = clips.flip_data(target)
    inputs = clips.flip_data(inputs)
  if synthetic_2d:
    inputs = np.concatenate([target[..., :2], np.ones(target.shape[:-1] + (1,), np.float32)], axis=-1)
  out["target_3d"], out["input_2d"] = target, inputs
  return out


def _synthetic_only(example: dict) -> dict:
  return augment(example, None, flip=False, scale_range=None, synthetic_2d=True)


# ----------------------------------------------------------------------------------- datasets
def _shard(ds: grain.MapDataset, shard: grain.sharding.ShardOptions) -> grain.MapDataset:
  """Every ``shard_count``-th example from ``shard_index`` (disjoint shares, union = all)."""
  n = len(ds)
  end = n - n % shard.shard_count if shard.drop_remainder else n
  return ds.slice(slice(shard.shard_index, end, shard.shard_count))


def train_dataset(config, shard: grain.sharding.ShardOptions | None = None, source=None) -> grain.IterDataset:
  """The training pipeline as a grain ``IterDataset``.

  Args:
    config: ``PipelineConfig`` (or ConfigDict / mapping of its fields).
    shard: which share this process reads; default ``ShardByJaxProcess(drop_remainder=True)``.
    source: a random-access source instead of ``load_source(config)`` (tests).
  """
  config = PipelineConfig.from_config(config)
  shard = shard or grain.sharding.ShardByJaxProcess(drop_remainder=True)
  source = load_source(config) if source is None else source
  ds = _shard(grain.MapDataset.source(PaddedSource(source)), shard)
  if len(ds) == 0:
    raise UserError(
      f"{config.source}/{config.split}: no clips for shard {shard.shard_index} of {shard.shard_count}"
    )
  ds = ds.seed(config.seed)
  if config.shuffle:
    ds = ds.shuffle()
  ds = ds.repeat(config.num_epochs).map(decode)
  if isinstance(source, mocap.MocapClips):
    film = mocap.FilmConfig(noise=config.film_noise, tilt_prob=config.film_tilt_prob)
    ds = ds.random_map(functools.partial(mocap.film_example, config=film))
  if config.flip or config.scale_range is not None or config.synthetic_2d:
    ds = ds.random_map(
      functools.partial(
        augment, flip=config.flip, scale_range=config.scale_range, synthetic_2d=config.synthetic_2d
      )
    )
  ds = ds.batch(config.batch_size, drop_remainder=True)
  it_ds = ds.to_iter_dataset(
    grain.ReadOptions(num_threads=config.read_threads, prefetch_buffer_size=config.prefetch_buffer_size)
  )
  if config.worker_count > 0:
    _absl_flags_parsed()
    it_ds = it_ds.mp_prefetch(
      grain.MultiprocessingOptions(
        num_workers=config.worker_count, per_worker_buffer_size=config.worker_buffer_size
      )
    )
  return it_ds


def _absl_flags_parsed() -> None:
  """grain's worker processes read absl flags; outside ``absl.app.run`` mark them parsed (defaults)."""
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def make_train_iterator(
  config, shard: grain.sharding.ShardOptions | None = None, source=None
) -> grain.DatasetIterator:
  """``iter(train_dataset(...))``: a checkpointable ``grain.DatasetIterator`` of batches."""
  return iter(train_dataset(config, shard, source))


def eval_dataset(
  config, split: str = "test", shard: grain.sharding.ShardOptions | None = None, source=None
) -> grain.MapDataset:
  """One ordered pass over a split: padded batches, ``valid`` marks the real examples.

  The split is padded to a multiple of ``batch_size * shard_count``, so every process gets
  ``len(result)`` batches of ``batch_size``; process k gets examples k, k + count, ... (read
  ``index`` to put results back in order). No shuffling, no augmentation except
  ``synthetic_2d``.
  """
  config = PipelineConfig.from_config(config, split=split)
  shard = shard or grain.sharding.ShardByJaxProcess()
  source = load_source(config) if source is None else source
  per_round = config.batch_size * shard.shard_count
  padded = -(-len(source) // per_round) * per_round
  ds = grain.MapDataset.source(PaddedSource(source, padded))
  ds = ds.slice(slice(shard.shard_index, None, shard.shard_count)).map(decode)
  if config.synthetic_2d:
    ds = ds.map(_synthetic_only)
  return ds.batch(config.batch_size, drop_remainder=False)


# ----------------------------------------------------------------------------------- device
def make_global_batch(
  local_batch: Mapping, mesh: jax.sharding.Mesh, pspec: jax.sharding.PartitionSpec
) -> dict:
  """Process-local numpy batch -> global ``jax.Array``s sharded on ``mesh``.

  Every numeric field is split along its leading (batch) axis by ``pspec`` (trailing axes
  replicated); the global batch is the concatenation of all processes' local batches. String
  fields are left out: they stay in the local batch (match them through ``index``).

  Args:
    local_batch: dict of (B_local, ...) numpy arrays.
    mesh: the device mesh.
    pspec: partition of the batch axis, e.g. ``P(("data", "fsdp"))``.
  Returns:
    dict of global ``jax.Array`` with leading axis B_local * process_count.
  """
  sharding = jax.sharding.NamedSharding(mesh, pspec)
  out = {}
  for key, value in local_batch.items():
    value = np.asarray(value)
    if value.dtype.kind in "biuf":
      out[key] = jax.make_array_from_process_local_data(sharding, value)
  return out
