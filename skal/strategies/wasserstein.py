"""Wasserstein selectors: prototypes and the diversity wrapper (Ducoffe thesis, ch. 9, Eq. 5.15).

Both choose a batch ``B`` that keeps the labeled set representative:
``B = argmin_{|B| = k} W2(labeled ∪ B, pool ∪ labeled)`` by greedy search
(:func:`skal.ot.greedy_prototypes`), in a feature space (the model's
penultimate layer by default).

* :class:`WassersteinPrototypes` searches the (optionally subsampled) pool.
* :class:`WassersteinDiversity` lets any strategy pre-select ``k * oversample``
  candidates and picks the ``k`` prototypes among them (thesis sec. 9.4).
"""

from numbers import Integral

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..base import QueryStrategy, candidate_subset, check_int, check_pool
from ..nets import features
from ..ot._distance import _METHODS
from ..ot._prototypes import _check_max_solves, greedy_prototypes

__all__ = ["WassersteinDiversity", "WassersteinPrototypes"]


class _WassersteinSelector(QueryStrategy):
    """Shared feature extraction and prototype search (not public)."""

    def _check_common(self):
        emb = self.embedding
        if isinstance(emb, str):
            if emb not in ("auto", "model", "input"):
                raise ValueError(
                    "embedding must be 'auto', 'model', 'input', a transformer or a "
                    f"callable, got {emb!r}."
                )
        elif not (hasattr(emb, "transform") or callable(emb)):
            raise ValueError(
                f"embedding must be 'auto', 'model', 'input', a transformer (with "
                f"transform) or a callable, got {type(emb).__name__}."
            )
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}.")
        check_int(self.n_target, "n_target", allow_none=True)
        check_int(self.n_fixed, "n_fixed", allow_none=True)
        _check_max_solves(self.max_solves, 1)

    def _features(self, estimator, X, X_fit):
        """Features of ``X``; ``X_fit()`` fits an unfitted transformer the first time."""
        emb = self.embedding
        if hasattr(emb, "transform"):
            emb = self._fitted_transformer(X_fit)
        return features(estimator, X, emb, batch_size=self.batch_size)

    def _fitted_transformer(self, X_fit):
        # A transformer given fitted is used as is. An unfitted one (e.g. after
        # clone() in a grid search) is fitted once, unsupervised, on the first
        # target sample seen and kept for the next queries.
        emb = self.embedding
        try:
            check_is_fitted(emb)
            return emb
        except NotFittedError:
            pass
        fitted = getattr(self, "embedding_", None)
        if fitted is None or getattr(self, "_embedding_source", None) is not emb:
            fitted = clone(emb).fit(X_fit())
            self.embedding_ = fitted
            self._embedding_source = emb
        return fitted

    def _prototypes(self, estimator, X_pool, candidates, n_instances, X_labeled, rng):
        """Greedy prototypes among ``X_pool[candidates]``; indices into ``candidates``."""
        n_pool = X_pool.shape[0]
        n_lab = 0 if X_labeled is None else X_labeled.shape[0]
        n_all = n_pool + n_lab
        # Target: the pool with the labeled set (Eq. 5.15). k-means quantisation
        # needs all of it; a subsample is drawn before any feature is computed,
        # so such a query never embeds more than it uses.
        if self.quantize or self.n_target is None or n_all <= self.n_target:
            target = np.arange(n_all)
        else:
            target = np.sort(rng.choice(n_all, size=self.n_target, replace=False))
        t_pool, t_lab = target[target < n_pool], target[target >= n_pool] - n_pool
        fixed = None
        if self.include_labeled and n_lab:
            if self.quantize or self.n_fixed is None or n_lab <= self.n_fixed:
                fixed = np.arange(n_lab)
            else:
                fixed = np.sort(rng.choice(n_lab, size=self.n_fixed, replace=False))

        pool_rows = np.union1d(candidates, t_pool)
        lab_rows = t_lab if fixed is None else np.union1d(t_lab, fixed)

        def X_fit():  # built only if an unfitted transformer needs it
            if t_lab.size == 0:
                return X_pool[t_pool]
            return np.concatenate([X_pool[t_pool], X_labeled[t_lab]])

        Z_pool = self._features(estimator, X_pool[pool_rows], X_fit)
        pos = {int(r): i for i, r in enumerate(pool_rows)}
        Z_cand = Z_pool[[pos[int(r)] for r in candidates]]
        Z_target = Z_pool[[pos[int(r)] for r in t_pool]]
        Z_fixed = None
        if lab_rows.size:
            Z_lab = self._features(estimator, X_labeled[lab_rows], X_fit)
            lpos = {int(r): i for i, r in enumerate(lab_rows)}
            Z_target = np.concatenate([Z_target, Z_lab[[lpos[int(r)] for r in t_lab]]])
            if fixed is not None:
                Z_fixed = Z_lab[[lpos[int(r)] for r in fixed]]
        chosen, objective = greedy_prototypes(
            Z_cand, Z_target, n_instances, X_fixed=Z_fixed, n_target=self.n_target,
            quantize=self.quantize, n_fixed=self.n_fixed, method=self.method,
            reg=self.reg, n_iter=self.n_iter, max_solves=self.max_solves,
            return_objective=True, random_state=rng,
        )
        self.objective_ = objective
        return chosen


