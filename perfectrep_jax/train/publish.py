"""``perfectrep-jax publish``: a trained lifter run -> a model directory that carries its story.

    perfectrep-jax publish --config configs/lifter.py:default --workdir runs/lifter \
        [--out perfectrep_jax/weights/lifter] [--step N]

Evaluates the run's best (or ``--step``) checkpoint on the held-out split twice, from clean 2D and
from detector-like 2D (``data.film_eval_noise`` 0 and 1 for the ``mocap`` source), checks that the
feedback from lifted 2D agrees with the feedback of the true 3D on the held-out exercise takes
(``wild.agreement``), and writes the model with a ``model.json`` that records the config the run
trained with (its ``config.json``), the data, the commit, the step and these figures (overall and
per action), plus a README with the data's licences. The default output is the package's default
lifter (``perfectrep_jax/weights/lifter``), replaced only when complete.

Given a published lifter as ``--workdir`` (a model directory, not a run), it measures that lifter's
feedback figures again with this checkout's form rules and rewrites it in place (or into ``--out``):
what to run when the rules change under shipped weights.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from perfectrep_jax.data import mocap
from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import atomic_write_bytes, load_json
from perfectrep_jax.models import model_dir
from perfectrep_jax.train import trainer
from perfectrep_jax.weights import DEFAULT_LIFTER
from perfectrep_jax.wild.agreement import (
  feedback_agreement,
  figure_errors,
  lifter_motion,
  uncertainty_calibration,
)
from perfectrep_jax.wild.infer import figure_margins

MAX_WEIGHT_BYTES = 20 * 2**20  # what the package may carry
FIGURES = ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve", "depth_mm", "pck150", "auc", "eval_clips")
LICENCES = """\
# The default lifter

Trained by perfectrep-jax (`configs/lifter.py:default`, see `model.json` for the config, commit,
steps and held-out figures) on the motion capture of the project's data folder
(`../shared/data/mocap`; the data itself is not shipped, only these weights):

- UI-PRMD (University of Idaho), Open Data Commons PDDL 1.0.
- CMU Graphics Lab Motion Capture Database: "The data used in this project was obtained from
  mocap.cs.cmu.edu. The database was created with funding from NSF EIA-0196217."
- HDM05 (M. Müller, T. Röder, M. Clausen, B. Eberhardt, B. Krüger, A. Weber: Documentation Mocap
  Database HDM05, Technical report CG-2007-2, Universität Bonn, 2007), Creative Commons
  Attribution-ShareAlike 3.0 Unported: "The data used in this project was obtained from HDM05."
  Weights learned from it are offered under the same terms (CC BY-SA 3.0) where they are an
  adaptation of that data.
