"""ProbCover: greedy maximum coverage by delta-balls (Yehuda et al., NeurIPS 2022)."""

import math

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state

from ..base import QueryStrategy, check_int
from ._clusters import check_embedding, check_real, embed_pool_and_labeled

__all__ = ["ProbCover", "ball_graph", "max_coverage", "purity_delta"]

# Rows whose neighbourhoods are searched at once: bounds the temporary lists.
_BLOCK_ROWS = 2048


def ball_graph(Z, delta, targets=None):
    """Sparse graph of the open balls: row ``i`` holds each ``j`` with ``||z_i - z_j|| < delta``.

    Every row holds its own point. Built by radius queries in blocks of rows, so
    memory is O(n_features x n + edges), never n x n dense.

    Parameters
    ----------
    Z : ndarray of shape (n, n_features)
    delta : float
    targets : ndarray of shape (m, n_features), default=None
        The points the balls cover (columns); ``None``: ``Z`` itself.

    Returns
    -------
    graph : scipy.sparse.csr_matrix of shape (n, n) or (n, m), bool

    Examples
    --------
    >>> ball_graph(np.array([[0.0], [0.5], [2.0]]), 1.0).toarray().astype(int)
    array([[1, 1, 0],
           [1, 1, 0],
           [0, 0, 1]])
    """
    Z = np.asarray(Z, dtype=np.float64)
    n = Z.shape[0]
    square = targets is None
    T = Z if square else np.asarray(targets, dtype=np.float64)
    nn = NearestNeighbors(radius=delta).fit(T)
    indptr = [0]
    cols = []
    for start in range(0, n, _BLOCK_ROWS):
        dist, ind = nn.radius_neighbors(Z[start:start + _BLOCK_ROWS], radius=delta,
                                        sort_results=False)
        for i, (d, j) in enumerate(zip(dist, ind, strict=True)):
            # radius_neighbors keeps d <= delta; the paper's balls are open.
            j = j[d < delta]
            if square and not (j == start + i).any():  # a point always covers itself
                j = np.append(j, start + i)
            cols.append(np.sort(j))
            indptr.append(indptr[-1] + j.size)
    cols = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    data = np.ones(cols.size, dtype=bool)
    return sp.csr_matrix((data, cols, np.asarray(indptr)), shape=(n, T.shape[0]))


def max_coverage(graph, candidates, n_instances, *, covered=None, random_state=None):
    """Greedy maximum coverage: repeatedly pick the candidate covering the most uncovered points.

    Parameters
    ----------
    graph : sparse matrix of shape (n, m)
        Row ``i``: the points (columns) that point ``i`` covers (see
        :func:`ball_graph`).
    candidates : ndarray of int
        Rows that may be picked.
    n_instances : int
    covered : ndarray of shape (m,), bool, default=None
        Points covered before the first pick (the labeled set's balls).
    random_state : int, RandomState instance or None
        Once every point is covered, the remaining picks are random candidates
        (as in the paper).

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Rows of ``graph``, in the order picked; ties go to the lower row.

    Examples
    --------
    >>> g = ball_graph(np.array([[0.0], [0.5], [0.9], [5.0]]), 0.6)
    >>> max_coverage(g, np.arange(4), 2)
    array([1, 3])
    """
    graph = sp.csr_matrix(graph, dtype=bool)
    n, m = graph.shape
    covers = graph.T.tocsr()  # row j: the points whose balls hold j
    covered = np.zeros(m, dtype=bool) if covered is None else np.array(covered, dtype=bool)
    uncovered = (~covered).astype(np.int64)
    # degree[i]: uncovered points in i's ball
    degree = graph.astype(np.int64) @ uncovered
    is_cand = np.zeros(n, dtype=bool)
    is_cand[np.asarray(candidates, dtype=np.int64)] = True
    rng = check_random_state(random_state)
    chosen = []
    for _ in range(n_instances):
        masked = np.where(is_cand, degree, -1)
        best = int(np.argmax(masked))
        if masked[best] <= 0:
            best = int(rng.choice(np.flatnonzero(is_cand)))
        chosen.append(best)
        is_cand[best] = False
        ball = graph.indices[graph.indptr[best]:graph.indptr[best + 1]]
        new = ball[~covered[ball]]
        if new.size:
            covered[new] = True
            # each newly covered point lowers the degree of every ball holding it
            holders = np.concatenate(
                [covers.indices[covers.indptr[j]:covers.indptr[j + 1]] for j in new]
            )
            degree -= np.bincount(holders, minlength=n)
    return np.asarray(chosen, dtype=np.int64)


