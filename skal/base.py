"""The query-strategy contract shared by every strategy in skal.

A strategy is a scikit-learn estimator whose hyperparameters are its ``__init__``
arguments. It answers one question: given a fitted model and a pool of unlabeled
samples, which ``n_instances`` samples should be labeled next?
"""

import sys
from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils import check_array, check_random_state, get_tags

__all__ = [
    "QueryStrategy",
    "ScoreBasedStrategy",
    "top_k",
    "candidate_subset",
    "check_pool",
    "check_n_features",
    "accepts_sparse",
    "check_n_instances",
    "check_int",
    "check_taught",
    "accepts_unlabeled",
    "with_unlabeled_tag",
    "user_stacklevel",
]


# Frames of skal and of the frameworks it is called through (a skorch fit loop, a
# scikit-learn grid search, a modAL learner) are not the user's line.
_LIBRARY_PACKAGES = frozenset({"skal", "skorch", "sklearn", "modAL"})


def user_stacklevel():
    """The ``stacklevel`` that makes a warning point at the user's line, outside skal.

    Strategies warn from different depths (directly, through a wrapper such as
    :class:`skal.StochasticBatch`, from a learner, from inside a skorch fit loop);
    counting the frames keeps the warning on the user's line in all of them. Frames
    of skal and of the libraries it is driven through (skorch, scikit-learn, modAL)
    are skipped.

    Examples
    --------
    >>> user_stacklevel() >= 1
    True
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and _is_library_frame(frame):
        frame, level = frame.f_back, level + 1
    return level


def _is_library_frame(frame):
    module = frame.f_globals.get("__name__") or ""
    return module.partition(".")[0] in _LIBRARY_PACKAGES


def check_pool(X_pool, *, name="X_pool", accept_sparse=False):
    """Validate a pool of samples and return it as a numpy array.

    The checks are scikit-learn's (:func:`sklearn.utils.check_array`), with its
    error messages, except that samples may have any number of dimensions
    (images) and a pool may be 1-D.

    Parameters
    ----------
    X_pool : array-like or sparse matrix of shape (n_samples, ...)
        The samples. Any number of trailing dimensions is allowed (images).
        Torch tensors are copied to numpy.
    name : str, default="X_pool"
        Name used in error messages.
    accept_sparse : bool, default=False
        Accept a scipy sparse matrix (returned in CSR format, so rows can be
        indexed). If False, a sparse pool is rejected with scikit-learn's
        message.

    Returns
    -------
    X_pool : ndarray or CSR matrix
        Object arrays are converted to float64; other dtypes are kept.

    Raises
    ------
    ValueError
        If the pool is empty, a scalar, complex, holds NaN / infinite values or
        non-numeric objects.
    TypeError
        If the pool is sparse and ``accept_sparse`` is False.

    Examples
    --------
    >>> check_pool([[0.0, 1.0], [2.0, 3.0]]).shape
    (2, 2)
    >>> check_pool([[0.0, float("nan")]])
    Traceback (most recent call last):
    ...
    ValueError: Input X_pool contains NaN.
    """
    if hasattr(X_pool, "detach"):  # torch tensor
        X_pool = X_pool.detach().cpu().numpy()
    if not sp.issparse(X_pool) and not hasattr(X_pool, "__array_function__"):
        X_pool = np.asarray(X_pool)
    if getattr(X_pool, "ndim", 1) == 0:
        raise ValueError(f"{name} must be an array of samples, got a scalar.")
    if X_pool.shape[0] == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={X_pool.shape}) while a minimum of 1 is "
            f"required: {name} is empty, there is nothing to query from."
        )
    return check_array(
        X_pool,
        accept_sparse="csr" if accept_sparse else False,
        dtype="numeric",
        ensure_2d=False,
        allow_nd=True,
        ensure_all_finite=True,
        input_name=name,
    )


def check_n_features(estimator, X_pool, *, name="X_pool"):
    """Check that ``X_pool`` has the features ``estimator`` was fitted on.

    Looks for ``n_features_in_`` on the estimator (or the fitted model inside an
    active learner) and raises scikit-learn's message on a mismatch. Estimators
    that do not record it (skorch nets) are not checked here: their module
    rejects wrongly shaped input.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> clf = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    >>> check_n_features(clf, np.zeros((3, 3)))
    Traceback (most recent call last):
    ...
    ValueError: X_pool has 3 features, but LogisticRegression is expecting 2 features as input.
    """
    if X_pool.ndim < 2:
        return
    current = estimator
    for _ in range(4):  # learner -> model; modAL keeps its model in .estimator
        expected = getattr(current, "n_features_in_", None)
        if expected is not None:
            if X_pool.shape[1] != expected:
                raise ValueError(
                    f"{name} has {X_pool.shape[1]} features, but {type(current).__name__} "
                    f"is expecting {expected} features as input."
                )
            return
        if not hasattr(current, "query_strategy"):
            return
        current = getattr(current, "estimator_", getattr(current, "estimator", None))


def accepts_sparse(strategy):
    """Whether a strategy's ``query`` takes scipy sparse pools.

    True for strategies that only need the model's ``predict_proba`` (or no
    model at all); they set ``input_tags.sparse`` in their sklearn tags.

    Examples
    --------
    >>> from skal.strategies import BALD, UncertaintySampling
    >>> accepts_sparse(UncertaintySampling()), accepts_sparse(BALD())
    (True, False)
    """
    try:
        return bool(get_tags(strategy).input_tags.sparse)
    except Exception:  # objects without sklearn tags
        return False


def _is_dask_array(X):
    # A Dask pool goes to skal.distributed; dask itself is never imported here.
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(X, module.Array)


def check_int(value, name, minimum=1, *, allow_none=False):
    """Validate an integer hyperparameter and return it as an ``int``.

    Parameters
    ----------
    value : object
    name : str
        Used in the error message.
    minimum : int, default=1
    allow_none : bool, default=False
        Accept (and return) ``None``.

    Examples
    --------
    >>> check_int(3, "n_passes")
    3
    >>> check_int(None, "n_candidates", allow_none=True) is None
    True
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "an int or None" if allow_none else "an int"
        raise ValueError(f"{name} must be >= {minimum} ({kind}), got {value!r}.")
    return int(value)


