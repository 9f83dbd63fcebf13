"""PyTorch interop: upstream checkpoints in, parity out; never runs pickled code.

- :mod:`~perfectrep_jax.interop.safe_pickle`: an unpickler that builds only plain containers and
  tensors (a crafted file cannot run code).
- :mod:`~perfectrep_jax.interop.torch_pickle`: ``torch.save`` archives (zip and legacy) read without torch.
- :mod:`~perfectrep_jax.interop.convert`: upstream state dicts (PerfectRep, MotionBERT) to model
  directories (``perfectrep-jax convert``).
- :mod:`~perfectrep_jax.interop.torch_reference`: a PyTorch DSTformer for export and parity tests
  (the ``torch`` extra).
"""
