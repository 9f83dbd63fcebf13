"""Deployment: exported lifters and real-time streaming.

- :mod:`~perfectrep_jax.deploy.export`: StableHLO, ONNX and LiteRT artifacts, each checked against
  the JAX model before it is kept (``perfectrep-jax export-model``).
- :mod:`~perfectrep_jax.deploy.runtime`: runs an exported artifact (imports nothing else of the
  package, so it can be copied alone next to one).
- :mod:`~perfectrep_jax.deploy.stream`: frame-by-frame lifting with a hop and a look-ahead;
  :mod:`~perfectrep_jax.deploy.stream_io`: its inputs and outputs; :mod:`~perfectrep_jax.deploy.online_reps`:
  repetitions counted as they happen.
- :mod:`~perfectrep_jax.deploy.cli`: the ``export-model`` and ``stream`` commands.
"""
