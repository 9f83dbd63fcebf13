"""Models: the DSTformer backbone and lifter, the action classifier, and the MLP baseline.

``bounds`` (what a model config may ask for) and ``kernels`` (layers, custom-gradient LayerNorm,
GELU and attention) -> ``dstformer`` -> ``heads`` (action classifier), ``baseline`` (per-frame MLP
lifter) -> ``model_dir`` (a training config's ``model`` section -> model config; build, save and
load model directories).
"""

from perfectrep_jax.models.dstformer import DSTformer, DSTformerConfig
from perfectrep_jax.models.heads import ActionConfig, ActionNet

__all__ = ["DSTformer", "DSTformerConfig", "ActionConfig", "ActionNet"]
