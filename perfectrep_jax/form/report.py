"""The analysis report: ``report.json`` (every figure) and a self-contained ``report.html``.

The HTML page embeds its plots as base64 PNG (no other file, no network) and, once loaded,
writes ``data-images="ok N"`` (or ``"broken K of N"``) on ``<body>`` after checking that every
image decoded, so a headless browser can tell that the page renders.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from perfectrep_jax.errors import UserError
from perfectrep_jax.form import plots
from perfectrep_jax.form.analysis import Analysis
from perfectrep_jax.form.figures import FIGURES
from perfectrep_jax.figio import png_bytes
from perfectrep_jax.fileio import atomic_write_bytes, json_safe
from perfectrep_jax.skeleton import BONES, JOINT_INDEX

REPORT_VERSION = 1


def score_range(score: float, low: float | None) -> str | None:
  """``"77-97"`` when rules not judged could lower the score by a whole point (``low`` rounds
  below it), else ``None``: the one rule the feedback, the page and ``analyze``'s line share."""
  if low is None or round(low) >= round(score):
    return None
  return f"{low:.0f}-{score:.0f}"


def to_json(result: Analysis, source: str = "input") -> dict:
  """The report as a JSON-ready dict.

  Top level: ``score`` (0-100, higher is better form), ``reps`` (one entry per repetition: its
  ``start`` and ``end`` frame, turning point, times, score, failed rules, ``figures`` and
  ``angles``), ``feedback`` (plain-language findings, worst first, then what went well), and
  the context: exercise, frame rate, the vertical used, units, the rules applied, the
  definitions of the figures, a per-figure summary over repetitions and the per-frame series
  that the plots show.
  """
  a = result.assessment
  fps = result.fps
  reps = []
  for i, (rep, fig, rng) in enumerate(zip(result.segmentation.reps, result.figures, result.angle_ranges)):
    reps.append(
      {
        "index": i + 1,
        "start": rep.start,
        "end": rep.end,
        "turn": rep.turn,
        "hold_start": rep.hold_start,
        "hold_end": rep.hold_end,
        "start_s": rep.start / fps,
        "end_s": rep.end / fps,
        "partial": rep.partial,
        "score": a.rep_scores[i],
        "score_low": a.rep_scores_low[i] if a.rep_scores_low else a.rep_scores[i],
        "issues": list(a.rep_issues[i]),
        "severities": a.rep_severities[i] if a.rep_severities else {},
        "figures": fig,
        "angles": rng,
      }
    )
  summary = {}
  for name in FIGURES:
    vals = [f[name] for f in result.figures if f.get(name) is not None]
    if vals:
      summary[name] = {"mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals))}
  low = a.score if a.score_low is None else a.score_low
  feedback = (
    [f.message for f in a.findings]
    + [f"Could not judge {rule.replace('_', ' ')}: {why}." for rule, why in result.not_judged]
    + (
      [
        f"The score, {a.score:.0f}, counts only the rules judged: the ones not judged could "
        f"bring it as low as {low:.0f}."
      ]
      if score_range(a.score, low)
      else []
    )
    + list(a.praise)
  )
  doc = {
    "version": REPORT_VERSION,
    "source": source,
    "exercise": result.exercise,
    "exercise_source": result.exercise_source,
    "requested_exercise": result.requested_exercise,
    "fps": fps,
    "num_frames": result.num_frames,
    "duration_s": result.num_frames / fps,
    "up": result.up,
    "up_source": result.up_source,
    "units": {
      "frames": "0-based frame indices of the input; *_s fields are seconds",
      "angles": "degrees",
      "lengths": "relative to the body (thigh or leg lengths, or ratios), so any input unit works",
    },
    "score": a.score,
    # the score if every rule not judged cost what it could at worst (``score`` when all were)
    "score_low": low,
    # Whole repetitions; one the recording cuts (it starts or ends inside it) is listed in
    # ``reps`` with ``partial`` and counted in ``num_partial`` only.
    "num_reps": result.segmentation.count,
    "num_partial": len(result.segmentation.partials),
    "rep_signal": result.segmentation.signal,
    "exercise_confidence": result.exercise_confidence,
    "exercise_scores": result.recognition_scores,
    "hold_s": (result.segmentation.period / fps if result.segmentation.signal == "hold" else None),
    "not_judged": [{"rule": r, "why": why} for r, why in result.not_judged],
    "period_s": result.segmentation.period / fps,
    "feedback": feedback,
    "findings": [
      {
        "rule": f.rule,
        "figure": f.figure,
        "message": f.message,
        "reps": [r + 1 for r in f.reps],
        "severity": f.severity,
        "typical": f.typical,
      }
      for f in a.findings
    ],
    "praise": list(a.praise),
    "reps": reps,
    "summary": summary,
    "main_angle": result.main_angle,
    "penalties": a.penalties,
    "figure_definitions": {k: {"meaning": m, "unit": u} for k, (m, u) in FIGURES.items()},
    "series": {
      "note": "per-frame values plotted in report.html",
      **{k: np.round(v, 2) for k, v in result.signals.items()},
      "progress": np.round(result.segmentation.progress, 3),
    },
  }
  return json_safe(doc, digits=4)


def _b64(png: bytes) -> str:
  return base64.b64encode(png).decode("ascii")


def _fmt(v, unit: str = "") -> str:
  if v is None:
    return "&ndash;"
  if unit == "deg":
    return f"{v:.0f}&deg;"
  if unit == "s":
    return f"{v:.2f}"
  return f"{v:.2f}"


# Figures in the repetition table, with their short column headers.
_TABLE_FIGURES = {
  "knee_angle_min": "knee min",
  "hip_angle_min": "hip min",
  "elbow_angle_min": "elbow min",
  "trunk_lean_max": "trunk lean",
  "hip_depth_max": "hip depth",
  "knee_width_ratio_bottom": "knee width",
  "knee_asymmetry": "knee L/R",
  "eccentric_s": "down (s)",
  "concentric_s": "up (s)",
  "rom_ratio": "ROM ratio",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1.2em;color:#222}
h1{margin:.2em 0}.sub{color:#666}.score{font-size:3em;font-weight:700}
.good{color:#2a9d8f}.ok{color:#c59a1a}.poor{color:#e76f51}
ul.fb li{margin:.35em 0}table{border-collapse:collapse;font-size:.8em;margin:1em 0}
td,th{border:1px solid #ddd;padding:.25em .45em;text-align:right;white-space:nowrap}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:.6em 0}
.wrap{overflow-x:auto}td.issues{text-align:left;white-space:normal;min-width:9em}.cards{display:flex;gap:2em;align-items:baseline;flex-wrap:wrap}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img');
  var broken = 0;
  imgs.forEach(function (im) { if (!im.complete || im.naturalWidth === 0) { broken += 1; } });
  document.body.setAttribute('data-images', broken === 0 ? 'ok ' + imgs.length : 'broken ' + broken + ' of ' + imgs.length);
});
"""


def render_html(doc: dict, images: dict[str, bytes]) -> str:
  """The self-contained HTML page for a report dict and its PNG plots (title -> PNG bytes)."""
  e = html.escape
  score = doc["score"]
  low = doc.get("score_low", score)
  span = f"<div>as low as {low:.0f} with the rules not judged</div>" if score_range(score, low) else ""
  cls = "good" if score >= 80 else "ok" if score >= 60 else "poor"
  feedback = "".join(f"<li>{e(m)}</li>" for m in doc["feedback"]) or "<li>No feedback.</li>"
  head = "".join(f'<th title="{e(FIGURES[n][0])}">{e(h)}</th>' for n, h in _TABLE_FIGURES.items())
  rows = []
  for r in doc["reps"]:
    cells = "".join(f"<td>{_fmt(r['figures'].get(n), FIGURES[n][1])}</td>" for n in _TABLE_FIGURES)
    rows.append(
      f"<tr><td>{r['index']}{' (partial)' if r['partial'] else ''}</td><td>{r['start']}&ndash;{r['end']}</td>"
      f'<td>{r["score"]:.0f}</td>{cells}<td class="issues">{e(", ".join(r["issues"]))}</td></tr>'
    )
  plots = "".join(
    f'<h2>{e(title)}</h2><img alt="{e(title)}" src="data:image/png;base64,{_b64(png)}">'
    for title, png in images.items()
  )
  defs = "".join(
    f"<tr><td>{e(_TABLE_FIGURES[k])}</td><td style='text-align:left'>{e(v['meaning'])}</td>"
    f"<td>{e(v['unit'])}</td></tr>"
    for k, v in doc["figure_definitions"].items()
    if k in _TABLE_FIGURES
  )
  ex = doc["exercise"].replace("_", " ")
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>PerfectRep report: {e(ex)}</title><style>{_CSS}</style></head>
<body data-images="pending">
<h1>PerfectRep form report</h1>
<div class="sub">{e(str(doc["source"]))} &middot; {doc["num_frames"]} frames at {doc["fps"]:g} fps ({doc["duration_s"]:.1f} s)
&middot; exercise: <b>{e(ex)}</b> ({e(doc["exercise_source"])}{f", confidence {doc['exercise_confidence']:.0%}" if doc.get("exercise_confidence") is not None else ""}) &middot; vertical {e(doc["up_source"])}</div>
<div class="cards"><div><div class="score {cls}">{score:.0f}<span style="font-size:.4em">/100</span></div>form score{span}</div>
<div><div class="score">{doc["num_reps"]}</div>repetitions{f" (+{doc['num_partial']} partial)" if doc["num_partial"] else ""}</div></div>
<h2>Feedback</h2><ul class="fb">{feedback}</ul>
<h2>Repetitions</h2>
<div class="wrap"><table><tr><th>rep</th><th>frames</th><th>score</th>{head}<th>issues</th></tr>{"".join(rows)}</table></div>
{plots}
<h2>What the columns mean</h2><table><tr><th>figure</th><th>meaning</th><th>unit</th></tr>{defs}</table>
<p class="sub">Every figure is also in report.json.</p>
<script>{_SCRIPT}</script>
</body></html>
"""


def worst_frames(doc: dict) -> dict[str, int]:
  """For each finding, the frame to show: the turning point of its worst repetition (the failing
  repetition where the rule's severity is highest, then the lowest score). rule id -> frame."""
  out = {}
  for f in doc["findings"]:
    failing = [doc["reps"][i - 1] for i in f["reps"] if 0 < i <= len(doc["reps"])]
    if failing:
      worst = max(failing, key=lambda r: (r.get("severities", {}).get(f["rule"], 0.0), -r["score"]))
      out[f["rule"]] = int(worst["turn"])
  return out


def skeleton_png(image: np.ndarray | None, keypoints: np.ndarray, title: str) -> bytes:
  """A video frame (H, W, 3 RGB; ``None``: a blank canvas) with the 2D skeleton (17, 2|3 pixel
  x, y[, confidence]) drawn on it: bones coloured left / right, joints under 0.3 confidence
  left out."""
  from matplotlib.figure import Figure

  kp = np.asarray(keypoints, np.float64)
  conf = kp[:, 2] if kp.shape[1] > 2 else np.ones(len(kp))
  fig = Figure(figsize=(5, 5 if image is None else 5 * image.shape[0] / max(image.shape[1], 1)))
  ax = fig.subplots()
  if image is not None:
    ax.imshow(image)
  else:
    ax.invert_yaxis()
    ax.set_aspect("equal")
  left = {v for k, v in JOINT_INDEX.items() if k.startswith("left")}
  right = {v for k, v in JOINT_INDEX.items() if k.startswith("right")}
  for a, b in BONES:
    if conf[a] < 0.3 or conf[b] < 0.3:
      continue
    colour = "#1f77b4" if b in left else "#d62728" if b in right else "#2ca02c"
    ax.plot(kp[[a, b], 0], kp[[a, b], 1], color=colour, lw=2.5)
  seen = conf >= 0.3
  ax.scatter(kp[seen, 0], kp[seen, 1], s=12, color="white", edgecolors="black", zorder=3)
  ax.set_title(title, fontsize=9)
  ax.axis("off")
  fig.tight_layout()
  return png_bytes(fig, dpi=100)


def video_frame_reader(video: str | Path, frame_ids: list[int] | None = None):
  """``read(i)`` -> the RGB image of analysed frame ``i`` of ``video`` (``frame_ids[i]`` is its
  frame number in the video when the keypoints skipped frames), or ``None`` when unreadable."""

  def read(i: int):
    import cv2

    number = frame_ids[i] if frame_ids is not None and i < len(frame_ids) else i
    cap = cv2.VideoCapture(str(video))
    try:
      cap.set(cv2.CAP_PROP_POS_FRAMES, int(number))
      ok, bgr = cap.read()
    finally:
      cap.release()
    return bgr[:, :, ::-1].copy() if ok else None

  return read


def write_report(
  result: Analysis,
  doc: dict,
  out_dir: str | Path,
  html: bool = True,
  keypoints_2d: np.ndarray | None = None,
  read_frame=None,
) -> dict[str, Path]:
  """Writes ``report.json`` and (with ``html``) ``report.html`` and ``angles.png`` into ``out_dir``.

  With ``keypoints_2d`` ((T, 17, 2|3) pixel keypoints of the analysed frames) each finding gets
  ``finding_<rule>.png``: the frame of its worst repetition (:func:`worst_frames`, read by
  ``read_frame(i)`` -> RGB image, e.g. :func:`video_frame_reader`; blank without) with the 2D
  skeleton drawn, shown in the HTML beside the finding and named in ``report.json``
  (``findings[k].frame`` and ``.image``).

  Each file appears whole or not at all (written to a temporary name, then renamed).

  Returns:
    kind -> path of what was written.
  Raises:
    UserError: ``out_dir`` cannot be created or written.
  """
  out = Path(out_dir)
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as err:
    raise UserError(f"{out}: cannot create the output folder ({err.strerror})") from err
  written = {}
  try:
    if html:
      images = {}
      if keypoints_2d is not None:
        kp = np.asarray(keypoints_2d)
        for f in doc["findings"]:
          frame = worst_frames(doc).get(f["rule"])
          if frame is None or frame >= len(kp):
            continue
          image = read_frame(frame) if read_frame is not None else None
          rep = next(r["index"] for r in doc["reps"] if r["start"] <= frame <= r["end"])
          png = skeleton_png(image, kp[frame], f"{f['rule']}: repetition {rep}, frame {frame}")
          name = f"finding_{f['rule']}.png"
          atomic_write_bytes(out / name, png)
          written[f"finding_{f['rule']}"] = out / name
          f.update({"frame": frame, "image": name})
          images[f"Worst repetition for '{f['rule']}' (repetition {rep}, frame {frame})"] = png
      images["Joint angles over time"] = plots.angles_png(result)
      if result.segmentation.reps:
        images["Repetition scores"] = plots.scores_png(result)
        images["Repetition segmentation"] = plots.progress_png(result)
      atomic_write_bytes(out / "angles.png", images["Joint angles over time"])
      written["angles_png"] = out / "angles.png"
      atomic_write_bytes(out / "report.html", render_html(doc, images).encode("utf-8"))
      written["html"] = out / "report.html"
    atomic_write_bytes(out / "report.json", (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    written["json"] = out / "report.json"
  except OSError as err:
    raise UserError(f"{out}: cannot write the report ({err.strerror})") from err
  return written
