"""The bundled demo data as a TFDS dataset: real mocap seen through virtual cameras.

Nothing to download: the motion is read from the data folder (``../shared`` beside the checkout or
``$PERFECTREP_JAX_DATA``; see ``perfectrep_jax.data.demo`` for the cameras and the split by
performer). Writing it as ``array_record`` gives the main job the same
input path as the licensed datasets; ``perfectrep_jax.data.demo.demo_source`` gives the same clips
in memory without preparing anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from perfectrep_jax.data import demo
from perfectrep_jax.data.builders.common import ClipBuilder, ClipConfig
from perfectrep_jax.data.sequences import Sequence


class Demo(ClipBuilder):
  """Demo clips (array_record) from the UI-PRMD and CMU motion capture of the data folder."""

  name = "demo"
  BUILDER_CONFIGS = [
    ClipConfig(
      name="clip81",
      clip_len=81,
      train_stride=27,
      test_stride=81,
      description="81-frame clips (1.6 s at 50 fps), stride 27 / 81.",
    ),
    ClipConfig(
      name="clip27",
      clip_len=27,
      train_stride=9,
      test_stride=27,
      description="27-frame clips, stride 9 / 27 (fast CPU training).",
    ),
    ClipConfig(
      name="clip243",
      clip_len=243,
      train_stride=81,
      test_stride=243,
      description="243-frame clips, stride 81 / 243 (the upstream clip length).",
    ),
  ]
  DESCRIPTION = (
    "Real optical motion capture (UI-PRMD rehabilitation exercises, PDDL 1.0; CMU Graphics Lab "
    "Motion Capture Database, mocap.cs.cmu.edu, funded by NSF EIA-0196217) filmed by virtual "
    "1000x1000 pinhole cameras: 4 views per training take, 2 per test take; train = UI-PRMD "
    "s01-s08 + CMU, test = UI-PRMD s09, s10."
  )
  HOMEPAGE = "https://webpages.uidaho.edu/ui-prmd/"
  CITATION = """@article{vakanski2018uiprmd, title={A Data Set of Human Body Movements for Physical
Rehabilitation Exercises}, author={Vakanski, Aleksandar and Jun, Hyung-pil and Paul, David and Baker, Russell},
journal={Data}, volume={3}, number={1}, pages={2}, year={2018}}"""

  def check_sources(self) -> None:
    """Reads the motion before TFDS starts writing (a missing data folder is one line)."""
    demo.load_takes()

  def iter_sequences(self, split: str, root: Path | None) -> Iterator[Sequence]:
    yield from demo.demo_sequences(split)
