"""Readers for 2D keypoint files from pose detectors, person tracks, and the lifter's input.

Formats (found from the content, not the file name):

- **ViTPose / easy_ViTPose** JSON: ``{"keypoints": [frame, ...], ...}``; a frame is a dict
  ``{person_id: [[y, x, score] * K]}`` (easy_ViTPose), a list of persons, one person's
  ``[[., ., score] * K]`` or a flat list of ``3K`` numbers (PerfectRep's upstream reader). easy_ViTPose
  writes **(y, x, score)**, which upstream swaps back; ``coords="auto"`` does the same for this
  format (pass ``coords="xy"`` for files written in x, y order).
- **AlphaPose** JSON: a list of detections ``{"image_id", "keypoints": [x, y, score] * K, "score",
  "box", "idx"}``; ``idx`` is the track id when AlphaPose tracked people (PoseFlow or
  ``--pose_track``). The frame is the number in ``image_id`` (``"17.jpg"`` -> 17).
- **MMPose** JSON (``mmpose`` inferencer): a list of ``{"frame_id", "instances": [{"keypoints":
  [[x, y] * K], "keypoint_scores": [K]}]}``.
- **.npy**: ``(T, 17, 2|3)`` for one person or ``(P, T, 17, 2|3)`` for several, COCO-17 order
  (``joint_order="h36m"`` for Human3.6M order); without a third channel the confidence is 1 and
  NaN coordinates count as missing.

Skeletons: COCO-17 (K = 17) and everything whose first 17 keypoints are COCO-17: Halpe-26 and
Halpe-136 (AlphaPose), COCO-WholeBody-133 and easy_ViTPose's coco_25. They are mapped to
Human3.6M-17 with :func:`perfectrep_jax.skeleton.coco_to_h36m`, as the lifter was trained.

People: detections with ids keep them; without ids, detections are linked frame to frame by the
Hungarian algorithm on the mean joint distance (relative to the person's size). A missing
detection or joint gets confidence 0 and a position interpolated from the nearest frames where it
was seen, so the lifter gets a complete input; nothing crashes on holes.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import load_json
from perfectrep_jax.skeleton import COCO_JOINTS, PARENTS, coco_to_h36m

NUM_COCO = len(COCO_JOINTS)
# Keypoint counts whose first 17 keypoints are COCO-17.
COCO_PREFIXED = {17: "coco17", 25: "coco25", 26: "halpe26", 133: "coco_wholebody133", 136: "halpe136"}
# A detection whose mean normalised joint distance to a track's last pose exceeds this starts a new track.
LINK_MAX_COST = 0.6
# A track not seen for this many frames cannot be continued.
LINK_MAX_GAP = 30
# Frame numbers are the file's word: a gap longer than this many frames (nobody in any of them) is
# shortened to this many, so a file whose frames are 0 and 100,000,000 does not become a
# 100-million-frame recording; the file's ``notes`` say where. Frame numbers beyond this are refused.
MAX_FRAME_GAP = 300
MAX_FRAME_NUMBER = 2**53


@dataclasses.dataclass
class Track:
  """One person over the whole file.

  Attributes:
    id: the detector's id, or ``"t<k>"`` for a track made by linking.
    coco: (T, 17, 3) COCO-17 x, y (pixels) and confidence (Human3.6M order for an npy file read
      with ``joint_order="h36m"``); NaN x, y and 0 confidence where absent.
    present: (T,) frames where the person was detected.
  """

  id: str
  coco: np.ndarray
  present: np.ndarray

  @property
  def num_detected(self) -> int:
    return int(self.present.sum())

  def sizes(self) -> np.ndarray:
    """(T,) diagonal of the box around the confident keypoints (NaN where absent)."""
    out = np.full(len(self.present), np.nan)
    for t in np.nonzero(self.present)[0]:
      ok = self.coco[t, :, 2] > 0
      if ok.sum() >= 2:
        xy = self.coco[t, ok, :2]
        out[t] = float(np.linalg.norm(xy.max(axis=0) - xy.min(axis=0)))
    return out


@dataclasses.dataclass
class KeypointFile:
  """What a keypoint file holds.

  Attributes:
    path: the file.
    format: 'vitpose', 'alphapose', 'mmpose' or 'npy'.
    skeleton: the detector's skeleton ('coco17', 'halpe26', ..., 'h36m17' for H36M-order npy).
    frame_ids: (T,) the detector's frame numbers (consecutive, frames nobody was seen in
      included, except that a gap longer than :data:`MAX_FRAME_GAP` frames is shortened to that).
    tracks: the people, most detected first.
    notes: what the reader changed, for the user (the gaps it shortened).
  """

  path: Path
  format: str
  skeleton: str
  frame_ids: np.ndarray
  tracks: list[Track]
  notes: list[str] = dataclasses.field(default_factory=list)

  @property
  def num_frames(self) -> int:
    return len(self.frame_ids)


# ----------------------------------------------------------------------------- parsing helpers


def coco_keypoints(values) -> np.ndarray:
  """One person's keypoints as (17, 3) float64 COCO x, y, score, from any COCO-prefixed skeleton.

  ``values``: (K, 3) or (K, 2) (score 1) nested lists or an array, or the K * 3 flat triplets
  MMPose and AlphaPose write, K one of ``COCO_PREFIXED`` (trimmed to the first 17).

  Raises:
      ValueError: the shape or skeleton is not one of those (the message names which).
  """
  try:
    a = np.asarray(values, dtype=np.float64)
  except (TypeError, ValueError):
    raise ValueError("keypoints are not a list of numbers") from None
  if a.ndim == 1:
    if a.size % 3:
      raise ValueError(f"{a.size} numbers is not a list of (x, y, score) triplets")
    a = a.reshape(-1, 3)
  if a.ndim != 2 or a.shape[1] not in (2, 3):
    raise ValueError(f"keypoints of shape {a.shape}, expected (K, 3) or (K, 2)")
  if a.shape[0] not in COCO_PREFIXED:
    raise ValueError(
      f"{a.shape[0]} keypoints per person; supported are "
      + ", ".join(f"{k} ({v})" for k, v in COCO_PREFIXED.items())
    )
  if a.shape[1] == 2:
    a = np.concatenate([a, np.ones((a.shape[0], 1))], axis=1)
  return a[:NUM_COCO].copy()


def _as_keypoints(values, where: str, coords: str) -> np.ndarray:
  """``coco_keypoints`` of one detection in a file; errors name ``where``; ``coords`` 'yx' swaps."""
  try:
    a = coco_keypoints(values)
  except ValueError as e:
    raise UserError(f"{where}: {e}") from None
  if coords == "yx":
    a[:, :2] = a[:, 1::-1]
  return a


def _skeleton_name(k: int) -> str:
  return COCO_PREFIXED.get(k, f"{k} keypoints")


def _frame_number(image_id, fallback: int) -> int:
  if isinstance(image_id, (int, np.integer)):
    return int(image_id)
  if isinstance(image_id, float) and image_id.is_integer():
    return int(image_id)
  digits = re.findall(r"\d+", Path(str(image_id)).stem)
  return int(digits[-1]) if digits else fallback


def _frame_id(value, where: str) -> int:
  """A frame number from a file (an integer, or a float without a fraction), bounded."""
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise UserError(f"{where}: frame number {str(value)[:40]!r} is not a number")
  if isinstance(value, (float, np.floating)) and not (np.isfinite(value) and float(value).is_integer()):
    raise UserError(f"{where}: frame number {value!r} is not a whole number")
  if abs(value) > MAX_FRAME_NUMBER:
    raise UserError(
      f"{where}: frame number {str(value)[:40]}... is out of range (at most {MAX_FRAME_NUMBER})"
    )
  return int(value)


def _timeline(ids, where: str) -> tuple[np.ndarray, dict[int, int], list[str]]:
  """The frames of a file whose frames carry numbers: every frame between the first and the last,
  except that a gap of more than :data:`MAX_FRAME_GAP` frames nobody was seen in is shortened to
  that many (memory stays bounded by the number of frames in the file, not by its numbers).

  Returns:
    ``(frame_ids, row, notes)``: (T,) int64 frame numbers, frame number -> row, and one note per
    shortened gap.
  """
  seen = sorted(set(ids))
  if not seen:
    return np.zeros(0, np.int64), {}, []
  parts, notes = [np.array([seen[0]], np.int64)], []
  for a, b in zip(seen[:-1], seen[1:]):
    if b - a - 1 > MAX_FRAME_GAP:
      parts.append(np.arange(a + 1, a + 1 + MAX_FRAME_GAP, dtype=np.int64))
      notes.append(
        f"{where}: no frame between {a} and {b} ({b - a - 1} frames); the gap is "
        f"shortened to {MAX_FRAME_GAP} empty frames"
      )
    else:
      parts.append(np.arange(a + 1, b, dtype=np.int64))
    parts.append(np.array([b], np.int64))
  frame_ids = np.concatenate(parts)
  row = {int(f): i for i, f in enumerate(frame_ids)}
  return frame_ids, {f: row[f] for f in seen}, notes


def _track_id(idx) -> str | None:
  if idx is None:
    return None
  if isinstance(idx, (list, tuple)):
    return _track_id(idx[0]) if idx else None
  if isinstance(idx, float) and idx.is_integer():
    idx = int(idx)
  return str(idx)


# A frame's detections: list of (id or None, (17, 3) COCO keypoints).
Frames = list[list[tuple[str | None, np.ndarray]]]


def _parse_vitpose(doc: dict, where: str, coords: str) -> tuple[Frames, str]:
  frames: Frames = []
  k_seen = 17
  for t, frame in enumerate(doc["keypoints"]):
    w = f"{where}: frame {t}"
    dets = []
    if frame is None or (hasattr(frame, "__len__") and len(frame) == 0):
      pass
    elif isinstance(frame, dict):
      for pid, kp in frame.items():
        dets.append((str(pid), _as_keypoints(kp, f"{w}, person {pid}", coords)))
        k_seen = _raw_count(kp)
    else:
      arr = np.asarray(frame, dtype=object)
      depth = np.asarray(frame, dtype=np.float64).ndim if _is_numeric(frame) else 0
      if depth == 3:  # list of persons, each (K, 3)
        for kp in frame:
          dets.append((None, _as_keypoints(kp, w, coords)))
          k_seen = _raw_count(kp)
      elif depth in (1, 2):  # one person
        dets.append((None, _as_keypoints(frame, w, coords)))
        k_seen = _raw_count(frame)
      else:
        raise UserError(
          f"{w}: cannot read keypoints of type {type(frame).__name__} ({arr.shape if arr.ndim else 'scalar'})"
        )
    frames.append(dets)
  return frames, _skeleton_name(k_seen)


def _raw_count(values) -> int:
  """Keypoints in one detection as the file holds it (flat triplets or rows)."""
  a = np.asarray(values, np.float64)
  return a.size // 3 if a.ndim == 1 else a.shape[0]


def _is_numeric(x) -> bool:
  try:
    np.asarray(x, dtype=np.float64)
    return True
  except (ValueError, TypeError):
    return False


def _parse_alphapose(doc: list, where: str, coords: str) -> tuple[Frames, str, np.ndarray, list[str]]:
  order = {}
  for i, det in enumerate(doc):
    if not isinstance(det, dict) or "keypoints" not in det:
      raise UserError(f"{where}: detection {i} has no 'keypoints'")
    key = det.get("image_id", i)
    if isinstance(key, (list, dict)):
      raise UserError(f"{where}: detection {i} has an image_id of type {type(key).__name__}")
    if key not in order:
      try:
        number = _frame_number(key, len(order))
      except ValueError:  # more digits than int() reads
        raise UserError(
          f"{where}: detection {i}: image_id {str(key)[:40]!r}... holds a frame number out of range"
        ) from None
      order[key] = _frame_id(number, f"{where}: detection {i}")
  frame_ids, row, notes = _timeline(order.values(), where)
  frames: Frames = [[] for _ in frame_ids]
  k_seen = 17
  for i, det in enumerate(doc):
    kp = det["keypoints"]
    t = row[order[det.get("image_id", i)]]
    frames[t].append((_track_id(det.get("idx")), _as_keypoints(kp, f"{where}: detection {i}", coords)))
    k_seen = _raw_count(kp)
  return frames, _skeleton_name(k_seen), frame_ids, notes


def _parse_mmpose(doc: list, where: str, coords: str) -> tuple[Frames, str, np.ndarray, list[str]]:
  if not all(isinstance(f, dict) for f in doc):
    raise UserError(f"{where}: an MMPose file is a list of frames, each a dict with 'instances'")
  ids = [_frame_id(f.get("frame_id", i), f"{where}: frame {i}") for i, f in enumerate(doc)]
  frame_ids, row, notes = _timeline(ids, where)
  frames: Frames = [[] for _ in frame_ids]
  k_seen = 17
  for f, fid in zip(doc, ids):
    for j, inst in enumerate(f.get("instances", [])):
      w = f"{where}: frame {fid}, instance {j}"
      xy = np.asarray(inst.get("keypoints", []), np.float64)
      scores = np.asarray(inst.get("keypoint_scores", np.ones(len(xy))), np.float64)
      if xy.ndim != 2 or len(scores) != len(xy):
        raise UserError(f"{w}: keypoints {xy.shape} and scores {scores.shape} do not match")
      k_seen = len(xy)
      tid = _track_id(inst.get("track_id", inst.get("id")))
      frames[row[fid]].append((tid, _as_keypoints(np.concatenate([xy, scores[:, None]], 1), w, coords)))
  return frames, _skeleton_name(k_seen), frame_ids, notes


# ----------------------------------------------------------------------------- tracks


def _normalised_distance(a: np.ndarray, b: np.ndarray) -> float:
  """Mean distance between the joints confident in both (17, 3) poses over b's size; inf if none."""
  ok = (a[:, 2] > 0) & (b[:, 2] > 0) & np.isfinite(a[:, 0]) & np.isfinite(b[:, 0])
  if ok.sum() < 2:
    return np.inf
  xy = b[ok, :2]
  size = max(float(np.linalg.norm(xy.max(axis=0) - xy.min(axis=0))), 1e-6)
  return float(np.mean(np.linalg.norm(a[ok, :2] - b[ok, :2], axis=-1)) / size)


