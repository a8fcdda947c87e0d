"""Query strategies, one module per family."""

from .bayesian import BALD
from .coreset import CoreSet
from .random import RandomSampling
from .uncertainty import UncertaintySampling
from .waal import WAAL

__all__ = ["BALD", "CoreSet", "RandomSampling", "UncertaintySampling", "WAAL"]