def purity_delta(Z, pseudo_labels, alpha=0.95, rows=None):
    """The largest ``delta`` whose balls are pure for at least a fraction ``alpha`` of the points.

    The ball ``{x' : ||x - x'|| < delta}`` is pure when all its points share
    ``x``'s pseudo-label, i.e. when ``delta`` is at most the distance ``d(x)``
    from ``x`` to the nearest point of another label. The purity
    ``mean(d(x) >= delta)`` falls with ``delta``, so the largest ``delta`` with
    purity >= ``alpha`` is the ``ceil(alpha n)``-th largest ``d(x)``: exact, no
    grid of candidate radii needed.

    ``rows`` (sorted row numbers) estimates the purity on those points only, each
    against every point of another label: a uniform random subset gives an
    unbiased estimate in ``O(len(rows) x n)`` distances instead of ``O(n^2)``.

    Examples
    --------
    >>> Z = np.array([[0.0], [1.0], [10.0], [12.0]])
    >>> float(purity_delta(Z, np.array([0, 0, 1, 1]), alpha=0.5))
    10.0
    """
    Z = np.asarray(Z, dtype=np.float64)
    pseudo_labels = np.asarray(pseudo_labels)
    classes = np.unique(pseudo_labels)
    if classes.size < 2:
        raise ValueError("the purity rule needs at least 2 pseudo-labels.")
    rows = np.arange(Z.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    d = np.empty(rows.size)
    for c in classes:
        inside = pseudo_labels[rows] == c
        if not inside.any():
            continue
        nn = NearestNeighbors(n_neighbors=1).fit(Z[pseudo_labels != c])
        d[inside] = nn.kneighbors(Z[rows[inside]])[0][:, 0]
    m = math.ceil(alpha * rows.size)
    return np.sort(d)[::-1][m - 1]


class ProbCover(QueryStrategy):
    """ProbCover: the batch whose delta-balls cover the most of the data.

    A strategy for small budgets and the cold start. Every point ``x`` covers
    the open ball ``B(x, delta)`` in the embedding; starting from what the
    labeled set's balls already cover, each pick is the pool point whose ball
    holds the most uncovered points (pool and labeled set alike), until the
    batch is full. Once everything is covered, the remaining picks are random.

    Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering
    Lens", NeurIPS 2022.

    Parameters
    ----------
    delta : float or "auto", default="auto"
        Ball radius. ``"auto"``: the paper's purity rule: cluster the data by
        k-means into ``n_classes`` pseudo-classes and take the largest radius
        whose balls hold a single pseudo-class for a fraction ``alpha`` of the
        points (see :func:`purity_delta`).
    alpha : float, default=0.95
        Purity threshold of the ``"auto"`` rule (the paper's 0.95).
    n_classes : int or None, default=None
        Pseudo-classes of the ``"auto"`` rule. ``None``: the estimator's
        ``classes_``, else the distinct labels of ``y_labeled``; a cold start
        with ``delta="auto"`` needs it.
    embedding : {"auto", "model", "input"}, transformer or callable, default="auto"
        The space the balls live in (see :func:`skal.nets.features`).
    normalize : bool, default=True
        L2-normalise the embedding first, as the paper does with its
        self-supervised features (radii are then on the unit sphere).
    batch_size : int or None, default=None
        Inference batch size for ``"model"``.
    max_samples : int or None, default=50_000
        Count coverage (and the purity rule) on at most this many points: with
        more pool + labeled points, on a uniform random subset of that size,
        which estimates the covered fraction without bias. Every pool point stays
        a candidate. The exact algorithm's ball graph grows with the square of
        the pool at a fixed radius (each ball holds a fixed fraction of it);
        with the subset it grows linearly. ``None``: always exact, as in the
        paper. Pools up to ``max_samples`` are not affected.
    random_state : int, RandomState instance or None, default=None
        Seeds k-means (``"auto"``), the coverage subset and the random picks once
        all is covered.

    Attributes
    ----------
    delta_ : float
        The radius used by the last query.
    coverage_ : float
        Fraction of pool + labeled points covered after the last query
        (estimated on the ``max_samples`` subset when one is used).

    Notes
    -----
    The graph has one stored edge per (point, covered point) pair closer than
    ``delta``: memory grows with the radius (about ``n x`` the mean ball size,
    counted in the ``max_samples`` subset), which the purity rule keeps small;
    a large fixed ``delta`` can still be costly.

    Examples
    --------
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(c, 0.1, size=(20, 2)) for c in (0.0, 5.0)])
    >>> idx = ProbCover(delta=1.0, normalize=False, embedding="input").query(None, X, 2)
    >>> sorted(int(i) // 20 for i in idx)  # one point from each blob
    [0, 1]
    """

    def __init__(self, delta="auto", alpha=0.95, n_classes=None, embedding="auto",
                 normalize=True, batch_size=None, max_samples=50_000, random_state=None):
        self.delta = delta
        self.alpha = alpha
        self.n_classes = n_classes
        self.embedding = embedding
        self.normalize = normalize
        self.batch_size = batch_size
        self.max_samples = max_samples
        self.random_state = random_state

    def _check_params(self):
        if not (isinstance(self.delta, str) and self.delta == "auto"):
            if isinstance(self.delta, str):
                raise ValueError(f"delta must be 'auto' or a positive number, got {self.delta!r}.")
            check_real(self.delta, "delta", low=0, low_open=True)
        check_real(self.alpha, "alpha", low=0, high=1, low_open=True)
        check_int(self.n_classes, "n_classes", minimum=2, allow_none=True)
        check_int(self.batch_size, "batch_size", allow_none=True)
        check_int(self.max_samples, "max_samples", minimum=1, allow_none=True)
        check_embedding(self.embedding)
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise TypeError(f"normalize must be a bool, got {self.normalize!r}.")

    def _resolve_n_classes(self, estimator, y_labeled):
        if self.n_classes is not None:
            return int(self.n_classes)
        for obj in (estimator, getattr(estimator, "estimator", None),
                    getattr(estimator, "estimator_", None)):
            classes = getattr(obj, "classes_", None)
            if classes is not None and len(classes) >= 2:
                return len(classes)
        if y_labeled is not None and np.unique(np.asarray(y_labeled)).size >= 2:
            return int(np.unique(np.asarray(y_labeled)).size)
        raise ValueError(
            "ProbCover(delta='auto') needs the number of classes for its purity rule: "
            "pass n_classes=..., or a fixed delta (e.g. for a cold start)."
        )

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        self._check_params()
        n_classes = None
        if isinstance(self.delta, str):
            n_classes = self._resolve_n_classes(estimator, y_labeled)
        rng = check_random_state(self.random_state)
        Z_pool, Z_lab = embed_pool_and_labeled(
            self, estimator, X_pool, X_labeled, normalize=self.normalize
        )
        Z = Z_pool if Z_lab is None else np.concatenate([Z_pool, Z_lab])
        n_pool = Z_pool.shape[0]
        if n_classes is not None:
            if Z.shape[0] < n_classes:
                raise ValueError(
                    f"n_classes={n_classes} is larger than the {Z.shape[0]} points to cluster."
                )
            seed = rng.randint(np.iinfo(np.int32).max)
        # The points whose coverage counts (None: all of them).
        targets = None
        if self.max_samples is not None and Z.shape[0] > self.max_samples:
            targets = np.sort(rng.choice(Z.shape[0], int(self.max_samples), replace=False))
        if n_classes is not None:
            pseudo = KMeans(n_clusters=n_classes, n_init=10, random_state=seed).fit_predict(Z)
            delta = float(purity_delta(Z, pseudo, self.alpha, rows=targets))
            if delta <= 0:
                raise ValueError(
                    "the purity rule gave delta = 0 (duplicate points with different "
                    "pseudo-labels); pass a fixed delta."
                )
        else:
            delta = float(self.delta)
        graph = ball_graph(Z, delta, targets=None if targets is None else Z[targets])
        covered = np.zeros(graph.shape[1], dtype=bool)
        if Z.shape[0] > n_pool:
            lab_rows = graph[n_pool:]
            covered[lab_rows.indices] = True
        chosen = max_coverage(graph, np.arange(n_pool), n_instances, covered=covered,
                              random_state=rng)
        covered[graph[chosen].indices] = True
        self.delta_ = delta
        self.coverage_ = float(covered.mean())
        return chosen
