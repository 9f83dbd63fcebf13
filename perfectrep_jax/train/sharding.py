"""Device mesh and parameter placement, from config data.

The mesh has three named axes: ``data`` (pure data parallelism), ``fsdp`` (data parallelism with
parameters and optimizer state sharded over it) and ``tensor`` (model parallelism over hidden
widths). The batch is split over ``("data", "fsdp")``. Parameters carry logical axis names
(``embed``, ``mlp``, ``heads``, ``qkv``, ``rep``; see ``models/dstformer.py``) and the config's
``sharding_rules`` map those to mesh axes, e.g.::

    (("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"), ("qkv", "tensor"))

A logical axis whose mesh axis does not divide the array's dimension is left replicated, so any
mesh shape works with any model width.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from perfectrep_jax.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def initialize_distributed(
  coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
  """Joins a multi-process run when there is one; a no-op for a single process.

  With explicit settings they are used; otherwise ``jax.distributed.initialize()`` reads them from
  the cluster (SLURM, TPU pod, Kubernetes) whenever the environment says the job has several
  processes.
  """
  if coordinator:
    jax.distributed.initialize(
      coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )
    return
  slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
  if slurm_tasks > 1 or os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()


def initialize_distributed_from_config(config) -> None:
  """``initialize_distributed`` with ``config.distributed``; safe to call more than once."""
  if jax.distributed.is_initialized():
    return
  d = config.distributed
  initialize_distributed(d.get("coordinator") or None, d.get("num_processes") or None, d.get("process_id"))


def mesh_shape(mesh_cfg: Mapping[str, int], num_devices: int) -> tuple[int, int, int]:
  """Resolves a config like ``{data: -1, fsdp: 2, tensor: 1}`` (-1 = the rest) on N devices."""
  sizes = [int(mesh_cfg.get(axis, 1)) for axis in MESH_AXES]
  unknown = [k for k in mesh_cfg if k not in MESH_AXES]
  if unknown:
    raise UserError(f"mesh: unknown axes {unknown}; the axes are {MESH_AXES}")
  if sum(s == -1 for s in sizes) > 1:
    raise UserError(f"mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
  if any(s == 0 or s < -1 for s in sizes):
    raise UserError(f"mesh: sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
  known = math.prod(s for s in sizes if s != -1)
  if num_devices % known:
    raise UserError(f"mesh {dict(zip(MESH_AXES, sizes))} does not divide the {num_devices} devices")
  sizes = [num_devices // known if s == -1 else s for s in sizes]
  if math.prod(sizes) != num_devices:
    raise UserError(
      f"mesh {dict(zip(MESH_AXES, sizes))} uses {math.prod(sizes)} devices, but there are {num_devices}"
    )
  return tuple(sizes)


def make_mesh(mesh_cfg: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ``Mesh`` over all (or the given) devices with axes ``data, fsdp, tensor``."""
  devices = list(devices) if devices is not None else jax.devices()
  shape = mesh_shape(mesh_cfg, len(devices))
  # Auto axes: XLA propagates shardings from the annotated inputs and parameters (GSPMD), so the
  # model code needs no sharding types of its own.
  auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  if devices == jax.devices():
    return jax.make_mesh(shape, MESH_AXES, devices=devices, axis_types=auto)
  return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=auto)


def logical_to_mesh(
  names: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Sequence[tuple[str, Any]]
) -> P:
  """Maps one array's logical axis names to a ``PartitionSpec`` on ``mesh``.

  A mesh axis is used at most once per array, and only where it divides the dimension.
  """
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name, dim in zip(names, shape):
    target = table.get(name) if name is not None else None
    axes = (target,) if isinstance(target, str) else tuple(target or ())
    size = math.prod(mesh.shape[a] for a in axes) if axes else 1
    if axes and not used.intersection(axes) and size > 1 and dim % size == 0:
      used.update(axes)
      spec.append(axes[0] if len(axes) == 1 else axes)
    else:
      spec.append(None)
  return P(*spec)


def optimizer_shardings(opt_state_shape: Any, params: Any, param_shardings: Any, mesh: Mesh):
  """Shardings of an optax state: a leaf whose key path ends with a parameter's path and has its
  shape (Adam's moments, in any nesting of chain / multi_transform / MultiSteps) follows that
  parameter; everything else (counts, schedules' state) is replicated."""
  by_path = {}
  for (path, leaf), sharding in zip(
    jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(param_shardings)
  ):
    by_path[tuple(path)] = (tuple(leaf.shape), sharding)
  longest = max((len(p) for p in by_path), default=0)

  def one(path, leaf):
    path = tuple(path)
    for n in range(min(longest, len(path)), 0, -1):
      hit = by_path.get(path[-n:])
      if hit is not None and hit[0] == tuple(leaf.shape):
        return hit[1]
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(one, opt_state_shape)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over ``data`` and ``fsdp``, the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def pure_shardings(state: nnx.State, mesh: Mesh, rules: Sequence[tuple[str, Any]]) -> dict:
  """NamedShardings of an ``nnx.State`` (abstract or concrete) from its variables' logical axes
  (``out_sharding`` metadata) and ``rules``, shaped as ``nnx.to_pure_dict(state)`` (nested dicts)."""
  variables = {tuple(path): var for path, var in nnx.to_flat_state(state)}

  def one(path, _):
    var = variables[tuple(getattr(k, "key", getattr(k, "idx", k)) for k in path)]
    value = var.get_value() if hasattr(var, "get_value") else var.value
    names = var.get_metadata().get("out_sharding")
    if not names or len(names) != len(value.shape):
      return NamedSharding(mesh, P())
    return NamedSharding(mesh, logical_to_mesh(names, value.shape, mesh, rules))

  return jax.tree_util.tree_map_with_path(one, nnx.to_pure_dict(state))
