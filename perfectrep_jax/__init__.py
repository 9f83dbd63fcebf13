"""perfectrep-jax: PerfectRep / MotionBERT's DSTformer in JAX and Flax NNX."""

__version__ = "0.1.0"
