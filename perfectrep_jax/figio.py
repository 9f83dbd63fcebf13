"""Figures without a display: matplotlib's object API on the Agg canvas (no pyplot state), and a
figure as PNG bytes. Shared by the evaluation reports, the form report and the motion renderer."""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def agg_figure(figsize: tuple[float, float], dpi: float = 100.0) -> Figure:
  """A new figure of ``figsize`` inches drawn by the Agg canvas (its pixels: ``canvas.buffer_rgba()``)."""
  fig = Figure(figsize=figsize, dpi=dpi)
  FigureCanvasAgg(fig)
  return fig


def png_bytes(fig: Figure, dpi: float | None = None) -> bytes:
  """``fig`` as a PNG file's bytes, rendered by Agg at ``dpi`` (None: the figure's own)."""
  FigureCanvasAgg(fig)
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi if dpi is not None else fig.dpi)
  return buf.getvalue()
