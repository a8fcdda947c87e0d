"""Query strategies, one module per family."""

from .balnet import BALNet
from .bayesian import BALD
from .cluster_margin import ClusterMargin
from .committee import DQBC, QueryByCommittee
from .coreset import CoreSet
from .probcover import ProbCover
from .typiclust import TypiClust
from .dfal import CEAL, DFAL, EGL
from .random import RandomSampling
from .uncertainty import UncertaintySampling
from .waal import WAAL
from .wasserstein import WassersteinDiversity, WassersteinPrototypes
from .wasserstein_coreset import KMedoidsCoreSet, WassersteinCoreSet

__all__ = ["BALD", "BALNet", "CEAL", "CoreSet", "DFAL", "DQBC", "EGL", "KMedoidsCoreSet", "QueryByCommittee", "RandomSampling", "UncertaintySampling",
           "WAAL", "WassersteinCoreSet", "WassersteinDiversity",
           "WassersteinPrototypes"]
__all__ += ["ClusterMargin", "ProbCover", "TypiClust"]
