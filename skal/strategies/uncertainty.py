"""Uncertainty sampling on the model's predicted class probabilities."""

import numpy as np
from scipy.special import entr

from ..base import ScoreBasedStrategy
from ..nets import predict_proba

_MEASURES = ("least_confident", "margin", "entropy")


def uncertainty(proba, measure="entropy"):
    """Uncertainty of each row of a probability matrix (higher = less sure).

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
    measure : {"least_confident", "margin", "entropy"}
        ``1 - max p``; minus the gap between the two largest probabilities;
        Shannon entropy in nats. Exact zeros and ones never give NaN.

    Examples
    --------
    >>> uncertainty(np.array([[1.0, 0.0], [0.5, 0.5]]), "entropy").round(3)
    array([0.   , 0.693])
    """
    proba = np.asarray(proba, dtype=float)
    if measure == "least_confident":
        return 1.0 - proba.max(axis=1)
    if measure == "margin":
        if proba.shape[1] < 2:
            return np.zeros(proba.shape[0])
        top2 = np.partition(proba, -2, axis=1)[:, -2:]
        return -(top2[:, 1] - top2[:, 0])
    if measure == "entropy":
        return entr(proba).sum(axis=1)
    raise ValueError(f"measure must be one of {_MEASURES}, got {measure!r}.")


class UncertaintySampling(ScoreBasedStrategy):
    """Query the samples the model is least sure about.

    Works with any classifier that has ``predict_proba``; torch nets are run
    in batches without gradients.

    Parameters
    ----------
    measure : {"entropy", "least_confident", "margin"}, default="entropy"
    n_candidates : int or None, default=None
        Score only a random subset of the pool of this size.
    batch_size : int or None, default=None
        Inference batch size for torch nets.
    random_state : int, RandomState instance or None, default=None
        Used for the candidate subset.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> clf = LogisticRegression().fit([[-3.0], [-2.0], [2.0], [3.0]], [0, 0, 1, 1])
    >>> UncertaintySampling().query(clf, [[-2.5], [0.2], [2.5]], 1)
    array([1])
    """

    def __init__(self, measure="entropy", n_candidates=None, batch_size=None, random_state=None):
        self.measure = measure
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # only the model's predict_proba sees the pool
        return tags

    def _utilities(self, estimator, X):
        if self.measure not in _MEASURES:
            raise ValueError(f"measure must be one of {_MEASURES}, got {self.measure!r}.")
        return uncertainty(predict_proba(estimator, X, batch_size=self.batch_size), self.measure)