def check_n_instances(n_instances, n_pool):
    """Validate the number of samples to query.

    Examples
    --------
    >>> check_n_instances(3, 10)
    3
    """
    if isinstance(n_instances, bool) or not isinstance(n_instances, (int, np.integer)):
        raise ValueError(f"n_instances must be an int, got {n_instances!r}.")
    if n_instances < 1:
        raise ValueError(f"n_instances must be >= 1, got {n_instances}.")
    if n_instances > n_pool:
        raise ValueError(
            f"n_instances={n_instances} is larger than the pool ({n_pool} samples)."
        )
    return int(n_instances)


def check_taught(X_queried, y_queried):
    """``(X_queried, y_queried)`` as arrays with as many labels as samples.

    The input check of :meth:`QueryStrategy.augment`.

    Examples
    --------
    >>> X, y = check_taught([[0.0], [1.0]], [3, 4])
    >>> X.shape, y.tolist()
    ((2, 1), [3, 4])
    """
    if not sp.issparse(X_queried):
        X_queried = np.asarray(X_queried)
    y_queried = np.asarray(y_queried)
    if X_queried.shape[0] != len(y_queried):
        raise ValueError(
            f"X_queried has {X_queried.shape[0]} rows but y_queried has {len(y_queried)}."
        )
    return X_queried, y_queried


def top_k(scores, k):
    """Indices of the ``k`` largest scores, best first.

    Ties are broken towards the lower index, so results do not depend on the
    sorting algorithm.

    Examples
    --------
    >>> top_k(np.array([0.1, 0.9, 0.5, 0.9]), 3)
    array([1, 3, 2])
    """
    scores = np.asarray(scores, dtype=float)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN.")
    k = min(int(k), scores.shape[0])
    if k < scores.shape[0]:
        # argpartition keeps this O(n) on large pools; only the k winners are sorted.
        kth = np.partition(-scores, k - 1)[k - 1]
        keep = np.flatnonzero(-scores <= kth)
    else:
        keep = np.arange(scores.shape[0])
    order = np.lexsort((keep, -scores[keep]))
    return keep[order][:k].astype(np.int64)


def candidate_subset(n_pool, n_candidates, n_instances, random_state):
    """Random candidate indices, or ``None`` for the whole pool.

    Parameters
    ----------
    n_pool : int
        Pool size.
    n_candidates : int or None
        How many candidates to score. ``None`` (or a value >= ``n_pool``) scores
        the whole pool.
    n_instances : int
        Batch size; at least this many candidates are kept.
    random_state : int, RandomState instance or None

    Examples
    --------
    >>> candidate_subset(100, 10, 2, random_state=0).shape
    (10,)
    >>> candidate_subset(100, None, 2, random_state=0) is None
    True
    """
    if n_candidates is None:
        return None
    if isinstance(n_candidates, bool) or not isinstance(n_candidates, (int, np.integer)):
        raise ValueError(f"n_candidates must be an int or None, got {n_candidates!r}.")
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}.")
    n_candidates = max(int(n_candidates), int(n_instances))
    if n_candidates >= n_pool:
        return None
    rng = check_random_state(random_state)
    return np.sort(rng.choice(n_pool, size=n_candidates, replace=False))


