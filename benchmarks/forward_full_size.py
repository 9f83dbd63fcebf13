#!/usr/bin/env python
"""Issue 3: the full PerfectRep DSTformer (dim 512, depth 5, 8 heads, T 243) runs forward on CPU;
its time against a PyTorch forward of the same weights, as a ratio.

    python benchmarks/forward_full_size.py [--eval-batch N] [--iters N] [--json OUT] [--write-readme]

Same as ``python benchmarks/run.py --mode forward --size full`` (any other run.py option passes).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402

if __name__ == "__main__":
  run.main(
    ["--mode", "forward", "--size", "full", *sys.argv[1:]],
    from_command_line=True,
    prog="forward_full_size.py",
    description=__doc__ + "\nOptions (run.py's; --mode and --size are fixed here):",
  )