def link_detections(frames: Frames) -> list[list[int]]:
  """Assigns detections without ids to tracks, frame by frame (Hungarian on joint distance).

  A detection joins the track whose last pose is closest (mean joint distance over the person's
  size, at most :data:`LINK_MAX_COST`, last seen at most :data:`LINK_MAX_GAP` frames ago);
  otherwise it starts a new track.

  Returns:
    per frame, the track number of each detection.
  """
  last_pose: list[np.ndarray] = []
  last_seen: list[int] = []
  out = []
  for t, dets in enumerate(frames):
    alive = [k for k in range(len(last_pose)) if t - last_seen[k] <= LINK_MAX_GAP]
    assign = [-1] * len(dets)
    if dets and alive:
      cost = np.array([[_normalised_distance(last_pose[k], kp) for k in alive] for _, kp in dets])
      big = 1e6
      rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, big))
      for r, c in zip(rows, cols):
        if cost[r, c] <= LINK_MAX_COST:
          assign[r] = alive[c]
    for i, (_, kp) in enumerate(dets):
      if assign[i] < 0:
        assign[i] = len(last_pose)
        last_pose.append(kp)
        last_seen.append(t)
      else:
        last_pose[assign[i]] = kp
        last_seen[assign[i]] = t
    out.append(assign)
  return out


