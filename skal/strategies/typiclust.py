"""TypiClust: typical points of uncovered clusters (Hacohen, Dekel & Weinshall, ICML 2022)."""

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state

from ..base import QueryStrategy, check_int
from ._clusters import check_embedding, embed_pool_and_labeled

__all__ = ["TypiClust", "typicality", "typiclust_select"]

# Above this many clusters k-means switches to MiniBatchKMeans (as the authors do).
_FULL_KMEANS_MAX_CLUSTERS = 50


def typicality(Z, n_neighbors=20):
    """Typicality of each row: the inverse mean distance to its nearest neighbours.

    ``1 / mean_{x' in kNN(x)} ||x - x'||`` over the ``min(n_neighbors, len(Z) - 1)``
    nearest other rows of ``Z`` (Hacohen et al. 2022, Eq. 4). A single row has
    typicality 1.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
    n_neighbors : int, default=20

    Returns
    -------
    typicality : ndarray of shape (n_samples,)

    Examples
    --------
    >>> typicality(np.array([[0.0], [1.0], [3.0]]), n_neighbors=1)
    array([1. , 1. , 0.5])
    """
    Z = np.asarray(Z, dtype=np.float64)
    k = min(int(n_neighbors), Z.shape[0] - 1)
    if k < 1:
        return np.ones(Z.shape[0])
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(Z).kneighbors(Z)
    # Column 0 is the row itself (distance 0, also for an exact duplicate).
    mean = dist[:, 1:].mean(axis=1)
    # Duplicates give a zero mean: they are maximally typical, not infinite.
    return 1.0 / np.maximum(mean, 1e-12)


def typiclust_select(labels, n_pool, n_instances, Z, *, n_neighbors=20, min_cluster_size=5):
    """TypiClust's pick given a clustering of the pool and the labeled set.

    Rows ``0 .. n_pool - 1`` of ``labels`` / ``Z`` are the pool, the rest the
    labeled set. Each pick goes to the cluster with the fewest labeled (or
    already picked) points, the largest among those (ties: lower cluster id);
    clusters smaller than ``min_cluster_size`` are used only when no other one
    has pool points left. Within the cluster the pool point of highest
    :func:`typicality` (computed among all the cluster's points) is taken.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Pool indices, in the order picked.

    Examples
    --------
    >>> Z = np.array([[0.0], [0.1], [0.3], [5.0], [5.2]])
    >>> typiclust_select(np.array([0, 0, 0, 1, 1]), 5, 2, Z, min_cluster_size=1)
    array([1, 3])
    """
    labels = np.asarray(labels)
    n_clusters = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=n_clusters)
    covered = np.bincount(labels[n_pool:], minlength=n_clusters)
    pool_labels = labels[:n_pool]
    left = np.bincount(pool_labels, minlength=n_clusters)
    big = sizes >= min_cluster_size
    members = {}
    scores = {}
    taken = np.zeros(n_pool, dtype=bool)
    chosen = []
    for _ in range(n_instances):
        open_ = left > 0
        pool_ok = open_ & big if (open_ & big).any() else open_
        ids = np.flatnonzero(pool_ok)
        # fewest labeled first, then the largest, then the lower id
        c = int(ids[np.lexsort((ids, -sizes[ids], covered[ids]))[0]])
        if c not in members:
            rows = np.flatnonzero(labels == c)
            members[c] = rows
            scores[c] = typicality(Z[rows], n_neighbors)
        rows, score = members[c], scores[c]
        ok = (rows < n_pool)
        ok[ok] = ~taken[rows[ok]]
        best = rows[ok][np.argmax(score[ok])]  # argmax: the lower row on ties
        chosen.append(int(best))
        taken[best] = True
        covered[c] += 1
        left[c] -= 1
    return np.asarray(chosen, dtype=np.int64)


class TypiClust(QueryStrategy):
    """TypiClust: the most typical point of each of the largest uncovered clusters.

    A strategy for small budgets (a few labels per class) and the cold start.
    The pool and the labeled set are clustered together by k-means into
    ``|L| + B`` clusters (``B`` the batch size, at most ``max_clusters``); each
    pick goes to the largest cluster holding no labeled point yet (more exactly:
    the fewest labeled or picked points, the largest among those) and takes its
    most typical pool point, typicality being the inverse mean distance to the
    ``n_neighbors`` nearest points of the same cluster.

    Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite
    Strategies Suit High and Low Budgets", ICML 2022.

    Parameters
    ----------
    n_neighbors : int, default=20
        ``K`` of the typicality (the paper's 20); capped at the cluster size - 1.
    min_cluster_size : int, default=5
        Clusters with fewer points are skipped while larger ones have pool points
        left (the authors' guard against outlier clusters).
    max_clusters : int, default=500
        Cap on the number of clusters (the authors' value), so cost stays bounded
        when the labeled set grows.
    embedding : {"auto", "model", "input"}, transformer or callable, default="auto"
        The space clustered (see :func:`skal.nets.features`). The paper uses a
        self-supervised embedding; an unfitted transformer (e.g. ``PCA``) is
        fitted once without labels on the first pool seen.
    normalize : bool, default=False
        L2-normalise the embedding first (cosine geometry).
    batch_size : int or None, default=None
        Inference batch size for ``"model"``.
    random_state : int, RandomState instance or None, default=None
        Seeds k-means.

    Attributes
    ----------
    cluster_labels_ : ndarray of shape (n_pool + n_labeled,)
        The last query's clusters (pool rows first, then the labeled rows).

    Examples
    --------
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(c, 0.1, size=(20, 2)) for c in (0.0, 5.0)])
    >>> idx = TypiClust(embedding="input", random_state=0).query(None, X, 2)
    >>> sorted(int(i) // 20 for i in idx)  # one point from each blob
    [0, 1]
    """

    def __init__(self, n_neighbors=20, min_cluster_size=5, max_clusters=500, embedding="auto",
                 normalize=False, batch_size=None, random_state=None):
        self.n_neighbors = n_neighbors
        self.min_cluster_size = min_cluster_size
        self.max_clusters = max_clusters
        self.embedding = embedding
        self.normalize = normalize
        self.batch_size = batch_size
        self.random_state = random_state

    def _check_params(self):
        check_int(self.n_neighbors, "n_neighbors")
        check_int(self.min_cluster_size, "min_cluster_size")
        check_int(self.max_clusters, "max_clusters")
        check_int(self.batch_size, "batch_size", allow_none=True)
        check_embedding(self.embedding)
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise TypeError(f"normalize must be a bool, got {self.normalize!r}.")

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        self._check_params()
        Z_pool, Z_lab = embed_pool_and_labeled(
            self, estimator, X_pool, X_labeled, normalize=self.normalize
        )
        Z = Z_pool if Z_lab is None else np.concatenate([Z_pool, Z_lab])
        n_lab = 0 if Z_lab is None else Z_lab.shape[0]
        n_clusters = min(n_lab + n_instances, self.max_clusters, Z.shape[0])
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        if n_clusters <= _FULL_KMEANS_MAX_CLUSTERS:
            km = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed)
        else:
            km = MiniBatchKMeans(n_clusters=n_clusters, n_init=3, batch_size=4096,
                                 random_state=seed)
        labels = km.fit_predict(Z)
        # Empty k-means clusters would leave gaps in the ids; compact them.
        labels = np.unique(labels, return_inverse=True)[1].ravel()
        self.cluster_labels_ = labels
        return typiclust_select(
            labels, Z_pool.shape[0], n_instances, Z,
            n_neighbors=self.n_neighbors, min_cluster_size=self.min_cluster_size,
        )
