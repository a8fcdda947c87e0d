"""skal: deep active learning for scikit-learn and skorch."""

from . import adversarial, datasets, diagnostics, models, nets, ot
from . import stopping
from .base import QueryStrategy, ScoreBasedStrategy
from .learner import ActiveLearner, ActiveLearningClassifier
from .models import WAALClassifier
from .simulation import SimulationResult, SimulationResults, simulate
from .strategies import (
    BALD,
    BALNet,
    CEAL,
    DFAL,
    DQBC,
    EGL,
    KMedoidsCoreSet,
    QueryByCommittee,
    WAAL,
    CoreSet,
    RandomSampling,
    UncertaintySampling,
    WassersteinCoreSet,
    WassersteinDiversity,
    WassersteinPrototypes,
)

__version__ = "0.1.0"

__all__ = [
    "ActiveLearner",
    "ActiveLearningClassifier",
    "BALD",
    "BALNet",
    "CEAL",
    "DFAL",
    "DQBC",
    "KMedoidsCoreSet",
    "QueryByCommittee",
    "EGL",
    "CoreSet",
    "QueryStrategy",
    "RandomSampling",
    "ScoreBasedStrategy",
    "UncertaintySampling",
    "WAAL",
    "WAALClassifier",
    "WassersteinCoreSet",
    "WassersteinDiversity",
    "WassersteinPrototypes",
    "diagnostics",
    "ot",
    "SimulationResult",
    "SimulationResults",
    "simulate",
    "stopping",
    "datasets",
    "adversarial",
    "models",
    "nets",
    "__version__",
]
