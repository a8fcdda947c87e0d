"""Query strategies by name: the one table behind ``skal``, ``skal label`` and the benchmarks.

Classes are imported only when a strategy is made, so a strategy whose module
is missing or broken is reported as unavailable instead of breaking the listing.
"""

import importlib
from typing import NamedTuple

__all__ = [
    "ALIASES",
    "Factory",
    "SEMI_SUPERVISED",
    "STRATEGIES",
    "StrategyEntry",
    "available_strategies",
    "describe_strategies",
    "make_strategy",
    "strategy_family",
    "strategy_status",
]


class Factory(NamedTuple):
    """A keyword value built when the strategy is made (``module.name(**kwargs)``).

    Keeps the table importable without torch or scikit-learn, and gives every
    strategy its own object (an embedding transformer is fitted in place).
    """

    module: str
    name: str
    kwargs: dict = {}

    def build(self):
        return getattr(importlib.import_module(self.module), self.name)(**self.kwargs)


class StrategyEntry(NamedTuple):
    """One named strategy: ``cls(*base, **kwargs)`` from ``module``."""

    module: str
    class_name: str
    kwargs: dict
    #: Registry name of a strategy passed as the first argument (wrappers), or None.
    base: str = None
    #: Plots draw one panel per family when many strategies are compared.
    family: str = "other"
    description: str = ""


_U, _B, _C = "skal.strategies.uncertainty", "skal.strategies.bayesian", "skal.strategies.committee"
_D, _W = "skal.strategies.dfal", "skal.strategies.wasserstein"
_WC = "skal.strategies.wasserstein_coreset"

