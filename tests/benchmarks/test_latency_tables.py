"""benchmarks/latency.py: what it writes for each size (never its timings)."""

from __future__ import annotations


import pytest


def _row(size, window, call_ms):
  return {
    "backend": "JAX (jit, CPU)",
    "size": size,
    "window": window,
    "call_ms": call_ms,
    "stream_ms": call_ms,
    "hop": 2,
    "hop_ms": call_ms / 2,
  }


def test_whole_clip_table_has_a_row_for_every_size_at_its_own_clip_length(benchmark_script):
  lat = benchmark_script("latency")
  rows = [_row("demo", 27, 27.0), _row("lite", 243, 1944.0), _row("lite", 27, 200.0)]
  text = lat.tables(
    rows, {27: 2.0, 243: 3.0}, "test machine", "python benchmarks/latency.py --sizes demo,lite"
  )
  offline = text.split("### Streaming")[0]
  body = [line for line in offline.splitlines() if line.startswith("| ") and not line.startswith("| size")]
  assert body == [
    "| demo | JAX (jit, CPU) | 27 | 27 | 1.0 | 0.03 |",
    "| lite | JAX (jit, CPU) | 243 | 1944 | 8.0 | 0.24 |",
  ]
  assert "`python benchmarks/latency.py --sizes demo,lite` on test machine" in text


@pytest.mark.parametrize(
  "argv,message",
  [(["--sizes", "huge"], "unknown huge"), (["--sizes", "demo", "--windows", "243"], "nothing to time")],
)
def test_sizes_and_windows_that_time_nothing_are_refused(argv, message, capsys, benchmark_script):
  lat = benchmark_script("latency")
  with pytest.raises(SystemExit) as e:
    lat.main(argv)
  assert e.value.code == 2 and message in capsys.readouterr().err
