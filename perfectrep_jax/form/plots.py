"""PNG plots of a form analysis: joint angles over time with the repetitions marked, the
repetition progress signal, and the score of every repetition.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display),
and returned as PNG bytes.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from perfectrep_jax.figio import png_bytes
from perfectrep_jax.form.analysis import Analysis

_LEFT, _RIGHT, _MID = "#1f77b4", "#d62728", "#2ca02c"
_REP_COLOURS = ("#fde9c9", "#dbe9f6")


def _mark_reps(ax, result: Analysis, t: np.ndarray, label: bool) -> None:
  fps = result.fps
  for i, rep in enumerate(result.segmentation.reps):
    # A partial repetition (cut by the recording's edge, not counted) is hatched, not filled.
    ax.axvspan(
      rep.start / fps,
      rep.end / fps,
      color=_REP_COLOURS[i % 2],
      zorder=0,
      lw=0,
      **({"alpha": 0.4, "hatch": "//"} if rep.partial else {}),
    )
    ax.axvline(rep.turn / fps, color="0.5", lw=0.6, ls=":", zorder=1)
    if label:
      ax.text(
        (rep.start + rep.end) / 2 / fps,
        1.0,
        f"{i + 1}{' partial' if rep.partial else ''}",
        transform=ax.get_xaxis_transform(),
        ha="center",
        va="bottom",
        fontsize=8,
        color="0.3",
      )


def angles_png(result: Analysis) -> bytes:
  """Knee, hip, elbow and shoulder angles (left and right) and trunk lean over time, one panel
  each, with the repetitions shaded and numbered and their turning points dotted."""
  sig = result.signals
  t = np.arange(result.num_frames) / result.fps
  panels = [
    ("Knee angle", "knee"),
    ("Hip angle", "hip"),
    ("Elbow angle", "elbow"),
    ("Shoulder elevation", "shoulder"),
    ("Trunk lean from vertical", "trunk"),
  ]
  fig = Figure(figsize=(10, 9))
  axes = fig.subplots(len(panels), 1, sharex=True)
  for k, (ax, (title, key)) in enumerate(zip(axes, panels)):
    _mark_reps(ax, result, t, label=(k == 0))
    if key == "trunk":
      ax.plot(t, sig["trunk"], color=_MID, lw=1.2, label="trunk")
    else:
      ax.plot(t, sig[f"{key}_left"], color=_LEFT, lw=1.2, label="left")
      ax.plot(t, sig[f"{key}_right"], color=_RIGHT, lw=1.2, label="right")
    ax.set_ylabel(f"{title}\n(deg)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7, ncol=2, framealpha=0.7)
  axes[-1].set_xlabel("time (s)")
  fig.suptitle(f"Joint angles, {len(result.segmentation.reps)} repetitions shaded and numbered", fontsize=11)
  fig.tight_layout()
  return png_bytes(fig, dpi=90)


def progress_png(result: Analysis) -> bytes:
  """The segmentation at a glance: each frame's progress from the rest pose (0) to the turning
  point (1), with repetition boundaries and holds."""
  t = np.arange(result.num_frames) / result.fps
  fig = Figure(figsize=(10, 2.6))
  ax = fig.subplots()
  _mark_reps(ax, result, t, label=True)
  ax.plot(t, result.segmentation.progress, color="k", lw=1.0)
  for rep in result.segmentation.reps:
    ax.axvspan(rep.hold_start / result.fps, rep.hold_end / result.fps, color="#f4a261", alpha=0.5, lw=0)
  signal = result.segmentation.signal
  what = {
    "legs": "legs (least-bent knee/hip)",
    "hinge": "hip hinge",
    "elbows": "elbows",
    "hold": "trunk from vertical / 90",
  }.get(signal, "whole pose")
  ax.set_ylabel(f"{what}\nrest 0 - typical turn 1", fontsize=8)
  ax.set_title(
    f"Repetitions counted on the {what} signal: {result.segmentation.count} whole"
    + (f", {len(result.segmentation.partials)} partial (hatched)" if result.segmentation.partials else ""),
    fontsize=9,
    pad=14,
  )
  ax.set_xlabel("time (s)")
  ax.tick_params(labelsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  return png_bytes(fig, dpi=90)


def scores_png(result: Analysis) -> bytes:
  """Bar chart of every repetition's score (0-100), failing rules written on the bars; where
  rules were not judged, the part of the bar they could take away is hatched."""
  scores = np.asarray(result.assessment.rep_scores, np.float64)
  low = np.asarray(result.assessment.rep_scores_low or scores, np.float64)
  fig = Figure(figsize=(10, 2.8))
  ax = fig.subplots()
  x = np.arange(1, len(scores) + 1)
  colours = ["#2a9d8f" if s >= 80 else "#e9c46a" if s >= 60 else "#e76f51" for s in scores]
  ax.bar(x, low, color=colours)
  if np.any(scores - low > 0.5):
    ax.bar(
      x,
      scores - low,
      bottom=low,
      color=colours,
      alpha=0.35,
      hatch="//",
      label="could be lost to rules not judged",
    )
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
  for xi, issues in zip(x, result.assessment.rep_issues):
    if issues:
      ax.text(xi, 2, "\n".join(issues), ha="center", va="bottom", fontsize=6, rotation=90)
  ax.set_ylim(0, 100)
  ax.set_xticks(x)
  ax.set_xlabel("repetition")
  ax.set_ylabel("score")
  ax.tick_params(labelsize=8)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  return png_bytes(fig, dpi=90)
