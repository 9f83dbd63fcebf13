"""benchmarks/tpu_compile.py: the tracked cache of compiled rows stays small and loses no figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("jax")
CACHE = Path(__file__).resolve().parents[2] / "benchmarks" / "tpu_compile.json"


def _row(n_cells, per_chip=8, remat=""):
  cells = [{"part": f"p{i}", "kind": "matmul", "bytes": 1000 - i} for i in range(n_cells)]
  total = sum(c["bytes"] for c in cells)
  return {
    "topology": "v5e:4x4",
    "devices": 16,
    "batch_size": 16 * per_chip,
    "remat": remat,
    "per_device_memory_bytes": 123,
    "traffic": {
      "total": total,
      "by_kind": {"matmul": total},
      "by_part": {c["part"]: c["bytes"] for c in cells},
      "cells": cells,
    },
  }


def test_rows_are_merged_one_per_line_keeping_only_the_largest_traffic_cells(
  tmp_path, monkeypatch, benchmark_script
):
  mod = benchmark_script("tpu_compile")
  monkeypatch.setattr(mod, "CACHE", tmp_path / "tpu_compile.json")
  mod.save_cache({"a|x": _row(3)})
  mod.save_cache({"b|y": _row(40)})  # a second run's rows merge with the first's
  text = mod.CACHE.read_text()
  assert len(text.splitlines()) == 4  # "{", two rows, "}"
  cache = json.loads(text)
  assert set(cache) == {"a|x", "b|y"}
  assert cache["a|x"] == _row(3)
  kept = cache["b|y"]["traffic"]
  assert [c["bytes"] for c in kept["cells"]] == [1000 - i for i in range(mod.TRAFFIC_CELLS_KEPT)]
  assert kept["total"] == _row(40)["traffic"]["total"] and cache["b|y"]["per_device_memory_bytes"] == 123
  assert kept["by_part"] == _row(40)["traffic"]["by_part"]


def test_a_runs_stale_copy_of_a_row_does_not_undo_another_runs_recompile(
  tmp_path, monkeypatch, benchmark_script
):
  # Two runs over different slices at once: each holds every row as it found it at its start, so
  # when the first saves, its copy of a row the second has compiled since is the older one.
  mod = benchmark_script("tpu_compile")
  monkeypatch.setattr(mod, "CACHE", tmp_path / "tpu_compile.json")
  old, new = dict(_row(3), step_revision=4), dict(_row(3), step_revision=5, per_device_memory_bytes=77)
  mod.save_cache({"tpu": old, "gpu": old})
  first = mod.load_cache()  # the first run starts
  mod.save_cache({"tpu": new})  # the second compiles the TPU row again
  first["gpu"] = dict(new, per_device_memory_bytes=55)  # the first compiles its own row ...
  mod.save_cache(first)  # ... and saves all it holds
  cache = mod.load_cache()
  assert cache["tpu"]["per_device_memory_bytes"] == 77 and cache["gpu"]["per_device_memory_bytes"] == 55


def test_rows_of_the_batch_search_keep_the_traffic_totals_only(tmp_path, monkeypatch, benchmark_script):
  # The tracked cache outgrew the 200 kB bound on data files (CI failed) once every slice's
  # largest-batch search kept where each byte went; those rows' figures read only the totals.
  mod = benchmark_script("tpu_compile")
  monkeypatch.setattr(mod, "CACHE", tmp_path / "tpu_compile.json")
  mod.save_cache({"big": _row(40, per_chip=64), "remat": _row(40, remat="full")})
  cache = json.loads(mod.CACHE.read_text())
  for k in ("big", "remat"):
    assert cache[k]["traffic"] == {"total": 1000 * 40 - 780, "by_kind": {"matmul": 1000 * 40 - 780}}
    assert cache[k]["per_device_memory_bytes"] == 123


def test_the_tracked_cache_is_in_the_compact_form():
  text = CACHE.read_text()
  rows = json.loads(text)
  assert len(text.splitlines()) == len(rows) + 2


def test_a_run_for_some_models_rewrites_the_block_with_every_models_rows(
  tmp_path, monkeypatch, benchmark_script
):
  # A run compiling one model's rows (--models lite) once rewrote the README block with those
  # rows alone, dropping every full-config row from the table.
  mod = benchmark_script("tpu_compile")
  readme = tmp_path / "README.md"
  readme.write_text(f"a\n{mod.BEGIN}\n{mod.END}\nb\n")
  monkeypatch.setattr(mod, "README", readme)
  mod.main(["--readme-only", "--models", "lite"])
  text = readme.read_text()
  assert "| lite | v5e-16 |" in text and "| full | v5e-16 |" in text


def _run(batch, clips, fits=True, **fields):
  return {
    "fits": fits,
    "estimated_step_s": batch * 256 / clips if fits else None,
    "estimated_clips_per_s": clips if fits else None,
    "estimated_mfu": clips / 50_000 if fits else None,
    "mesh": {"data": 256, "fsdp": 1, "tensor": 1},
    "per_device_memory_bytes": 2**30,
    "collectives": {},
    "collective_bytes": "tuple-sum",
    "compile_s": 1.0,
    "chip": "v5e",
    "devices": 256,
    "batch_size": batch * 256,
    "flops_per_step": 1e15,
    "bytes_accessed_per_device": 1e11,
    "attention_impl": "dot_product_attention",
    **fields,
  }


def test_the_largest_batch_table_names_the_fastest_batch_compiled(benchmark_script):
  # A bigger batch per chip can be faster per clip (16 here) or slower (32): the table says which.
  mod = benchmark_script("tpu_compile")
  cache = {
    "full|v5e-256|256x1x1|8|off": _run(8, 7104.0),
    "full|v5e-256|256x1x1|16|off": _run(16, 7722.0),
    "full|v5e-256|256x1x1|32|off": _run(32, 0.0, fits=False),
  }
  text = mod.render(cache, ["full"])
  row = next(line for line in text.splitlines() if line.startswith("| full | v5e-256 | 16 (32 does not fit)"))
  assert "fastest at 16: 7,722 clips/s, 15.4%" in row


def test_a_row_of_an_older_train_step_is_marked_and_compiled_again(benchmark_script, monkeypatch, tmp_path):
  # A change to the model changes every compiled program: rows compiled before it stay in the
  # table, marked, until a run compiles them again; a row of the current step is not compiled twice.
  mod = benchmark_script("tpu_compile")
  monkeypatch.setattr(mod, "CACHE", tmp_path / "tpu_compile.json")
  old, new = "full|v5e-256|256x1x1|8|off", "full|v5e-256|256x1x1|16|off"
  cache = {old: _run(8, 7104.0), new: _run(16, 7722.0, step_revision=mod.STEP_REVISIONS["tpu"])}
  text = mod.render(cache, ["full"])
  assert f"256x1x1 data-parallel {mod.STALE_MARK} |" in text
  assert "1 of 2 rows, compiled again" in text
  row = next(line for line in text.splitlines() if line.startswith("| full | v5e-256 | >= 16"))
  assert row.endswith(f"{mod.STALE_MARK} | not compiled yet |")  # made from the old row too

  compiled = []

  def compile_train_step(config, devices, topology):
    compiled.append(config.batch_size)
    return _run(config.batch_size // 256, 8000.0)

  monkeypatch.setattr(mod.aot, "compile_train_step", compile_train_step)
  monkeypatch.setattr(mod, "cpu_model", lambda: "test CPU")
  for job in (("full", "v5e-256", (256, 1, 1), 8, ""), ("full", "v5e-256", (256, 1, 1), 16, "")):
    mod.compile_one([], job, cache, log=lambda _: None)
  assert compiled == [8 * 256]
  assert (
    cache[old]["step_revision"] == mod.STEP_REVISIONS["tpu"] and cache[old]["estimated_clips_per_s"] == 8000.0
  )
  assert mod.STALE_MARK not in mod.render(cache, ["full"])
  # the best mesh is named among the rows of the current step, not against an older, faster-looking one
  fsdp = "full|v5e-256|1x256x1|8|off"
  mixed = {
    old: _run(8, 7000.0, step_revision=mod.STEP_REVISIONS["tpu"]),
    fsdp: _run(8, 9000.0, mesh={"data": 1, "fsdp": 256, "tensor": 1}),
  }
  text = mod.render(mixed, ["full"])
  assert "256x1x1 data-parallel (best) |" in text and f"1x256x1 fsdp {mod.STALE_MARK} |" in text
  # a GPU row is judged by the GPU step's revision
  gpu = dict(chip="h100", devices=8, batch_size=64)
  current = {"full|h100x8|8x1x1|8|off": _run(8, 1449.0, step_revision=mod.STEP_REVISIONS["gpu"], **gpu)}
  assert mod.STALE_MARK not in mod.render(current, ["full"])
  older = {"full|h100x8|8x1x1|8|off": _run(8, 1449.0, step_revision=1, **gpu)}
  assert mod.STALE_MARK in mod.render(older, ["full"])
