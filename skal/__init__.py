"""skal: deep active learning for scikit-learn and skorch."""

from . import nets
from .base import QueryStrategy, ScoreBasedStrategy
from .learner import ActiveLearner, ActiveLearningClassifier
from .strategies import BALD, CoreSet, RandomSampling, UncertaintySampling

__version__ = "0.1.0"

__all__ = [
    "ActiveLearner",
    "ActiveLearningClassifier",
    "BALD",
    "CoreSet",
    "QueryStrategy",
    "RandomSampling",
    "ScoreBasedStrategy",
    "UncertaintySampling",
    "nets",
    "__version__",
]
