"""Training: configs in, sharded optax loops, checkpoints, evaluation, sweeps and publishing.

Data flows one way: configs (``config_base``, ``config_check``, ``config_load``) -> ``tasks`` (what a
task feeds, predicts and reports) -> ``trainer`` (mesh, jit update step, orbax checkpoints through
``checkpoints``, ``rundir``'s lock and status, ``reporting``'s metrics) -> ``main`` (the
``train`` / ``eval`` / ``publish`` commands). ``aot`` compiles the same update step for a TPU slice
without one; ``publish`` turns a lifter run into the package's default lifter. Sweeps:
``sweep`` (grids, runs and their state) <- ``sweep_summary`` <- ``sweep_launch`` (local, SLURM, TPU;
the ``sweep`` command); ``upstream_yaml`` maps upstream YAML configs onto ours.
"""
