"""Models: the DSTformer backbone and lifter, the action classifier, and the MLP baseline."""

from perfectrep_jax.models.dstformer import DSTformer, DSTformerConfig
from perfectrep_jax.models.heads import ActionConfig, ActionNet

__all__ = ["DSTformer", "DSTformerConfig", "ActionConfig", "ActionNet"]
