"""The data path: raw datasets -> clips -> grain batches -> on-device corruption.

- ``clips``: upstream-exact normalisation (``crop_scale``, ``crop_scale_3d``), ``flip_data``,
  cutting (``split_clips``, ``sequence_clips``, ``resample``) and denormalisation to mm/pixels.
- ``cameras``: world to camera, the Human3.6M projection model, the 2.5D image frame.
- ``sequences``: one camera view of a sequence, normalised; ``ClipSource`` cuts it into examples.
- ``shared``: where public data is read from (``$PERFECTREP_JAX_DATA`` or ``../shared``).
- ``demo``: the real mocap of the data folder seen through virtual cameras (no download).
- ``mocap``: all of that mocap, each training clip filmed by a new phone-like camera with
  detector-like 2D (the default lifter's data); ``view`` films a whole take.
- ``moves``: on-device 2D augmentation of action clips; ``bundled``: files shipped inside the package.
- ``builders``: TFDS builders (``fit3d``, ``h36m``, ``mpi_inf_3dhp``, ``demo``) writing array_record;
  ``prepare``: runs one (``perfectrep-jax prepare``).
- ``pipeline``: grain training / evaluation pipelines and ``make_global_batch``.
- ``corruption``: jit-compiled detector-like noise and masks for masked-pose pretraining.
"""
