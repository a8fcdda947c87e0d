"""skal: deep active learning for scikit-learn and skorch."""

from . import models, nets
from .base import QueryStrategy, ScoreBasedStrategy
from .learner import ActiveLearner, ActiveLearningClassifier
from .models import WAALClassifier
from .strategies import WAAL, BALD, CoreSet, RandomSampling, UncertaintySampling

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
    "WAAL",
    "WAALClassifier",
    "models",
    "nets",
    "__version__",
]
