"""Training: configs in, sharded optax loops, checkpoints, evaluation and publishing.

Data flows one way: configs (``config_base``, ``config_check``, ``config_load``) -> ``eval_reports``
(what an evaluation's predictions come to: metrics, tables, plots) -> ``tasks`` (what a task
feeds, predicts and reports, and how its model is built and initialised) -> ``trainer`` (mesh, jit
update step, orbax checkpoints through ``checkpoints``, ``rundir``'s lock and status,
``reporting``'s metrics) -> ``main`` (the ``train`` / ``eval`` / ``publish`` commands). ``aot``
compiles the same update step for a TPU slice without one; ``publish`` turns a lifter run into the
package's default lifter. Sweeps over training configs live in ``perfectrep_jax.sweeps``.
"""
