"""Where a compiled program's memory traffic goes (``train.hlo_traffic``): written modules whose
bytes and collectives are known, and the DSTformer's own train-like step compiled here, told by its
named scopes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from perfectrep_jax.models.dstformer import DSTformer, DSTformerConfig
from perfectrep_jax.train import hlo_traffic

# A TPU-like module: tiled layouts, an on-chip memory space (S(1)), a fusion whose body must not be
# counted, async copies and slices, and op names under the model's scopes.
HLO = """
HloModule jit_train_step

%fused_computation (param_0: bf16[16,17,17]) -> bf16[16,17,17] {
  %param_0 = bf16[16,17,17]{2,1,0:T(8,128)(2,1)} parameter(0)
  ROOT %exp.1 = bf16[16,17,17]{2,1,0:T(8,128)(2,1)} exponential(%param_0)
}

%fused_dot (p0: bf16[256,512], p1: bf16[512,512]) -> bf16[256,512] {
  %p0 = bf16[256,512]{1,0:T(8,128)(2,1)} parameter(0)
  %p1 = bf16[512,512]{1,0:T(8,128)(2,1)} parameter(1)
  ROOT %convolution.3 = bf16[256,512]{1,0:T(8,128)(2,1)} convolution(%p0, %p1), dim_labels=bf_io->bf
}

