"""Constants, input validation and the blocked cost oracle shared by the MIP core-set modules."""

import numpy as np

METRICS = ("cosine", "euclidean", "chord", "precomputed")
SOLVERS = ("cbc", "highs", "scipy")
WARM_STARTS = ("kcenter", "kmedoids", "lloyd_ot", "all")
CUTS = ("capacity", "classic")
# Metrics under which W_1 satisfies the triangle inequality, so the paper's
# triangle (7) and dual (8) EOC are provably valid; 1 - cos is not a metric.
_TRUE_METRICS = ("euclidean", "chord")
# Entries of a cost block computed at once (float64): ~8 MB.
_BLOCK_ENTRIES = 1_000_000
# Cache D[:, candidates] when it has at most this many entries (~96 MB).
_CACHE_ENTRIES = 12_000_000
# The strong-LP sub-problem at a fractional master point is solved exactly
# (HiGHS) when it has at most this many variables, else by dual coordinate ascent.
_EXACT_LP_ENTRIES = 20_000
# The transport is solved on a sparse graph: every row's _SCREEN_K nearest
# centers plus a feasible north-west-corner plan, then priced against all
# N x |S| arcs block by block; rows with arcs of negative reduced cost get up to
# _PRICE_ADD (doubling each round) of them and the sparse problem is re-solved.
_SCREEN_K = 16
_PRICE_ADD = 4
# A negative reduced cost larger than this (relative to the largest arc cost) is
# a violation of dual feasibility: the network simplex itself works to ~1e-12.
_PRICE_TOL = 1e-9
# _new_ordered keeps the N x k distances to the new points in float32 up to this.
_ORDER_BYTES = 512 * 2**20
# Cuts are loosened by this (relative to the objective scale) so that rounding
# in the cost blocks or the LP file never makes a valid cut cut off a selection.
_CUT_SAFETY = 1e-9


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _check_metric(metric):
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    return metric


def _check_features(X, metric):
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(
            f"X must be a non-empty 2-D array (n_samples, n_features), got shape {X.shape}."
        )
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError("X must be numeric.")
    X = X.astype(np.float64, copy=False)
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity.")
    if metric == "precomputed":
        if X.shape[0] != X.shape[1]:
            raise ValueError(
                f"With metric='precomputed' X must be a square cost matrix, got shape {X.shape}."
            )
        if np.any(X < 0):
            raise ValueError("A precomputed cost matrix must be non-negative.")
    return X


def _check_labeled(labeled, n):
    if labeled is None:
        return np.zeros(0, dtype=np.int64)
    lab = np.asarray(labeled)
    if lab.dtype == bool:
        if lab.shape != (n,):
            raise ValueError(f"A boolean labeled mask must have shape ({n},), got {lab.shape}.")
        return np.flatnonzero(lab).astype(np.int64)
    lab = lab.ravel()
    if lab.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError("labeled must be integer indices or a boolean mask.")
    lab = lab.astype(np.int64)
    if lab.min() < 0 or lab.max() >= n:
        raise ValueError(f"labeled indices must lie in [0, {n}).")
    if np.unique(lab).size != lab.size:
        raise ValueError("labeled indices must be distinct.")
    return lab


def _check_n_select(n_select, n, n_labeled):
    if isinstance(n_select, bool) or not isinstance(n_select, (int, np.integer)):
        raise ValueError(f"n_select must be an integer, got {n_select!r}.")
    n_select = int(n_select)
    if n_select < 0:
        raise ValueError(f"n_select must be >= 0, got {n_select}.")
    if n_labeled + n_select > n:
        raise ValueError(
            f"n_select={n_select} plus {n_labeled} labeled points exceeds the pool size {n}."
        )
    if n_labeled + n_select == 0:
        raise ValueError("Nothing to select: n_select is 0 and no point is labeled.")
    return n_select


def _check_positive(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    return float(value)


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}.")
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
    return float(value)


# ---------------------------------------------------------------------------
# cost oracle
# ---------------------------------------------------------------------------


class _Cost:
    """Blocks of the pool-to-pool cost matrix, computed on demand in float64.

    Never materialises N x N (50k^2 float64 is 20 GB); ``D[:, candidates]`` is
    cached when it is small.
    """

    def __init__(self, X, metric):
        self.metric = metric
        self.n = X.shape[0]
        if metric == "precomputed":
            self.D = X
            return
        # no copy of the features unless they are normalised: the solver only reads them
        F = np.asarray(X, dtype=np.float64)
        if metric in ("cosine", "chord"):
            norms = np.linalg.norm(F, axis=1, keepdims=True)
            # a zero vector has no direction: it stays 0, i.e. at cosine distance 1
            # (chord distance 1) from everything but itself
            F = np.divide(F, norms, out=np.zeros(F.shape), where=norms > 0)
        self.F = F
        self.sq = np.einsum("ij,ij->i", F, F)

    def block(self, rows, cols):
        """D[rows][:, cols]; ``rows`` is None (all) or a slice, ``cols`` an index array."""
        cols = np.asarray(cols, dtype=np.int64)
        rsl = slice(0, self.n) if rows is None else rows
        if self.metric == "precomputed":
            return np.array(self.D[rsl][:, cols], dtype=np.float64)
        Fr = self.F[rsl]
        G = Fr @ self.F[cols].T
        # in place, two blocks at most: the same operations as 1 - G and |x|^2 + |y|^2 - 2 G
        if self.metric == "cosine":
            out = np.clip(np.subtract(1.0, G, out=G), 0.0, 2.0, out=G)
        else:
            out = self.sq[rsl][:, None] + self.sq[cols][None, :]
            G *= 2.0
            out -= G
            del G
            np.maximum(out, 0.0, out=out)
            np.sqrt(out, out=out)
        # self-distances are exactly 0 (rounding would otherwise leave ~1e-8)
        start = rsl.start or 0
        stop = rsl.stop if rsl.stop is not None else self.n
        m = (cols >= start) & (cols < stop)
        out[cols[m] - start, np.flatnonzero(m)] = 0.0
        return out

    def pairs(self, rows, cols):
        """D[rows[t], cols[t]] for index arrays of equal length (same formula as ``block``)."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if self.metric == "precomputed":
            return np.array(self.D[rows, cols], dtype=np.float64)
        out = np.empty(rows.size)
        step = max(1, _BLOCK_ENTRIES // max(1, self.F.shape[1]))
        for s in range(0, rows.size, step):
            r, c = rows[s: s + step], cols[s: s + step]
            g = np.einsum("ij,ij->i", self.F[r], self.F[c])
            if self.metric == "cosine":
                v = np.clip(1.0 - g, 0.0, 2.0)
            else:
                v = np.sqrt(np.maximum(self.sq[r] + self.sq[c] - 2.0 * g, 0.0))
            v[r == c] = 0.0
            out[s: s + step] = v
        return out

    def row_chunks(self, n_cols):
        step = max(1, _BLOCK_ENTRIES // max(1, n_cols))
        for start in range(0, self.n, step):
            yield slice(start, min(self.n, start + step))



def _setup(X, n_select, labeled, metric, candidates=None):
    metric = _check_metric(metric)
    X = _check_features(X, metric)
    n = X.shape[0]
    lab = _check_labeled(labeled, n)
    n_select = _check_n_select(n_select, n, lab.size)
    cost = _Cost(X, metric)
    cand = np.arange(n) if candidates is None else candidates
    return cost, lab, n_select, cand