def _build_tracks(frames: Frames) -> list[Track]:
  """Tracks from per-frame detections: by id when every detection has one, else by linking."""
  t_total = len(frames)
  have_ids = all(pid is not None for dets in frames for pid, _ in dets)
  unique_per_frame = all(len({pid for pid, _ in dets}) == len(dets) for dets in frames)
  if have_ids and unique_per_frame:
    labels = [[pid for pid, _ in dets] for dets in frames]
  else:
    labels = [[f"t{k}" for k in row] for row in link_detections(frames)]
  ids = []
  for row in labels:
    for pid in row:
      if pid not in ids:
        ids.append(pid)
  tracks = []
  for pid in ids:
    coco = np.full((t_total, NUM_COCO, 3), np.nan)
    coco[..., 2] = 0.0
    present = np.zeros(t_total, bool)
    for t, (dets, row) in enumerate(zip(frames, labels)):
      for (_, kp), lab in zip(dets, row):
        if lab == pid:
          coco[t] = kp
          present[t] = True
    tracks.append(Track(str(pid), coco, present))
  tracks.sort(key=lambda tr: -tr.num_detected)
  return tracks


# ----------------------------------------------------------------------------- reading


def _read_npy(path: Path, joint_order: str) -> KeypointFile:
  try:
    a = np.load(path, allow_pickle=False)
  except (ValueError, OSError) as e:
    raise UserError(f"{path}: not a readable .npy array ({e})") from e
  if not np.issubdtype(a.dtype, np.number):
    raise UserError(f"{path}: expected numbers, got an array of {a.dtype}")
  if a.ndim == 3:
    a = a[None]
  if a.ndim != 4 or a.shape[2] != NUM_COCO or a.shape[3] not in (2, 3):
    raise UserError(
      f"{path}: expected keypoints of shape (frames, 17, 2 or 3) or (people, frames, 17, 2 or 3), "
      f"got {a.shape}"
    )
  if a.shape[1] == 0:
    raise UserError(f"{path}: the file holds no frames")
  a = a.astype(np.float64)
  if a.shape[3] == 2:
    a = np.concatenate([a, np.ones(a.shape[:3] + (1,))], axis=-1)
  tracks = []
  for p, person in enumerate(a):
    person = person.copy()
    bad = ~np.isfinite(person).all(axis=-1)
    person[bad, 2] = 0.0
    person[bad, :2] = np.nan
    person[..., 2] = np.clip(np.nan_to_num(person[..., 2]), 0.0, None)
    present = (person[..., 2] > 0).any(axis=-1)
    tracks.append(Track(str(p), person, present))
  tracks.sort(key=lambda tr: -tr.num_detected)
  return KeypointFile(
    path, "npy", "h36m17" if joint_order == "h36m" else "coco17", np.arange(a.shape[1]), tracks
  )