def with_unlabeled_tag(tags):
    """Mark sklearn ``Tags`` as those of an estimator that takes ``y == -1`` rows.

    Use it in ``__sklearn_tags__`` of semi-supervised learners (WAAL):
    :class:`skal.ActiveLearner` then trains them on the labeled set plus the pool.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> tags = with_unlabeled_tag(LogisticRegression().__sklearn_tags__())
    >>> tags.accepts_unlabeled
    True
    """
    cls = _tags_class(type(tags))
    values = {f.name: getattr(tags, f.name) for f in fields(tags)}
    values["accepts_unlabeled"] = True
    return cls(**values)


_TAG_CLASSES = {}


def _tags_class(base):
    # sklearn's Tags use slots, so the extra field needs a subclass.
    if hasattr(base, "__dataclass_fields__") and "accepts_unlabeled" in base.__dataclass_fields__:
        return base
    if base not in _TAG_CLASSES:
        _TAG_CLASSES[base] = dataclass(slots=True)(
            type("ActiveLearningTags", (base,), {"__annotations__": {"accepts_unlabeled": bool},
                                                 "accepts_unlabeled": False})
        )
    return _TAG_CLASSES[base]


def accepts_unlabeled(estimator):
    """Whether ``estimator`` (or a Pipeline's last step) trains on ``y == -1`` rows.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> accepts_unlabeled(LogisticRegression())
    False
    """
    if hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    try:
        tags = get_tags(estimator)
    except Exception:  # estimators predating sklearn's tag API
        return False
    return bool(getattr(tags, "accepts_unlabeled", False))


class QueryStrategy(BaseEstimator):
    """Base class of all query strategies.

    Subclasses implement ``_query``; the public :meth:`query` validates inputs and
    outputs around it. A strategy instance is also a modAL query strategy.

    Examples
    --------
    >>> import numpy as np
    >>> class FirstK(QueryStrategy):
    ...     def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
    ...         return np.arange(n_instances)
    >>> FirstK().query(None, np.zeros((5, 2)), 2)
    array([0, 1])
    """

    def query(self, estimator, X_pool, n_instances=1, *, X_labeled=None, y_labeled=None):
        """Choose samples of ``X_pool`` to label.

        Parameters
        ----------
        estimator : estimator
            A fitted skorch net, a Pipeline ending in one, an ``ActiveLearner``
            (skal's or modAL's), or, for model-agnostic strategies, any fitted
            classifier with ``predict_proba``.
        X_pool : array-like of shape (n_samples, ...)
            The unlabeled pool.
        n_instances : int, default=1
            How many samples to choose.
        X_labeled, y_labeled : array-like, default=None
            The current labeled set, for strategies that use it.

        Returns
        -------
        indices : ndarray of shape (n_instances,)
            Distinct indices into ``X_pool``, best first.
        """
        if _is_dask_array(X_pool):  # a pool chunked along rows: skal.distributed
            from .distributed import query

            return query(self, estimator, X_pool, n_instances,
                         X_labeled=X_labeled, y_labeled=y_labeled)
        X_pool = check_pool(X_pool, accept_sparse=accepts_sparse(self))
        check_n_features(estimator, X_pool)
        n_instances = check_n_instances(n_instances, X_pool.shape[0])
        if X_labeled is not None:
            if not sp.issparse(X_labeled):
                X_labeled = np.asarray(X_labeled)
            if X_labeled.shape[0] == 0:
                X_labeled, y_labeled = None, None
            elif y_labeled is not None and len(y_labeled) != X_labeled.shape[0]:
                raise ValueError(
                    f"X_labeled has {X_labeled.shape[0]} rows but y_labeled has "
                    f"{len(y_labeled)}."
                )
        self.last_utilities_ = None
        indices = self._query(
            estimator, X_pool, n_instances, X_labeled=X_labeled, y_labeled=y_labeled
        )
        return self._check_indices(indices, X_pool.shape[0], n_instances)

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        raise NotImplementedError

    def _check_indices(self, indices, n_pool, n_instances):
        indices = np.asarray(indices, dtype=np.int64).ravel()
        if indices.shape[0] != n_instances or np.unique(indices).shape[0] != n_instances:
            raise RuntimeError(
                f"{type(self).__name__} returned {indices.shape[0]} indices "
                f"({np.unique(indices).shape[0]} distinct) instead of {n_instances}."
            )
        if indices.min() < 0 or indices.max() >= n_pool:
            raise RuntimeError(f"{type(self).__name__} returned indices outside the pool.")
        return indices

    def __call__(self, learner, X_pool, n_instances=1, **kwargs):
        """modAL query-strategy protocol.

        Returns
        -------
        indices : ndarray
            As :meth:`query`.
        utilities : ndarray or None
            The utilities of the chosen samples when the strategy is score-based.
        """
        X_labeled = kwargs.pop("X_labeled", getattr(learner, "X_training", None))
        y_labeled = kwargs.pop("y_labeled", getattr(learner, "y_training", None))
        if kwargs:
            raise TypeError(f"Unexpected keyword arguments: {sorted(kwargs)}.")
        indices = self.query(
            learner, X_pool, n_instances, X_labeled=X_labeled, y_labeled=y_labeled
        )
        utilities = getattr(self, "last_utilities_", None)
        if utilities is not None:
            utilities = utilities[indices]
        return indices, utilities

    #: If True, the data from :meth:`augment` replaces the previous round's in
    #: the learner instead of accumulating (CEAL's pseudo-labels are recomputed
    #: every round); if False it accumulates (DFAL's adversarial copies).
    transient_augment = False

    def augment(self, X_queried, y_queried):
        """Extra training data to add with the queried samples.

        The default adds nothing. Strategies such as DFAL (adversarial copies) and
        CEAL (pseudo-labels) override it; :meth:`skal.ActiveLearner.teach` calls it.

        Returns
        -------
        X_extra, y_extra : ndarray
        """
        X_queried, y_queried = check_taught(X_queried, y_queried)
        return X_queried[:0], y_queried[:0]


