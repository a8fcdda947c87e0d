"""BALD: Bayesian active learning by disagreement, with MC dropout."""

import numpy as np
from scipy.special import entr
from sklearn.utils import check_random_state

from ..base import ScoreBasedStrategy
from ..nets import DEFAULT_INFERENCE_BATCH_SIZE, dropout_layers, get_net, mc_dropout_proba


def bald_scores(mc_proba):
    """Mutual information between the label and the weights.

    ``H[mean_t p_t] - mean_t H[p_t]`` for Monte-Carlo samples ``p_t``.

    Parameters
    ----------
    mc_proba : ndarray of shape (n_passes, n_samples, n_classes)

    Examples
    --------
    >>> p = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])   # two passes that disagree
    >>> bald_scores(p).round(3)
    array([0.693])
    """
    mc_proba = np.asarray(mc_proba, dtype=float)
    predictive = entr(mc_proba.mean(axis=0)).sum(axis=1)
    expected = entr(mc_proba).sum(axis=2).mean(axis=0)
    # Rounding can make the difference slightly negative; MI is >= 0.
    return np.maximum(predictive - expected, 0.0)


class BALD(ScoreBasedStrategy):
    """Bayesian active learning by disagreement (Houlsby 2011, Gal 2017).

    Scores each sample by the mutual information between its label and the
    network weights, estimated with ``n_passes`` Monte-Carlo dropout passes.
    The layers before the first dropout are deterministic and run once.

    Parameters
    ----------
    n_passes : int, default=10
        Dropout samples (the thesis uses 10).
    n_candidates : int or None, default=None
        Score only a random subset of the pool of this size.
    batch_size : int or None, default=None
        Inference batch size.
    random_state : int, RandomState instance or None, default=None
        Seeds the candidate subset and the dropout masks.

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> X = np.random.RandomState(0).rand(20, 1, 8, 8).astype("float32")
    >>> net = cnn_classifier("digits", 2, max_epochs=1, random_state=0).fit(X, np.arange(20) % 2)
    >>> BALD(n_passes=5, random_state=0).query(net, X, 3).shape
    (3,)
    """

    def __init__(self, n_passes=10, n_candidates=None, batch_size=None, random_state=None):
        self.n_passes = n_passes
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.random_state = random_state

    def _utilities(self, estimator, X):
        net, _ = get_net(estimator)
        dropout_layers(net.module_)
        rng = check_random_state(self.random_state)
        batch = self.batch_size or DEFAULT_INFERENCE_BATCH_SIZE
        scores = np.empty(X.shape[0])
        # Chunks bound the (n_passes, chunk, n_classes) buffer on large pools.
        chunk = max(batch, 16 * batch)
        for start in range(0, X.shape[0], chunk):
            rows = slice(start, start + chunk)
            proba = mc_dropout_proba(
                estimator, X[rows], self.n_passes, random_state=rng, batch_size=batch
            )
            scores[rows] = bald_scores(proba)
        return scores