def read_keypoints(path: str | Path, *, coords: str = "auto", joint_order: str = "coco") -> KeypointFile:
  """Reads a keypoint file (see the module docstring for the formats).

  Args:
    path: a ``.json`` or ``.npy`` file.
    coords: 'auto' (ViTPose JSON in easy_ViTPose's (y, x) order, everything else (x, y)), 'xy'
      or 'yx'.
    joint_order: for ``.npy`` only: 'coco' (default) or 'h36m'.
  Raises:
    UserError: missing, empty or unreadable file, unknown layout, unsupported keypoint count,
      or no person in any frame; the message names the file and the problem.
  """
  path = Path(path)
  if coords not in ("auto", "xy", "yx"):
    raise ValueError(f"coords must be 'auto', 'xy' or 'yx', got {coords!r}")
  if joint_order not in ("coco", "h36m"):
    raise ValueError(f"joint_order must be 'coco' or 'h36m', got {joint_order!r}")
  if not path.is_file():
    raise UserError(f"{path}: keypoint file not found")
  if path.stat().st_size == 0:
    raise UserError(f"{path}: the file is empty")
  if path.suffix.lower() == ".npy":
    kf = _read_npy(path, joint_order)
  else:
    doc = load_json(path)  # any problem with the text (a 5000-digit number too): one line
    if isinstance(doc, dict) and "keypoints" in doc and isinstance(doc["keypoints"], list):
      frames, skel = _parse_vitpose(doc, str(path), "yx" if coords == "auto" else coords)
      kf = KeypointFile(path, "vitpose", skel, np.arange(len(frames)), _build_tracks(frames))
    elif isinstance(doc, list) and doc and isinstance(doc[0], dict) and "instances" in doc[0]:
      frames, skel, ids, notes = _parse_mmpose(doc, str(path), "xy" if coords == "auto" else coords)
      kf = KeypointFile(path, "mmpose", skel, ids, _build_tracks(frames), notes)
    elif isinstance(doc, list) and all(isinstance(d, dict) for d in doc) and doc:
      frames, skel, ids, notes = _parse_alphapose(doc, str(path), "xy" if coords == "auto" else coords)
      kf = KeypointFile(path, "alphapose", skel, ids, _build_tracks(frames), notes)
    elif isinstance(doc, list) and not doc or isinstance(doc, dict) and not doc:
      raise UserError(f"{path}: no person detected (the file holds no detections)")
    else:
      raise UserError(
        f"{path}: unknown keypoint layout; expected ViTPose/easy_ViTPose "
        "({'keypoints': [...]}), AlphaPose (a list of detections with 'keypoints' and "
        "'image_id') or MMPose (a list of frames with 'instances')"
      )
  kf.tracks = [tr for tr in kf.tracks if tr.num_detected > 0]
  if not kf.tracks:
    raise UserError(f"{path}: no person detected in any of its {kf.num_frames} frame(s)")
  return kf


