"""The trainer: one program for 1 CPU, 8 GPUs or a TPU pod. Read it top to bottom.

  train_and_evaluate(config, workdir)
    mesh -> input pipeline -> model and optimizer -> sharding -> update step -> eval step
    -> checkpoint (resume, or initialise from a converted/pretrained model) -> loop

The task (``tasks.py``) supplies the model config and how the model is built, described and
initialised, the batch fields it feeds and its labels, the loss of a batch, the predictions of an eval
batch and the metrics of a whole evaluation; nothing here knows which task runs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import zlib
from pathlib import Path
from typing import Any, Callable

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils

from perfectrep_jax.data import pipeline
from perfectrep_jax.errors import UserError
from perfectrep_jax.interop import convert
from perfectrep_jax.models import model_dir
from perfectrep_jax.models.dstformer import AUTO_IMPLS
from perfectrep_jax.train import checkpoints, rundir, sharding, tasks
from perfectrep_jax.train.config_check import describe_data
from perfectrep_jax.train.optim import make_optimizer
from perfectrep_jax.train.reporting import Reporter

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _dropout_policy(path, key, shape):
  """Gives every dropout layer its own stream, derived from the step's key and its path."""
  del shape
  return jax.random.fold_in(key, zlib.crc32("/".join(map(str, path)).encode()) & 0x7FFFFFFF)


def _pure(state):
  return nnx.to_pure_dict(state)


def check_batch_sizes(config, data_parallel: int, processes: int) -> None:
  """The training and the evaluation batch are split over the data-parallel devices and the
  processes: both must divide by each."""
  for name, size in (("batch_size", config.batch_size), ("eval.batch_size", config.eval.batch_size)):
    if size % data_parallel or size % processes:
      raise UserError(
        f"{name} {size} must divide by the data-parallel mesh size {data_parallel} "
        f"and the {processes} processes"
      )


@dataclasses.dataclass(frozen=True)
class TrainParts:
  """What ``build`` makes of a config, shared by training, evaluation and ``compile``.

  Params and stats are nested dicts of arrays (``nnx.to_pure_dict``); ``abs_*`` hold
  ``jax.ShapeDtypeStruct`` leaves, ``*_sh`` a ``NamedSharding`` per leaf.
  """

  mesh: jax.sharding.Mesh  # axes (data, fsdp, tensor)
  local_batch: int  # this process's share of the global batch
  task: tasks.Task
  model_cfg: Any  # the task's model config (DSTformerConfig, MLPLifterConfig or ActionConfig)
  init_model: Callable[[], nnx.Module]  # a freshly initialised model (seeded: the same every call)
  graphdef: Any  # the model's structure in training mode (dropout on)
  eval_graphdef: Any  # ... and in eval mode
  abs_params: Any  # nnx.State of the model's nnx.Param, abstract
  abs_stats: Any  # nnx.State of its nnx.BatchStat (BatchNorm statistics), abstract
  param_sh: Any  # shardings of the params' pure dict
  stats_sh: Any  # shardings of the stats' pure dict
  rest: Any  # the model's other state (RNG counters), a pure dict, concrete
  dtype: Any  # the compute dtype (jnp.float32, bfloat16 or float16)


def build(config, workdir: str | Path | None = None, devices=None) -> TrainParts:
  """Everything ``train_and_evaluate`` and ``evaluate`` share.

  ``devices``: the mesh's devices (default: all of this job's); ``compile`` passes a TPU slice's
  from ``jax.experimental.topologies`` to compile the same step without the chips.
  """
  # ------------------------------------------------------------------------- mesh
  sharding.initialize_distributed_from_config(config)
  mesh = sharding.make_mesh(dict(config.mesh), devices)
  check_batch_sizes(config, mesh.shape["data"] * mesh.shape["fsdp"], jax.process_count())
  local_batch = config.batch_size // jax.process_count()

  # ------------------------------------------------------------------------- model and optimizer
  task = tasks.make_task(config)
  dtype = DTYPES[config.get("compute_dtype", "float32")]
  model_cfg = task.model_config()
  options = task.model_options()

  def init_model():
    return model_dir.build_model(task.model_kind, model_cfg, dtype=dtype, seed=config.seed, **options)

  abstract = nnx.eval_shape(init_model)
  graphdef, abs_params, abs_stats, abs_rest = nnx.split(abstract, nnx.Param, nnx.BatchStat, ...)
  abstract.eval()
  eval_graphdef = nnx.split(abstract, nnx.Param, nnx.BatchStat, ...)[0]
  rules = tuple(tuple(r) for r in config.sharding_rules)
  param_sh = sharding.pure_shardings(abs_params, mesh, rules)
  stats_sh = sharding.pure_shardings(abs_stats, mesh, rules)
  rest = jax.jit(lambda: _pure(nnx.split(init_model(), nnx.Param, nnx.BatchStat, ...)[3]))()
  return TrainParts(
    mesh=mesh,
    local_batch=local_batch,
    task=task,
    model_cfg=model_cfg,
    init_model=init_model,
    graphdef=graphdef,
    eval_graphdef=eval_graphdef,
    abs_params=abs_params,
    abs_stats=abs_stats,
    param_sh=param_sh,
    stats_sh=stats_sh,
    rest=rest,
    dtype=dtype,
  )


