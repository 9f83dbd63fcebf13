"""Repetition segmentation on real motion capture: counts, invariance, boundaries, AIFit pieces."""

from __future__ import annotations


import numpy as np
import pytest

from perfectrep_jax.data import demo, shared
from perfectrep_jax.form import reps as R

FPS = 50.0
_META = {k: v for k, v in shared.mocap_takes().items() if v["file"] in demo.MOCAP_FILES}
EXERCISE_TAKES = sorted(k for k, v in _META.items() if v.get("exercise"))


def test_every_exercise_take_is_listed():
    # 25 correct exercise takes + 8 faulty squat sets.
    assert len(EXERCISE_TAKES) == 33


@pytest.mark.parametrize("take", EXERCISE_TAKES)
def test_rep_count_equals_the_true_count(mocap, take):
    motion, meta = mocap
    # The count does not depend on the boundary optimisation (tested below), so skip it here.
    seg = R.segment_repetitions(motion[take], FPS, refine=False)
    assert len(seg.reps) == meta[take]["reps"]
    # Repetitions are ordered, inside the recording, and do not overlap.
    for a, b in zip(seg.reps, seg.reps[1:]):
        assert a.end <= b.start
    for r in seg.reps:
        assert 0 <= r.start <= r.hold_start <= r.turn <= r.hold_end <= r.end < len(motion[take])
    # takes.json lists the frame of each counted pelvis minimum (or wrist maximum); each found
    # repetition holds its own.
    frames = meta[take].get("rep_frames")
    if frames and len(frames) == len(seg.reps):
        for r, f in zip(seg.reps, frames):
            assert r.start <= f <= r.end, (r, f)


def test_recording_that_starts_mid_repetition_counts_its_bottom(mocap):
    # uiprmd_m03_s06 starts during the first descent: ten bottoms, nine full cycles. We count a
    # repetition whose turning point is in the recording, so ten, the first marked partial.
    motion, meta = mocap
    seg = R.segment_repetitions(motion["uiprmd_m03_s06"], FPS)
    assert len(seg.reps) == 10 == meta["uiprmd_m03_s06"]["reps"]
    assert seg.reps[0].partial and seg.reps[0].start == 0
    assert not any(r.partial for r in seg.reps[1:-1])


def test_counts_do_not_depend_on_frame_or_unit(mocap, similarity):
    motion, _ = mocap
    x = motion["uiprmd_m05_s02"].astype(np.float64)
    base = R.segment_repetitions(x, FPS)
    for seed in (0, 1):
        rot, shift, scale = similarity(seed)
        moved = R.segment_repetitions((x @ rot.T) * scale + shift, FPS)
        assert [(r.start, r.end) for r in moved.reps] == [(r.start, r.end) for r in base.reps]


def test_single_repetition_and_no_repetition(mocap):
    motion, _ = mocap
    x = motion["uiprmd_m01_s01"].astype(np.float64)
    reps = R.segment_repetitions(x, FPS).reps
    one = x[reps[3].start - 10: reps[3].end + 10]
    seg = R.segment_repetitions(one, FPS)
    assert len(seg.reps) == 1
    still = np.repeat(x[:1], 200, axis=0) + np.random.default_rng(0).normal(size=(200, 17, 3)) * 0.5
    assert R.segment_repetitions(still, FPS).reps == ()
    assert R.segment_repetitions(x[:2], FPS).reps == ()


def test_period_of_a_synthetic_periodic_motion():
    t = np.arange(600)
    poses = np.zeros((600, 17, 3))
    poses[:, :, 2] = np.linspace(0, 1, 17)[None] * (1.0 + 0.3 * np.sin(2 * np.pi * t / 75.0))[:, None]
    tau, shrink = R.estimate_period(poses, 10, 300)
    assert abs(tau - 75) <= 1


def test_average_affinity_gradient_matches_finite_differences(mocap):
    motion, _ = mocap
    poses = R.pose_features(motion["uiprmd_m01_s01"][:600])
    iv = np.array([[10.3, 95.6], [120.2, 210.9], [230.5, 330.1], [350.7, 440.4]])
    value, grad = R.average_affinity(poses, iv, 16, with_grad=True)
    assert value == pytest.approx(R.average_affinity(poses, iv, 16))
    num = np.zeros_like(iv)
    for idx in np.ndindex(iv.shape):
        e = np.zeros_like(iv)
        e[idx] = 1e-4
        num[idx] = (R.average_affinity(poses, iv + e, 16) - R.average_affinity(poses, iv - e, 16)) / 2e-4
    np.testing.assert_allclose(grad, num, rtol=1e-4, atol=1e-9)


def test_boundary_optimisation_raises_the_average_affinity(mocap):
    motion, _ = mocap
    x = motion["uiprmd_m01_s04_inc"]
    poses = R.pose_features(x)
    before = R.segment_repetitions(x, FPS, refine=False).reps
    after = R.segment_repetitions(x, FPS, refine=True).reps

    def a_avg(reps):
        return R.average_affinity(poses, np.array([[r.start, r.end] for r in reps if not r.partial], float), 32)

    assert a_avg(after) > a_avg(before)
    period = R.segment_repetitions(x, FPS).period
    for a, b in zip(before, after):
        assert abs(a.start - b.start) <= 0.15 * period + 1 and abs(a.end - b.end) <= 0.15 * period + 1
