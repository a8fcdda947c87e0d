"""Cluster-Margin: round-robin over HAC clusters of the lowest-margin samples (Citovsky et al.)."""

import math

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state

from ..base import QueryStrategy, check_int, top_k
from ..nets import predict_proba
from ._clusters import check_embedding, check_real, embed_pool_and_labeled, uses_model_space
from .uncertainty import uncertainty

__all__ = ["ClusterMargin", "hac_clusters", "round_robin"]


def hac_clusters(Z, *, n_clusters=None, distance_threshold=None):
    """Average-linkage agglomerative clusters of the rows of ``Z`` (ids from 0).

    Give exactly one of ``n_clusters`` (cut into that many clusters) and
    ``distance_threshold`` (merge while the average inter-cluster Euclidean
    distance is at most this). Memory is O(len(Z)^2): call it on a sample.

    Examples
    --------
    >>> hac_clusters(np.array([[0.0], [0.1], [5.0], [5.1]]), n_clusters=2).tolist()
    [0, 0, 1, 1]
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.shape[0] == 1:
        return np.zeros(1, dtype=np.int64)
    tree = linkage(Z, method="average", metric="euclidean")
    if distance_threshold is not None:
        ids = fcluster(tree, t=distance_threshold, criterion="distance")
    else:
        ids = fcluster(tree, t=min(n_clusters, Z.shape[0]), criterion="maxclust")
    # fcluster numbers clusters from 1 in tree order; renumber by first appearance.
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse.ravel()].astype(np.int64)


def round_robin(clusters, n_instances, random_state=None):
    """Cluster-Margin's batch from candidates given in priority order and their clusters.

    Clusters are visited smallest first (size counted among the candidates;
    ties: the cluster whose best candidate comes first), one random member of
    each per pass, until ``n_instances`` are taken.

    Returns
    -------
    positions : ndarray of shape (n_instances,)
        Positions into ``clusters``, in the order taken.

    Examples
    --------
    >>> round_robin(np.array([0, 0, 0, 1, 2]), 3, random_state=0).tolist()[:2]
    [3, 4]
    """
    clusters = np.asarray(clusters)
    ids, first, sizes = np.unique(clusters, return_index=True, return_counts=True)
    order = ids[np.lexsort((first, sizes))]
    rng = check_random_state(random_state)
    positions, passes, visits = [], [], []
    for o, c in enumerate(order):
        members = rng.permutation(np.flatnonzero(clusters == c))
        positions.append(members)
        passes.append(np.arange(members.size))
        visits.append(np.full(members.size, o))
    positions, passes, visits = map(np.concatenate, (positions, passes, visits))
    take = np.lexsort((visits, passes))[:n_instances]
    return positions[take].astype(np.int64)


class ClusterMargin(QueryStrategy):
    """Cluster-Margin: diverse low-margin samples for large batches.

    The embedding of the pool is clustered once by hierarchical agglomerative
    clustering (average linkage). Each query takes the ``k_m = margin_factor x
    n_instances`` pool samples of smallest margin (gap between the two largest
    class probabilities), groups them by cluster, and fills the batch
    round-robin over these groups, smallest first, one random member per group
    and pass, so no region of the space dominates a large batch.

    Citovsky, DeSalvo, Gentile, Karydas, Rajagopalan, Rostamizadeh & Kumar,
    "Batch Active Learning at Scale", NeurIPS 2021.

    Parameters
    ----------
    margin_factor : float, default=10
        ``k_m / k_t``: how many lowest-margin candidates per batch slot (>= 1;
        1 is margin sampling).
    n_clusters : int or None, default=None
        Cut the HAC tree into this many clusters. With ``distance_threshold``
        also ``None``: one cluster per 10 clustered points (skal's default, a
        stand-in for the paper's tuned threshold).
    distance_threshold : float or None, default=None
        The paper's ``epsilon``: merge clusters while their average distance is
        at most this. Exclusive with ``n_clusters``.
    max_hac_points : int, default=2000
        HAC needs all pairwise distances (O(n^2) memory), so a pool larger than
        this is clustered on a random sample of this size and every other point
        joins the cluster of its nearest sampled point (O(n x d) memory).
    recluster : bool or "auto", default="auto"
        Cluster again at every query. ``"auto"``: when the embedding is the
        net's (it moves as the net is retrained), otherwise cluster once, at the
        first query, as the paper does, and keep the clusters for later pools.
    embedding : {"auto", "model", "input"}, transformer or callable, default="auto"
        The space clustered (see :func:`skal.nets.features`).
    batch_size : int or None, default=None
        Inference batch size for torch nets.
    random_state : int, RandomState instance or None, default=None
        The HAC sample and the round-robin draws.

    Attributes
    ----------
    hac_embedding_, hac_labels_ : ndarray
        The clustered points and their clusters, reused while not reclustering.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(c, 0.3, size=(30, 2)) for c in (-1.0, 1.0)])
    >>> clf = LogisticRegression().fit(X, np.repeat([0, 1], 30))
    >>> cm = ClusterMargin(margin_factor=2, embedding="input", random_state=0)
    >>> cm.query(clf, X, 5).shape
    (5,)
    """

    def __init__(self, margin_factor=10.0, n_clusters=None, distance_threshold=None,
                 max_hac_points=2000, recluster="auto", embedding="auto", batch_size=None,
                 random_state=None):
        self.margin_factor = margin_factor
        self.n_clusters = n_clusters
        self.distance_threshold = distance_threshold
        self.max_hac_points = max_hac_points
        self.recluster = recluster
        self.embedding = embedding
        self.batch_size = batch_size
        self.random_state = random_state

    def _check_params(self):
        check_real(self.margin_factor, "margin_factor", low=1)
        check_int(self.n_clusters, "n_clusters", allow_none=True)
        if self.distance_threshold is not None:
            check_real(self.distance_threshold, "distance_threshold", low=0)
            if self.n_clusters is not None:
                raise ValueError("give n_clusters or distance_threshold, not both.")
        check_int(self.max_hac_points, "max_hac_points", minimum=2)
        if not (self.recluster == "auto" or isinstance(self.recluster, (bool, np.bool_))):
            raise ValueError(f"recluster must be a bool or 'auto', got {self.recluster!r}.")
        check_int(self.batch_size, "batch_size", allow_none=True)
        check_embedding(self.embedding)

    def _cluster(self, estimator, X_pool, rng):
        n_pool = X_pool.shape[0]
        sample = np.arange(n_pool)
        if n_pool > self.max_hac_points:
            sample = np.sort(rng.choice(n_pool, size=self.max_hac_points, replace=False))
        Z, _ = embed_pool_and_labeled(self, estimator, X_pool[sample], None)
        n_clusters = self.n_clusters
        if n_clusters is None and self.distance_threshold is None:
            n_clusters = max(1, math.ceil(Z.shape[0] / 10))
        self.hac_embedding_ = Z
        self.hac_labels_ = hac_clusters(Z, n_clusters=n_clusters,
                                        distance_threshold=self.distance_threshold)

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        self._check_params()
        rng = check_random_state(self.random_state)
        margin_u = uncertainty(predict_proba(estimator, X_pool, batch_size=self.batch_size),
                               "margin")
        k_m = min(X_pool.shape[0], math.ceil(self.margin_factor * n_instances))
        candidates = top_k(margin_u, k_m)  # lowest margin first

        recluster = self.recluster
        if recluster == "auto":
            recluster = uses_model_space(self, estimator)
        # Clustering first: an unfitted transformer is then fitted on the pool
        # (sample), not on the candidates alone.
        if recluster or getattr(self, "hac_embedding_", None) is None:
            self._cluster(estimator, X_pool, rng)
        Z_cand, _ = embed_pool_and_labeled(self, estimator, X_pool[candidates], None)
        if self.hac_embedding_.shape[1] != Z_cand.shape[1]:  # another space than last time
            self._cluster(estimator, X_pool, rng)
        nearest = NearestNeighbors(n_neighbors=1).fit(self.hac_embedding_)
        clusters = self.hac_labels_[nearest.kneighbors(Z_cand)[1][:, 0]]
        self.last_utilities_ = margin_u
        return candidates[round_robin(clusters, n_instances, rng)]
