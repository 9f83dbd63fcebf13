"""The HTML report opens in headless Chromium and every embedded image decodes."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from perfectrep_jax.form.analyze import analyze

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]


def _chromium(args, profile, timeout=90):
  return subprocess.run(
    [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_renders_in_chromium_with_all_images(mocap, tmp_path):
  motion, _ = mocap
  out = tmp_path / "report"
  analyze(motion["uiprmd_m01_s03"][:700], "squat", out, fps=50.0, name="uiprmd_m01_s03")
  url = (out / "report.html").as_uri()
  dom = _chromium(["--virtual-time-budget=10000", "--dump-dom", url], tmp_path / "profile")
  body = re.search(r"<body[^>]*data-images=\"([^\"]*)\"", dom.stdout)
  assert body, dom.stderr[-2000:]
  assert body.group(1) == "ok 3"
  assert "PerfectRep form report" in dom.stdout
  shot = tmp_path / "shot.png"
  _chromium(["--window-size=1200,2000", f"--screenshot={shot}", url], tmp_path / "profile")
  assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
