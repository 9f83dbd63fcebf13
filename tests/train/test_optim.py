"""The optimizer: upstream's per-epoch decay, warmup + cosine, groups, clipping, accumulation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from perfectrep_jax.train.optim import learning_rate_schedule, make_optimizer, param_groups


def test_exponential_schedule_is_upstreams_per_epoch_decay():
  # PerfectRep: lr *= lr_decay after every epoch; within an epoch the rate is constant.
  sched = learning_rate_schedule({"schedule": "exponential", "lr_decay": 0.99}, 5e-4, 1000, 100)
  for step in (0, 99, 100, 250, 999):
    assert float(sched(step)) == pytest.approx(5e-4 * 0.99 ** (step // 100), rel=1e-6)


def test_warmup_cosine_peaks_and_ends():
  sched = learning_rate_schedule(
    {"schedule": "warmup_cosine", "warmup_steps": 10, "end_lr_factor": 0.1}, 1e-3, 110, 10
  )
  assert float(sched(0)) == 0.0
  assert float(sched(10)) == pytest.approx(1e-3)
  assert float(sched(110)) == pytest.approx(1e-4, rel=1e-4)


def test_groups_split_head_from_backbone():
  params = {
    "backbone": {"w": jnp.ones(2)},
    "head": {"fc1": {"kernel": jnp.ones(2)}},
    "joints_embed": {"kernel": jnp.ones(2)},
  }
  assert param_groups(params) == {
    "backbone": {"w": "backbone"},
    "head": {"fc1": {"kernel": "head"}},
    "joints_embed": {"kernel": "backbone"},
  }


def test_backbone_learns_at_its_fraction_of_the_rate():
  cfg = {"lr": 1e-3, "backbone_lr_mult": 0.1, "schedule": "constant", "weight_decay": 0.0}
  tx, schedules = make_optimizer(cfg, 10, 10)
  params = {"backbone": {"w": jnp.zeros(3)}, "head": {"w": jnp.zeros(3)}}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first step moves every weight by lr (sign of the gradient)
  np.testing.assert_allclose(updates["head"]["w"], -1e-3, rtol=1e-4)
  np.testing.assert_allclose(updates["backbone"]["w"], -1e-4, rtol=1e-4)
  assert set(schedules) == {"head", "backbone"}


def test_clipping_bounds_the_global_norm_before_adam():
  """Two steps of very different gradient size: clipping changes Adam's moments (and so the
  second update) exactly as clip_by_global_norm followed by adamw does."""
  cfg = {"lr": 1e-2, "schedule": "constant", "weight_decay": 0.0}
  params = {"w": jnp.zeros(3)}
  grads = [{"w": jnp.array([100.0, -50.0, 10.0])}, {"w": jnp.array([0.1, 0.2, -0.3])}]

  def run(tx):
    state, out = tx.init(params), None
    for g in grads:
      out, state = tx.update(g, state, params)
    return np.asarray(out["w"])

  clipped, _ = make_optimizer(dict(cfg, clip_norm=1.0), 2, 2)
  reference = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, weight_decay=0.0))
  unclipped, _ = make_optimizer(cfg, 2, 2)
  np.testing.assert_allclose(run(clipped), run(reference), rtol=1e-6)
  assert not np.allclose(run(clipped), run(unclipped), rtol=1e-3)


def test_accumulation_equals_one_large_batch():
  """Two micro-batches of 2 under accumulate_steps=2 give the update of one batch of 4."""
  cfg = {"lr": 1e-2, "schedule": "constant", "weight_decay": 0.01}
  w0 = {"w": jnp.array([0.5, -1.0, 2.0])}
  xs = jnp.array([[1.0, 2.0, 3.0], [0.5, 0.1, -1.0], [2.0, -1.0, 0.0], [1.0, 1.0, 1.0]])

  def loss(p, x):
    return jnp.mean(jnp.square(x @ p["w"] - 1.0))

  big, _ = make_optimizer(cfg, 1, 1)
  g = jax.grad(loss)(w0, xs)
  upd, _ = big.update(g, big.init(w0), w0)
  expected = optax.apply_updates(w0, upd)

  acc, _ = make_optimizer(dict(cfg, accumulate_steps=2), 1, 1)
  state, w = acc.init(w0), w0
  for half in (xs[:2], xs[2:]):
    upd, state = acc.update(jax.grad(loss)(w0, half), state, w)
    w = optax.apply_updates(w, upd)
  np.testing.assert_allclose(w["w"], expected["w"], rtol=1e-5, atol=1e-7)


def test_sgdr_restarts_are_the_runs_it_joins():
  # The default lifter's recipe: a 4,500-step cosine, then a 7,500-step one from half the peak;
  # each cycle is the warmup_cosine a run of that length alone would follow.
  cycles = {"cycle_steps": (4500, 7500), "cycle_lr_factors": (1.0, 0.5), "cycle_warmup_steps": (300, 200)}
  sched = learning_rate_schedule({"schedule": "sgdr", "end_lr_factor": 0.05, **cycles}, 1e-3, 12_000, 1)
  first = learning_rate_schedule(
    {"schedule": "warmup_cosine", "warmup_steps": 300, "end_lr_factor": 0.05}, 1e-3, 4500, 1
  )
  second = learning_rate_schedule(
    {"schedule": "warmup_cosine", "warmup_steps": 200, "end_lr_factor": 0.05}, 5e-4, 7500, 1
  )
  for step in (0, 150, 300, 2000, 4499):
    assert float(sched(step)) == pytest.approx(float(first(step)), rel=1e-6, abs=1e-12)
  for step in (4500, 4600, 4700, 9000, 11_999, 12_000):
    assert float(sched(step)) == pytest.approx(float(second(step - 4500)), rel=1e-6, abs=1e-12)
  assert float(sched(4499)) < 1e-4 < float(sched(4700)) == pytest.approx(5e-4)
