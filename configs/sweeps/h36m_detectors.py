"""Human3.6M per 2D source, PoseFormerV2's detector study: the lifter trained and evaluated once per
2D input (ground truth, each detector, each merge of the data builder), then one table of P1/P2 per
action per source.

    for s in gt cpn sh detectron cpn_sh_average cpn_sh_detectron_average cpn_sh_detectron_weighted cpn_sh_manual; do
      perfectrep-jax prepare h36m/$s --manual-dir /data/h36m --data-dir /data/tfds; done
    perfectrep-jax sweep h36m_detectors:data_dir=/data/tfds --workdir runs/h36m-detectors --emit slurm
    perfectrep-jax sweep h36m_detectors:data_dir=/data/tfds --workdir runs/h36m-detectors --summary

``--summary`` writes ``summary.csv`` (one row per source) and ``per_action.csv`` / ``per_action.json``
(actions x sources, P1 and P2 in mm, with the mean over actions as the last row).

Arguments (``h36m_detectors:key=value,...``): ``data_dir`` (where ``prepare`` wrote the sources),
``sources`` (``+``-separated names of ``perfectrep_jax.data.builders.h36m.SOURCES_2D``),
``frames`` (243, or 81 for the ``<source>81`` configs), ``variant`` (``full``, ``lite``, ``smoke``).
Runs train from scratch (``init.finetune=False``), as the study does.
"""

from perfectrep_jax.data.builders.h36m import SOURCES_2D
from perfectrep_jax.sweeps.spec import Sweep, axis, parse_arg


def get_sweep(arg=None):
  opts = parse_arg(arg, data_dir="", sources=tuple(SOURCES_2D), frames=243, variant="full")
  if not opts["data_dir"]:
    raise ValueError("give the prepared datasets' directory: h36m_detectors:data_dir=DIR")
  unknown = sorted(set(opts["sources"]) - set(SOURCES_2D))
  if unknown:
    raise ValueError(f"unknown 2D sources {unknown}; known: {sorted(SOURCES_2D)}")
  if opts["frames"] not in (243, 81):
    raise ValueError(f"frames must be 243 or 81, not {opts['frames']}")
  suffix = "" if opts["frames"] == 243 else "81"
  return Sweep(
    config=f"../pose3d.py:{opts['variant']}",
    grid=axis("data.source", [f"h36m/{s}{suffix}" for s in opts["sources"]]),
    fixed={
      "data.data_dir": opts["data_dir"],
      "data.clip_len": opts["frames"],
      "model.maxlen": opts["frames"],
      "init.finetune": False,
    },
  )
