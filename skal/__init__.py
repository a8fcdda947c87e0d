"""skal: deep active learning for scikit-learn and skorch."""

from . import adversarial, datasets, diagnostics, models, nets, ot, recipes, registry, stopping
from .base import QueryStrategy, ScoreBasedStrategy
from .learner import ActiveLearner, ActiveLearningClassifier
from .models import WAALClassifier
from .simulation import SimulationResult, SimulationResults, simulate
from .strategies import (
    BADGE,
    BALD,
    BatchBALD,
    BALNet,
    CEAL,
    DFAL,
    DQBC,
    EGL,
    KMedoidsCoreSet,
    PowerBALD,
    QueryByCommittee,
    WAAL,
    CoreSet,
    RandomSampling,
    StochasticBatch,
    UncertaintySampling,
    WassersteinCoreSet,
    WassersteinDiversity,
    WassersteinPrototypes,
)
from .strategies import ClusterMargin, ProbCover, TypiClust

__version__ = "0.1.0"

__all__ = [
    "ActiveLearner",
    "ActiveLearningClassifier",
    "BADGE",
    "BALD",
    "BatchBALD",
    "BALNet",
    "CEAL",
    "DFAL",
    "DQBC",
    "KMedoidsCoreSet",
    "PowerBALD",
    "QueryByCommittee",
    "EGL",
    "CoreSet",
    "QueryStrategy",
    "RandomSampling",
    "ScoreBasedStrategy",
    "StochasticBatch",
    "UncertaintySampling",
    "WAAL",
    "WAALClassifier",
    "WassersteinCoreSet",
    "WassersteinDiversity",
    "WassersteinPrototypes",
    "ClusterMargin",
    "ProbCover",
    "TypiClust",
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
    "recipes",
    "registry",
    "__version__",
]