class ScoreBasedStrategy(QueryStrategy):
    """A strategy that scores each sample and queries the highest utilities.

    Subclasses implement ``_utilities(estimator, X)``, returning one finite
    score per row of ``X`` (higher = query first). If the strategy has an
    ``n_candidates`` parameter, only a random subset of that size is scored.
    """

    def utilities(self, estimator, X_pool, *, X_labeled=None, y_labeled=None):
        """Utility of every sample of ``X_pool`` (higher = more useful to label).

        Parameters
        ----------
        estimator : estimator
            As in :meth:`query`.
        X_pool : array-like of shape (n_samples, ...)
        X_labeled, y_labeled : array-like, default=None
            The labeled set, for strategies whose scores depend on it.

        Returns
        -------
        utilities : ndarray of shape (n_samples,)
        """
        if _is_dask_array(X_pool):
            from .distributed import utilities

            return utilities(self, estimator, X_pool, X_labeled=X_labeled, y_labeled=y_labeled)
        X_pool = check_pool(X_pool, accept_sparse=accepts_sparse(self))
        check_n_features(estimator, X_pool)
        self._prepare(estimator, X_pool, X_labeled=X_labeled, y_labeled=y_labeled)
        return self._checked_utilities(estimator, X_pool)

    def _prepare(self, estimator, X_pool, *, X_labeled=None, y_labeled=None):
        """Build what scoring needs beyond (model, chunk) before the pool is scored.

        The default does nothing. DQBC builds its committee here (fine-tuned on
        the labeled set), so ``_utilities`` stays a function of (model, chunk).
        """

    def _checked_utilities(self, estimator, X):
        u = np.asarray(self._utilities(estimator, X), dtype=float).ravel()
        if u.shape[0] != X.shape[0]:
            raise RuntimeError(
                f"{type(self).__name__} gave {u.shape[0]} utilities for {X.shape[0]} samples."
            )
        if not np.isfinite(u).all():
            raise RuntimeError(f"{type(self).__name__} produced non-finite utilities.")
        return u

    def _utilities(self, estimator, X):
        raise NotImplementedError

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        self._prepare(estimator, X_pool, X_labeled=X_labeled, y_labeled=y_labeled)
        candidates = candidate_subset(
            X_pool.shape[0],
            getattr(self, "n_candidates", None),
            n_instances,
            getattr(self, "random_state", None),
        )
        if candidates is None:
            utilities = self._checked_utilities(estimator, X_pool)
            self.last_utilities_ = utilities
            return top_k(utilities, n_instances)
        scores = self._checked_utilities(estimator, X_pool[candidates])
        # Samples outside the candidate subset were never scored.
        utilities = np.full(X_pool.shape[0], -np.inf)
        utilities[candidates] = scores
        self.last_utilities_ = utilities
        return candidates[top_k(scores, n_instances)]
