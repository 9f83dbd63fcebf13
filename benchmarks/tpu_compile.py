"""TPU figures without a TPU (issue 20): ``train``'s step compiled ahead of time for TPU slices.

    nice -n 10 python benchmarks/tpu_compile.py --write-readme [--max-minutes M] [--models full]
    python benchmarks/tpu_compile.py --readme-only     # the README block from what is compiled

For PerfectRep's full config and MotionBERT-Lite (``configs/pretrain.py:full`` / ``:lite``) in
bfloat16 on v5e-16, v5e-256, v5p-128 and v6e-16 (``perfectrep_jax/train/aot.py``, the code behind
``perfectrep-jax compile``): the data-parallel mesh and a few others (the best of them is the "best
mesh"), and the largest power-of-two batch per chip that fits with and without remat. Each compile
is kept in ``benchmarks/tpu_compile.json`` as soon as it is done, so a rerun (or one cut short by
``--max-minutes``) goes on where the last stopped; the README block says which rows are missing.
A row compiled from an older revision of its platform's train step (``STEP_REVISIONS``) is marked
as such in the README and compiled again by the next run, in the same order as the missing ones.

Every time and MFU here is an ESTIMATE from XLA's cost analysis, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from perfectrep_jax.fileio import atomic_write_bytes, print_block
from perfectrep_jax.hostmem import cpu_model
from perfectrep_jax.train import aot
from perfectrep_jax.train.config_load import config_from_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
README = Path(__file__).resolve().parent / "README.md"
CACHE = Path(__file__).resolve().parent / "tpu_compile.json"
BEGIN, END = "<!-- results:tpu-compile:begin -->", "<!-- results:tpu-compile:end -->"

MODELS = {"full": "PerfectRep full (dim 512, mlp 2)", "lite": "MotionBERT-Lite (dim 256, mlp 4)"}
# name -> (topology, chips): Cloud's names count chips for v5e/v6e and TensorCores for v5p (2 a chip)
# and a node of 8 NVIDIA H100s (through JAX's CUDA plugin, the gpu-compile extra, in its own environment)
SLICES = {
  "v5e-16": "v5e:4x4",
  "v5e-256": "v5e:16x16",
  "v5p-128": "v5p:4x4x4",
  "v6e-16": "v6e:4x4",
  "h100x8": "h100:8",
}
CHIPS_IN = {"v5e-16": 16, "v5e-256": 256, "v5p-128": 64, "v6e-16": 16, "h100x8": 8}
PER_CHIP = 8  # clips per chip for the mesh rows and the scaling line
MAX_PER_CHIP = 1024  # the largest-batch search stops here
# Changes to the model or the step that change the compiled program, per platform; a cached row
# records the revision it was compiled from (none: 1). Raise it with such a change, and say what
# changed.
STEP_REVISIONS = {"tpu": 6, "gpu": 3}
REVISIONS = {
  1: "up to 3 Dec 2026",
  2: "TPU from 4 Dec 2026: qkv_layout 'heads', attention's q, k and v projected straight into "
  "the axis order it works in (no reshape of the (..., 3C) projection into heads, no transposes)",
  3: "GPU and TPU, 4 Dec 2026: attention_impl 'lanes', spatial attention with a "
  "clip's frames on the last axis instead of 17-wide tiles of joints",
  4: "TPU, 4 Dec 2026: attention_impl 'tpu', temporal attention through "
  "compact_attention too (its (T, T) weights kept once, in bfloat16)",
  5: "TPU, 4 Dec 2026: attention_impl 'pallas', spatial and temporal attention in Pallas kernels "
  "that keep the weights on chip, and under qkv_layout 'heads' the norms and MLPs on the "
  "(B, T, J, C) arrays as they are (no copy into a (tokens, C) matrix)",
  6: "TPU, 5 Dec 2026: the Pallas kernels take q, k and v stacked as the projection writes them "
  "and give their gradient stacked alike (no copy to split them, none to join the gradients)",
}


def config_for(model: str, n: int, per_chip: int, mesh: tuple[int, int, int], remat: str = ""):
  c = config_from_file(ROOT / "configs" / "pretrain.py", model)
  c.compute_dtype = "bfloat16"
  c.batch_size = per_chip * n
  c.remat = remat
  c.mesh.update(dict(zip(("data", "fsdp", "tensor"), mesh)))
  return c


def meshes(n: int) -> list[tuple[tuple[int, int, int], str]]:
  """(mesh, what it is) tried per slice: data-parallel first (the baseline), then the others."""
  return [
    ((n, 1, 1), "data-parallel"),
    ((1, n, 1), "fsdp"),
    ((n // 2, 1, 2), "data x tensor 2"),
    ((1, n // 2, 2), "fsdp x tensor 2"),
  ]


def key(model, slice_name, mesh, per_chip, remat) -> str:
  return f"{model}|{slice_name}|{'x'.join(map(str, mesh))}|{per_chip}|{remat or 'off'}"


def load_cache() -> dict:
  return json.loads(CACHE.read_text()) if CACHE.exists() else {}


TRAFFIC_CELLS_KEPT = 5


def _compact(report: dict) -> dict:
  """``report`` as the tracked cache keeps it, small as rows are added: a mesh row (``PER_CHIP``
  clips per chip, no remat) keeps its traffic by part and its largest cells; a row of the
  largest-batch search keeps the traffic's total and split by kind (what its estimate and the
  table read), not where each byte goes, which the mesh row of its slice already tells."""
  traffic = report.get("traffic")
  if not traffic:
    return report
  per_chip = report.get("batch_size", 0) // max(report.get("devices", 1), 1)
  if per_chip == PER_CHIP and not report.get("remat"):
    return dict(report, traffic=dict(traffic, cells=traffic.get("cells", [])[:TRAFFIC_CELLS_KEPT]))
  return dict(report, traffic={k: v for k, v in traffic.items() if k not in ("cells", "by_part")})


def save_cache(cache: dict) -> None:
  """Writes ``cache`` merged into what is on disk (runs over other slices may be writing too),
  one row per line: of two versions of a row, the one from the newer revision of the step (a
  run holds every row as it found them at its start, so its stale copy of a row another run
  has since compiled again must not win), else ``cache``'s."""
  disk = load_cache()
  newest = {k: v if k not in disk or revision(v) >= revision(disk[k]) else disk[k] for k, v in cache.items()}
  merged = {k: _compact(v) for k, v in dict(disk, **newest).items()}
  cache.update(merged)
  rows = (
    f"{json.dumps(k)}: {json.dumps(v, sort_keys=True, separators=(',', ':'))}"
    for k, v in sorted(merged.items())
  )
  atomic_write_bytes(CACHE, ("{\n" + ",\n".join(rows) + "\n}\n").encode())


