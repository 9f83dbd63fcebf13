"""Where a compiled program's memory traffic goes: bytes per model part and kind of work, and its
collectives.

``collectives(hlo_text)`` counts the collective instructions of a compiled module and the bytes of
their results on one device (what crosses the chips' interconnect).

``traffic(hlo_text)`` reads the text of a compiled (optimised, scheduled) XLA module, as
``compiled.as_text()`` gives it, and adds up, for every instruction that runs outside a fusion,
the bytes of its operands and its result: what the instruction reads from and writes to the
chip's HBM, padded to the layout's tiles (a TPU lays the two minor dimensions out in tiles of 8 x
128, so a minor axis of 17 joints takes the room of 128). Operands and results in another memory
space (``S(n)``: on-chip memory) are not HBM traffic and are left out; so are instructions that move
nothing (parameters, constants, bitcasts, tuples). An asynchronous copy or slice counts the data it
moves once.

Each instruction is filed twice, by what it is and by where it comes from:

- kind: ``matmul`` (a fusion around a dot or convolution, or a library call for one, as
  cuBLAS's on a GPU), ``layout`` (a copy, transpose,
  reshape, concatenate, slice or pad: data moved, nothing computed), ``cast`` (a dtype
  conversion alone), ``collective``, ``kernel`` (a Pallas kernel: its operands and results) and
  ``elementwise`` (the rest: activations, norms, reductions, optimizer updates);
- part: the innermost ``jax.named_scope`` of the model that its ``op_name`` names
  (``PARTS``; the DSTformer opens them), with ``backward`` when it belongs to the gradient
  (a ``transpose(...)`` in its ``op_name``); ``other`` for the rest of the step.

This is a count over the program's text, not XLA's cost model: its total is not XLA's ``bytes
accessed`` (which counts each fusion's reads its own way), and like it, it does not know what the
TPU compiler keeps on chip between instructions. Read it for shares, not for seconds.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

# The named scopes the DSTformer opens (innermost first wins): attention's three stages, the
# MLP and the norms.
PARTS = ("qkv", "scores", "proj", "mlp", "layer_norm")
KINDS = ("matmul", "layout", "cast", "elementwise", "collective", "kernel")
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
DTYPE_BYTES = {
  "pred": 1,
  "s8": 1,
  "u8": 1,
  "f8e4m3fn": 1,
  "f8e5m2": 1,
  "bf16": 2,
  "f16": 2,
  "s16": 2,
  "u16": 2,
  "f32": 4,
  "s32": 4,
  "u32": 4,
  "f64": 8,
  "s64": 8,
  "u64": 8,
  "c64": 8,
  "c128": 16,
}
_COLLECTIVE = re.compile(r"\s(" + "|".join(COLLECTIVES) + r")(-start)?\(")
_ARRAY = re.compile(r"\b([a-z]+[0-9]*[a-z0-9]*)\[([0-9,]*)\](\{[^}]*\})?")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*?) ([a-z][a-z0-9\-]*)\((.*)$")
_HEADER = re.compile(r"^(?:ENTRY )?%([\w.\-]+) ")
_LAYOUT = re.compile(r"\{([0-9,]*)(?::(.*))?\}")
_TILE = re.compile(r"T\(([0-9,]+)\)")
_MEMORY_SPACE = re.compile(r"S\((\d+)\)")
_NOTHING_MOVED = {
  "parameter",
  "constant",
  "bitcast",
  "get-tuple-element",
  "tuple",
  "after-all",
  "partition-id",
  "replica-id",
  "copy-done",
  "slice-done",
}
# custom calls the TPU compiler leaves as markers: they move no data (a kernel's custom call counts)
_MARKERS = ("ConcatBitcast", "AssumeGatherIndicesInBound")
_MOVES = {"copy", "transpose", "reshape", "concatenate", "slice", "pad", "copy-start", "slice-start"}


def array_bytes(dtype: str, dims: str, layout: str | None, anywhere: bool = False) -> int:
  """HBM bytes of one array ``dtype[dims]{layout}``, padded to its first tile; 0 for an array in
  another memory space unless ``anywhere``."""
  if dtype not in DTYPE_BYTES:
    return 0
  shape = [int(d) for d in dims.split(",") if d]
  if layout:
    m = _LAYOUT.fullmatch(layout)
    if m and m.group(2):
      space = _MEMORY_SPACE.search(m.group(2))
      if space and space.group(1) != "0" and not anywhere:
        return 0
      tile = _TILE.search(m.group(2))
      minor_to_major = [int(d) for d in m.group(1).split(",") if d]
      if tile and shape and minor_to_major:
        sizes = [int(t) for t in tile.group(1).split(",")]
        for axis, size in zip(minor_to_major, reversed(sizes)):  # the last tile size is the most minor
          shape[axis] = -(-shape[axis] // size) * size
  return math.prod(shape) * DTYPE_BYTES[dtype]


def shape_bytes(text: str) -> int:
  """HBM bytes of every array in a shape text (one array or a tuple)."""
  return sum(array_bytes(*a) for a in _ARRAY.findall(text))


def collectives(hlo_text: str) -> dict[str, dict[str, int]]:
  """{kind: {count, bytes}} of the collectives in a compiled module's text.

  Each instruction counts once (an async ``-start`` and not its ``-done``); its bytes are those
  of its result on one device: every array of a combined (tuple) all-reduce, the largest array of
  an async start's (operand, result, context) tuple. Instructions are counted where they appear
  in the text, once even when a loop runs them many times.
  """
  out = {kind: {"count": 0, "bytes": 0} for kind in COLLECTIVES}
  for line in hlo_text.splitlines():
    m = _COLLECTIVE.search(line)
    if not m or " = " not in line[: m.start() + 1]:
      continue
    result = line[line.index(" = ") + 3 : m.start() + 1]
    sizes = [
      math.prod(int(d) for d in dims.split(",") if d) * DTYPE_BYTES.get(dtype, 4)
      for dtype, dims, _ in _ARRAY.findall(result)
      if dtype in DTYPE_BYTES
    ]
    combined = m.group(1) == "all-reduce" or not m.group(2)  # the tuple is all results
    out[m.group(1)]["count"] += 1
    out[m.group(1)]["bytes"] += sum(sizes) if combined else max(sizes, default=0)
  return out


def _computations(hlo_text: str):
  """{computation: [(name, shape, opcode, rest of line)]} and the computations fusions call."""
  comps: dict[str, list] = {}
  called: set[str] = set()
  current = None
  for line in hlo_text.splitlines():
    if line and not line[0].isspace():
      head = _HEADER.match(line)
      current = head.group(1) if head and line.rstrip().endswith("{") else None
      if current:
        comps[current] = []
      continue
    m = _INSTRUCTION.match(line)
    if m and current is not None:
      comps[current].append(m.groups())
      if m.group(3) == "fusion":
        called.update(re.findall(r"calls=%([\w.\-]+)", line))
      called.update(re.findall(r"to_apply=%([\w.\-]+)", line))
  return comps, called


def _kind(opcode: str, fused_ops: set[str], primitive: str) -> str:
  if opcode.startswith(COLLECTIVES):
    return "collective"
  if opcode in ("dot", "convolution") or fused_ops & {"dot", "convolution"}:
    return "matmul"
  if opcode == "custom-call" and primitive in ("dot_general", "conv_general_dilated"):
    return "matmul"  # a library's matmul (cuBLAS on a GPU) called from the program
  if opcode == "custom-call" and primitive == "pallas_call":
    return "kernel"
  if opcode in _MOVES or (opcode == "fusion" and fused_ops <= {*_MOVES, "bitcast", "parameter", "broadcast"}):
    return "layout"
  if opcode == "convert" or (opcode == "fusion" and primitive == "convert_element_type"):
    return "cast"
  return "elementwise"


def _part(op_name: str) -> str:
  found = [(op_name.rfind(p + ")"), op_name.rfind(p + "/"), p) for p in PARTS]
  hits = [(max(a, b), p) for a, b, p in found if max(a, b) >= 0]
  part = max(hits)[1] if hits else "other"
  for mode in ("spatial", "temporal"):
    if part in ("qkv", "scores", "proj") and f"{mode}_attention" in op_name:
      part = f"{mode} {part}"
  return f"{part} (backward)" if "transpose(" in op_name else part


def traffic(hlo_text: str) -> dict:
  """Bytes moved per chip by one run of a compiled program, by model part and kind of work.

  Returns:
    ``{"total": bytes, "by_kind": {kind: bytes}, "by_part": {part: bytes},
    "cells": [{"part", "kind", "bytes"}, ...]}``, the cells largest first (see the module
    docstring for what is counted).
  """
  comps, called = _computations(hlo_text)
  shapes = {name: shape for insts in comps.values() for name, shape, _, _ in insts}
  opcodes = {c: {op for _, _, op, _ in insts} for c, insts in comps.items()}
  cells: dict[tuple[str, str], int] = defaultdict(int)
  for comp, insts in comps.items():
    if comp in called:
      continue
    for _, shape, opcode, rest in insts:
      if opcode in _NOTHING_MOVED or opcode.endswith("-done"):
        continue
      if opcode == "custom-call" and any(f'custom_call_target="{m}"' in rest for m in _MARKERS):
        continue
      args = rest.split(")", 1)[0]
      if opcode in ("copy-start", "slice-start"):  # ((operand), result, context): what is moved,
        arrays = _ARRAY.findall(shape)  # once: read from HBM, written to it, or both
        if len(arrays) < 2:
          continue
        source, dest = arrays[0], arrays[1]
        size = (array_bytes(*source) > 0) * array_bytes(*dest, anywhere=True) + array_bytes(*dest)
      else:
        size = shape_bytes(shape) + sum(
          shape_bytes(shapes.get(o, "")) for o in re.findall(r"%([\w.\-]+)", args)
        )
      if not size:
        continue
      fused = set()
      for c in re.findall(r"calls=%([\w.\-]+)", rest):
        fused |= opcodes.get(c, set())
      op_name = re.search(r'op_name="([^"]*)"', rest)
      op_name = op_name.group(1) if op_name else ""
      primitive = op_name.rsplit("/", 1)[-1].split(";")[0] if op_name else ""
      cells[(_part(op_name), _kind(opcode, fused, primitive))] += size
  by_kind: dict[str, int] = dict.fromkeys(KINDS, 0)
  by_part: dict[str, int] = defaultdict(int)
  for (part, kind), size in cells.items():
    by_kind[kind] += size
    by_part[part] += size
  ranked = sorted(cells.items(), key=lambda kv: -kv[1])
  return {
    "total": sum(cells.values()),
    "by_kind": dict(by_kind),
    "by_part": dict(by_part),
    "cells": [{"part": part, "kind": kind, "bytes": size} for (part, kind), size in ranked],
  }


def _size(n: float) -> str:
  return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def table(report: dict, top: int = 12) -> str:
  """The breakdown as text: shares by kind, then the ``top`` (part, kind) cells."""
  total = report["total"] or 1
  kinds = sorted(report["by_kind"].items(), key=lambda kv: -kv[1])
  lines = [
    f"memory traffic counted from the program's text: {_size(report['total'])} per chip per step",
    "  by kind: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in kinds),
    "  largest (part, kind):",
  ]
  for cell in report["cells"][:top]:
    size = cell["bytes"]
    lines.append(f"    {100 * size / total:5.1f}%  {_size(size):>10}  {cell['part']}: {cell['kind']}")
  return "\n".join(lines)
