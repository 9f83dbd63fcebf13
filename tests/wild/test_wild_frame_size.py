"""detect reads an image's size from its header and refuses a huge one before decoding it."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from perfectrep_jax import cli
from perfectrep_jax.errors import UserError
from perfectrep_jax.wild import detect

cv2 = pytest.importorskip("cv2")


def _png_header_only(path, width: int, height: int) -> None:
  """A PNG that declares ``width`` x ``height`` RGB pixels and holds one scanline of them."""

  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  idat = zlib.compress(bytes(1 + 3 * min(width, 4096)))
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_a_huge_image_is_refused_from_its_header(tmp_path, monkeypatch, capsys):
  _png_header_only(tmp_path / "huge.png", 60000, 60000)
  assert (tmp_path / "huge.png").stat().st_size < 10_000

  def no_decoding(*_args, **_kwargs):
    raise AssertionError("the image was decoded")

  monkeypatch.setattr(cv2, "imread", no_decoding)
  with pytest.raises(
    UserError,
    match=r"huge.png: an image of 60000 x 60000 pixels; detect reads "
    r"frames of at most 134,217,728 pixels",
  ):
    with detect.open_source(tmp_path / "huge.png"):
      pass
  # the command: one line, exit 2, no output file (the model is never needed)
  monkeypatch.setattr(detect, "_mediapipe", lambda: (None, None, None))
  monkeypatch.setattr(detect, "ensure_pose_model", lambda path=None: tmp_path / "unused.task")
  status = cli.main(["detect", str(tmp_path / "huge.png"), "--out", str(tmp_path / "k.json")])
  err = capsys.readouterr().err
  assert status == 2 and len(err.strip().splitlines()) == 1 and "60000 x 60000" in err, err
  assert not (tmp_path / "k.json").exists()


def test_images_within_the_limit_still_decode(tmp_path):
  rgb = np.zeros((40, 60, 3), np.uint8)
  rgb[..., 0] = 255
  cv2.imwrite(str(tmp_path / "small.png"), rgb[..., ::-1])
  assert detect.image_header_size(tmp_path / "small.png") == (60, 40)
  with detect.open_source(tmp_path / "small.png") as (frames, fps, size, count):
    [frame] = list(frames)
  assert size == (60, 40) and count == 1 and frame[0, 0].tolist() == [255, 0, 0]
  (tmp_path / "notpng.png").write_bytes(b"not an image")  # left to OpenCV, which says so
  with pytest.raises(UserError, match="not a readable image"):
    with detect.open_source(tmp_path / "notpng.png"):
      pass
