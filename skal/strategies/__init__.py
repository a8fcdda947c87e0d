"""Query strategies, one module per family."""

from .badge import BADGE
from .balnet import BALNet
from .batchbald import BatchBALD
from .bayesian import BALD
from .cluster_margin import ClusterMargin
from .committee import DQBC, QueryByCommittee
from .coreset import CoreSet
from .dfal import CEAL, DFAL, EGL
from .probcover import ProbCover
from .random import RandomSampling
from .stochastic import PowerBALD, StochasticBatch
from .typiclust import TypiClust
from .uncertainty import UncertaintySampling
from .waal import WAAL
from .wasserstein import WassersteinDiversity, WassersteinPrototypes
from .wasserstein_coreset import KMedoidsCoreSet, WassersteinCoreSet

__all__ = ["BALD", "BALNet", "CEAL", "CoreSet", "DFAL", "DQBC", "EGL", "KMedoidsCoreSet",
           "QueryByCommittee", "RandomSampling", "UncertaintySampling", "WAAL",
           "WassersteinCoreSet", "WassersteinDiversity", "WassersteinPrototypes"]
__all__ += ["ClusterMargin", "ProbCover", "TypiClust"]
__all__ += ["BADGE", "BatchBALD", "PowerBALD", "StochasticBatch"]
