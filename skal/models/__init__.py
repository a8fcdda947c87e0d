"""Learners that train differently from plain supervised nets.

* :class:`WAALClassifier` trains on labeled rows plus unlabeled rows (``y == -1``)
  with WAAL's min-max objective (Shui et al., AISTATS 2020).
"""

from .waal import (
    WAAL_PRESETS,
    TrunkHead,
    WAALClassifier,
    WAALCritic,
    WAALLeNet,
    critic_gradient_penalty,
    critic_loss,
    label_weight_value,
)

__all__ = [
    "WAAL_PRESETS",
    "TrunkHead",
    "WAALClassifier",
    "WAALCritic",
    "WAALLeNet",
    "critic_gradient_penalty",
    "critic_loss",
    "label_weight_value",
]