ENTRY %main.1 (a: bf16[16,17,17], x: bf16[256,512], w: bf16[512,512]) -> bf16[256,512] {
  %a = bf16[16,17,17]{2,1,0:T(8,128)(2,1)} parameter(0)
  %x = bf16[256,512]{1,0:T(8,128)(2,1)} parameter(1)
  %w = bf16[512,512]{1,0:T(8,128)(2,1)} parameter(2)
  %fusion.1 = bf16[16,17,17]{2,1,0:T(8,128)(2,1)} fusion(%a), kind=kLoop, calls=%fused_computation, metadata={op_name="jit(train_step)/jvp(spatial_attention)/scores/exp"}
  %fusion.2 = bf16[256,512]{1,0:T(8,128)(2,1)} fusion(%x, %w), kind=kOutput, calls=%fused_dot, metadata={op_name="jit(train_step)/transpose(jvp(mlp))/dot_general"}
  %copy.1 = bf16[512,256]{0,1:T(8,128)(2,1)} copy(%x), metadata={op_name="jit(train_step)/jvp()/transpose"}
  %slice-start.1 = ((bf16[512,512]{1,0:T(8,128)(2,1)}), bf16[128,512]{1,0:T(8,128)(2,1)S(1)}, s32[]{:S(2)}) slice-start(%w), slice={[0:128], [0:512]}
  %slice-done.1 = bf16[128,512]{1,0:T(8,128)(2,1)S(1)} slice-done(%slice-start.1)
  %bitcast.1 = bf16[256,512]{1,0:T(8,128)(2,1)} bitcast(%fusion.2)
  %custom-call.1 = bf16[256,512]{1,0:T(8,128)(2,1)} custom-call(%x), custom_call_target="ConcatBitcast"
  %custom-call.2 = bf16[256,512]{1,0:T(8,128)(2,1)} custom-call(%x), custom_call_target="tpu_custom_call", metadata={op_name="jit(train_step)/jvp(temporal_attention)/scores/pallas_call"}
  ROOT %convert.1 = f32[256,512]{1,0:T(8,128)} convert(%bitcast.1), metadata={op_name="jit(train_step)/jvp(temporal_attention)/qkv/convert_element_type"}
}
"""


COLLECTIVES_HLO = """
ENTRY %main {
  %all-gather.8 = bf16[4096,2048]{1,0:T(8,128)(2,1)S(1)} all-gather(%param), channel_id=5, dimensions={0}
  %ags = (f32[16]{0}, f32[64]{0}) all-gather-start(%p1), channel_id=6, dimensions={0}
  %agd = f32[64]{0} all-gather-done(%ags)
  %all-reduce.1 = bf16[2048,4096]{1,0:T(8,128)(2,1)S(1)} all-reduce(%fusion), channel_id=6, to_apply=%add
  %cp = (f32[8]{0}, f32[8]{0}, u32[], u32[]) collective-permute-start(%x), source_target_pairs={{0,1}}
  %cpd = f32[8]{0} collective-permute-done(%cp)
  %fusion.2 = f32[8]{0} fusion(%all-gather.8), kind=kLoop, calls=%fused
  %all-reduce.70 = (f32[16]{0:T(128)S(1)}, f32[16,48]{1,0:T(8,128)S(1)}, /*index=2*/bf16[4]{0}) all-reduce(%a, %b, %c), channel_id=9, to_apply=%add
}
"""


def test_collectives_are_counted_once_with_their_result_bytes():
  coll = hlo_traffic.collectives(COLLECTIVES_HLO)
  assert coll["all-gather"] == {"count": 2, "bytes": 4096 * 2048 * 2 + 64 * 4}
  # the gradients' all-reduce, combined into one tuple: every array counts
  assert coll["all-reduce"] == {"count": 2, "bytes": 2048 * 4096 * 2 + (16 + 16 * 48) * 4 + 4 * 2}
  assert coll["collective-permute"] == {"count": 1, "bytes": 8 * 4}
  assert coll["reduce-scatter"]["count"] == coll["all-to-all"]["count"] == 0


def test_padded_bytes_of_tiled_arrays_and_none_on_chip():
  # 17 joints as the minor axis take 128 lanes, the second-minor 17 rounds up to 24 rows
  assert hlo_traffic.array_bytes("bf16", "16,17,17", "{2,1,0:T(8,128)(2,1)}") == 16 * 24 * 128 * 2
  assert hlo_traffic.array_bytes("f32", "3,5", "{1,0}") == 15 * 4  # no tiles: as written
  assert hlo_traffic.array_bytes("bf16", "128,512", "{1,0:T(8,128)(2,1)S(1)}") == 0
  assert hlo_traffic.array_bytes("bf16", "128,512", "{1,0:T(8,128)(2,1)S(1)}", anywhere=True) == 128 * 512 * 2


def test_each_instruction_outside_fusions_counts_its_reads_and_writes_once():
  report = hlo_traffic.traffic(HLO)
  scores = 2 * 16 * 24 * 128 * 2  # read a, write the fusion's result
  matmul = (256 * 512 + 512 * 512 + 256 * 512) * 2
  layout = 2 * 256 * 512 * 2  # the transposing copy reads and writes x
  slice_ = 128 * 512 * 2  # read from HBM into on-chip memory, once (not its done)
  cast = 256 * 512 * 2 + 256 * 512 * 4
  kernel = 2 * 256 * 512 * 2  # a kernel's custom call reads and writes; a marker moves nothing
  cells = {(c["part"], c["kind"]): c["bytes"] for c in report["cells"]}
  assert cells == {
    ("spatial scores", "elementwise"): scores,
    ("mlp (backward)", "matmul"): matmul,
    ("other", "layout"): layout + slice_,
    ("temporal qkv", "cast"): cast,
    ("temporal scores", "kernel"): kernel,
  }
  assert report["total"] == scores + matmul + layout + slice_ + cast + kernel
  assert report["by_kind"]["collective"] == 0  # every kind is reported
  assert report["by_kind"]["matmul"] == matmul and report["by_part"]["mlp (backward)"] == matmul
  assert [c["bytes"] for c in report["cells"]] == sorted(cells.values(), reverse=True)
  text = hlo_traffic.table(report)
  assert "mlp (backward): matmul" in text and "by kind: matmul" in text


def test_the_dstformer_step_is_told_by_its_scopes():
  """A jitted gradient step of a small DSTformer, compiled for this CPU: its traffic falls in the
  parts the model names (attention's three stages in both modes, MLP, norms) and their gradients."""
  cfg = DSTformerConfig(dim_in=3, dim_out=3, dim_feat=16, dim_rep=16, depth=1, num_heads=2, maxlen=9)
  model = DSTformer(cfg, attention_impl="einsum", rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params, x):
    return jnp.mean(nnx.merge(graphdef, params, rest)(x) ** 2)

  x = jnp.ones((2, 9, 17, 3))
  text = jax.jit(jax.grad(loss)).lower(params, x).compile().as_text()
  report = hlo_traffic.traffic(text)
  parts = set(report["by_part"])
  for mode in ("spatial", "temporal"):
    for stage in ("qkv", "scores", "proj"):
      assert f"{mode} {stage}" in parts or f"{mode} {stage} (backward)" in parts, parts
  assert {"mlp", "layer_norm", "mlp (backward)"} <= parts, parts
  assert report["by_kind"]["matmul"] > 0
  assert report["total"] == pytest.approx(sum(c["bytes"] for c in report["cells"]))