def jobs(models: list[str], slices: list[str]) -> list[tuple]:
  """(model, slice, mesh, per_chip, remat) in the order that makes a cut-short run most useful:
  the data-parallel rows (and the scaling pair) first, then the other meshes, then the batches."""
  out = []
  for name in slices:
    for model in models:
      out.append((model, name, meshes(_n(name))[0][0], PER_CHIP, ""))
  for name in slices:
    for model in models:
      out += [(model, name, mesh, PER_CHIP, "") for mesh, _ in meshes(_n(name))[1:]]
  return out


def _n(slice_name: str) -> int:
  return CHIPS_IN[slice_name]


def revision(row: dict) -> int:
  """The revision of the train step ``row`` was compiled from."""
  return row.get("step_revision", 1)


def current_revision(row: dict) -> int:
  return STEP_REVISIONS["gpu" if row.get("chip") in aot.GPUS else "tpu"]


def compile_one(devices, job, cache: dict, log) -> dict:
  k = key(*job)
  if k in cache and revision(cache[k]) == current_revision(cache[k]):
    return cache[k]
  model, slice_name, mesh, per_chip, remat = job
  report = aot.compile_train_step(
    config_for(model, _n(slice_name), per_chip, mesh, remat), devices, SLICES[slice_name]
  )
  report.pop("compiled", None)
  report["cpu"] = cpu_model()
  report["loadavg_1min"] = os.getloadavg()[0]
  report["step_revision"] = current_revision(report)
  cache[k] = report
  save_cache(cache)
  log(
    f"{k}: fits {report['fits']}, {report['per_device_memory_bytes'] / 2**30:.2f} GiB/chip, "
    f"step {report['estimated_step_s']}, compile {report['compile_s']:.0f} s"
  )
  return report


