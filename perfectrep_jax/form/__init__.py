"""Form analysis of 3D motion: repetitions, joint angles, rules, score and report.

- :mod:`~perfectrep_jax.form.kinematics`: the vertical from the skeleton, joint angles, depth.
- :mod:`~perfectrep_jax.form.reps`: AIFit-style repetition segmentation.
- :mod:`~perfectrep_jax.form.figures`: per-repetition figures (angles, ROM, tempo, symmetry).
- :mod:`~perfectrep_jax.form.rules` and ``rules.json``: per-exercise thresholds, score, feedback;
  :mod:`~perfectrep_jax.form.fit_rules` fits the squat thresholds on labelled mocap;
  :mod:`~perfectrep_jax.form.recognise`: which exercise a motion is.
- :mod:`~perfectrep_jax.form.analysis`: :class:`Analysis`, what an analysis found.
- :mod:`~perfectrep_jax.form.analyze`: ``analyze`` / ``analyze_motion``, what the CLI calls, and what
  an input cannot support (``judge_limits``).
- :mod:`~perfectrep_jax.form.report` and :mod:`~perfectrep_jax.form.plots`: report.json, report.html;
  :mod:`~perfectrep_jax.form.overlay`: the findings drawn on the video.
- :mod:`~perfectrep_jax.form.synth`: sessions and faults made from real mocap, for tests and benchmarks.

Imports run one way: analysis <- plots <- report <- analyze.
"""
