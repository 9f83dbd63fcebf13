"""Sweeps: grids of config overrides over one training config, their runs and results.

Data flows one way: ``spec`` (a sweep file's ``Sweep``, ``axis`` / ``product`` / ``zipped`` /
``chain``, the runs it names and their state) -> ``summary`` (one row per run: overrides, progress,
best evaluation, flags) -> ``launch`` (local runs, SLURM scripts, TPU-pod commands; the
``perfectrep-jax sweep`` command). ``upstream_yaml`` maps upstream's YAML configs onto ours. They
read the trainer's run directories (``train.rundir``, ``metrics.jsonl``) and run ``perfectrep-jax
train``; nothing in ``train`` imports them.
"""