def largest_batch(devices, model, slice_name, remat, cache, log, deadline) -> None:
  """Doubles the batch per chip (data-parallel mesh) until the compiler refuses it."""
  mesh = meshes(_n(slice_name))[0][0]
  per_chip = PER_CHIP
  while per_chip <= MAX_PER_CHIP and time.time() < deadline:
    if not compile_one(devices, (model, slice_name, mesh, per_chip, remat), cache, log)["fits"]:
      return
    per_chip *= 2


# ---------------------------------------------------------------------------- README
def _fmt_mesh(mesh: dict) -> str:
  return "x".join(str(mesh[a]) for a in ("data", "fsdp", "tensor"))


def _mib(coll) -> str:
  if not coll:
    return "-"
  total = sum(v["bytes"] for v in coll.values())
  return f"{total / 2**20:.0f}"


def _bounds(r: dict) -> str:
  """Which term of the roofline sets the estimated step (aot.estimate_step_s)."""
  _, peak, hbm_bw, ici_bw = next(v for kind, v in aot.CHIPS.items() if aot.CHIP_NAMES[kind] == r["chip"])
  compute = r["flops_per_step"] / r["devices"] / peak
  wire = sum(v["bytes"] * (2 if kind == "all-reduce" else 1) for kind, v in r["collectives"].items())
  coll = wire / ici_bw
  memory = (
    r["bytes_accessed_per_device"] / hbm_bw
    if r.get("bytes_accessed_per_device")
    else r["estimated_step_s"] - coll
  )  # older reports: the roofline's other term
  bound = "HBM bytes" if memory > compute else "FLOPs"
  gpu = r["chip"] in aot.GPUS
  counted = "the program's HBM traffic" if gpu else "XLA's bytes accessed"
  link = "NVLink" if gpu else "ICI"
  return (
    f"FLOPs at peak {compute * 1e3:.1f} ms, {counted} at HBM bandwidth {memory * 1e3:.1f} ms, "
    f"collectives over {link} {coll * 1e3:.2f} ms: bound by {bound}; "
    f"at the FLOP bound alone {r['batch_size'] / (compute + coll):.0f} clips/s"
  )


STALE_MARK = "†"


def _stale(*rows: dict) -> str:
  """The mark of a figure made from a row of an older revision of the train step."""
  return f" {STALE_MARK}" if any(revision(r) < current_revision(r) for r in rows) else ""