"""


def git_commit() -> str:
  """The checkout's commit (with ``-dirty`` when it has changes), or ``unknown``."""
  root = Path(__file__).resolve().parents[2]
  try:
    sha = subprocess.run(
      ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()
    dirty = subprocess.run(
      ["git", "status", "--porcelain", "--untracked-files=no"],
      cwd=root,
      capture_output=True,
      text=True,
      timeout=10,
    ).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return sha + ("-dirty" if dirty else "")


def _figures(metrics: dict[str, float]) -> dict[str, Any]:
  out = {k: round(float(metrics[k]), 2) for k in FIGURES if k in metrics}
  out["per_action_mpjpe"] = {
    k.split("/", 1)[1]: round(float(v), 2) for k, v in metrics.items() if k.startswith("mpjpe/")
  }
  return out


def held_out_figures(config, workdir: str | Path, step: int | None = None) -> dict[str, Any]:
  """P1/P2 and the rest on the held-out split, from clean and from detector-like 2D."""
  out = {}
  for name, noise in (("clean_2d", 0.0), ("detector_2d", 1.0)):
    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
      cfg.data.film_eval_noise = noise
    out[name] = _figures(trainer.evaluate(cfg, workdir, step=step).metrics)
  return out


# Cameras per held-out exercise take in publish's feedback check. With 2 (7 takes, 14 views) two
# lifters 3 mm apart in held-out MPJPE swapped places on the findings (10 against 12 the same) and
# were level over 8 (56 views: 36 against 34), so the figures a user compares come from 8.
FEEDBACK_VIEWS = 8
# Cameras per training take that measure the figure errors: 2 give each view (side, oblique,
# facing) about a third of some 96 filmed takes.
FIGURE_ERROR_VIEWS = 2


def feedback_figures(
  model, maxlen: int, views: int = FEEDBACK_VIEWS
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """How far the lifter's own uncertainty tells its errors (``uncertainty_calibration``, from
  detector-like 2D: the threshold ``infer`` then judges with), how far its form figures fall from
  the true ones on the training performers (``figure_errors``: the margins within which ``infer``
  calls a verdict borderline), and the feedback agreement (``wild.agreement``) of the held-out
  exercise takes judged with both, from clean and from detector-like 2D: the summary of each,
  the per-take rows of the detector-like one and the cameras per take (``views_per_take``).

  Returns:
    ``(uncertainty, figure_errors, feedback)``.
  """
  lift_fn = model_dir.make_apply_fn(model)
  lifted: dict[bytes, Any] = {}
  lift_once = lifter_motion(lift_fn, maxlen)

  def lift(keypoints, seen):  # the calibration and the detector-like check film the same views
    key = keypoints.tobytes()
    if key not in lifted:
      lifted[key] = lift_once(keypoints, seen)
    return lifted[key]

  calibration = uncertainty_calibration(lift=lift, views=views, noise=1.0)
  threshold = calibration["threshold"]
  errors = figure_errors(lift=lift_once, noise=1.0, views=FIGURE_ERROR_VIEWS)
  judged = dict(max_uncertainty=threshold, figure_margins=figure_margins({"figure_errors": errors}))
  clean = feedback_agreement(lift=lift, views=views, noise=0.0, **judged)
  detector = feedback_agreement(lift=lift, views=views, noise=1.0, **judged)
  return (
    calibration,
    errors,
    {
      "clean_2d": clean["summary"],
      "detector_2d": detector["summary"],
      "detector_2d_takes": detector["takes"],
      "views_per_take": views,
    },
  )


def run_config(config, workdir: str | Path):
  """The config the run trained with (its ``config.json``), else ``config``: what ``model.json``
  records as ``trained.config``, whatever variant and overrides ``publish`` itself was given (those
  only choose how the weights are evaluated)."""
  path = Path(workdir) / "config.json"
  if not path.is_file():
    return config
  return ml_collections.ConfigDict(load_json(path, "the run's config.json"))


def initialised_from(config) -> dict[str, Any]:
  """``{"initialised_from": ...}``: the ``trained`` record and held-out figures of the model the run
  started from (``init.checkpoint``), so weights trained in stages carry every stage; ``{}`` for a
  run from scratch or a start without a ``model.json`` (a converted PyTorch file is named)."""
  start = str(config.init.get("checkpoint") or "")
  if not start:
    return {}
  meta_path = Path(start) / model_dir.MODEL_JSON
  if not meta_path.is_file():
    return {"initialised_from": {"checkpoint": start}}
  meta = load_json(meta_path, "model.json")
  parent = {k: meta[k] for k in ("trained", "held_out") if k in meta}
  return {"initialised_from": {"checkpoint": start, **parent}}


def remeasure_feedback(path: str | Path, out: str | Path | None = None) -> dict[str, Any]:
  """A published lifter's feedback figures measured again with this checkout's form rules.

  The rules (``form/rules.json``, the figures, the counting) move on while a lifter's weights stay;
  ``model.json`` must then say what a user now gets from them. Its ``uncertainty``,
  ``figure_errors`` and ``feedback`` are measured anew as :func:`publish` measures them, and
  ``feedback_measured`` records the commit; the rest of it (the weights' story, the pose figures,
  which do not depend on the rules) is kept. In place, only ``model.json`` is replaced (atomically:
  the weights' files stay byte for byte); ``out`` gets a whole model directory as :func:`publish` writes it.

  Raises:
    UserError: not a published lifter.
  """
  path = Path(path)
  model, meta = model_dir.load_model(path)
  if meta["kind"] != "lifter" or "trained" not in meta:
    raise UserError(f"{path}: not a published lifter (model.json has no 'trained' record)")
  uncertainty, errors, feedback = feedback_figures(model, meta["config"]["maxlen"])
  meta |= {
    "uncertainty": uncertainty,
    "figure_errors": errors,
    "feedback": feedback,
    "feedback_measured": {"commit": git_commit()},
  }
  text = (json.dumps(meta, indent=2) + "\n").encode()
  out = Path(out) if out is not None else path
  if out.resolve() == path.resolve():
    atomic_write_bytes(path / model_dir.MODEL_JSON, text)
    return {"out": str(out), **meta}
  return _write(model, {k: v for k, v in meta.items() if k not in ("format", "kind", "config")}, out)


def publish(
  config, workdir: str | Path, out: str | Path | None = None, step: int | None = None
) -> dict[str, Any]:
  """Writes the run's lifter with its config, data, commit and held-out figures into ``out``.

  Raises:
    UserError: not a lifter run, weights over ``MAX_WEIGHT_BYTES``, or ``out`` not writable.
  """
  if model_dir.is_model_dir(workdir):  # a published lifter, not a run: the rules moved on
    return remeasure_feedback(workdir, out)
  if config.data.source != "mocap":
    raise UserError(
      f"publish evaluates on the held-out mocap views; {config.data.source!r} runs "
      "are not published as the default lifter"
    )
  model, meta = model_dir.load_model(workdir, step=step)
  if meta["kind"] != "lifter":
    raise UserError(f"{workdir}: a {meta['kind']} model; only a lifter can be published")
  weights = model_dir.weights_of(model)
  size = sum(np.asarray(x).nbytes for x in jax.tree.leaves(weights))
  if size > MAX_WEIGHT_BYTES:
    raise UserError(
      f"{workdir}: weights of {size / 2**20:.1f} MiB exceed the package's {MAX_WEIGHT_BYTES / 2**20:.0f} MiB"
    )
  figures = held_out_figures(config, workdir, step)
  uncertainty, errors, feedback = feedback_figures(model, meta["config"]["maxlen"])
  best = Path(workdir) / "best.json"
  trained_step = (
    step if step is not None else (json.loads(best.read_text()).get("step") if best.is_file() else None)
  )
  trained = run_config(config, workdir)
  record = {
    "trained": {
      "config": json.loads(trained.to_json_best_effort()),
      "commit": git_commit(),
      "step": trained_step,
      "run": str(Path(workdir).name),
      **initialised_from(trained),
    },
    "data": {
      "source": "mocap",
      "takes": "every take of ../shared/data/mocap (UI-PRMD, HDM05, CMU)",
      "held_out_subjects": list(mocap.TEST_SUBJECTS),
      "fps": mocap.FPS,  # the clock infer lifts footage on (wild.lift.resample_frames)
      "licences": "UI-PRMD PDDL 1.0; CMU mocap (mocap.cs.cmu.edu, NSF EIA-0196217); "
      "HDM05 CC BY-SA 3.0 (see README.md)",
    },
    "held_out": figures,
    "uncertainty": uncertainty,
    "figure_errors": errors,
    "feedback": feedback,
    "weight_bytes": int(size),
  }
  return _write(model, record, Path(out) if out is not None else DEFAULT_LIFTER)


def _write(model, record: dict[str, Any], out: Path) -> dict[str, Any]:
  """The model directory ``out`` (weights, ``model.json`` with ``record``, the licences) written
  whole in a staging folder beside it, then moved into place."""
  staging = Path(tempfile.mkdtemp(prefix=".publish-", dir=out.parent if out.parent.is_dir() else None))
  try:
    written = model_dir.save_model_dir(staging / "model", model, **record)
    atomic_write_bytes(written / "README.md", LICENCES.encode())
    if out.exists():
      shutil.rmtree(out)
    shutil.move(str(written), str(out))
    for folder in (out, *(p for p in out.rglob("*") if p.is_dir())):
      folder.chmod(0o755)  # the staging folder was private; the package's files are everyone's to read
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return {"out": str(out), **record}
