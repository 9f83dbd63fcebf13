"""What every clip dataset builder shares: the features, the config, cutting into examples.

A builder only says how to read its raw files into ``sequences.Sequence`` objects (one per
subject x action x camera); this base class cuts them with ``ClipSource`` rules and writes
``array_record`` files. Example features follow the data contract (see ``sequences.clip_example``).
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from perfectrep_jax.data.sequences import Sequence, clip_example, sequence_rng
from perfectrep_jax.data import clips
from perfectrep_jax.errors import UserError
from perfectrep_jax.interop.safe_pickle import load_npz_array

FILE_FORMAT = "array_record"
SEED = 0  # resampling of sequences shorter than a clip


@dataclasses.dataclass(eq=False, kw_only=True)
class ClipConfig(tfds.core.BuilderConfig):
  """Clip length and strides of a dataset variant.

  Attributes:
    clip_len: frames per clip (upstream: 243).
    train_stride: frames between clip starts in the train split (upstream: 81).
    test_stride: same in the test split (upstream: the clip length, no overlap).
  """

  clip_len: int = 243
  train_stride: int = 81
  test_stride: int = 243

  def stride(self, split: str) -> int:
    return self.train_stride if split == "train" else self.test_stride


def clip_configs(config: type[ClipConfig] = ClipConfig, note: str = "") -> list[ClipConfig]:
  """The two variants of a dataset with no other choices: ``clip243`` (stride 81 train / 243 test,
  upstream's) and ``clip81`` (27 / 81); ``note`` ends the first's description."""
  return [
    config(name="clip243", description=f"243-frame clips, stride 81 (train) / 243 (test){note}."),
    config(
      name="clip81",
      description="81-frame clips, stride 27 / 81.",
      clip_len=81,
      train_stride=27,
      test_stride=81,
    ),
  ]


def clip_features(clip_len: int) -> tfds.features.FeaturesDict:
  """The features of one clip example (T = ``clip_len``)."""
  t = clip_len
  return tfds.features.FeaturesDict(
    {
      "input_2d": tfds.features.Tensor(shape=(t, 17, 3), dtype=np.float32),
      "target_3d": tfds.features.Tensor(shape=(t, 17, 3), dtype=np.float32),
      "scale_mm": tfds.features.Tensor(shape=(t,), dtype=np.float32),
      "frame_index": tfds.features.Tensor(shape=(t,), dtype=np.int32),
      "resolution": tfds.features.Tensor(shape=(2,), dtype=np.int32),
      "correct": tfds.features.Tensor(shape=(), dtype=np.int32),
      "source": tfds.features.Text(),
      "subject": tfds.features.Text(),
      "action": tfds.features.Text(),
      "camera": tfds.features.Text(),
      "reps": tfds.features.Text(),
    }
  )


FEATURE_DOC = """Each example is one clip: `input_2d` (T, 17, 3) x, y in the screen frame [-1, 1]
(`p / w * 2 - [1, h / w]`) and confidence; `target_3d` (T, 17, 3) the 2.5D pose in the same frame,
depth scaled like x and y and relative to the first frame's root; `scale_mm` (T,) millimetres per
normalised unit (root-relative mm = (pose - pose[:, :1]) * scale_mm); `frame_index` (T,);
`resolution` (w, h); `correct` (1, 0, -1 unknown); `source`, `subject`, `action`, `camera`;
`reps` (JSON repetition annotation of the whole sequence, '' if none). Joints: Human3.6M-17."""


class ClipBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the clip builders: subclasses implement ``iter_sequences``."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  SPLITS: tuple[str, ...] = ("train", "test")
  DESCRIPTION = ""
  HOMEPAGE = ""
  CITATION = ""

  def __init__(self, *, file_format: str | None = None, **kwargs):
    super().__init__(file_format=file_format or FILE_FORMAT, **kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This builder's source file. TFDS's own lookup needs the ``importlib_resources``
    backport for builders inside an installed package; the answer is the same."""
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=f"{self.DESCRIPTION}\n\n{FEATURE_DOC}",
      features=clip_features(self.builder_config.clip_len),
      homepage=self.HOMEPAGE or None,
      citation=self.CITATION or None,
    )

  def _split_generators(self, dl_manager):
    root = self._manual_root(dl_manager)
    return {split: self._generate_examples(split, root) for split in self.SPLITS}

  def _manual_root(self, dl_manager) -> Path | None:
    """The manual directory, or ``None`` for builders without manual data."""
    if not getattr(self, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
      return None
    try:
      return Path(dl_manager.manual_dir)
    except AssertionError as e:
      raise UserError(f"{self.name}: {str(e).splitlines()[0]} (see MANUAL_DOWNLOAD_INSTRUCTIONS)") from None

  @abc.abstractmethod
  def iter_sequences(self, split: str, root: Path | None) -> Iterator[Sequence]:
    """Yields the normalised sequences of a split from the raw files under ``root`` (each
    dataset's builder says how its raw files are laid out)."""

  def _generate_examples(self, split: str, root: Path | None):
    config = self.builder_config
    for seq in self.iter_sequences(split, root):
      rng = sequence_rng(SEED, seq.source)
      for k, frames in enumerate(clips.sequence_clips(len(seq), config.clip_len, config.stride(split), rng)):
        yield f"{seq.source}/{k:05d}", clip_example(seq, frames)


def read_npz_dict(path: Path, key: str) -> dict:
  """A pickled dict stored under ``key`` in an ``.npz`` (VideoPose3D / P-STMO files).

  These files hold Python objects; they are unpickled with an allow-list (dicts, lists, tuples,
  strings, numbers, numpy arrays), as checkpoints are: any other object is refused in one line,
  never constructed (``interop.safe_pickle.load_npz_array``).
  """
  value = load_npz_array(path, key)
  return value.item() if value.dtype == object and value.shape == () else value


def millimetres_per_unit(points: np.ndarray) -> float:
  """1000 when a skeleton looks metric (median pelvis-thorax distance under 5 units), else 1.

  Args:
    points: (N, 17, 3) in H36M order, metres or millimetres.
  """
  points = np.asarray(points, np.float64)
  if not len(points):
    return 1.0
  torso = float(np.median(np.linalg.norm(points[:, 8] - points[:, 0], axis=-1)))
  return 1000.0 if torso < 5.0 else 1.0
