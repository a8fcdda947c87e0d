"""Stochastic batch acquisition: sample the batch from the scores (Kirsch et al. 2023)."""

from numbers import Real

import numpy as np
from sklearn.utils import check_random_state

from ..base import QueryStrategy, candidate_subset, check_int, top_k
from .bayesian import BALD

__all__ = ["PowerBALD", "StochasticBatch", "stochastic_batch"]

_MODES = ("power", "softmax", "softrank")


def _check_mode_beta(mode, beta):
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}.")
    if isinstance(beta, bool) or not isinstance(beta, Real) or not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}.")


def stochastic_batch(scores, n_instances, *, mode="power", beta=1.0, random_state=None):
    """Sample ``n_instances`` distinct indices with probabilities set by ``scores``.

    Gumbel top-k: add independent Gumbel noise to the log-weights and keep the
    ``k`` largest, which samples without replacement from the weights
    (the first pick has probability ``w_i / sum_j w_j``). The weights are

    - ``"power"``: ``w_i = s_i ** beta`` (scores must be >= 0, e.g. BALD);
    - ``"softmax"``: ``w_i = exp(beta * s_i)``;
    - ``"softrank"``: ``w_i = rank_i ** -beta``, rank 1 the highest score.

    ``beta = 0`` is uniform sampling; a large ``beta`` tends to top-k.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Utilities, higher = more useful.
    n_instances : int
    mode : {"power", "softmax", "softrank"}, default="power"
    beta : float, default=1.0
        Inverse temperature (Kirsch et al. use 1).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        In decreasing order of perturbed log-weight.

    Examples
    --------
    >>> stochastic_batch([0.0, 0.1, 5.0, 4.0], 2, beta=8.0, random_state=0)
    array([2, 3])
    """
    _check_mode_beta(mode, beta)
    scores = np.asarray(scores, dtype=float).ravel()
    if scores.shape[0] == 0:
        raise ValueError("scores is empty: there is nothing to sample from.")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite.")
    n_instances = check_int(n_instances, "n_instances")
    if n_instances > scores.shape[0]:
        raise ValueError(
            f"n_instances={n_instances} is larger than the pool ({scores.shape[0]} samples)."
        )
    if mode == "power":
        if (scores < 0).any():
            raise ValueError(
                "mode='power' needs scores >= 0 (BALD, entropy); this strategy gives negative "
                "utilities (e.g. margin): use mode='softmax' or mode='softrank'."
            )
        # Zero scores keep a tiny weight so they are ordered at random last.
        log_weights = beta * np.log(np.maximum(scores, np.finfo(float).tiny))
    elif mode == "softmax":
        log_weights = beta * scores
    else:
        ranks = np.empty(scores.shape[0])
        ranks[top_k(scores, scores.shape[0])] = np.arange(1, scores.shape[0] + 1)
        log_weights = -beta * np.log(ranks)
    rng = check_random_state(random_state)
    return top_k(log_weights + rng.gumbel(size=scores.shape[0]), n_instances)