def select_track(kf: KeypointFile, person: str | int | None = None) -> Track:
  """The person to analyse: by id, or (``None``) the most present and largest one.

  Without an id the track with the largest sum over frames of its size (the box diagonal of its
  keypoints) wins: a person seen in more frames, and bigger (nearer the camera), counts more.

  Raises:
    UserError: no track has that id (the message lists the ids there are).
  """
  if person is not None:
    for tr in kf.tracks:
      if tr.id == str(person):
        return tr
    ids = ", ".join(tr.id for tr in kf.tracks)
    raise UserError(f"{kf.path}: no person with id {person!r}; ids in the file: {ids}")
  return max(kf.tracks, key=lambda tr: float(np.nansum(tr.sizes())))


def fill_missing(kp: np.ndarray) -> np.ndarray:
  """Gives every joint a position where it was not detected, keeping its confidence 0.

  Args:
    kp: (T, J, 3) x, y, confidence; x, y may be NaN where confidence is 0.
  Returns:
    (T, J, 3) float64 without NaN: per joint, linear interpolation in time between the frames
    where it was seen (the nearest one before the first and after the last); a joint never seen
    takes its parent's position (Human3.6M tree), or the mean of the seen joints of the frame.
  """
  out = np.array(kp, np.float64)
  t_idx = np.arange(out.shape[0])
  seen = (out[..., 2] > 0) & np.isfinite(out[..., :2]).all(axis=-1)
  out[~seen, 2] = 0.0
  for j in range(out.shape[1]):
    ok = seen[:, j]
    if ok.any() and not ok.all():
      for c in range(2):
        out[~ok, j, c] = np.interp(t_idx[~ok], t_idx[ok], out[ok, j, c])
  never = ~seen.any(axis=0)
  if never.any():
    centre = np.array(
      [
        np.nanmean(np.where(seen[t, :, None], out[t, :, :2], np.nan), axis=0)
        if seen[t].any()
        else np.zeros(2)
        for t in t_idx
      ]
    )
    centre = np.nan_to_num(centre)
    for j in np.nonzero(never)[0]:
      parent = PARENTS[j] if out.shape[1] == len(PARENTS) else -1
      while parent >= 0 and never[parent]:
        parent = PARENTS[parent]
      out[:, j, :2] = out[:, parent, :2] if parent >= 0 else centre
  return out


def to_h36m(kf: KeypointFile, track: Track) -> np.ndarray:
  """The lifter's input for one person: (T, 17, 3) Human3.6M-17 pixel x, y and confidence.

  Missing joints and frames have confidence 0 and interpolated positions (:func:`fill_missing`).
  """
  if kf.skeleton == "h36m17":
    return fill_missing(track.coco)
  coco = fill_missing(track.coco)
  return coco_to_h36m(coco)


def load_person(
  path: str | Path, person: str | int | None = None, *, coords: str = "auto", joint_order: str = "coco"
) -> tuple[np.ndarray, KeypointFile, Track]:
  """Reads a keypoint file and returns one person's lifter input.

  Returns:
    ``(keypoints, file, track)``: (T, 17, 3) Human3.6M-17 pixels and confidence (float32), what
    the file holds, and the chosen track.
  Raises:
    UserError: see :func:`read_keypoints` and :func:`select_track`.
  """
  kf = read_keypoints(path, coords=coords, joint_order=joint_order)
  track = select_track(kf, person)
  return to_h36m(kf, track).astype(np.float32), kf, track
