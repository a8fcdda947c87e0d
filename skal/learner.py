"""Active learners: the labeling loop (:class:`ActiveLearner`) and a simulated
loop packaged as a classifier (:class:`ActiveLearningClassifier`)."""

import contextlib
import copy
import warnings
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils import check_random_state, get_tags
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .base import (
    QueryStrategy,
    _is_dask_array,
    accepts_sparse,
    accepts_unlabeled,
    check_pool,
    user_stacklevel,
)

__all__ = ["ActiveLearner", "ActiveLearningClassifier"]

_SEED_MAX = np.iinfo(np.int32).max
_NO_Y = object()  # "no y given", as opposed to y=None (an error in fit)


def _final_step(estimator):
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def _is_skorch_net(estimator):
    try:
        from skorch import NeuralNet
    except ImportError:  # pragma: no cover
        return False
    return isinstance(estimator, NeuralNet)


def _sparse_ok(estimator, query_strategy):
    """Sparse input is taken when both the strategy and the model take it."""
    if not accepts_sparse(query_strategy):
        return False
    try:
        return bool(get_tags(estimator).input_tags.sparse)
    except Exception:  # estimators without sklearn tags
        return False


def _validate(learner, X, y=_NO_Y, *, reset):
    """scikit-learn's input checks (and messages), for samples of any rank.

    ``n_features_in_`` is the size of the second axis (channels for images);
    the full sample shape is checked against the labeled set as well.
    """
    sparse = "csr" if _sparse_ok(learner.estimator, learner.query_strategy) else False
    kwargs = {"accept_sparse": sparse, "dtype": "numeric", "allow_nd": True,
              "ensure_all_finite": True, "reset": reset}
    expected = getattr(learner, "_sample_shape", None)
    if not reset and expected is not None and len(expected) != 1:
        # Images: name the whole sample shape, not just the channel count that
        # n_features_in_ holds.
        shape = X.shape if hasattr(X, "shape") else np.shape(X)
        if tuple(shape[1:]) != expected:
            raise ValueError(
                f"X has samples of shape {tuple(shape[1:])}, but {type(learner).__name__} was "
                f"fitted on samples of shape {expected}."
            )
    if y is _NO_Y:
        X = validate_data(learner, X, **kwargs)
    else:
        X, y = validate_data(learner, X, y, multi_output=False, **kwargs)
        check_classification_targets(y)
    if not reset and hasattr(learner, "_sample_shape") and X.shape[1:] != learner._sample_shape:
        raise ValueError(
            f"X has samples of shape {X.shape[1:]}, but {type(learner).__name__} was fitted "
            f"on samples of shape {learner._sample_shape}."
        )
    if reset:
        learner._sample_shape = X.shape[1:]
    return X if y is _NO_Y else (X, y)


def _n_rows(A):
    return A.shape[0] if hasattr(A, "shape") else len(A)


def _concat(blocks):
    blocks = [b for b in blocks if b is not None]
    if any(sp.issparse(b) for b in blocks):
        return sp.vstack([sp.csr_matrix(b) for b in blocks], format="csr")
    return np.concatenate(blocks)


def _torch_seeded(estimator, seed):
    """Seed torch for a skorch net's fit, leaving the caller's RNG state as it was.

    Weight initialisation, shuffling and dropout of a plain skorch net draw from
    torch's global RNG; forking it makes them a function of ``seed``.
    """
    if seed is None or not _is_skorch_net(_final_step(estimator)):
        return contextlib.nullcontext()
    from .nets import seeded_torch

    return seeded_torch(seed)


def _estimator_has(attr):
    def check(self):
        return hasattr(_final_step(self.estimator), attr)

    return check