class StochasticBatch(QueryStrategy):
    """Sample the batch from any score-based strategy's utilities (Kirsch et al. 2023).

    Top-k of a per-sample score fills a large batch with near-duplicates;
    sampling it from the scores (:func:`stochastic_batch`) trades a little of
    each pick's score for diversity at no extra cost, and Kirsch et al. find it
    as good as BatchBALD and BADGE at a fraction of their cost.

    Parameters
    ----------
    base_strategy : ScoreBasedStrategy or None, default=None
        Gives the utilities (``utilities(estimator, X_pool)``): uncertainty
        sampling, BALD, ... Its hyperparameters are grid-searchable as
        ``base_strategy__<param>``. ``None``: ``BALD()`` seeded from
        ``random_state`` (then this is :class:`PowerBALD` with its defaults).
    mode : {"power", "softmax", "softrank"}, default="power"
        How scores become sampling weights; ``"power"`` needs scores >= 0.
    beta : float, default=1.0
        Inverse temperature: 0 is random sampling, large values approach top-k.
    random_state : int, RandomState instance or None, default=None
        Seeds the sampling (a given base strategy keeps its own ``random_state``).

    Attributes
    ----------
    last_utilities_ : ndarray of shape (n_pool,)
        The base strategy's utilities of the last query.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skal.strategies.uncertainty import UncertaintySampling
    >>> X = np.random.RandomState(0).normal(size=(100, 2))
    >>> clf = LogisticRegression().fit(X, X[:, 0] > 0)
    >>> StochasticBatch(UncertaintySampling("entropy"), random_state=0).query(clf, X, 5).shape
    (5,)
    """

    def __init__(self, base_strategy=None, mode="power", beta=1.0, random_state=None):
        self.base_strategy = base_strategy
        self.mode = mode
        self.beta = beta
        self.random_state = random_state

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        _check_mode_beta(self.mode, self.beta)
        rng = check_random_state(self.random_state)
        # The default BALD draws its dropout masks from this strategy's seed.
        base = BALD(random_state=rng) if self.base_strategy is None else self.base_strategy
        if not hasattr(base, "utilities"):
            raise ValueError(
                "base_strategy must be a score-based skal strategy (with utilities), got "
                f"{type(base).__name__}."
            )
        scores = base.utilities(estimator, X_pool, X_labeled=X_labeled, y_labeled=y_labeled)
        indices = stochastic_batch(scores, n_instances, mode=self.mode, beta=self.beta,
                                   random_state=rng)
        self.last_utilities_ = np.asarray(scores, dtype=float)
        return indices

    def augment(self, X_queried, y_queried):
        """The base strategy's extra training data (see :meth:`QueryStrategy.augment`)."""
        if self.base_strategy is None:
            return super().augment(X_queried, y_queried)
        return self.base_strategy.augment(X_queried, y_queried)


class PowerBALD(QueryStrategy):
    """PowerBALD: sample the batch with probabilities proportional to BALD ** beta.

    :class:`StochasticBatch` around :class:`~skal.BALD` with flat
    hyperparameters (Kirsch et al. 2023): BALD's cost (``n_passes`` MC-dropout
    passes over the pool), a batch as diverse as sampling makes it.

    Parameters
    ----------
    n_passes : int, default=10
        MC-dropout samples for BALD.
    beta : float, default=1.0
        Exponent of the BALD scores; 0 is random sampling, large values top-k BALD.
    mode : {"power", "softmax", "softrank"}, default="power"
        ``"softmax"`` and ``"softrank"`` give SoftmaxBALD and SoftrankBALD.
    n_candidates : int or None, default=None
        Score and sample among a random subset of the pool of this size only.
    batch_size : int or None, default=None
        Inference batch size.
    random_state : int, RandomState instance or None, default=None
        Seeds the candidate subset, the dropout masks and the sampling.

    Attributes
    ----------
    last_utilities_ : ndarray of shape (n_pool,)
        BALD scores of the last query (``-inf`` outside the candidate subset).

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> X = np.random.RandomState(0).rand(30, 1, 8, 8).astype("float32")
    >>> net = cnn_classifier("digits", 3, max_epochs=1, random_state=0).fit(X, np.arange(30) % 3)
    >>> PowerBALD(n_passes=5, random_state=0).query(net, X, 3).shape
    (3,)
    """

    def __init__(self, n_passes=10, beta=1.0, mode="power", n_candidates=None, batch_size=None,
                 random_state=None):
        self.n_passes = n_passes
        self.beta = beta
        self.mode = mode
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.random_state = random_state

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        _check_mode_beta(self.mode, self.beta)
        check_int(self.n_passes, "n_passes")
        check_int(self.batch_size, "batch_size", allow_none=True)
        rng = check_random_state(self.random_state)
        candidates = candidate_subset(X_pool.shape[0], self.n_candidates, n_instances, rng)
        X = X_pool if candidates is None else X_pool[candidates]
        bald = BALD(n_passes=self.n_passes, batch_size=self.batch_size, random_state=rng)
        scores = bald.utilities(estimator, X)
        picked = stochastic_batch(scores, n_instances, mode=self.mode, beta=self.beta,
                                  random_state=rng)
        if candidates is None:
            self.last_utilities_ = scores
            return picked
        self.last_utilities_ = np.full(X_pool.shape[0], -np.inf)
        self.last_utilities_[candidates] = scores
        return candidates[picked]