def _rank_utilities(n_pool, indices):
    """Utilities for the modAL protocol when there is no score: k, k-1, ..., 1."""
    u = np.full(n_pool, -np.inf)
    u[indices] = np.arange(len(indices), 0, -1, dtype=float)
    return u


class WassersteinPrototypes(_WassersteinSelector):
    """Query Wasserstein prototypes of the pool (Ducoffe thesis, ch. 9).

    Picks, one at a time, the pool sample whose addition to the labeled set
    most lowers ``W2(labeled ∪ batch, pool ∪ labeled)`` (squared Euclidean
    cost in the feature space). The batch makes the labeled set look like the
    pool: a representativeness criterion with no model uncertainty in it,
    useful for cold starts and as a distribution-matching baseline.

    Parameters
    ----------
    embedding : {"auto", "model", "input"}, transformer or callable, default="auto"
        Feature space. ``"model"``: penultimate-layer features of the net
        (:func:`skal.nets.embed`); ``"input"``: flattened inputs; ``"auto"``:
        the model's when it is a torch net. A transformer (e.g. a fitted
        :class:`skal.ot.DeepWassersteinEmbedding` or PCA) is applied with
        ``transform``; unfitted, it is fitted once on the first query's target
        sample and kept in ``embedding_``. A callable maps ``X`` to features.
    include_labeled : bool, default=True
        Count the labeled set in the selected measure (Eq. 5.15): the batch then
        fills what the labeled set misses. ``False`` matches the batch alone to
        the pool.
    n_candidates : int or None, default=2000
        Random subset of the pool to choose from (``None``: the whole pool).
    n_target : int or None, default=500
        Target points: k-means centroids of pool ∪ labeled (or a uniform
        subsample with ``quantize=False``). Bounds the transport problems.
    n_fixed : int or None, default=500
        Same cap for the labeled set inside the objective.
    quantize : bool, default=True
        k-means centroids weighted by cluster mass (embeds the whole pool).
        ``False``: uniform subsamples, cheaper on huge pools but noisy; in high
        dimension the greedy then matches the sample, not the pool (see
        :func:`skal.ot.greedy_prototypes`).
    method : {"exact", "sinkhorn", "ipot"}, default="exact"
        Transport solver (:func:`skal.ot.wasserstein2`).
    reg, n_iter : default=None
        Solver settings for ``"sinkhorn"`` / ``"ipot"``.
    max_solves : int, "auto" or None, default="auto"
        ``"exact"`` only: transport problems solved per greedy step, the
        candidates with the lowest duality lower bounds first
        (:func:`skal.ot.greedy_prototypes`). ``None`` gives the exact greedy
        choice at several times the cost; 20 ends within a few percent of it.
        ``"auto"``: 20 for batches of up to 20, then fewer, down to one for
        batches of 400 or more (about 400 solves per query at most); 20
        whenever the batch outnumbers the labeled set.
    batch_size : int or None, default=None
        Inference batch size for ``embedding="model"``.
    random_state : int, RandomState instance or None, default=None
        Candidate subset and target / labeled subsamples.

    Attributes
    ----------
    objective_ : ndarray of shape (n_instances,)
        W2 after each selection of the last query (on the reduced target).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(0, 0.1, (30, 2)), rng.normal(5, 0.1, (10, 2))])
    >>> idx = WassersteinPrototypes(embedding="input", random_state=0).query(None, X, 4)
    >>> int((idx < 30).sum())
    3
    """

    def __init__(self, embedding="auto", include_labeled=True, n_candidates=2000,
                 n_target=500, n_fixed=500, quantize=True, method="exact", reg=None,
                 n_iter=None, max_solves="auto", batch_size=None, random_state=None):
        self.embedding = embedding
        self.include_labeled = include_labeled
        self.n_candidates = n_candidates
        self.n_target = n_target
        self.n_fixed = n_fixed
        self.quantize = quantize
        self.method = method
        self.reg = reg
        self.n_iter = n_iter
        self.max_solves = max_solves
        self.batch_size = batch_size
        self.random_state = random_state

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        self._check_common()
        rng = check_random_state(self.random_state)
        cand = candidate_subset(X_pool.shape[0], self.n_candidates, n_instances, rng)
        cand = np.arange(X_pool.shape[0]) if cand is None else cand
        if X_labeled is not None:
            X_labeled = check_pool(X_labeled, name="X_labeled")
        chosen = cand[self._prototypes(estimator, X_pool, cand, n_instances, X_labeled, rng)]
        self.candidates_ = cand
        self.last_utilities_ = _rank_utilities(X_pool.shape[0], chosen)
        return chosen