def render(cache: dict, models: list[str]) -> str:
  lines = [
    "| model | slice | mesh (data x fsdp x tensor) | batch/chip | memory/chip | fits | "
    "est. clips/s | est. MFU | collective MiB/chip/step | compile s |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  missing = []
  best = {}
  for model in models:
    for name in SLICES:
      rows = []
      for mesh, what in meshes(_n(name)):
        r = cache.get(key(model, name, mesh, PER_CHIP, ""))
        if r is None:
          missing.append(f"{model} {name} {what}")
          continue
        rows.append((what, r))
      fitting = [r for _, r in rows if r["fits"] and r["estimated_step_s"]]
      current = [r for r in fitting if not _stale(r)] or fitting  # the best of one step's rows
      if current:
        best[(model, name)] = min(current, key=lambda r: r["estimated_step_s"])
      for what, r in rows:
        tag = " (best)" if best.get((model, name)) is r and len(fitting) > 1 else ""
        tag += _stale(r)
        _, clips, mfu = aot.estimate_cells(r, missing="-", clips_format=".0f")
        lines.append(
          f"| {model} | {name} | {_fmt_mesh(r['mesh'])} {what}{tag} | {PER_CHIP} | "
          f"{r['per_device_memory_bytes'] / 2**30:.2f} GiB | "
          f"{'yes' if r['fits'] else 'no'} | {clips} | {mfu} | {_mib(r['collectives'])}"
          f"{'' if r.get('collective_bytes') == 'tuple-sum' or not r['fits'] else '*'} | "
          f"{r['compile_s']:.0f} |"
        )
  lines += [
    "",
    "Largest batch per chip that fits (data-parallel mesh, powers of two from "
    f"{PER_CHIP}, up to {MAX_PER_CHIP}), and the batch of those compiled with the highest "
    "estimated clips/s:",
    "",
    "| model | slice | remat off | remat full |",
    "|---|---|---|---|",
  ]
  for model in models:
    for name in SLICES:
      cells = []
      for remat in ("", "full"):
        runs = sorted(
          (int(k.split("|")[3]), v)
          for k, v in cache.items()
          if k.startswith(f"{model}|{name}|{_n(name)}x1x1|") and k.endswith(f"|{remat or 'off'}")
        )
        sizes = [(b, v["fits"]) for b, v in runs]
        fastest = max(
          (
            (v["estimated_clips_per_s"], b, v)
            for b, v in runs
            if v["fits"] and v.get("estimated_clips_per_s")
          ),
          default=None,
          key=lambda t: t[0],
        )
        fit = [b for b, ok in sizes if ok]
        refused = [b for b, ok in sizes if not ok]
        if refused and fit:
          cells.append(f"{max(fit)} ({min(refused)} does not fit)")
        elif fit and max(fit) >= MAX_PER_CHIP:
          cells.append(f">= {max(fit)}")
        elif refused:
          cells.append(f"< {min(refused)}")
        else:
          cells.append("not compiled yet" if not fit else f">= {max(fit)} (search not finished)")
        if fastest is not None and len(fit) > 1:
          _, clips, mfu = aot.estimate_cells(fastest[2], missing="-", clips_format=",.0f")
          cells[-1] += f"; fastest at {fastest[1]}: {clips} clips/s, {mfu}"
        cells[-1] += _stale(*(v for _, v in runs))
      lines.append(f"| {model} | {name} | {cells[0]} | {cells[1]} |")
  lines.append("")
  for k, r in sorted(cache.items()):
    if r.get("estimated_step_s") and int(k.split("|")[3]) == PER_CHIP and k.split("|")[4] == "off":
      lines.append(f"- {k.split('|')[0]} {k.split('|')[1]} {_fmt_mesh(r['mesh'])}{_stale(r)}: {_bounds(r)}.")
  for model in models:
    small, big = (cache.get(key(model, s, (_n(s), 1, 1), PER_CHIP, "")) for s in ("v5e-16", "v5e-256"))
    if small and big and small["estimated_clips_per_s"] and big["estimated_clips_per_s"]:
      eff = (big["estimated_clips_per_s"] / 256) / (small["estimated_clips_per_s"] / 16)
      lines.append(
        f"- Weak scaling, {model}, data-parallel, {PER_CHIP} clips/chip: v5e-16 "
        f"{small['estimated_clips_per_s']:.0f} -> v5e-256 "
        f"{big['estimated_clips_per_s']:.0f} clips/s, {100 * eff:.0f}% of linear "
        f"(from the estimates){_stale(small, big)}."
      )
    else:
      lines.append(
        f"- Weak scaling, {model}: needs the v5e-16 and v5e-256 data-parallel rows (not both compiled yet)."
      )
  if any(r.get("collective_bytes") != "tuple-sum" and r["fits"] for r in cache.values()):
    lines.append(
      "- \\* compiled before the HLO parser summed the arrays of a combined (tuple) "
      "all-reduce: these bytes count only its largest array, so the gradients' "
      "all-reduce is undercounted (its time over ICI, about 2 x 4 bytes x parameters "
      "/ ICI bandwidth, stays a few ms against the step's estimate)."
    )
  einsum = sorted(
    f"{k.split('|')[0]} {k.split('|')[1]} {k.split('|')[2]} batch {k.split('|')[3]}"
    for k, r in cache.items()
    if r.get("attention_impl") is None
  )
  if einsum:
    lines.append(
      "- Compiled before `compile` resolved `attention_impl=auto` as on a TPU, so with "
      "the explicit einsum attention the CPU host picks (a TPU run takes "
      "`jax.nn.dot_product_attention`): " + "; ".join(einsum) + "."
    )
  stale = [r for r in cache.values() if revision(r) < current_revision(r)]
  if stale:
    now = sorted({current_revision(r) for r in stale})
    lines.append(
      f"- {STALE_MARK} compiled from an older revision of the train step "
      f"({'; '.join(f'{n}: {REVISIONS[n]}' for n in sorted({revision(r) for r in stale}))}; "
      f"now {'; '.join(f'{n}: {REVISIONS[n]}' for n in now)}): {len(stale)} of {len(cache)} rows, "
      "compiled again, in the table's order, by the next run of the command."
    )
  if any(r.get("chip") in aot.GPUS for r in cache.values()):
    lines.append(
      "- h100x8: compiled without a GPU through JAX's CUDA plugin (`gpu-compile` extra) from the "
      "H100's datasheet figures, with cuBLAS matmuls (XLA's Triton GEMMs need a GPU to tile on); "
      "the GPU compiler gives no cost analysis, so the estimate's FLOPs are the unpartitioned "
      "step's (XLA's HLO cost analysis on the CPU) and its bytes the compiled program's HBM "
      "traffic (`hlo_traffic`); NVLink at 450 GB/s each way."
    )
  cpus = sorted({r.get("cpu", "?") for r in cache.values()})
  loads = [r.get("loadavg_1min", 0) for r in cache.values()]
  lines.append(
    f"- Compiled on {', '.join(cpus)} (2 cores shared with other jobs, load average "
    f"{min(loads, default=0):.0f}-{max(loads, default=0):.0f}: compile_s is wall time "
    "under that load); jax/jaxlib 0.10.2, libtpu 0.0.42.1."
  )
  if missing:
    lines.append(
      f"- Not compiled yet ({len(missing)}; rerun the command to go on): " + "; ".join(missing) + "."
    )
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["full", "lite"])
  parser.add_argument(
    "--slices",
    nargs="+",
    choices=list(SLICES),
    default=[name for name in SLICES if not aot.is_gpu_topology(SLICES[name]) or aot.cuda_plugin_installed()],
    help="compile for these slices only (runs for others can go on at once; h100x8 by default where "
    "JAX's CUDA plugin is installed)",
  )
  parser.add_argument(
    "--max-minutes", type=float, default=None, help="start no compile after this long (each done one is kept)"
  )
  parser.add_argument("--write-readme", action="store_true", help="rewrite the README block")
  parser.add_argument(
    "--readme-only", action="store_true", help="only the README block, from benchmarks/tpu_compile.json"
  )
  args = parser.parse_args(argv)
  cache = load_cache()
  if not args.readme_only:
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes else float("inf")
    log = lambda line: print(line, flush=True)  # noqa: E731
    if any(aot.is_gpu_topology(SLICES[name]) for name in args.slices):
      aot.prepare_gpu_compiler()  # before JAX starts its backends
    devices = {name: aot.topology_devices(SLICES[name]) for name in args.slices}
    assert all(len(devices[name]) == CHIPS_IN[name] for name in args.slices), "chips of a slice"
    for job in jobs(args.models, args.slices):
      if time.time() >= deadline:
        break
      compile_one(devices[job[1]], job, cache, log)
    for name in args.slices:
      for model in args.models:
        for remat in ("", "full"):
          largest_batch(devices[name], model, name, remat, cache, log, deadline)
  text = render(load_cache(), sorted(MODELS))  # every model's rows: --models picks what to compile
  print_block(text, BEGIN, END, README if args.write_readme or args.readme_only else None)


if __name__ == "__main__":
  main()
