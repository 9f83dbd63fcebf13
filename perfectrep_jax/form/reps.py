"""Repetition segmentation of 3D motion, after AIFit (Fieraru et al., CVPR 2021) as PerfectRep uses it.

Steps (``docs/form-analysis.md`` upstream):

1. Pose affinity ``A(p_m, p_n)`` = minus the mean per-joint distance between two poses. Poses are
   taken relative to the pelvis and divided by the body's size, so every figure below is the same
   when the input is rotated, translated or scaled.
2. Period ``tau*``: the autocorrelation of the affinity, ``R(tau, s)`` = mean of ``A(p_t, p_{t+tau})``
   over ``t`` in ``[s, N - s - tau)``; for each shrinkage ``s`` the smallest ``tau`` at a clear
   local maximum of ``R``; the best of those over ``s``.
3. Start ``t*_start``: the offset of ``k_min`` back-to-back intervals of length ``tau*`` that
   maximises the average affinity between all pairs of intervals (``A_avg``).
4. Counting (this project's addition: AIFit's intervals have a period but no phase, so they
   cannot say whether a recording that starts mid-way holds 9 or 10 repetitions). The mean cycle
   of those intervals gives a rest pose (its least flexed phase: standing, arms down, see
   :func:`perfectrep_jax.form.kinematics.flexion`) and a turning-point pose (its most flexed
   phase: the bottom of a squat, the arm raised). Every frame gets a progress from rest (0) to
   the turning point (1), :func:`progress`; it rises to one clear maximum per repetition.
   **A repetition is counted when its turning point lies inside the recording**, even if the
   recording starts or ends part-way through it (it is then marked ``partial``): a lunge take
   that starts during the first descent has ten bottoms and counts ten. A repetition starts when
   the progress leaves the rest level and ends when it comes back.
5. Continuous optimisation of the boundaries (``scipy.optimize.minimize``, L-BFGS-B with the
   exact gradient of ``A_avg``): the start and end of every complete repetition move (within a
   fraction of the period, neighbours never overlapping) to maximise ``A_avg`` between the
   repetitions, each resampled to ``n_samples`` poses.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import minimize
from scipy.signal import find_peaks, peak_widths
from scipy.spatial.distance import cdist

from perfectrep_jax.form import kinematics

# Repetitions compared with each other (``A_avg``) are at most this many apart in time order: a
# set's repetitions all are, and a one-hour session's thousand stay linear in cost.
MAX_PAIR_LAG = 16


@dataclasses.dataclass(frozen=True)
class Repetition:
  """One repetition, frames ``start`` to ``end`` inclusive.

  Attributes:
    start, end: first and last frame.
    turn: the turning point (bottom of a squat, top of a raise): the middle of the hold.
    hold_start, hold_end: the frames around ``turn`` where the progress stays near its maximum
      (a pause at the bottom); ``start..hold_start`` is the eccentric (lowering) phase of a squat
      and ``hold_end..end`` the concentric one.
    partial: the recording starts or ends inside this repetition.
  """

  start: int
  hold_start: int
  turn: int
  hold_end: int
  end: int
  partial: bool = False


@dataclasses.dataclass(frozen=True)
class Segmentation:
  """What :func:`segment_repetitions` found.

  Attributes:
    reps: the repetitions, in time order.
    period: the period ``tau*`` in frames of the input (0 when no repetition was found).
    progress: (T,) every frame's progress from the rest pose (0) to the turning point (1),
      :func:`progress`; one maximum per repetition. With an exercise's own signal
      (:func:`exercise_signal`), that signal scaled so the rest is 0 and a typical repetition 1.
    signal: what was followed: ``"pose"`` (the whole pose, AIFit) or one of :data:`SIGNALS`.
  """

  reps: tuple[Repetition, ...]
  period: float
  progress: np.ndarray
  signal: str = "pose"

  @property
  def count(self) -> int:
    """Repetitions seen whole, from the start of the descent to the end of the ascent."""
    return sum(1 for r in self.reps if not r.partial)

  @property
  def partials(self) -> tuple[Repetition, ...]:
    """Repetitions cut by the recording's start or end: said, but not counted."""
    return tuple(r for r in self.reps if r.partial)


# ----------------------------------------------------------------------------- poses and affinity


def pose_features(joints: np.ndarray) -> np.ndarray:
  """Pelvis-relative poses in body scales: (T, 17, 3) -> (T, 17, 3) float64."""
  joints = np.asarray(joints, np.float64)
  scale = max(kinematics.body_scale(joints), 1e-9)
  return (joints - joints[:, :1]) / scale


def affinity_matrix(poses: np.ndarray) -> np.ndarray:
  """``A[m, n]`` = minus the mean per-joint distance between poses m and n: (N, 17, 3) -> (N, N)."""
  n, j, _ = poses.shape
  out = np.zeros((n, n))
  for k in range(j):
    out -= cdist(poses[:, k], poses[:, k])
  return out / j


