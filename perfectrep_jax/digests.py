"""SHA-256 digests of what a checkpoint saved, checked before it is restored.

orbax checks the structure of what it reads (shapes, dtypes) but not the bytes of the arrays (its
only checksum, zarr3's crc32c, covers a shard's index, not its data), so flipped bytes in the
weights would load silently. Once a step is committed, :func:`write` records the SHA-256 of every
file under ``checkpoints/<step>/`` in ``checkpoints/<step>/digest.json`` (removed with its step);
:func:`verify` recomputes them before a restore and says which file differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from perfectrep_jax.fileio import atomic_write_bytes

DIGEST_FILE = "digest.json"


def _sha256(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      h.update(chunk)
  return h.hexdigest()


def _files(step_dir: Path, items: tuple[str, ...] | None = None) -> list[Path]:
  roots = [step_dir / item for item in items] if items else [step_dir]
  return sorted(
    p for root in roots if root.exists() for p in root.rglob("*") if p.is_file() and p.name != DIGEST_FILE
  )


def write(step_dir: str | Path, items: tuple[str, ...]) -> Path:
  """Records the digest of every file of a committed step's ``items`` (``digest.json`` in it;
  orbax's own metadata files beside the items are left out: it may rewrite them)."""
  step_dir = Path(step_dir)
  files = {str(p.relative_to(step_dir)): _sha256(p) for p in _files(step_dir, items)}
  return atomic_write_bytes(
    step_dir / DIGEST_FILE, (json.dumps({"algorithm": "sha256", "files": files}, indent=1) + "\n").encode()
  )


def has_digest(step_dir: str | Path) -> bool:
  return (Path(step_dir) / DIGEST_FILE).is_file()


def verify(step_dir: str | Path, items: tuple[str, ...] | None = None) -> str | None:
  """Checks a step's files against its ``digest.json``.

  Args:
    items: only the files under these item directories (e.g. ``("model",)``); all by default.
  Returns:
    ``None`` when they match or the step has no digest (saved before digests were written), else
    one line saying what differs (a changed or missing file, or an unreadable digest).
  """
  step_dir = Path(step_dir)
  path = step_dir / DIGEST_FILE
  if not path.is_file():
    return None
  try:
    recorded = json.loads(path.read_text())["files"]
    if not isinstance(recorded, dict):
      raise TypeError
  except (OSError, ValueError, KeyError, TypeError):
    return f"{path} is unreadable"
  if items:
    recorded = {k: v for k, v in recorded.items() if k.split("/", 1)[0] in items}
  present = {str(p.relative_to(step_dir)): p for p in _files(step_dir, items)}
  for name, digest in sorted(recorded.items()):
    if name not in present:
      return f"{name} is missing"
    if _sha256(present[name]) != digest:
      return f"{name} does not match its SHA-256 digest (the file changed after it was saved)"
  return None