class ActiveLearner(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A classifier plus a query strategy: the labeling loop.

    ``fit`` trains on a labeled seed set, ``query`` picks samples of a pool to
    label, and ``teach`` adds their labels and retrains. The labeled set is
    kept as ``X_training`` / ``y_training`` (modAL's names). A learner can be
    saved to one file between rounds (:meth:`save`, :meth:`load`).

    Parameters
    ----------
    estimator : estimator
        A skorch net, a ``Pipeline`` ending in one, or any classifier with
        ``predict_proba``. It is cloned; the fitted copy is ``estimator_``.
    query_strategy : QueryStrategy
        Cloned into ``query_strategy_`` at ``fit``.
    classes : array-like or None, default=None
        All class labels. If None, they are inferred from the first ``fit``;
        a class first seen in ``teach`` is appended. skorch nets must have at
        least that many outputs.
    warm_start : bool, default=False
        If False, ``teach`` retrains from scratch on the whole labeled set (the
        protocol of the papers). If True, a skorch net continues training from
        its current weights (``partial_fit``); other estimators are refitted.
    random_state : int, RandomState instance or None, default=None
        Seeds the estimator (when it has a ``random_state`` that is None) and the
        query strategy (likewise). A skorch net is moreover trained inside a
        forked, seeded torch RNG, so its weight initialisation, shuffling and
        dropout are reproducible even when it has no ``random_state`` (a plain
        ``skorch.NeuralNetClassifier``); the caller's torch and numpy global RNG
        states are left as they were.

    Attributes
    ----------
    estimator_ : estimator
        The fitted model. It is trained on class indices ``0..n_classes-1``.
    query_strategy_ : QueryStrategy
    classes_ : ndarray
    n_features_in_ : int
        Size of the second axis of ``X`` (features; channels for images).
    X_training, y_training : ndarray
        The labeled set (annotations only); read-only.
    X_extra_, y_extra_ : ndarray
        Training data added by the strategy's ``augment``: accumulated over
        rounds (DFAL's adversarial copies), or only the last round's when the
        strategy sets ``transient_augment = True`` (CEAL's pseudo-labels).
    pending_query_ : ndarray or None
        Indices (into the last pool) returned by the last :meth:`query` and not
        yet followed by :meth:`teach`; saved by :meth:`save`.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skal.strategies import UncertaintySampling
    >>> rng = np.random.RandomState(0)
    >>> X_pool, y_pool = rng.randn(60, 2), rng.randint(2, size=60)
    >>> learner = ActiveLearner(LogisticRegression(), UncertaintySampling(), random_state=0)
    >>> learner = learner.fit([[-1.0, 0.0], [1.0, 0.0]], [0, 1])
    >>> idx = learner.query(X_pool, n_instances=5)
    >>> learner = learner.teach(X_pool[idx], y_pool[idx])
    >>> len(learner.y_training)
    7
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "predict"])],
        "query_strategy": [QueryStrategy],
        "classes": ["array-like", None],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, query_strategy, *, classes=None, warm_start=False,
                 random_state=None):
        self.estimator = estimator
        self.query_strategy = query_strategy
        self.classes = classes
        self.warm_start = warm_start
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = _sparse_ok(self.estimator, self.query_strategy)
        return tags

    # modAL's names for the labeled set; properties so that fit only adds
    # trailing-underscore attributes (scikit-learn's rule).
    @property
    def X_training(self):
        """The labeled samples (annotations only)."""
        return self.X_training_

    @property
    def y_training(self):
        """The labels of :attr:`X_training`."""
        return self.y_training_

    # -- fitting --------------------------------------------------------
    def fit(self, X, y, *, X_unlabeled=None):
        """Train on the labeled seed set ``(X, y)``, resetting the learner.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, ...)
            Sparse input is taken when the strategy only needs
            ``predict_proba`` (:func:`skal.base.accepts_sparse`) and the model
            takes it.
        y : array-like of shape (n_samples,)
            A column vector is raveled with a ``DataConversionWarning``.
        X_unlabeled : array-like or None, default=None
            The unlabeled pool. Only used by estimators that train on unlabeled
            rows (see :func:`skal.base.accepts_unlabeled`, e.g. WAAL); later
            rounds use the pool given to :meth:`query`.

        Returns
        -------
        self
        """
        self._validate_params()
        X, y = _validate(self, X, y, reset=True)
        X_pool = None
        if X_unlabeled is not None and _n_rows(X_unlabeled):
            X_pool = check_pool(X_unlabeled, name="X_unlabeled", accept_sparse=sp.issparse(X))
        rng = check_random_state(self.random_state)
        if self.classes is not None:
            classes = np.asarray(self.classes)
            unknown = np.setdiff1d(np.unique(y), classes)
            if unknown.size:
                raise ValueError(f"y contains labels {unknown.tolist()} not in classes.")
        else:
            classes = np.unique(y)
        strategy = clone(self.query_strategy)
        if "random_state" in strategy.get_params() and strategy.random_state is None:
            strategy.set_params(random_state=np.random.RandomState(rng.randint(_SEED_MAX)))
        self._estimator_seed = int(rng.randint(_SEED_MAX))
        self._torch_seed = None if self.random_state is None else self._estimator_seed
        self.classes_ = classes
        self.query_strategy_ = strategy
        X_extra, y_extra = X[:0], y[:0]
        self._X_pool, self._pool_queried = X_pool, np.array([], dtype=np.int64)
        self.estimator_ = self._train(
            None, X, y, X_extra, y_extra, X_unlabeled=self._unlabeled_rows()
        )
        self.X_training_, self.y_training_ = X, y
        self.X_extra_, self.y_extra_ = X_extra, y_extra
        self.pending_query_ = None
        return self

    def _new_estimator(self):
        estimator = clone(self.estimator)
        step = _final_step(estimator)
        params = step.get_params(deep=False)
        if "random_state" in params and params["random_state"] is None:
            step.set_params(random_state=self._estimator_seed)
        return estimator

    def _encode(self, y, classes=None):
        classes = self.classes_ if classes is None else classes
        sorter = np.argsort(classes, kind="stable")
        pos = np.searchsorted(classes, y, sorter=sorter)
        pos = np.clip(pos, 0, len(classes) - 1)
        idx = sorter[pos]
        if not np.array_equal(classes[idx], y):
            unknown = np.setdiff1d(np.unique(y), classes)
            raise ValueError(f"labels {unknown.tolist()} are not among the classes.")
        return idx.astype(np.int64)

    def _train(self, previous, X, y, X_extra, y_extra, X_unlabeled, classes=None):
        X_all = _concat([X, X_extra]) if X_extra.shape[0] else X
        y_all = self._encode(np.concatenate([y, y_extra]) if len(y_extra) else y, classes)
        if X_unlabeled is not None and X_unlabeled.shape[0]:
            X_all = _concat([X_all, X_unlabeled])
            y_all = np.concatenate([y_all, np.full(X_unlabeled.shape[0], -1, dtype=np.int64)])
        with _torch_seeded(self.estimator, getattr(self, "_torch_seed", None)):
            if previous is not None and self.warm_start and _is_skorch_net(_final_step(previous)):
                estimator = copy.deepcopy(previous)
                if hasattr(estimator, "steps"):
                    Xt = estimator[:-1].fit_transform(X_all, y_all)
                    _final_step(estimator).partial_fit(Xt, y_all)
                else:
                    estimator.partial_fit(X_all, y_all)
                return estimator
            return self._new_estimator().fit(X_all, y_all)

    def _unlabeled_rows(self):
        if self._X_pool is None or not accepts_unlabeled(self.estimator):
            return None
        keep = np.ones(self._X_pool.shape[0], dtype=bool)
        keep[self._pool_queried] = False
        return self._X_pool[keep]

    def teach(self, X, y):
        """Add newly labeled samples and retrain.

        The strategy's ``augment`` may add extra training data (DFAL's
        adversarial copies, CEAL's pseudo-labels). If validation or training
        fails, the learner is left unchanged.

        Parameters
        ----------
        X : array-like of shape (n_new, ...)
        y : array-like of shape (n_new,)

        Returns
        -------
        self
        """
        check_is_fitted(self, "estimator_")
        X, y = _validate(self, X, y, reset=False)
        classes = self.classes_
        new = np.setdiff1d(np.unique(y), classes)
        if new.size:
            if self.classes is not None:
                raise ValueError(f"y contains labels {new.tolist()} not in classes.")
            classes = np.concatenate([classes, new])
        X_aug, y_aug = self.query_strategy_.augment(X, y)
        if not sp.issparse(X_aug):
            X_aug = np.asarray(X_aug).astype(X.dtype, copy=False).reshape((-1,) + X.shape[1:])
        y_aug = np.asarray(y_aug)
        X_training = _concat([self.X_training_, X])
        y_training = np.concatenate([self.y_training_, y])
        if getattr(self.query_strategy_, "transient_augment", False):
            # Pseudo-labels (CEAL) are recomputed every round, never accumulated.
            X_extra, y_extra = X_aug, y_aug
        else:
            X_extra = _concat([self.X_extra_, X_aug])
            y_extra = np.concatenate([self.y_extra_, y_aug])
        estimator = self._train(
            self.estimator_, X_training, y_training, X_extra, y_extra,
            X_unlabeled=self._unlabeled_rows(), classes=classes,
        )
        self.classes_ = classes
        self.estimator_ = estimator
        self.X_training_, self.y_training_ = X_training, y_training
        self.X_extra_, self.y_extra_ = X_extra, y_extra
        self.pending_query_ = None
        return self

    # -- querying -------------------------------------------------------
    def query(self, X_pool, n_instances=1):
        """Indices of the ``n_instances`` samples of ``X_pool`` to label next, best first.

        The indices are kept as ``pending_query_`` until :meth:`teach`.
        """
        check_is_fitted(self, "estimator_")
        if _is_dask_array(X_pool):  # validated chunk by chunk by skal.distributed
            if accepts_unlabeled(self.estimator):
                raise ValueError(
                    f"{type(_final_step(self.estimator)).__name__} trains on the whole "
                    "unlabeled pool, which a Dask pool is not; pass a NumPy pool."
                )
        else:
            X_pool = check_pool(
                X_pool, accept_sparse=_sparse_ok(self.estimator, self.query_strategy))
        if X_pool.shape[1:] != self._sample_shape:
            if X_pool.ndim == 2 and len(self._sample_shape) == 1:
                raise ValueError(
                    f"X_pool has {X_pool.shape[1]} features, but {type(self).__name__} is "
                    f"expecting {self.n_features_in_} features as input."
                )
            raise ValueError(
                f"X_pool has samples of shape {X_pool.shape[1:]}, but the learner was "
                f"fitted on {self._sample_shape}."
            )
        indices = self.query_strategy_.query(
            self, X_pool, n_instances,
            X_labeled=self.X_training_, y_labeled=self._encode(self.y_training_),
        )
        self._X_pool, self._pool_queried = X_pool, indices
        self.pending_query_ = indices
        return indices

    # -- persistence ----------------------------------------------------
    def save(self, path):
        """Save the fitted learner to one file, atomically.

        The file (a zip archive, see the user guide) holds the skal version, the
        labeled set, the pending query, the strategy's state and the model:
        a skorch net through ``save_params`` (plus its pipeline steps and learned
        attributes), any other estimator pickled. It is written to a temporary
        file in the same folder and renamed, so a crash never leaves half a file.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        path : str
        """
        from ._persistence import save_learner

        check_is_fitted(self, "estimator_")
        return save_learner(self, path)

    @classmethod
    def load(cls, path):
        """Load a learner saved by :meth:`save` with the same version of skal.

        Raises
        ------
        ValueError
            If the file is truncated or corrupted, not a skal learner file, or
            was written by another version of skal.
        """
        from ._persistence import load_learner

        return load_learner(path, cls)

    # -- prediction -----------------------------------------------------
    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities, one column per entry of ``classes_``."""
        check_is_fitted(self, "estimator_")
        X = _validate(self, X, reset=False)
        # skorch's data loaders draw a seed from torch's global RNG even at inference.
        with _torch_seeded(self.estimator, getattr(self, "_torch_seed", None)):
            proba = np.asarray(self.estimator_.predict_proba(X), dtype=float)
        n_classes = len(self.classes_)
        inner = getattr(_final_step(self.estimator_), "classes_", None)
        if _is_skorch_net(_final_step(self.estimator_)) or inner is None:
            # A net may have more outputs than classes seen so far.
            proba = proba[:, :n_classes]
            total = proba.sum(axis=1, keepdims=True)
            return proba / np.where(total > 0, total, 1.0)
        full = np.zeros((proba.shape[0], n_classes))
        full[:, np.asarray(inner, dtype=np.int64)] = proba
        return full

    def predict(self, X):
        """Predicted class labels."""
        check_is_fitted(self, "estimator_")
        if hasattr(_final_step(self.estimator), "predict_proba"):
            return self.classes_[self.predict_proba(X).argmax(axis=1)]
        X = _validate(self, X, reset=False)
        with _torch_seeded(self.estimator, getattr(self, "_torch_seed", None)):
            y_pred = self.estimator_.predict(X)
        return self.classes_[np.asarray(y_pred, dtype=np.int64)]


class ActiveLearningClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A simulated active-learning loop packaged as a classifier.

    ``fit(X, y)`` starts from ``n_initial`` random labels, then queries
    ``n_queries`` batches of ``batch_size`` from the rest of ``X``, with ``y`` as
    the oracle, and keeps the final model. Cross-validating it therefore scores
    "the accuracy reached with this label budget", so ``GridSearchCV`` can
    compare strategies.

    Input is checked first (scikit-learn's checks and messages), the budget
    second: with fewer samples than ``n_initial + batch_size * n_queries`` the
    loop runs on what there is (the seed set is at most ``X``, the last batch
    takes what is left) and says so in a ``UserWarning``.

    Parameters
    ----------
    estimator : estimator
        As in :class:`ActiveLearner`.
    query_strategy : QueryStrategy
    n_initial : int, default=20
        Random labels to start from.
    batch_size : int, default=10
        Labels per query.
    n_queries : int, default=5
        Number of query rounds.
    warm_start : bool, default=False
        See :class:`ActiveLearner`.
    random_state : int, RandomState instance or None, default=None
        Draws the seed set and seeds the inner :class:`ActiveLearner` (and
        through it the model, the strategy and torch, see there).

    Attributes
    ----------
    learner_ : ActiveLearner
        The learner at the end of the loop.
    classes_ : ndarray
    n_features_in_ : int
    learning_curve_ : dict
        ``"n_labels"`` (annotations after each round, the initial set first) and
        ``"pool_accuracy"`` (accuracy on the rest of ``X`` at that point).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skal.strategies import RandomSampling, UncertaintySampling
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.randn(200, 2), np.repeat([0, 1], 100)
    >>> X[y == 1] += 2
    >>> clf = ActiveLearningClassifier(LogisticRegression(), RandomSampling(), n_initial=6,
    ...                                batch_size=4, n_queries=2, random_state=0)
    >>> search = GridSearchCV(clf, {"query_strategy": [RandomSampling(), UncertaintySampling()]},
    ...                       cv=2).fit(X, y)
    >>> sorted(search.cv_results_)[:1]
    ['mean_fit_time']
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "predict"])],
        "query_strategy": [QueryStrategy],
        "n_initial": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_queries": [Interval(Integral, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, query_strategy, *, n_initial=20, batch_size=10, n_queries=5,
                 warm_start=False, random_state=None):
        self.estimator = estimator
        self.query_strategy = query_strategy
        self.n_initial = n_initial
        self.batch_size = batch_size
        self.n_queries = n_queries
        self.warm_start = warm_start
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = _sparse_ok(self.estimator, self.query_strategy)
        return tags

    def fit(self, X, y):
        """Run the simulated loop on ``(X, y)`` and keep the final model."""
        self._validate_params()
        X, y = _validate(self, X, y, reset=True)
        n = X.shape[0]
        budget = self.n_initial + self.batch_size * self.n_queries
        if budget > n:
            warnings.warn(
                f"X has {n} samples, fewer than n_initial + batch_size * n_queries = "
                f"{self.n_initial} + {self.batch_size} * {self.n_queries} = {budget}: the "
                f"loop starts from {min(self.n_initial, n)} labels and stops when X is "
                "used up.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        rng = check_random_state(self.random_state)
        self.classes_ = np.unique(y)
        labeled = np.zeros(n, dtype=bool)
        labeled[rng.choice(n, min(self.n_initial, n), replace=False)] = True
        learner = ActiveLearner(
            self.estimator, self.query_strategy, classes=self.classes_,
            warm_start=self.warm_start, random_state=rng.randint(_SEED_MAX),
        ).fit(X[labeled], y[labeled], X_unlabeled=X[~labeled] if (~labeled).any() else None)
        curve = {"n_labels": [], "pool_accuracy": []}

        def record():
            rest = ~labeled
            curve["n_labels"].append(int(labeled.sum()))
            curve["pool_accuracy"].append(
                float(learner.score(X[rest], y[rest])) if rest.any() else float("nan")
            )

        record()
        for _ in range(self.n_queries):
            pool = np.flatnonzero(~labeled)
            if pool.size == 0:
                break
            chosen = pool[learner.query(X[pool], min(self.batch_size, pool.size))]
            learner.teach(X[chosen], y[chosen])
            labeled[chosen] = True
            record()
        self.learner_ = learner
        self.learning_curve_ = {k: np.asarray(v) for k, v in curve.items()}
        return self

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the final model."""
        check_is_fitted(self, "learner_")
        X = _validate(self, X, reset=False)
        return self.learner_.predict_proba(X)

    def predict(self, X):
        """Class labels predicted by the final model."""
        check_is_fitted(self, "learner_")
        X = _validate(self, X, reset=False)
        return self.learner_.predict(X)