def autocorrelation(affinity: np.ndarray, shrink: int) -> np.ndarray:
  """``R[tau]`` = mean of ``A[t, t + tau]`` over ``t`` in ``[shrink, N - shrink - tau)``.

  Returns:
    (N - 2 * shrink,) with ``R[0] = 0``; entries whose range is empty are ``-inf``.
  """
  n = affinity.shape[0]
  m = n - 2 * shrink
  r = np.full(max(m, 0), -np.inf)
  sub = affinity[shrink : n - shrink, shrink : n - shrink]
  for tau in range(m):
    diag = np.diagonal(sub, offset=tau)
    if diag.size:
      r[tau] = diag.mean()
  return r


def lagged_affinity(poses: np.ndarray, tau: int) -> np.ndarray:
  """The ``tau``-th diagonal of the affinity matrix, ``A[t, t + tau]``: (N, 17, 3) -> (N - tau,).

  Only the diagonals up to the longest period are ever needed, so the period search costs
  memory linear in N (the full (N, N) matrix of :func:`affinity_matrix` does not).
  """
  n = poses.shape[0]
  if tau >= n:
    return np.zeros(0)
  diff = poses[tau:] - poses[: n - tau]
  return -np.sqrt(np.einsum("tjc,tjc->tj", diff, diff)).mean(axis=1)


def autocorrelations(poses: np.ndarray, shrinks: list[int], max_tau: int) -> list[np.ndarray]:
  """:func:`autocorrelation` of the poses' affinity for every shrinkage, lags ``0..max_tau`` only.

  Equal to ``autocorrelation(affinity_matrix(poses), s)[:max_tau + 1]`` for each ``s`` but in
  O(N) memory and O(N * max_tau) time: each diagonal is computed once and its prefix sums give
  the mean over any shrunk range.

  Returns:
    one array per shrinkage, of length ``min(max_tau + 1, N - 2 * s)`` (at least 0).
  """
  n = poses.shape[0]
  out = [np.full(max(0, min(max_tau + 1, n - 2 * s)), -np.inf) for s in shrinks]
  for tau in range(min(max_tau + 1, n)):
    diag = lagged_affinity(poses, tau)
    csum = np.concatenate([[0.0], np.cumsum(diag)])
    for r, s in zip(out, shrinks):
      hi = n - s - tau  # t in [s, n - s - tau)
      if tau < len(r) and hi > s:
        r[tau] = (csum[hi] - csum[s]) / (hi - s)
  return out


def estimate_period(
  poses: np.ndarray,
  min_period: int,
  max_period: int,
  shrink_fractions: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2),
  min_prominence: float = 0.1,
  min_height: float = 0.6,
) -> tuple[int, int] | None:
  """AIFit's period: the smallest ``tau`` at which R has a clear local maximum.

  For every shrinkage ``s`` the local maxima of ``R(., s)`` over ``[min_period, max_period]`` are
  found. A maximum is clear when its prominence is at least ``min_prominence`` of the range of R
  there and its height reaches ``min_height`` of the way from R's minimum to its highest
  maximum: half-period bumps (a sit-to-stand leans forward both going down and coming up, so
  poses half a cycle apart look alike) are lower than the full period's maximum and are skipped.
  Among the shrinkages, the one whose first clear maximum is highest relative to its range wins.

  Args:
    poses: (N, 17, 3) features (:func:`pose_features`); R comes from :func:`autocorrelations`,
      in memory linear in N.
  Returns:
    ``(tau*, s*)`` in frames, or ``None`` when R has no clear maximum (no repetition).
  """
  n = poses.shape[0]
  shrinks = [int(round(frac * n)) for frac in shrink_fractions]
  best = None
  for s, r in zip(shrinks, autocorrelations(poses, shrinks, max_period)):
    hi = min(max_period, len(r) - 1)
    if hi <= min_period + 2:
      continue
    window = r[: hi + 1]
    lo_val = window[min_period:].min()
    span = window[min_period:].max() - lo_val
    if not np.isfinite(span) or span <= 0:
      continue
    peaks, props = find_peaks(window, prominence=min_prominence * span)
    keep = peaks >= min_period
    peaks = peaks[keep]
    if len(peaks) == 0:
      continue
    top = window[peaks].max()
    clear = peaks[window[peaks] >= lo_val + min_height * (top - lo_val)]
    tau = int(clear[0])
    strength = float((window[tau] - lo_val) / (0.0 - lo_val)) if lo_val < 0 else 0.0
    if best is None or strength > best[2]:
      best = (tau, s, strength)
  return None if best is None else (best[0], best[1])


def _resample(poses: np.ndarray, intervals: np.ndarray, n_samples: int):
  """Poses at ``n_samples`` evenly spaced (fractional) frames of each interval.

  Returns:
    ``(samples, slopes, u)``: (K, S, 17, 3) linearly interpolated poses, (K, S, 17, 3) their
    derivative with respect to time, and the (S,) sample positions in [0, 1].
  """
  u = np.linspace(0.0, 1.0, n_samples)
  t = intervals[:, :1] + u[None, :] * (intervals[:, 1:2] - intervals[:, :1])
  t = np.clip(t, 0.0, poses.shape[0] - 1.0)
  lo = np.minimum(np.floor(t).astype(int), poses.shape[0] - 2)
  w = (t - lo)[..., None, None]
  slopes = poses[lo + 1] - poses[lo]
  return poses[lo] + w * slopes, slopes, u