class WassersteinDiversity(_WassersteinSelector):
    """Make any strategy's batch representative: pre-select ``k * oversample``, keep k prototypes.

    The base strategy ranks the pool and proposes its ``k * oversample`` best
    samples; among them, the ``k`` Wasserstein prototypes (greedy
    ``argmin W2(labeled ∪ batch, pool ∪ labeled)``) are queried (Ducoffe thesis,
    Eq. 5.15 and sec. 9.4, there with BALNet as base). Informative *and*
    not redundant: the base criterion alone tends to pick near-duplicates.

    Parameters
    ----------
    base_strategy : QueryStrategy or None, default=None
        The criterion that pre-selects (any skal strategy: uncertainty, BALD,
        DQBC, DFAL...). ``None`` pre-selects uniformly at random. Its
        hyperparameters are grid-searchable as ``base_strategy__<param>``, and
        :meth:`augment` forwards to it (DFAL's adversarial copies, CEAL's
        pseudo-labels).
    oversample : int, default=10
        ``M``: candidates per queried sample (the thesis leaves it free).
        ``1`` returns the base strategy's batch unchanged.
    embedding, include_labeled, n_target, n_fixed, quantize, method, reg, n_iter, \
    max_solves, batch_size
        As in :class:`WassersteinPrototypes`.
    random_state : int, RandomState instance or None, default=None
        Target / labeled subsamples (and the random pre-selection without a base).

    Attributes
    ----------
    candidates_ : ndarray
        The pre-selected pool indices of the last query, base strategy's order.
    objective_ : ndarray of shape (n_instances,)
        W2 after each selection of the last query.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skal.strategies.uncertainty import UncertaintySampling
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 2))
    >>> clf = LogisticRegression().fit(X, X[:, 0] > 0)
    >>> strategy = WassersteinDiversity(UncertaintySampling(), oversample=5,
    ...                                 embedding="input", random_state=0)
    >>> strategy.query(clf, X, 4).shape
    (4,)
    >>> strategy.set_params(base_strategy__measure="margin").base_strategy.measure
    'margin'
    """

    def __init__(self, base_strategy=None, oversample=10, embedding="auto",
                 include_labeled=True, n_target=500, n_fixed=500, quantize=True,
                 method="exact", reg=None, n_iter=None, max_solves="auto", batch_size=None,
                 random_state=None):
        self.base_strategy = base_strategy
        self.oversample = oversample
        self.embedding = embedding
        self.include_labeled = include_labeled
        self.n_target = n_target
        self.n_fixed = n_fixed
        self.quantize = quantize
        self.method = method
        self.reg = reg
        self.n_iter = n_iter
        self.max_solves = max_solves
        self.batch_size = batch_size
        self.random_state = random_state

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        self._check_common()
        M = self.oversample
        if isinstance(M, bool) or not isinstance(M, Integral) or M < 1:
            raise ValueError(f"oversample must be an int >= 1, got {M!r}.")
        base = self.base_strategy
        if base is not None and not hasattr(base, "query"):
            raise ValueError(
                f"base_strategy must be a skal query strategy (with query), got "
                f"{type(base).__name__}."
            )
        rng = check_random_state(self.random_state)
        n_pool = X_pool.shape[0]
        n_pre = min(n_instances * M, n_pool)
        if base is None:
            pre = np.sort(rng.choice(n_pool, size=n_pre, replace=False)).astype(np.int64)
            base_utilities = None
        else:
            pre = base.query(estimator, X_pool, n_pre, X_labeled=X_labeled, y_labeled=y_labeled)
            base_utilities = getattr(base, "last_utilities_", None)
        self.candidates_ = pre
        if n_pre == n_instances:
            chosen = pre
            self.objective_ = None
        else:
            if X_labeled is not None:
                X_labeled = check_pool(X_labeled, name="X_labeled")
            chosen = pre[self._prototypes(estimator, X_pool, pre, n_instances, X_labeled, rng)]
        if base_utilities is not None and np.shape(base_utilities) == (n_pool,):
            self.last_utilities_ = np.asarray(base_utilities, dtype=float)
        else:
            self.last_utilities_ = _rank_utilities(n_pool, chosen)
        return chosen

    def augment(self, X_queried, y_queried):
        """The base strategy's extra training data (see :meth:`QueryStrategy.augment`)."""
        if self.base_strategy is None:
            return super().augment(X_queried, y_queried)
        return self.base_strategy.augment(X_queried, y_queried)