def make_eval_step(parts: TrainParts):
  """jit: (params, stats, batch) -> the task's predictions, sharded like the batch."""
  task, eval_graphdef, rest = parts.task, parts.eval_graphdef, parts.rest
  batch_sh = sharding.batch_sharding(parts.mesh)

  @functools.partial(jax.jit, in_shardings=(parts.param_sh, parts.stats_sh, batch_sh), out_shardings=batch_sh)
  def eval_step(params, stats, batch):
    with jax.sharding.use_abstract_mesh(parts.mesh.abstract_mesh):  # for kernels run per device
      model = nnx.merge(eval_graphdef, params, stats, rest)
      return task.predict(model, batch)

  return eval_step


def device_batch_shapes(config, task) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes and dtypes of the global batch ``train_step`` takes (what ``make_global_batch`` builds
  from the pipeline's clips), for compiling it without data."""
  clip = (config.batch_size, config.data.clip_len, config.model.num_joints, 3)
  shapes = {
    "input_2d": jax.ShapeDtypeStruct(clip, jnp.float32),
    "target_3d": jax.ShapeDtypeStruct(clip, jnp.float32),
    "label": jax.ShapeDtypeStruct((config.batch_size,), jnp.int32),
  }
  return {k: shapes[k] for k in task.device_fields}


@dataclasses.dataclass(frozen=True)
class TrainStep:
  """The update step and what it is compiled against (``make_train_step``)."""

  train_step: Callable  # jit: (params, stats, opt_state, batch, step) -> the three, donated, and metrics
  tx: optax.GradientTransformation
  schedules: dict[str, optax.Schedule]  # the learning rates, by parameter group ("head", ...)
  opt_shape: Any  # the optimizer state's structure, ShapeDtypeStruct leaves
  opt_sh: Any  # ... and its shardings
  batch_sh: jax.sharding.NamedSharding  # a global batch's sharding (leading axis over data, fsdp)
  repl: jax.sharding.NamedSharding  # replicated (the step number)


def make_train_step(config, parts: TrainParts, steps_per_epoch: int = 1) -> TrainStep:
  """The update step ``train`` runs, with its optimizer and shardings: the one definition that
  ``train`` and ``compile`` (``train/aot.py``, ahead of time for a TPU slice) both use."""
  mesh, task = parts.mesh, parts.task
  param_sh, stats_sh = parts.param_sh, parts.stats_sh
  accumulate = int(config.optim.get("accumulate_steps", 1))
  tx, schedules = make_optimizer(
    config.optim, config.total_steps // accumulate, max(steps_per_epoch // accumulate, 1)
  )
  opt_shape = jax.eval_shape(tx.init, _pure(parts.abs_params))
  opt_sh = sharding.optimizer_shardings(opt_shape, _pure(parts.abs_params), param_sh, mesh)
  batch_sh = sharding.batch_sharding(mesh)
  repl = sharding.replicated(mesh)
  graphdef, rest = parts.graphdef, parts.rest
  base_key = jax.random.key(config.seed)

  @functools.partial(
    jax.jit,
    in_shardings=(param_sh, stats_sh, opt_sh, batch_sh, repl),
    out_shardings=(param_sh, stats_sh, opt_sh, repl),
    donate_argnums=(0, 1, 2),
  )
  def train_step(params, stats, opt_state, batch, step):
    k_task, k_dropout = jax.random.split(jax.random.fold_in(base_key, step))

    def loss_fn(params):
      # the mesh as context: a kernel XLA does not partition (attention_impl='pallas') runs per
      # device in a shard_map over it (models.kernels.pallas_attention)
      with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        model = nnx.merge(graphdef, params, stats, rest)
        nnx.reseed(model, dropout=k_dropout, policy=_dropout_policy)
        loss, aux = task.loss(model, batch, k_task)
        return loss, (aux, _pure(nnx.state(model, nnx.BatchStat)))

    (_, (aux, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    aux = dict(aux, grad_norm=optax.global_norm(grads), lr=schedules["head"](step // accumulate))
    return params, new_stats, opt_state, aux

  return TrainStep(
    train_step=train_step,
    tx=tx,
    schedules=schedules,
    opt_shape=opt_shape,
    opt_sh=opt_sh,
    batch_sh=batch_sh,
    repl=repl,
  )


def run_eval(parts: TrainParts, eval_step, params, stats, config, split: str = "test") -> tasks.EvalResult:
  """One ordered pass over ``split``; every process gets the same metrics."""
  task, mesh = parts.task, parts.mesh
  pcfg = pipeline.PipelineConfig.from_config(
    config.data,
    batch_size=config.eval.batch_size // jax.process_count(),
    seed=config.seed,
    split=split,
    shuffle=False,
    flip=False,
    scale_range=None,
    num_epochs=1,
    worker_count=0,
  )
  source = pipeline.load_source(pcfg)
  outputs = []
  max_batches = int(config.eval.get("max_batches", 0)) or None
  for n, batch in enumerate(pipeline.eval_dataset(pcfg, split=split, source=source)):
    if max_batches is not None and n >= max_batches:
      break
    batch = task.with_labels(batch)
    device = pipeline.make_global_batch(
      {k: batch[k] for k in task.device_fields}, mesh, sharding.batch_sharding(mesh).spec
    )
    out = eval_step(params, stats, device)
    host = {k: np.asarray(batch[k]) for k in task.eval_fields if k in batch}
    if jax.process_count() > 1:
      out = multihost_utils.process_allgather(out, tiled=True)
      host = multihost_utils.process_allgather(host, tiled=True)
    out = {k: np.asarray(v) for k, v in out.items()}
    strings = [source[int(i)] if i >= 0 else None for i in host["index"]]
    for name in ("source", "camera", "action"):
      host[name] = np.asarray([s[name] if s is not None else "" for s in strings])
    outputs.append({**host, **out})
  return task.evaluate(outputs)


def interpreted_kernels_note(config, platform: str | None = None) -> str | None:
  """A warning line for a run whose attention kernels Pallas will interpret (``attention_impl``
  'pallas' off a TPU, ``platform`` being this host's): right, but many times slower."""
  platform = platform or jax.default_backend()
  if config.get("attention_impl", "auto") != "pallas" or platform == "tpu":
    return None
  return (
    f"warning: attention_impl='pallas' is written for a TPU; on {platform} Pallas interprets its "
    f"kernels, which is correct but slow (attention_impl='auto' picks {AUTO_IMPLS.get(platform, 'lanes')!r} here)"
  )


def train_and_evaluate(config, workdir: str | Path) -> dict[str, float]:
  """Trains ``config`` in ``workdir`` (resuming what is there) and returns the last eval metrics.

  The run directory is locked while it trains (``rundir.lock_run``); a directory whose model is
  not this config's is refused before anything is written.

  Raises:
    rundir.Preempted: SIGTERM stopped it after saving a checkpoint (``status.json`` says so).
  """
  workdir = Path(workdir)
  parts = build(config, workdir)
  with rundir.lock_run(workdir):
    return _train_and_evaluate(config, workdir, parts)


def _train_and_evaluate(config, workdir: Path, parts: TrainParts) -> dict[str, float]:
  mesh, task = parts.mesh, parts.task
  param_sh, stats_sh = parts.param_sh, parts.stats_sh
  is_main = jax.process_index() == 0
  print(
    f"{config.task}: {jax.process_count()} processes, {jax.device_count()} devices, mesh "
    f"{dict(mesh.shape)}, global batch {config.batch_size}",
    flush=True,
  )
  print(describe_data(config), flush=True)
  if note := interpreted_kernels_note(config):
    print(note, flush=True)
  meta = model_dir.model_meta(
    nnx.eval_shape(parts.init_model),
    task=config.task,
    source=f"perfectrep-jax train {config.task}",
    **task.model_meta(),
  )
  rundir.check_model(workdir, meta)  # every process: all stop together

  # ------------------------------------------------------------------------- input pipeline
  # Each process reads its own share (grain's process sharding), or, with data_global_order,
  # reads every global batch and keeps its slice: slower, but the run is then the same whatever
  # the number of processes.
  global_order = bool(config.get("data_global_order", False))
  pcfg = pipeline.PipelineConfig.from_config(
    config.data,
    batch_size=config.batch_size if global_order else parts.local_batch,
    seed=config.seed,
    split="train",
  )
  train_source = pipeline.load_source(pcfg)
  train_iter = pipeline.make_train_iterator(
    pcfg, source=train_source, shard=grain.sharding.NoSharding() if global_order else None
  )

  def next_local_batch():
    batch = next(train_iter)
    if global_order:
      lo = jax.process_index() * parts.local_batch
      batch = {k: v[lo : lo + parts.local_batch] for k, v in batch.items()}
    return task.with_labels(batch)

  steps_per_epoch = max(len(train_source) // config.batch_size, 1)
  if config.get("epochs", 0):  # upstream counts epochs; the loop counts steps
    with config.unlocked():
      config.total_steps = int(config.epochs) * steps_per_epoch

  # ------------------------------------------------------------------------- optimizer, update step
  step_parts = make_train_step(config, parts, steps_per_epoch)
  tx, opt_sh, batch_sh = step_parts.tx, step_parts.opt_sh, step_parts.batch_sh
  train_step = step_parts.train_step

  @functools.partial(jax.jit, out_shardings=(param_sh, stats_sh, opt_sh))
  def init_state():
    _, params, stats, _ = nnx.split(parts.init_model(), nnx.Param, nnx.BatchStat, ...)
    params = _pure(params)
    return params, _pure(stats), tx.init(params)

  eval_step = make_eval_step(parts)

  # ------------------------------------------------------------------------- checkpoint
  mngr = checkpoints.make_manager(workdir, config.keep_checkpoints)
  params, stats, opt_state = init_state()
  restored = checkpoints.restore_latest(
    mngr,
    model={
      "params": checkpoints.abstract_like(params, param_sh),
      "stats": checkpoints.abstract_like(stats, stats_sh),
    },
    opt=checkpoints.abstract_like(opt_state, opt_sh),
    data_iter=train_iter,
  )
  progress = {"step": 0, "best": None, "best_step": None}
  if restored is not None:
    step0, progress, model_state, opt_state = restored
    params, stats = model_state["params"], model_state["stats"]
    print(f"resumed from {workdir / checkpoints.CHECKPOINT_DIR} at step {step0}", flush=True)
  elif config.init.get("checkpoint"):
    params, stats = load_initialisation(config, parts, params, stats)
  if is_main:  # only now: a config the run's checkpoints do not fit was refused above
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
    (workdir / model_dir.MODEL_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    rundir.write_status(workdir, "running", step=int(progress["step"]))

  # ------------------------------------------------------------------------- loop
  reporter = Reporter(workdir, config.total_steps, config.batch_size, enabled=is_main)
  stop = {"signal": None}
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.update(signal=signum))
  last_eval: dict[str, float] = {}
  step = int(progress["step"])

  saved_steps: set[int] = set()

  def checkpoint(step, metric=None, force=False):
    saved_steps.add(step)
    checkpoints.save(
      mngr,
      step,
      model={"params": params, "stats": stats},
      opt=opt_state,
      train=dict(progress, step=step),
      data_iter=train_iter,
      metric=metric,
      force=force,
    )

  def evaluate_now(step):
    nonlocal last_eval
    result = run_eval(parts, eval_step, params, stats, config)
    last_eval = result.metrics
    reporter.eval(step, result)
    # Lower is better; of equal ones the latest, as checkpoints.best_rank keeps; NaN never.
    if np.isfinite(result.best_metric) and (
      progress["best"] is None or result.best_metric <= progress["best"]
    ):
      progress.update(best=result.best_metric, best_step=step)
    return result

  try:
    if restored is None and config.get("eval_at_start", False):
      checkpoint(0, evaluate_now(0).best_metric)  # every evaluated step is kept if it is best
    pending = []
    while step < config.total_steps:
      if stop["signal"] is not None:
        if step in saved_steps:  # stopped right after this step's own save (an evaluated step)
          print(f"received signal {stop['signal']}: step {step} is saved; stopping", flush=True)
        else:
          print(f"received signal {stop['signal']}: saving step {step} and stopping", flush=True)
          checkpoint(step, force=True)
        break
      local = next_local_batch()
      batch = pipeline.make_global_batch({k: local[k] for k in task.device_fields}, mesh, batch_sh.spec)
      params, stats, opt_state, aux = train_step(
        params, stats, opt_state, batch, jnp.asarray(step, jnp.int32)
      )
      step += 1
      pending.append(aux)
      if step % config.log_every == 0 or step == config.total_steps:
        reporter.train(step, jax.device_get(pending))  # one host transfer per log interval
        pending = []
      metric = None
      if config.eval_every and (step % config.eval_every == 0 or step == config.total_steps):
        metric = evaluate_now(step).best_metric
      if metric is not None or step % config.checkpoint_every == 0 or step == config.total_steps:
        checkpoint(step, metric)  # an evaluated step is saved: best.json names a kept checkpoint
        _fault_injection(mngr, step)
      reporter.advance(step)
  finally:
    signal.signal(signal.SIGTERM, previous)
    checkpoints.write_digests(mngr)  # waits for the last save
    mngr.close()
    reporter.close()
  if is_main and progress.get("best_step") is not None:
    (workdir / "best.json").write_text(
      json.dumps({"step": progress["best_step"], task.best_metric_name: abs(progress["best"])}) + "\n"
    )
  if stop["signal"] is not None:
    if is_main:
      rundir.write_status(workdir, "preempted", step=step, signal=int(stop["signal"]))
    raise rundir.Preempted(
      f"stopped by signal {stop['signal']} at step {step} of "
      f"{config.total_steps}; its checkpoint is saved: run the same command "
      "to resume"
    )
  if is_main:
    rundir.write_status(workdir, "finished", step=step)
  return last_eval


def _fault_injection(mngr, step: int) -> None:
  """``PERFECTREP_JAX_KILL_AFTER_CHECKPOINT=N``: SIGKILL this process once the checkpoint of step
  N is committed, as a preempted machine would die; ``PERFECTREP_JAX_TERM_AFTER_CHECKPOINT=N``:
  SIGTERM it right after that save, as a scheduler's notice landing then would (resume tests)."""
  target = os.environ.get("PERFECTREP_JAX_KILL_AFTER_CHECKPOINT")
  if target and int(target) == step:
    checkpoints.write_digests(mngr)
    os.kill(os.getpid(), signal.SIGKILL)
  target = os.environ.get("PERFECTREP_JAX_TERM_AFTER_CHECKPOINT")
  if target and int(target) == step:
    os.kill(os.getpid(), signal.SIGTERM)


def load_initialisation(config, parts: TrainParts, params, stats):
  """Weights to start from: a model dir / run dir, or a PyTorch ``.bin`` (converted on the fly).

  How the source's weights map onto the task's model is the task's (``Task.initial_params``): a
  lifter's initialise an action model's backbone.
  """
  path = Path(config.init.checkpoint)
  if path.suffix in (".bin", ".pt", ".pth"):
    state = convert.find_state_dict(convert.load_torch_checkpoint(path), str(path))
    kind, cfg, state = convert.infer_model(state, int(config.init.get("num_heads", 8)))
    source = model_dir.build_model(kind, cfg)
    convert.load_state_dict(source, state, str(path))
  else:
    source, _ = model_dir.load_model(path)
  merged = _merge_matching(params, parts.task.initial_params(source), str(path))
  print(f"initialised from {path}", flush=True)
  return jax.device_put(merged, parts.param_sh), stats


def _merge_matching(target: dict, source: dict, where: str) -> dict:
  """Copies every array of ``source`` into ``target`` at the same path; shapes must agree."""
  out = dict(target)
  for key, value in source.items():
    if key not in target:
      continue  # e.g. the regression head of a lifter when initialising an action model
    if isinstance(value, dict):
      out[key] = _merge_matching(target[key], value, where)
    else:
      if tuple(value.shape) != tuple(target[key].shape):
        raise UserError(
          f"{where}: weight {key} has shape {tuple(value.shape)}, the config's "
          f"model needs {tuple(target[key].shape)}"
        )
      out[key] = jnp.asarray(value, target[key].dtype)
  return out


def evaluate(config, workdir: str | Path, step: int | None = None) -> tasks.EvalResult:
  """Evaluates the run in ``workdir`` (its best checkpoint, or ``step``) on the test split."""
  parts = build(config)
  model, _ = model_dir.load_model(workdir, step=step)
  params = jax.device_put(_pure(nnx.state(model, nnx.Param)), parts.param_sh)
  stats = jax.device_put(_pure(nnx.state(model, nnx.BatchStat)), parts.stats_sh)
  result = run_eval(parts, make_eval_step(parts), params, stats, config)
  return result