STRATEGIES = {
    "random": StrategyEntry("skal.strategies.random", "RandomSampling", {}, None, "baseline",
                            "uniform random sampling: the baseline every strategy must beat"),
    "entropy": StrategyEntry(_U, "UncertaintySampling", {"measure": "entropy"}, None,
                             "uncertainty", "highest predictive entropy"),
    "margin": StrategyEntry(_U, "UncertaintySampling", {"measure": "margin"}, None,
                            "uncertainty", "smallest gap between the two most likely classes"),
    "least-confident": StrategyEntry(_U, "UncertaintySampling", {"measure": "least_confident"},
                                     None, "uncertainty", "lowest top-class probability"),
    "bald": StrategyEntry(_B, "BALD", {"n_passes": 10}, None, "bayesian",
                          "MC-dropout mutual information between label and weights (10 passes)"),
    "coreset": StrategyEntry("skal.strategies.coreset", "CoreSet", {}, None, "geometric",
                             "greedy k-center in the embedding (Sener & Savarese 2018)"),
    "coreset-l2": StrategyEntry("skal.strategies.coreset", "CoreSet", {"normalize": True}, None,
                                "geometric", "greedy k-center on L2-normalised embeddings "
                                "(cosine geometry; see docs/diagnoses.md)"),
    "dfal": StrategyEntry(_D, "DFAL", {}, None, "adversarial",
                          "smallest DeepFool perturbation, adversarial copies added (Ducoffe)"),
    "dfal-noadv": StrategyEntry(_D, "DFAL", {"add_adversarial": False}, None, "adversarial",
                                "DFAL without the adversarial copies (the WAAL paper's DeepFool)"),
    "ceal": StrategyEntry(_D, "CEAL", {}, None, "uncertainty",
                          "entropy plus confident pseudo-labels (Wang et al. 2017)"),
    "egl": StrategyEntry(_D, "EGL", {}, None, "adversarial",
                         "expected gradient length of the loss"),
    "dqbc": StrategyEntry(_C, "DQBC", {}, None, "committee",
                          "dropout query-by-committee, the thesis's soft score"),
    "qbc": StrategyEntry(_C, "QueryByCommittee", {}, None, "committee",
                         "vote entropy over DQBC's dropout committee"),
    "balnet": StrategyEntry("skal.strategies.balnet", "BALNet", {}, None, "bayesian",
                            "variational free energy with a KFAC Fisher, greedy batches"),
    # The thesis's diversity step (Eq. 5.15) with its M = 10.
    "balnet+wasserstein": StrategyEntry("skal.strategies.balnet", "BALNet", {"diversity": 10},
                                        None, "wasserstein",
                                        "BALNet with the thesis's Wasserstein diversity step"),
    "waal": StrategyEntry("skal.strategies.waal", "WAAL", {}, None, "semi-supervised",
                          "Wasserstein adversarial AL: a critic shapes training and the query "
                          "(trains a WAALClassifier)"),
    "wasserstein-prototypes": StrategyEntry(_W, "WassersteinPrototypes", {}, None, "wasserstein",
                                            "greedy Wasserstein prototypes of the pool (POT)"),
    "entropy+wasserstein": StrategyEntry(_W, "WassersteinDiversity", {}, "entropy", "wasserstein",
                                         "Wasserstein prototypes among the most uncertain"),
    "bald+wasserstein": StrategyEntry(_W, "WassersteinDiversity", {}, "bald", "wasserstein",
                                      "Wasserstein prototypes among the highest-BALD samples"),
    "wasserstein-coreset": StrategyEntry(_WC, "WassersteinCoreSet", {}, None, "wasserstein",
                                         "integer-programming Wasserstein core-set (PuLP)"),
    "kmedoids-coreset": StrategyEntry(_WC, "KMedoidsCoreSet", {}, None, "geometric",
                                      "k-medoids core-set (the WAAL paper's KMedian)"),
    "typiclust": StrategyEntry("skal.strategies.typiclust", "TypiClust", {}, None, "geometric",
                               "most typical point of the largest uncovered k-means clusters "
                               "(small budgets, cold start)"),
    "probcover": StrategyEntry("skal.strategies.probcover", "ProbCover", {}, None, "geometric",
                               "greedy max coverage of delta-balls (small budgets, cold start)"),
    # The papers cluster a fixed, label-free space; the pixels' principal
    # components stand in for their self-supervised one (docs/typiclust_probcover.md).
    "typiclust-pca": StrategyEntry("skal.strategies.typiclust", "TypiClust",
                                   {"embedding": Factory("skal.nets", "pixel_pca")}, None,
                                   "geometric", "TypiClust on the pixels' 50 principal components "
                                   "(fixed, label-free space)"),
    "probcover-pca": StrategyEntry("skal.strategies.probcover", "ProbCover",
                                   {"embedding": Factory("skal.nets", "pixel_pca")}, None,
                                   "geometric", "ProbCover on the pixels' 50 principal components "
                                   "(fixed, label-free space)"),
    "cluster-margin": StrategyEntry("skal.strategies.cluster_margin", "ClusterMargin", {}, None,
                                    "uncertainty", "lowest margins, round-robin over HAC "
                                    "clusters (large batches)"),
    "badge": StrategyEntry("skal.strategies.badge", "BADGE", {}, None, "geometric",
                           "k-means++ on last-layer gradient embeddings (Ash et al. 2020)"),
    "batchbald": StrategyEntry("skal.strategies.batchbald", "BatchBALD", {}, None, "bayesian",
                               "greedy joint mutual information of the batch (Kirsch et al. 2019)"),
    "powerbald": StrategyEntry("skal.strategies.stochastic", "PowerBALD", {}, None, "bayesian",
                               "batch sampled with probabilities ~ BALD^beta (Kirsch et al. 2023)"),
    "softmax-entropy": StrategyEntry("skal.strategies.stochastic", "StochasticBatch",
                                     {"mode": "softmax"}, "entropy", "uncertainty",
                                     "entropy batch sampled with softmax weights "
                                     "(stochastic batch acquisition)"),
    # DQBC's top-k batches of a few tens are lopsided on digits (half from one
    # class); the rank-based draw keeps its committee score (docs/dqbc.md).
    "softrank-dqbc": StrategyEntry("skal.strategies.stochastic", "StochasticBatch",
                                   {"mode": "softrank"}, "dqbc", "committee",
                                   "DQBC batch sampled with rank weights 1/rank "
                                   "(stochastic batch acquisition)"),
    # WAAL's top-k batches on digits come from one or two classes once its critic
    # collapses (docs/waal.md); the same rank-based draw, on WAAL's own score.
    "softrank-waal": StrategyEntry("skal.strategies.stochastic", "StochasticBatch",
                                   {"mode": "softrank"}, "waal", "semi-supervised",
                                   "WAAL batch sampled with rank weights 1/rank "
                                   "(trains a WAALClassifier)"),
}