def average_affinity(
  poses: np.ndarray,
  intervals: np.ndarray,
  n_samples: int,
  with_grad: bool = False,
  max_lag: int | None = None,
):
  """AIFit's ``A_avg``: mean affinity over all pairs of intervals, each resampled to ``n_samples``.

  Args:
    poses: (N, 17, 3), N >= 2.
    intervals: (K, 2) float start and end frames (K >= 2); fractional frames interpolate.
    with_grad: also return the gradient with respect to ``intervals``.
    max_lag: compare only intervals at most this many apart in the list (``None``: all pairs).
      With it the cost is linear in K (a one-hour session holds a thousand periods, and all
      pairs of them would take O(K^2) memory and time); for ``K <= max_lag + 1`` it is all pairs.
  Returns:
    the mean over pairs ``i < j`` of the mean over samples of ``A`` (``-inf`` for fewer than 2
    intervals), and with ``with_grad`` a (K, 2) gradient.
  """
  k = len(intervals)
  if k < 2:
    return (-np.inf, np.zeros_like(intervals)) if with_grad else -np.inf
  samples, slopes, u = _resample(poses, intervals, n_samples)
  lags = range(1, k if max_lag is None else min(k, max(1, int(max_lag)) + 1))
  n_pairs = sum(k - d for d in lags)
  per_entry = 1.0 / (n_pairs * n_samples * poses.shape[1])
  total = 0.0
  d_samples = np.zeros_like(samples) if with_grad else None  # (K, S, 17, 3)
  for d in lags:
    # One lag at a time, so memory stays at one (K, S, 17, 3) array.
    diff = samples[d:] - samples[:-d]  # S_{i+d} - S_i
    dist = np.sqrt(np.einsum("ksjc,ksjc->ksj", diff, diff))  # (K - d, S, 17)
    total += float(dist.sum())
    if with_grad:
      # d(-|S_{i+d} - S_i|) is -unit for S_{i+d} and +unit for S_i.
      unit = diff / np.maximum(dist, 1e-12)[..., None] * per_entry
      d_samples[d:] -= unit
      d_samples[:-d] += unit
  value = -total * per_entry
  if not with_grad:
    return value
  d_time = np.sum(d_samples * slopes, axis=(-1, -2))  # (K, S)
  grad = np.stack([d_time @ (1.0 - u), d_time @ u], axis=1)  # (K, 2)
  return value, grad


