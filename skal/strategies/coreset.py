"""Core-set selection by greedy k-center (Sener & Savarese 2018)."""

import numpy as np
from sklearn.preprocessing import normalize as l2_normalize
from sklearn.utils import check_random_state

from ..base import QueryStrategy
from ..nets import features

# Rows per block when computing distances, so memory stays O(pool).
_BLOCK_ELEMENTS = 1 << 20
# Centers per tile of min_sq_distances.
_TILE_CENTERS = 256


def _sq_norms(X):
    return np.einsum("ij,ij->i", X, X)


def min_sq_distances(X, centers, X_sq=None):
    """Squared distance from each row of ``X`` to its nearest row of ``centers``.

    Computed in tiles of rows x centers: memory is O(len(X)), never
    len(X) x len(centers). Each row block meets every center block while it is
    in cache; blocking by centers alone would read the whole of ``X`` once per
    few centers on a large pool, a pass count that grows with ``len(X)``.

    Examples
    --------
    >>> min_sq_distances(np.array([[0.0], [3.0]]), np.array([[1.0], [4.0]]))
    array([1., 1.])
    """
    X_sq = _sq_norms(X) if X_sq is None else X_sq
    C_sq = _sq_norms(centers)
    best = np.full(X.shape[0], np.inf)
    n_cols = max(1, min(centers.shape[0], _TILE_CENTERS))
    n_rows = max(1, _BLOCK_ELEMENTS // n_cols)
    for r in range(0, X.shape[0], n_rows):
        rows = slice(r, r + n_rows)
        for c in range(0, centers.shape[0], n_cols):
            cols = slice(c, c + n_cols)
            d = X_sq[rows, None] - 2.0 * (X[rows] @ centers[cols].T) + C_sq[None, cols]
            np.minimum(best[rows], d.min(axis=1), out=best[rows])
    return np.maximum(best, 0.0)


def k_center_greedy(X, n_centers, *, X_centers=None, random_state=None):
    """Greedy k-center: repeatedly pick the point farthest from all centers.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Candidate points.
    n_centers : int
        How many points of ``X`` to pick.
    X_centers : ndarray of shape (n_fixed, n_features) or None
        Existing centers (the labeled set). If None, the first center is random.
    random_state : int, RandomState instance or None

    Returns
    -------
    indices : ndarray of shape (n_centers,)
        In the order picked.

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [10.0]])
    >>> k_center_greedy(X, 1, X_centers=np.array([[0.0]]))
    array([2])
    """
    X = np.asarray(X, dtype=np.float64)
    X_sq = _sq_norms(X)
    if X_centers is not None and len(X_centers):
        dist = min_sq_distances(X, np.asarray(X_centers, dtype=np.float64), X_sq)
        chosen = []
    else:
        first = int(check_random_state(random_state).randint(X.shape[0]))
        dist = min_sq_distances(X, X[first:first + 1], X_sq)
        chosen = [first]
    while len(chosen) < n_centers:
        dist[chosen] = -1.0  # already a center
        new = int(np.argmax(dist))
        chosen.append(new)
        d_new = X_sq - 2.0 * (X @ X[new]) + X_sq[new]
        np.minimum(dist, np.maximum(d_new, 0.0), out=dist)
    return np.asarray(chosen, dtype=np.int64)


class CoreSet(QueryStrategy):
    """Core-set selection: greedy k-center in the network's embedding space.

    Picks, one at a time, the pool sample farthest from the labeled set and
    the samples already picked, so the batch covers the pool (Sener &
    Savarese 2018, greedy variant). Memory is O(pool size).

    Parameters
    ----------
    embedding : {"auto", "model", "input"}, transformer or callable, default="auto"
        The space distances are measured in (see :func:`skal.nets.features`):
        ``"model"``: penultimate-layer features of the net; ``"input"``: the
        flattened inputs; ``"auto"``: the model's when it is a torch net.
    normalize : bool, default=False
        L2-normalise the features first, so that distances are chord (cosine)
        distances. ``False`` is Sener & Savarese's Euclidean distance on the raw
        features. On the Fashion-MNIST LeNet the raw k-center spends most of its
        labels on the pool's farthest points, sandals and bags; see
        :doc:`/diagnoses`. The Wasserstein core-set paper (Mahmood et al. 2022,
        app. E.7) finds the cosine distance better than the Euclidean one except
        at the smallest budgets.
    batch_size : int or None, default=None
        Inference batch size.
    random_state : int, RandomState instance or None, default=None
        Picks the first center when there is no labeled set.

    Examples
    --------
    >>> X = np.array([[0.0], [0.1], [5.0], [9.0]])
    >>> CoreSet(embedding="input").query(None, X, 2, X_labeled=np.array([[0.0]]))
    array([3, 2])

    With ``normalize=True`` only directions count: ``[5, 5]`` lies on the
    labeled point's ray, so the point at a right angle goes first.

    >>> X = np.array([[5.0, 5.0], [1.0, -1.0]])
    >>> CoreSet(embedding="input", normalize=True).query(
    ...     None, X, 1, X_labeled=np.array([[1.0, 1.0]]))
    array([1])
    """

    def __init__(self, embedding="auto", normalize=False, batch_size=None, random_state=None):
        self.embedding = embedding
        self.normalize = normalize
        self.batch_size = batch_size
        self.random_state = random_state

    def _features(self, estimator, X):
        """Features of ``X`` in the space distances are measured in (also the Dask path's)."""
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise TypeError(f"normalize must be a bool, got {self.normalize!r}.")
        Z = features(estimator, X, self.embedding, batch_size=self.batch_size)
        # Zero rows stay zero (sklearn's normalize leaves them alone).
        return l2_normalize(Z) if self.normalize else Z

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        pool = self._features(estimator, X_pool)
        centers = None
        if X_labeled is not None:
            centers = self._features(estimator, X_labeled)
        return k_center_greedy(
            pool, n_instances, X_centers=centers, random_state=self.random_state
        )