#: Strategies whose learner is trained differently (WAAL's critic needs a
#: :class:`skal.models.WAALClassifier`).
SEMI_SUPERVISED = {"waal", "softrank-waal"}

ALIASES = {
    "core-set": "coreset",
    "kcenter": "coreset",
    "k-center": "coreset",
    "least_confident": "least-confident",
    "leastconfident": "least-confident",
    "uncertainty": "least-confident",
}


def _canonical(name):
    key = str(name).strip().lower()
    return ALIASES.get(key, key)


def make_strategy(name, random_state=None):
    """A fresh strategy from its registry name (aliases such as ``"core-set"`` too).

    Parameters
    ----------
    name : str
    random_state : int or None, default=None
        Set on the strategy when it has a ``random_state`` parameter.

    Raises
    ------
    ValueError
        Unknown name, or the strategy's module or class is not available (the
        message says why).

    Examples
    --------
    >>> make_strategy("margin")
    UncertaintySampling(measure='margin')
    """
    key = _canonical(name)
    if key not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}.")
    module, class_name, kwargs, base = tuple(STRATEGIES[key])[:4]
    try:
        cls = getattr(importlib.import_module(module), class_name)
    except ImportError as exc:
        raise ValueError(
            f"strategy {name!r} is unavailable: cannot import {module} ({exc}).") from exc
    except AttributeError as exc:
        raise ValueError(
            f"strategy {name!r} is unavailable: {module} has no {class_name}.") from exc
    args = (make_strategy(base, random_state),) if base is not None else ()
    kwargs = {k: v.build() if isinstance(v, Factory) else v for k, v in kwargs.items()}
    strategy = cls(*args, **kwargs)
    if random_state is not None and "random_state" in strategy.get_params(deep=False):
        strategy.set_params(random_state=random_state)
    return strategy


def strategy_status():
    """``{name: None if available else the reason}`` for every registry name.

    Examples
    --------
    >>> strategy_status()["random"] is None
    True
    """
    status = {}
    for name in STRATEGIES:
        try:
            make_strategy(name)
            status[name] = None
        except Exception as exc:  # a broken module must not stop the listing
            status[name] = str(exc)
    return status


def available_strategies():
    """Names of the strategies that can be made in this installation.

    Examples
    --------
    >>> "entropy" in available_strategies()
    True
    """
    return [name for name, why in strategy_status().items() if why is None]


def describe_strategies():
    """One line per strategy: name, family and what it queries (``skal --list``).

    Examples
    --------
    >>> print(describe_strategies().splitlines()[0])  # doctest: +NORMALIZE_WHITESPACE
    random  baseline  uniform random sampling: the baseline every strategy must beat
    """
    status = strategy_status()
    width = max(map(len, STRATEGIES))
    fam_width = max(len(getattr(e, "family", "other")) for e in STRATEGIES.values())
    lines = []
    for name, entry in STRATEGIES.items():
        family = getattr(entry, "family", "other")
        text = getattr(entry, "description", "") or entry[1]
        if status[name] is not None:
            text += f"  [unavailable: {status[name]}]"
        lines.append(f"{name.ljust(width)}  {family.ljust(fam_width)}  {text}")
    return "\n".join(lines)


def strategy_family(name):
    """The family a registry name belongs to (``"other"`` when unknown)."""
    entry = STRATEGIES.get(_canonical(name))
    return getattr(entry, "family", "other") if entry is not None else "other"
