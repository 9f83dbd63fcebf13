"""Skeleton knowledge in one place: joint orders, bones, flip pairs and format mappings.

Every array in this project that holds joints uses the Human3.6M-17 order below unless its
name says otherwise (``coco_*``, ``fit3d_*``).
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------- Human3.6M-17
H36M_JOINTS: tuple[str, ...] = (
  "pelvis",  # 0  root, hip centre
  "right_hip",  # 1
  "right_knee",  # 2
  "right_ankle",  # 3
  "left_hip",  # 4
  "left_knee",  # 5
  "left_ankle",  # 6
  "spine",  # 7  midpoint of pelvis and thorax
  "thorax",  # 8  neck base
  "nose",  # 9
  "head",  # 10 head top
  "left_shoulder",  # 11
  "left_elbow",  # 12
  "left_wrist",  # 13
  "right_shoulder",  # 14
  "right_elbow",  # 15
  "right_wrist",  # 16
)
NUM_JOINTS = len(H36M_JOINTS)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(H36M_JOINTS)}

# The 16 bones of the kinematic tree as (parent, child), in the order upstream's limb losses use.
BONES: tuple[tuple[int, int], ...] = (
  (0, 1),
  (1, 2),
  (2, 3),
  (0, 4),
  (4, 5),
  (5, 6),
  (0, 7),
  (7, 8),
  (8, 9),
  (9, 10),
  (8, 11),
  (11, 12),
  (12, 13),
  (8, 14),
  (14, 15),
  (15, 16),
)
# Parent of each joint (-1 for the root); the tree the bones above describe.
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

# Pairs of bones (indices into BONES) whose angle upstream's angle losses compare.
BONE_ANGLE_PAIRS: tuple[tuple[int, int], ...] = (
  (0, 3),
  (0, 6),
  (3, 6),
  (0, 1),
  (1, 2),
  (3, 4),
  (4, 5),
  (6, 7),
  (7, 10),
  (7, 13),
  (8, 13),
  (10, 13),
  (7, 8),
  (8, 9),
  (10, 11),
  (11, 12),
  (13, 14),
  (14, 15),
)

LEFT_JOINTS: tuple[int, ...] = (4, 5, 6, 11, 12, 13)
RIGHT_JOINTS: tuple[int, ...] = (1, 2, 3, 14, 15, 16)
# FLIP_PERMUTATION[j] is the joint that lands on j after a horizontal (left/right) flip.
FLIP_PERMUTATION: tuple[int, ...] = tuple(
  {
    **dict(zip(LEFT_JOINTS, RIGHT_JOINTS)),
    **dict(zip(RIGHT_JOINTS, LEFT_JOINTS)),
  }.get(j, j)
  for j in range(NUM_JOINTS)
)


def flip_pose(x):
  """Horizontal flip (upstream's ``flip_data``) of (..., 17, C) poses, NumPy or JAX (traced too):
  x (the first channel) negated, left and right joints swapped. Same shape, type and dtype;
  flipping twice gives the input back."""
  sign = np.ones(x.shape[-1], dtype=np.dtype(x.dtype))
  sign[0] = -1
  return x[..., np.asarray(FLIP_PERMUTATION), :] * sign


# --------------------------------------------------------------------------- COCO-17
COCO_JOINTS: tuple[str, ...] = (
  "nose",
  "left_eye",
  "right_eye",
  "left_ear",
  "right_ear",
  "left_shoulder",
  "right_shoulder",
  "left_elbow",
  "right_elbow",
  "left_wrist",
  "right_wrist",
  "left_hip",
  "right_hip",
  "left_knee",
  "right_knee",
  "left_ankle",
  "right_ankle",
)

# H36M joint <- mean of these COCO joints (ViTPose / AlphaPose output to the lifter's input).
COCO_TO_H36M: tuple[tuple[int, ...], ...] = (
  (11, 12),  # pelvis = mid-hips
  (12,),
  (14,),
  (16,),
  (11,),
  (13,),
  (15,),
  (11, 12, 5, 6),  # spine = midpoint of pelvis and thorax
  (5, 6),  # thorax = mid-shoulders
  (0,),  # nose
  (1, 2),  # head = mid-eyes
  (5,),
  (7,),
  (9,),
  (6,),
  (8,),
  (10,),
)


def _mapping_matrix(groups: tuple[tuple[int, ...], ...], num_src: int) -> np.ndarray:
  """(num_dst, num_src) matrix whose rows average the source joints of each group."""
  m = np.zeros((len(groups), num_src), np.float64)
  for dst, src in enumerate(groups):
    m[dst, list(src)] = 1.0 / len(src)
  return m


COCO_TO_H36M_MATRIX = _mapping_matrix(COCO_TO_H36M, len(COCO_JOINTS))


def coco_to_h36m(x: np.ndarray) -> np.ndarray:
  """Maps COCO-17 keypoints to Human3.6M-17, as upstream's ``coco2h36m``.

  Args:
    x: (..., 17, C) in COCO order; every channel (x, y, confidence, ...) is averaged the same way.
  Returns:
    (..., 17, C) in H36M order, float64 (float32 if the input is float32).
  """
  x = np.asarray(x)
  if x.shape[-2] != len(COCO_JOINTS):
    raise ValueError(f"expected {len(COCO_JOINTS)} COCO joints on axis -2, got shape {x.shape}")
  dtype = np.float32 if x.dtype == np.float32 else np.float64
  return np.einsum("dj,...jc->...dc", COCO_TO_H36M_MATRIX, x.astype(np.float64)).astype(dtype)


# --------------------------------------------------------------------------- body parts
# Joint groups for anatomy-aware masking (perfectrep_jax.data.corruption) and analysis.
LIMBS: dict[str, tuple[int, ...]] = {
  "right_leg": (1, 2, 3),
  "left_leg": (4, 5, 6),
  "left_arm": (11, 12, 13),
  "right_arm": (14, 15, 16),
  "head": (9, 10),
  "torso": (7, 8),
}
BODY_HALVES: dict[str, tuple[int, ...]] = {
  "upper": (7, 8, 9, 10, 11, 12, 13, 14, 15, 16),
  "lower": (0, 1, 2, 3, 4, 5, 6),
  "left": LEFT_JOINTS,
  "right": RIGHT_JOINTS,
}

# --------------------------------------------------------------------------- Fit3D-25
# Fit3D's ``joints3d_25`` starts with the 17 Human3.6M joints in the H36M order; the last 8 are
# two extra points per foot and per hand, which the lifter does not use (upstream drops them too).
FIT3D_JOINTS: tuple[str, ...] = H36M_JOINTS + tuple(f"fit3d_extra_{i}" for i in range(17, 25))
FIT3D_TO_H36M: tuple[int, ...] = tuple(range(NUM_JOINTS))


def fit3d_to_h36m(x: np.ndarray) -> np.ndarray:
  """Keeps the Human3.6M-17 joints of Fit3D-25 data, as upstream's ``fit3d_to_h36m``.

  Args:
    x: (..., 25, C) in Fit3D order.
  Returns:
    (..., 17, C) in H36M order (a copy, same dtype).
  """
  x = np.asarray(x)
  if x.shape[-2] != len(FIT3D_JOINTS):
    raise ValueError(f"expected {len(FIT3D_JOINTS)} Fit3D joints on axis -2, got shape {x.shape}")
  return x[..., list(FIT3D_TO_H36M), :].copy()


# --------------------------------------------------------------------------- Human3.6M-32
# The raw Human3.6M mocap skeleton (VideoPose3D's ``data_3d_h36m.npz``) has 32 joints; these are
# the 17 that make the H36M-17 skeleton, in H36M-17 order.
H36M32_TO_H36M17: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

# --------------------------------------------------------------------------- MPI-INF-3DHP-17
# The 17-joint MPI-INF-3DHP order of the P-STMO ``data_*_3dhp.npz`` files (the test-set order).
MPI_INF_3DHP_JOINTS: tuple[str, ...] = (
  "head_top",
  "neck",
  "right_shoulder",
  "right_elbow",
  "right_wrist",
  "left_shoulder",
  "left_elbow",
  "left_wrist",
  "right_hip",
  "right_knee",
  "right_ankle",
  "left_hip",
  "left_knee",
  "left_ankle",
  "pelvis",
  "spine",
  "head",
)
# H36M joint j <- MPI-INF-3DHP joint MPI_INF_3DHP_TO_H36M[j] (3DHP's "head" stands in for the nose).
MPI_INF_3DHP_TO_H36M: tuple[int, ...] = (14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4)


# COCO-17 keypoint <- Human3.6M-17 joint, to fake a detector's output from motion capture (the eyes
# and ears sit on the head joint; ``coco_to_h36m`` maps them back to it).
H36M_FOR_COCO: tuple[int, ...] = tuple(
  JOINT_INDEX["head"] if name.endswith(("_eye", "_ear")) else JOINT_INDEX[name] for name in COCO_JOINTS
)