def initial_start(
  poses: np.ndarray, tau: int, shrink: int, n_samples: int, max_lag: int | None = MAX_PAIR_LAG
) -> tuple[int, int]:
  """AIFit's start: the offset of ``k_min`` intervals of ``tau`` that maximises ``A_avg``.

  ``k_min`` is the number of whole periods in the shrunk signal (at least 1); offsets from
  ``shrink`` to ``shrink + tau`` (as far as the intervals still fit) are tried. Intervals
  more than ``max_lag`` apart are not compared (:func:`average_affinity`).

  Returns:
    ``(t*_start, k_min)``.
  """
  n = poses.shape[0]
  k_min = max(1, min((n - 2 * shrink) // tau, n // tau))
  last = n - k_min * tau
  starts = np.arange(min(shrink, last), min(shrink + tau, last + 1))
  if k_min < 2:
    return int(starts[0]), k_min
  scores = []
  for t0 in starts:
    iv = np.stack([t0 + np.arange(k_min) * tau, t0 + np.arange(1, k_min + 1) * tau - 1], axis=1)
    scores.append(average_affinity(poses, iv.astype(np.float64), n_samples, max_lag=max_lag))
  return int(starts[int(np.argmax(scores))]), k_min


# ----------------------------------------------------------------------------- counting


def _cycle_poses(
  poses: np.ndarray, flex: np.ndarray, t0: int, tau: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
  """Rest and turning-point poses of the mean cycle of ``k`` intervals of ``tau`` from ``t0``.

  The rest pose is the mean pose at the cycle's least flexed phase, the turning point at its
  most flexed phase (:func:`perfectrep_jax.form.kinematics.flexion`).

  Returns:
    ``(rest, key)``, each (17, 3).
  """
  idx = t0 + np.arange(k)[:, None] * tau + np.arange(tau)[None, :]  # (k, tau)
  phase_flex = flex[idx].mean(axis=0)
  rest = poses[idx[:, int(np.argmin(phase_flex))]].mean(axis=0)
  key = poses[idx[:, int(np.argmax(phase_flex))]].mean(axis=0)
  return rest, key


def _distance_to(poses: np.ndarray, pose: np.ndarray) -> np.ndarray:
  """Mean per-joint distance of every pose (T, 17, 3) to one pose (17, 3) -> (T,)."""
  return np.linalg.norm(poses - pose[None], axis=-1).mean(axis=-1)


def progress(poses: np.ndarray, rest: np.ndarray, key: np.ndarray) -> np.ndarray:
  """How far every pose is along the way from ``rest`` (0) to ``key`` (1): (T, 17, 3) -> (T,).

  ``d_rest / (d_rest + d_key)`` with ``d`` a per-joint distance weighted by how much each joint
  moves between the two poses, so the joints that make the repetition count and a joint that
  only changes its habit between repetitions (the arms held differently) hardly does. It has
  one maximum per repetition even when the body passes through poses far from both ends (the
  forward lean half-way through a sit-to-stand is about 0.5, the seated pose 1).
  """
  w = np.linalg.norm(key - rest, axis=-1)
  w = w / max(float(w.sum()), 1e-12)
  d_rest = np.linalg.norm(poses - rest[None], axis=-1) @ w
  d_key = np.linalg.norm(poses - key[None], axis=-1) @ w
  return d_rest / np.maximum(d_rest + d_key, 1e-12)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
  """Moving average with edge padding; ``width`` <= 1 returns ``x``."""
  if width <= 1 or len(x) < width:
    return x
  pad = width // 2
  xp = np.pad(x, (pad, width - 1 - pad), mode="edge")
  return np.convolve(xp, np.ones(width) / width, mode="valid")


def turning_points(signal: np.ndarray, prominence: float, distance: int) -> np.ndarray:
  """Frames of the repetitions' turning points: the clear maxima of ``signal`` (T,).

  A maximum is clear when it rises ``prominence`` above the signal on both sides before a higher
  maximum, and is at least ``distance`` frames from a higher one. The recording's edges count as
  rest (the signal's minimum), so a repetition cut by the start or end of the recording is
  counted when its turning point lies inside the recording; a maximum on the first or last
  frame is not a turning point.
  """
  lo = float(np.min(signal))
  padded = np.concatenate([[lo], signal, [lo]])
  peaks, _ = find_peaks(padded, prominence=prominence, distance=distance)
  peaks = peaks - 1
  return peaks[(peaks > 0) & (peaks < len(signal) - 1)]


# Two maxima of the progress belong to one repetition when the body does not go back most of the
# way to rest between them: the valley stays above this share of the rise from rest to the lower
# one. A sit-to-stand seen from the front by a lifter that never straightens the knees rises
# twice per repetition (the forward lean, then the seat), with a valley half-way (0.45-0.6 of
# the rise); between repetitions the progress falls to within a tenth of rest.
MERGE_VALLEY = 0.35


def merge_unrested(signal: np.ndarray, peaks: np.ndarray, level: float = MERGE_VALLEY) -> np.ndarray:
  """Turning points ``peaks`` of ``signal`` (T,) with those the body does not rest between merged:
  of two neighbours whose valley stays above ``level`` of the rise from rest (the signal's 5th
  percentile) to the lower of them, the higher is kept, repeatedly."""
  peaks = [int(p) for p in peaks]
  if len(peaks) < 2:
    return np.asarray(peaks, np.int64)
  rest = float(np.quantile(signal, 0.05))
  merged = True
  while merged and len(peaks) > 1:
    merged = False
    for i in range(len(peaks) - 1):
      a, b = peaks[i], peaks[i + 1]
      valley = float(np.min(signal[a : b + 1]))
      if valley - rest > level * (min(signal[a], signal[b]) - rest):
        del peaks[i + 1 if signal[a] >= signal[b] else i]
        merged = True
        break
  return np.asarray(peaks, np.int64)


def _boundaries(
  signal: np.ndarray,
  peaks: np.ndarray,
  rest_level: float,
  hold_level: float,
  rest_windows: list[tuple[int, int]] | None = None,
  edge_rest: float | None = None,
) -> list[Repetition]:
  """Start, hold and end of each repetition around its turning point in ``signal`` (T,).

  Between two turning points the rest level is the lowest value plus ``rest_level`` of the rise
  to the turning point; a repetition starts at the last frame at rest before its turning point
  and ends at the first one after. Before the first and after the last turning point the rest
  level is the typical (median) one between repetitions; a repetition that does not reach it
  before the recording's edge starts or ends there and is partial. The hold is where the signal
  stays within ``hold_level`` of the rise below the turning point's value.

  With ``rest_windows`` (one ``(first, last)`` frame range per turning point) the rest levels
  before and after a turning point are the lowest values inside its window only: in a session,
  standing after the last repetition of a set is not as low as the walking before the next.
  A window that reaches past the recording's edge also counts ``edge_rest`` (the recording's
  rest level), so a repetition the recording cuts is not measured from its own cut-off part.
  """
  n = len(signal)
  valleys = [float(np.min(signal[a : b + 1])) for a, b in zip(peaks[:-1], peaks[1:])]
  typical_rest = float(np.median(valleys)) if valleys else float(np.min(signal))
  reps = []
  for i, p in enumerate(peaks):
    top = signal[p]
    lo = 0 if i == 0 else peaks[i - 1]
    hi = n - 1 if i == len(peaks) - 1 else peaks[i + 1]
    partial = False
    if rest_windows is not None:
      rest_before = float(np.min(signal[max(lo, rest_windows[i][0]) : p + 1]))
      if rest_windows[i][0] < 0 and edge_rest is not None:
        rest_before = min(rest_before, edge_rest)
    else:
      rest_before = typical_rest if i == 0 else float(np.min(signal[lo : p + 1]))
    thr = rest_before + rest_level * (top - rest_before)
    at_rest = np.nonzero(signal[lo : p + 1] <= thr)[0]
    if len(at_rest):
      start = lo + int(at_rest[-1])
    else:
      start, partial = lo, True
    if rest_windows is not None:
      rest_after = float(np.min(signal[p : min(hi, rest_windows[i][1]) + 1]))
      if rest_windows[i][1] > n - 1 and edge_rest is not None:
        rest_after = min(rest_after, edge_rest)
    else:
      rest_after = typical_rest if i == len(peaks) - 1 else float(np.min(signal[p : hi + 1]))
    thr = rest_after + rest_level * (top - rest_after)
    at_rest = np.nonzero(signal[p : hi + 1] <= thr)[0]
    if len(at_rest):
      end = p + int(at_rest[0])
    else:
      end, partial = hi, True
    hold_thr = top - hold_level * (top - min(rest_before, rest_after))
    hs, he = p, p
    while hs > start and signal[hs - 1] >= hold_thr:
      hs -= 1
    while he < end and signal[he + 1] >= hold_thr:
      he += 1
    reps.append(Repetition(int(start), int(hs), int((hs + he) // 2), int(he), int(end), partial))
  return reps


def refine_boundaries(
  poses: np.ndarray,
  reps: list[Repetition],
  max_shift: float,
  n_samples: int,
  max_iter: int = 50,
  group_size: int = MAX_PAIR_LAG,
) -> list[Repetition]:
  """AIFit's continuous optimisation of the boundaries of the complete repetitions.

  The start and end of every complete repetition move by at most ``max_shift`` frames to maximise
  :func:`average_affinity` between the complete repetitions; each stays on its side of its
  hold, and two neighbours share the gap between them at its middle, so they never overlap.
  More than ``group_size`` complete repetitions (a long session) are optimised in consecutive
  groups of about equal size, each on its own, so time and memory stay linear in the number of
  repetitions. Needs two complete repetitions; otherwise (or if the optimiser fails) the input
  comes back unchanged.

  Args:
    poses: (T, 17, 3) features (:func:`pose_features`).
  """
  full = [i for i, r in enumerate(reps) if not r.partial]
  if len(full) < 2 or max_shift < 1:
    return reps
  n_groups = -(-len(full) // max(2, group_size))
  out = list(reps)
  for group in np.array_split(np.asarray(full), n_groups):
    for i, (start, end) in _refine_group(
      poses, reps, [int(i) for i in group], max_shift, n_samples, max_iter
    ).items():
      out[i] = dataclasses.replace(reps[i], start=start, end=end)
  return out


def _refine_group(
  poses: np.ndarray, reps: list[Repetition], full: list[int], max_shift: float, n_samples: int, max_iter: int
) -> dict[int, tuple[int, int]]:
  """:func:`refine_boundaries` for the complete repetitions ``full`` (indices into ``reps``).

  Returns:
    index -> new (start, end); empty when fewer than two or the optimiser did not improve.
  """
  if len(full) < 2:
    return {}
  n = poses.shape[0]
  x0 = np.array([v for i in full for v in (reps[i].start, reps[i].end)], np.float64)
  bounds = []
  for i in full:
    r = reps[i]
    prev = reps[i - 1] if i > 0 else None
    nxt = reps[i + 1] if i + 1 < len(reps) else None
    # Neighbours split the gap between them at its middle, so they cannot overlap; a partial
    # neighbour keeps its boundary.
    lo_start = 0.0 if prev is None else (prev.end if prev.partial else (prev.end + r.start) / 2.0)
    hi_end = n - 1.0 if nxt is None else (nxt.start if nxt.partial else (r.end + nxt.start) / 2.0)
    bounds.append((max(lo_start, r.start - max_shift), min(r.hold_start - 1.0, r.start + max_shift)))
    bounds.append((max(r.hold_end + 1.0, r.end - max_shift), min(hi_end, r.end + max_shift)))
  bounds = [(min(lo, x), max(hi, x)) for (lo, hi), x in zip(bounds, x0)]
  # A_avg is negative; dividing by its starting magnitude makes the objective about -1, a scale
  # at which the optimiser's default tolerances behave.
  scale = abs(average_affinity(poses, x0.reshape(-1, 2), n_samples)) or 1.0

  def objective(x):
    value, grad = average_affinity(poses, x.reshape(-1, 2), n_samples, with_grad=True)
    return -value / scale, -grad.ravel() / scale

  res = minimize(objective, x0, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": max_iter})
  if not np.all(np.isfinite(res.x)) or objective(res.x)[0] > objective(x0)[0]:
    return {}
  x = np.round(res.x).astype(int)
  return {i: (int(x[2 * k]), int(x[2 * k + 1])) for k, i in enumerate(full)}


def _initial_cycle(
  joints: np.ndarray,
  poses: np.ndarray,
  fps: float,
  min_period_s: float,
  max_period_s: float,
  work_fps: float,
  n_samples: int,
):
  """Steps 1-3 and the rest / turning-point poses of the mean cycle.

  Returns:
    ``(rest, key, period)``: two (17, 3) poses and the period in input frames; ``None`` when the
    motion has no period (fewer than two cycles, or not periodic).
  """
  stride = max(1, int(round(fps / work_fps)))
  work = poses[::stride]
  n = work.shape[0]
  work_rate = fps / stride
  min_p = max(2, int(round(min_period_s * work_rate)))
  max_p = min(int(round(max_period_s * work_rate)), n // 2)
  if max_p <= min_p + 2:
    return None
  found = estimate_period(work, min_p, max_p)
  if found is None:
    return None
  tau, shrink = found
  t0, k_min = initial_start(work, tau, shrink, n_samples)
  rest, key = _cycle_poses(work, kinematics.flexion(joints[::stride]), t0, tau, k_min)
  return rest, key, tau * stride


def _single_cycle(joints: np.ndarray, poses: np.ndarray, min_excursion: float):
  """Rest and turning-point poses of a motion without a period (a clip of one repetition).

  The rest pose is the mean of the least flexed tenth of the frames, the turning point the mean
  of the most flexed tenth; ``None`` when they are closer than ``min_excursion`` body scales
  (mean per joint): the person hardly moved.
  """
  flex = kinematics.flexion(joints)
  k = max(1, len(flex) // 10)
  order = np.argsort(flex)
  rest, key = poses[order[:k]].mean(axis=0), poses[order[-k:]].mean(axis=0)
  if np.linalg.norm(key - rest, axis=-1).mean() < min_excursion:
    return None
  return rest, key, float(len(flex))


# ----------------------------------------------------------------------------- an exercise's own signal

# What each exercise's repetition bends, as a scalar that rises from rest to the turning point
# (degrees of flexion; every one is an included angle, so the same in any view, unit or frame):
# - ``legs`` (squat): the least bent of both knees and both hips (180 minus the angle). A squat
#   bends all four; walking, a kick, a knee raise or a stretch bends one side or one joint, so
#   between sets they stay far below a repetition.
# - ``hinge`` (deadlift, RDL): the less flexed hip (trunk-thigh angle).
# - ``elbows`` (push-up, bench press): the less bent elbow; a pike stretch or walking keeps the
#   arms straight.
SIGNALS = ("legs", "hinge", "elbows")
# Smallest rise (degrees) of a repetition of each signal: below it a bump is sway or a step.
MIN_RISE_DEG = {"legs": 40.0, "hinge": 30.0, "elbows": 30.0}


# A held position (plank): no repetitions, one hold (:func:`segment_hold`).
HOLD = "hold"


def segment_hold(
  joints: np.ndarray, fps: float, up: np.ndarray, min_trunk_deg: float = 45.0, max_gap_s: float = 0.5
) -> Segmentation:
  """The longest hold of a floor position (a plank): the frames where the trunk lies at least
  ``min_trunk_deg`` from the vertical ``up``, gaps shorter than ``max_gap_s`` bridged.

  Returns:
    a :class:`Segmentation` whose one repetition is the hold (start to end; none when the body
    never lies down), ``signal`` :data:`HOLD` and ``period`` the hold's length in frames.
  """
  joints = np.asarray(joints, np.float64)
  trunk = kinematics.joint_angles(joints, up)["trunk"]
  down = trunk >= min_trunk_deg
  gap = int(round(max_gap_s * fps))
  idx = np.nonzero(down)[0]
  if len(idx) == 0:
    return Segmentation((), 0.0, trunk / 90.0, HOLD)
  runs, a = [], idx[0]
  for prev, cur in zip(idx[:-1], idx[1:]):
    if cur - prev > gap:
      runs.append((a, prev))
      a = cur
  runs.append((a, idx[-1]))
  start, end = max(runs, key=lambda r: r[1] - r[0])
  mid = (start + end) // 2
  rep = Repetition(int(start), int(start), int(mid), int(end), int(end), False)
  return Segmentation((rep,), float(end - start), trunk / 90.0, HOLD)


def exercise_signal(joints: np.ndarray, kind: str) -> np.ndarray:
  """An exercise's own repetition signal (see :data:`SIGNALS`): (T, 17, 3) -> (T,) degrees."""
  if kind not in SIGNALS:
    raise ValueError(f"unknown repetition signal {kind!r}; one of {', '.join(SIGNALS)}")
  angles = kinematics.joint_angles(np.asarray(joints, np.float64), up=np.array([0.0, 0.0, 1.0]))

  def least(joint):
    return 180.0 - np.maximum(angles[f"{joint}_left"], angles[f"{joint}_right"])

  if kind == "legs":
    return np.minimum(least("knee"), least("hip"))
  if kind == "hinge":
    return least("hip")
  return least("elbow")


def _segment_signal(
  joints: np.ndarray,
  fps: float,
  kind: str,
  *,
  min_period_s: float,
  rest_level: float,
  hold_level: float,
  keep_frac: float = 0.55,
  return_frac: float = 0.35,
  smooth_s: float = 0.12,
) -> Segmentation:
  """Repetitions of an exercise followed on its own signal (:func:`exercise_signal`).

  1. The signal, smoothed over ``smooth_s`` (noisy 3D), and its rest level (its 5th percentile:
     standing, arms straight).
  2. Candidate turning points: maxima rising :data:`MIN_RISE_DEG` above the signal on both
     sides; the recording's edges count as rest, so a repetition cut by them is found too.
  3. The set's typical repetition ``H`` is the median rise of the candidates within 70 % of the
     highest. A repetition rises at least ``keep_frac`` of ``H`` above rest and comes back at
     least ``return_frac`` of ``H`` between two: walking, stretching or re-racking between sets
     and a bounce at the bottom are not repetitions. No period is assumed, so rests of any
     length and a tempo that changes within a set do not matter.
  4. Boundaries (:func:`_boundaries`): a repetition starts at the last frame at rest before its
     descent (within ``rest_level`` of the rise) and ends at the first one after its ascent; one
     that the recording's start or end cuts before it reaches rest is ``partial``.
  """
  t = joints.shape[0]
  raw = exercise_signal(joints, kind)
  s = _smooth(raw, max(1, int(round(smooth_s * fps))))
  rest = float(np.percentile(s, 5))
  padded = np.concatenate([[rest], s, [rest]])
  distance = max(1, int(round(min_period_s * fps)))
  peaks, _ = find_peaks(padded, prominence=MIN_RISE_DEG[kind], distance=distance)
  if len(peaks) == 0:
    return Segmentation((), 0.0, np.zeros(t), kind)
  rise = padded[peaks] - rest
  typical = float(np.median(rise[rise >= 0.7 * rise.max()]))
  peaks, _ = find_peaks(
    padded,
    prominence=max(MIN_RISE_DEG[kind], return_frac * typical),
    height=rest + keep_frac * typical,
    distance=distance,
  )
  peaks = np.clip(peaks - 1, 0, t - 1)
  scaled = (s - rest) / max(typical, 1e-9)
  if len(peaks) == 0:
    return Segmentation((), 0.0, scaled, kind)
  # Each repetition's rest levels are looked for within three half-widths (at half its rise) of
  # its turning point: about one and a half descents before it and ascents after.
  _, _, left, right = peak_widths(s, peaks, rel_height=0.5)
  windows = [
    (int(p - 3 * (p - a)) - 1, int(np.ceil(p + 3 * (b - p))) + 1) for p, a, b in zip(peaks, left, right)
  ]
  out = _boundaries(s, peaks, rest_level, hold_level, windows, edge_rest=rest)
  full = [r.end - r.start for r in out if not r.partial]
  period = float(np.median(full)) if full else float(np.median([r.end - r.start for r in out]))
  return Segmentation(tuple(out), period, scaled, kind)


def segment_repetitions(
  joints: np.ndarray,
  fps: float,
  *,
  min_period_s: float = 0.4,
  max_period_s: float = 20.0,
  work_fps: float = 15.0,
  n_samples: int = 32,
  rest_level: float | None = None,
  hold_level: float = 0.1,
  min_prominence: float = 0.2,
  min_excursion: float = 0.01,
  refine: bool = True,
  window_s: float = 120.0,
  signal: str | None = None,
) -> Segmentation:
  """Finds the repetitions in a motion.

  With ``signal`` (one of :data:`SIGNALS`: the exercise's own, e.g. ``"legs"`` for a squat) the
  repetitions are followed on that signal (:func:`_segment_signal`): a session's sets, rests
  and the movement between them, any tempo, any view. Without it the whole pose is followed
  (AIFit, below), for exercises without their own signal.

  A recording longer than ``window_s`` (a whole training session: sets, rests, other
  exercises) is segmented in overlapping windows of that length, each on its own (its own
  period, rest and turning-point poses), and their repetitions are joined: time and memory
  grow linearly with the length (an hour at 30 fps analyses in a few hundred MB), and a
  session's sets need not share one period or phase.

  Args:
    joints: (T, 17, 3) Human3.6M-17 joints in any rigid frame and unit.
    fps: frames per second of ``joints``.
    min_period_s, max_period_s: shortest and longest repetition looked for.
    work_fps: the period search runs at about this rate; counting and boundaries use every
      frame. Time and memory are linear in the length (only the affinity's diagonals up to
      ``max_period_s`` are computed, and repetitions are compared with their neighbours up to
      :data:`MAX_PAIR_LAG` apart), so an hour-long session analyses in bounded memory.
    n_samples: poses per repetition when comparing repetitions (``A_avg``).
    rest_level: a frame is at rest when its progress is within this fraction of the rise to the
      turning point above the rest level (default 0.1 on the pose's progress; 0.2 on an
      exercise's own signal, where joint angles start to bend a little before the body drops:
      its boundaries then fall within a few frames of where the pelvis starts and ends moving).
    hold_level: the hold around a turning point is where the progress stays within this
      fraction of the rise below the turning point.
    min_prominence: a turning point's progress must stand this far (in progress units, the
      turning-point pose being 1) above the signal on both sides.
    min_excursion: when the motion has no period, the clip is taken as one repetition only if
      its most and least flexed poses differ by this many body scales per joint on average.
    refine: run the continuous boundary optimisation (step 5).
    window_s: length of the windows a longer recording is segmented in; they overlap by twice
      ``max_period_s``.
    signal: the exercise's own repetition signal (:data:`SIGNALS`), or ``None`` for the pose.
  Returns:
    a :class:`Segmentation`; no repetitions when none was found. For a windowed recording
    ``period`` is the median of the windows' periods and ``progress`` each window's own
    progress over the part of the recording it owns.
  """
  joints = np.asarray(joints, np.float64)
  if signal is not None:
    if joints.shape[0] < 3:
      return Segmentation((), 0.0, np.zeros(joints.shape[0]), signal)
    return _segment_signal(
      joints,
      fps,
      signal,
      min_period_s=min_period_s,
      rest_level=0.2 if rest_level is None else rest_level,
      hold_level=hold_level,
    )
  options = dict(
    min_period_s=min_period_s,
    max_period_s=max_period_s,
    work_fps=work_fps,
    n_samples=n_samples,
    rest_level=0.1 if rest_level is None else rest_level,
    hold_level=hold_level,
    min_prominence=min_prominence,
    min_excursion=min_excursion,
    refine=refine,
  )
  overlap = int(np.ceil(2 * max_period_s * fps))
  win = max(int(round(window_s * fps)), 2 * overlap)
  if joints.shape[0] <= win:
    return _segment_window(joints, fps, **options)
  return _segment_windows(joints, fps, win, overlap, options)


def _segment_windows(joints: np.ndarray, fps: float, win: int, overlap: int, options: dict) -> Segmentation:
  """:func:`segment_repetitions` of a recording longer than one window of ``win`` frames.

  Windows of ``win`` frames, evenly spaced and overlapping by at least ``overlap``, are
  segmented on their own. Each window owns the frames up to the middle of its overlaps; a
  repetition is taken from the window whose turning point lies in what it owns (or a little
  beyond, so one that two windows place on either side of the border is not lost), and of two
  found by different windows at the same place (closer than ``0.4`` periods) the one deeper
  inside its window is kept. Neighbours that overlap meet half-way (never inside a hold).
  """
  t = joints.shape[0]
  n_win = int(np.ceil((t - overlap) / (win - overlap)))
  starts = np.round(np.linspace(0, t - win, n_win)).astype(int)
  borders = [0] + [int(a + (b - a + win) // 2) for a, b in zip(starts[:-1], starts[1:])] + [t]
  margin = overlap // 4
  candidates = []  # (depth, window, period, repetition in recording frames)
  signal = np.zeros(t)
  periods = []
  for w, a in enumerate(starts.tolist()):
    seg = _segment_window(joints[a : a + win], fps, **options)
    own_lo, own_hi = borders[w], borders[w + 1]
    signal[own_lo:own_hi] = seg.progress[own_lo - a : own_hi - a]
    if seg.reps:
      periods.append(seg.period)
    for r in seg.reps:
      turn = a + r.turn
      if not own_lo - margin <= turn < own_hi + margin:
        continue
      # How far the turning point is from an edge of its window that is not the recording's.
      left = np.inf if a == 0 else r.turn
      right = np.inf if a + win >= t else win - 1 - r.turn
      shifted = Repetition(a + r.start, a + r.hold_start, turn, a + r.hold_end, a + r.end, r.partial)
      candidates.append((min(left, right), w, seg.period, shifted))
  kept = []
  for depth, w, period, r in sorted(candidates, key=lambda c: -c[0]):
    if all(w2 == w or abs(r.turn - r2.turn) >= 0.4 * min(period, p2) for _, w2, p2, r2 in kept):
      kept.append((depth, w, period, r))
  reps = []
  for _, _, _, b in sorted(kept, key=lambda c: c[3].turn):
    a = reps[-1] if reps else None
    if a is not None and b.start < a.end:
      if a.hold_end > b.hold_start:
        continue  # the same repetition seen by two windows
      mid = min(max((a.end + b.start) // 2, a.hold_end), b.hold_start)
      reps[-1] = dataclasses.replace(a, end=mid)
      b = dataclasses.replace(b, start=mid)
    reps.append(b)
  return Segmentation(tuple(reps), float(np.median(periods)) if periods else 0.0, signal)


def _segment_window(
  joints: np.ndarray,
  fps: float,
  *,
  min_period_s: float,
  max_period_s: float,
  work_fps: float,
  n_samples: int,
  rest_level: float,
  hold_level: float,
  min_prominence: float,
  min_excursion: float,
  refine: bool,
) -> Segmentation:
  """:func:`segment_repetitions` of one window (the whole of a short recording)."""
  poses = pose_features(joints)
  t = poses.shape[0]
  if t < 3:
    return Segmentation((), 0.0, np.zeros(t))
  cycle = _initial_cycle(joints, poses, fps, min_period_s, max_period_s, work_fps, n_samples)
  if cycle is None:
    cycle = _single_cycle(joints, poses, min_excursion)
  if cycle is None:
    return Segmentation((), 0.0, np.zeros(t))
  rest, key, period = cycle
  signal = progress(poses, rest, key)
  smoothed = _smooth(signal, max(1, int(round(0.1 * fps))))
  peaks = merge_unrested(smoothed, turning_points(smoothed, min_prominence, max(1, int(0.4 * period))))
  if len(peaks) == 0:
    return Segmentation((), float(period), signal)
  reps = _boundaries(smoothed, peaks, rest_level, hold_level)
  if refine:
    reps = refine_boundaries(poses, reps, max_shift=0.15 * period, n_samples=n_samples)
  return Segmentation(tuple(reps), float(period), signal)
