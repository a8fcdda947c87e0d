"""Wasserstein core-set selection by mixed-integer programming.

Implements the selection problem of Mahmood, Fidler & Law, "Low Budget Active
Learning via Wasserstein Distance: An Integer Programming Approach" (ICLR 2022):
choose ``B`` points of a pool (already-labeled points forced in) so that the
uniform distribution on them is as close as possible, in discrete
Wasserstein-1 distance, to the uniform distribution on the whole pool::

    W(z) = min_{T >= 0}  sum_ij D_ij T_ij
           s.t. sum_j T_ij = 1/N,  sum_i T_ij = z_j / B,  sum_j z_j = B,  z_L = 1

(a *balanced* p-median: every selected point absorbs exactly 1/B of the mass).

The solver is Generalized Benders Decomposition (GBD):

* sub-problem: the N x B transport to a trial set, solved exactly by POT's
  network simplex (:func:`ot.emd`); its row potentials ``u`` completed by a
  c-transform ``v_j = min_i (D_ij - u_i)`` over every candidate column give the
  Benders cut ``eta >= mean(u) + (1/B) sum_j v_j z_j``, tight at the trial set
  and valid for every selection (the dual feasible set does not depend on z);
* master (W-RMP): ``min eta`` over binaries with all cuts so far, a MILP solved
  by CBC through PuLP (default), HiGHS through ``highspy`` when installed, or
  the HiGHS bundled with SciPy (:func:`scipy.optimize.milp`);
* enhanced optimality cuts (the paper's EOC: a static lower bound, and, when
  the cost is a metric, the triangle and dual cuts of every evaluated set),
  a capacity lower-bound cut (each selected point must gather 1/B of mass from
  rows holding 1/N each), no-good cuts (a set is never proposed twice), optional
  Hamming-ball pruning (heuristic, as in the paper), warm starts (k-center,
  k-medoids and a transport-aware k-medoids, "Lloyd-OT") and a Lloyd-OT polish
  of every master solution.

The upper bound is the best selection evaluated, the lower bound is the
master's certified dual bound (never its incumbent value, which is not a bound
when the master is stopped at a gap). For large pools the binaries are
restricted to a candidate set (``max_candidates``); every pool point still
carries mass, so objective values stay exact, but the lower bound is then the
bound of the restricted problem (``restricted=True``).

Everything takes plain arrays, like POT: features ``X`` (n, d) and a metric, or
a precomputed cost matrix with ``metric="precomputed"``.

Examples
--------
>>> import numpy as np
>>> from skal.ot.mip import solve_gbd, coreset_cost
>>> X = np.random.default_rng(0).normal(size=(20, 3))
>>> res = solve_gbd(X, 3, metric="euclidean", time_limit=5, random_state=0)
>>> bool(res.lower_bound <= res.objective)
True
>>> bool(np.isclose(res.objective, coreset_cost(X, res.selection, metric="euclidean")))
True
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import numpy as np
import ot
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.utils import check_random_state

from ._memory import check_max_memory, check_memory

__all__ = [
    "METRICS",
    "SOLVERS",
    "CoreSetResult",
    "benders_cut",
    "coreset_cost",
    "kcenter_greedy",
    "kmedoids",
    "kmedoids_objective",
    "lloyd_ot",
    "solve_full_milp",
    "solve_gbd",
]

logger = logging.getLogger(__name__)

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
# The dense transport of the original implementation (N x |S| cost and plan in
# float64), kept only for benchmarks/bench_wasserstein_coreset.py --compare-dense.
_DENSE_TRANSPORT = False
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
        F = np.array(X, dtype=np.float64)
        if metric in ("cosine", "chord"):
            norms = np.linalg.norm(F, axis=1, keepdims=True)
            # a zero vector has no direction: it stays 0, i.e. at cosine distance 1
            # (chord distance 1) from everything but itself
            F = np.divide(F, norms, out=np.zeros_like(F), where=norms > 0)
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
        if self.metric == "cosine":
            out = np.clip(1.0 - G, 0.0, 2.0)
        else:
            out = self.sq[rsl][:, None] + self.sq[cols][None, :] - 2.0 * G
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


class _Problem:
    """One selection instance: cost oracle, budget, labeled points, candidates."""

    def __init__(self, cost, B, labeled, candidates):
        self.cost = cost
        self.N = cost.n
        self.B = int(B)
        self.labeled = np.asarray(labeled, dtype=np.int64)
        self.cand = np.asarray(candidates, dtype=np.int64)
        self.M = self.cand.size
        self.pos = np.full(self.N, -1, dtype=np.int64)
        self.pos[self.cand] = np.arange(self.M)
        self.is_labeled = np.zeros(self.N, dtype=bool)
        self.is_labeled[self.labeled] = True
        self._Dc = None
        if self.N * self.M <= _CACHE_ENTRIES:
            self._Dc = cost.block(None, self.cand)
        self.n_emd = 0
        self.emd_time = 0.0

    # -- cost access ------------------------------------------------------
    def cols(self, S):
        S = np.asarray(S, dtype=np.int64)
        if self._Dc is not None:
            p = self.pos[S]
            if np.all(p >= 0):
                return self._Dc[:, p]
        return self.cost.block(None, S)

    def cand_chunks(self):
        """Yield (slice of candidate positions, D[:, cand[slice]])."""
        if self._Dc is not None:
            yield slice(0, self.M), self._Dc
            return
        step = max(1, _BLOCK_ENTRIES // self.N)
        for start in range(0, self.M, step):
            sl = slice(start, min(self.M, start + step))
            yield sl, self.cost.block(None, self.cand[sl])

    def row_blocks(self, S):
        """Yield (row slice, D[rows][:, S]) blocks of at most ``_BLOCK_ENTRIES`` entries."""
        S = np.asarray(S, dtype=np.int64)
        if self._Dc is not None and np.all(self.pos[S] >= 0):
            p = self.pos[S]
            step = max(1, _BLOCK_ENTRIES // max(1, S.size))
            for start in range(0, self.N, step):
                rsl = slice(start, min(self.N, start + step))
                yield rsl, self._Dc[rsl, :][:, p]
            return
        for rsl in self.cost.row_chunks(S.size):
            yield rsl, self.cost.block(rsl, S)

    # -- transport --------------------------------------------------------
    def transport(self, S):
        """Exact W(S), row potentials u and the plan (sparse, at most N + |S| - 1 nonzeros)."""
        S = np.asarray(S, dtype=np.int64)
        t0 = time.perf_counter()
        if _DENSE_TRANSPORT:
            out = self._transport_dense(S)
        else:
            out = self._transport_sparse(S)
        self.emd_time += time.perf_counter() - t0
        self.n_emd += 1
        return out

    def _transport_dense(self, S):
        # the original implementation: N x |S| float64 cost, plan and simplex graph
        D = self.cols(S)
        a = np.full(self.N, 1.0 / self.N)
        b = np.full(S.size, 1.0 / S.size)
        # POT's default iteration cap (1e5) is far too small at N = 50k and only warns
        n_iter = int(max(1e7, 20 * self.N * S.size))
        G, log = ot.emd(a, b, D, numItermax=n_iter, log=True)
        if log.get("warning"):
            raise RuntimeError(f"ot.emd did not solve the transport exactly: {log['warning']}")
        W = float(np.sum(G * D))
        return W, np.asarray(log["u"], dtype=np.float64), sp.csr_matrix(G)

    def _transport_sparse(self, S):
        """The transport on a screened sparse graph, certified optimal on all N x |S| arcs.

        The N x |S| problem is a linear program; restricted to a subset of arcs
        (columns), its optimal potentials (u, v) are optimal for the full problem
        exactly when no arc has a negative reduced cost ``D_ij - u_i - v_j``
        (LP optimality: primal feasible, dual feasible, complementary slack).
        Start from each row's nearest centers plus a north-west-corner plan (so
        the restricted problem is always feasible), solve it with POT's sparse
        network simplex, price every arc in row blocks and add the violating
        ones until none is left. Memory is O(N k) instead of O(N |S|).
        """
        N, K = self.N, S.size
        a = np.full(N, 1.0 / N)
        b = np.full(K, 1.0 / K)
        k = min(K, _SCREEN_K)
        r_parts, c_parts, w_parts = [], [], []
        nearest = np.empty(N, dtype=np.int64)
        for rsl, blk in self.row_blocks(S):
            n = blk.shape[0]
            if k < K:
                part = np.argpartition(blk, k - 1, axis=1)[:, :k]
            else:
                part = np.broadcast_to(np.arange(K), (n, K))
            vals = np.take_along_axis(blk, part, axis=1)
            nearest[rsl] = part[np.arange(n), vals.argmin(axis=1)]
            r_parts.append(np.repeat(np.arange(rsl.start, rsl.stop), k))
            c_parts.append(part.ravel())
            w_parts.append(vals.ravel())
        # north-west corner over rows sorted by their nearest center: a feasible
        # plan (row p carries mass [p/N, (p+1)/N), column j [j/K, (j+1)/K))
        order = np.argsort(nearest, kind="stable")
        p = np.arange(N, dtype=np.int64)
        lo, hi = (p * K) // N, ((p + 1) * K - 1) // N
        cnt = hi - lo + 1
        rr = np.repeat(order, cnt)
        cc = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        r_parts.append(rr)
        c_parts.append(cc)
        w_parts.append(self.cost.pairs(rr, S[cc]))
        rows, cols, w = _unique_arcs(np.concatenate(r_parts), np.concatenate(c_parts),
                                     np.concatenate(w_parts), K)
        del r_parts, c_parts, w_parts, rr, cc, order, nearest
        add = _PRICE_ADD
        while True:
            G, log = ot.emd(a, b, sp.coo_array((w, (rows, cols)), shape=(N, K)),
                            numItermax=int(max(1e7, 50 * w.size)), log=True)
            if log.get("warning"):
                raise RuntimeError(
                    f"ot.emd did not solve the sparse transport exactly: {log['warning']}"
                )
            u = np.asarray(log["u"], dtype=np.float64)
            v = np.asarray(log["v"], dtype=np.float64)
            tol = _PRICE_TOL * max(float(w.max()), 1e-300)
            nr, nc, nw = [], [], []
            for rsl, blk in self.row_blocks(S):
                red = blk - u[rsl, None]
                red -= v[None, :]
                bad = np.flatnonzero(red.min(axis=1) < -tol)
                if bad.size == 0:
                    continue
                rb = red[bad]
                m = min(add, K)
                pick = np.argpartition(rb, m - 1, axis=1)[:, :m] if m < K else \
                    np.broadcast_to(np.arange(K), rb.shape)
                keep = np.take_along_axis(rb, pick, axis=1) < -tol
                ri = np.repeat(bad, m).reshape(bad.size, m)[keep]
                ci = pick[keep]
                nr.append(ri + rsl.start)
                nc.append(ci)
                nw.append(blk[ri, ci])
            if not nr:
                break
            rows, cols, w = _unique_arcs(np.r_[rows, np.concatenate(nr)],
                                         np.r_[cols, np.concatenate(nc)],
                                         np.r_[w, np.concatenate(nw)], K)
            add *= 2
        G = sp.coo_array(G)
        Gr, Gc, Gv = G.row, G.col, G.data
        nz = Gv > 0
        Gr, Gc, Gv = Gr[nz], Gc[nz], Gv[nz]
        W = float(Gv @ self.cost.pairs(Gr, S[Gc]))
        T = sp.csr_matrix((Gv, (Gr, Gc)), shape=(N, K))
        return W, u, T

    def c_transform(self, u):
        """v_c = min_i (D_ic - u_i) over the candidates: the largest dual-feasible v."""
        v = np.empty(self.M)
        for sl, blk in self.cand_chunks():
            v[sl] = (blk - u[:, None]).min(axis=0)
        return v

    def capacity_transform(self, u):
        """rho_j(u) = (1/N) * sum of the N/B smallest (D_ij - u_i) over i (fractional last).

        The best coefficient of z_j in a cut built from the row potentials u alone:
        column j, if selected, must gather 1/B of mass from rows giving at most 1/N
        each (see :func:`benders_cut`). With u = 0 it is the capacity bound.
        """
        N, q = self.N, self.N / self.B
        fq = min(N, math.floor(q + 1e-12))
        frac = q - fq if fq < N else 0.0
        out = np.empty(self.M)
        for sl, blk in self.cand_chunks():
            w = blk - u[:, None]
            if fq < N:
                part = np.partition(w, fq, axis=0)
                s = part[:fq].sum(axis=0)
                if frac > 1e-12:
                    s = s + frac * part[fq]
            else:
                s = w.sum(axis=0)
            out[sl] = s / N
        return out

    def _phi(self, u, Dsup, zs):
        """mean(u) + sum_j zs_j rho_j(u) over support columns ``Dsup``: the cut at z."""
        N, q = self.N, self.N / self.B
        fq = min(N, math.floor(q + 1e-12))
        frac = q - fq if fq < N else 0.0
        W = Dsup - u[:, None]
        if fq < N:
            part = np.partition(W, fq, axis=0)
            rho = part[:fq].sum(axis=0) + (frac * part[fq] if frac > 1e-12 else 0.0)
        else:
            rho = W.sum(axis=0)
        return float(u.mean() + (rho / N) @ zs)

    def strong_dual(self, zbar, u0, n_rounds=15):
        """Row potentials u (approximately) maximising the capacity cut at a fractional z.

        Block-coordinate ascent on the dual of the strong LP relaxation
        (plan x_ij <= z_j / N): v_j = the ceil(N/B)-th smallest ``D_ij - u_i``, then
        u_i = the z-weighted "fractional minimum" of ``D_ij - v_j`` (where the sorted
        cumulative z reaches 1). Each step cannot decrease the dual value. Any u
        gives a valid cut; this only picks a strong one at ``zbar``. Small
        instances get the exact LP dual instead.
        """
        supp = np.flatnonzero(zbar > 1e-9)
        zs = zbar[supp]
        cols = self.cand[supp]
        N, q = self.N, self.N / self.B
        # D[:, support] is kept only when small; else it is recomputed in blocks
        # each round (the support of an LP point can hold every candidate)
        Dsup = self.cols(cols) if N * supp.size <= _CACHE_ENTRIES else None
        if N * supp.size <= _EXACT_LP_ENTRIES:
            u = self._strong_dual_lp(Dsup, zs)
            if u is not None:
                return u, self._phi(u, Dsup, zs)
        fq = min(N, math.floor(q + 1e-12))
        frac = q - fq if fq < N else 0.0
        kq = min(N - 1, max(0, math.ceil(q - 1e-12) - 1))
        kth = sorted({kq, min(fq, N - 1)})

        def col_blocks():
            if Dsup is not None:
                yield slice(0, supp.size), Dsup
                return
            step = max(1, _BLOCK_ENTRIES // N)
            for start in range(0, supp.size, step):
                sl = slice(start, min(supp.size, start + step))
                yield sl, self.cols(cols[sl])

        def value_and_v(u):
            # one partition gives both the cut value at z (rho) and the next v
            rho = np.empty(supp.size)
            v = np.empty(supp.size)
            for sl, blk in col_blocks():
                part = np.partition(blk - u[:, None], kth, axis=0)
                r = part[:fq].sum(axis=0)
                if frac > 1e-12:
                    r = r + frac * part[fq]
                rho[sl], v[sl] = r, part[kq]
            return float(u.mean() + (rho / N) @ zs), v

        def row_min(v):
            if Dsup is not None:
                return _fractional_min(Dsup - v[None, :], zs)
            out = np.empty(N)
            for rsl, blk in self.row_blocks(cols):
                out[rsl] = _fractional_min(blk - v[None, :], zs)
            return out

        u = np.zeros(N) if u0 is None else np.asarray(u0, dtype=np.float64)
        best_val, v = value_and_v(u)
        best_u = u
        for _ in range(n_rounds):
            u = row_min(v)
            val, v = value_and_v(u)
            if val <= best_val + 1e-7 * max(1e-12, abs(best_val)):
                if val > best_val:
                    best_u, best_val = u, val
                break
            best_u, best_val = u, val
        return best_u, best_val

    def _strong_dual_lp(self, Dsup, zs):
        """Exact row duals of the strong LP at z (support columns only), or None."""
        from scipy.optimize import linprog

        N, s = Dsup.shape
        q = N / self.B
        nx = N * s
        ii, jj = np.divmod(np.arange(nx), s)
        A_eq = sp.vstack([
            sp.csr_matrix((np.ones(nx), (ii, np.arange(nx))), shape=(N, nx)),
            sp.csr_matrix((np.ones(nx), (jj, np.arange(nx))), shape=(s, nx)),
        ]).tocsr()
        b_eq = np.r_[np.ones(N), q * zs]
        # the column masses must add up to N exactly for the LP to be feasible
        b_eq[N:] *= N / b_eq[N:].sum()
        res = linprog(Dsup.ravel() / N, A_eq=A_eq, b_eq=b_eq,
                      bounds=np.c_[np.zeros(nx), zs[jj]], method="highs",
                      options={"time_limit": 10.0})
        if res.status != 0:
            return None
        return N * np.asarray(res.eqlin.marginals[:N], dtype=np.float64)

    def column_stats(self):
        """Per candidate: nearest other point m, farthest point Mx, capacity bound rho."""
        N = self.N
        m = np.empty(self.M)
        Mx = np.empty(self.M)
        for sl, blk in self.cand_chunks():
            Mx[sl] = blk.max(axis=0)
            blk = np.array(blk, copy=True)
            idx = self.cand[sl]
            blk[idx, np.arange(idx.size)] = np.inf
            m[sl] = blk.min(axis=0) if N > 1 else 0.0
        rho = self.capacity_transform(np.zeros(N))
        return m, Mx, rho

    # -- heuristic moves -------------------------------------------------
    def _plan_costs(self, T, TF, pos):
        """(f, len(pos)) block of ``T^T D[:, cand[pos]]``; ``TF = T^T F`` for cosine."""
        if TF is not None:
            # 1 - x.y is linear in y: no N x M block needed
            F = self.cost.F
            return np.asarray(T.sum(0)).ravel()[:, None] - TF @ F[self.cand[pos]].T
        TT = T.T.tocsr()
        out = np.empty((T.shape[1], pos.size))
        step = max(1, _BLOCK_ENTRIES // self.N)
        for start in range(0, pos.size, step):
            out[:, start: start + step] = TT @ self.cols(self.cand[pos[start: start + step]])
        return out

    def move_centers(self, S, T):
        """Move every free center to the candidate minimising its plan-weighted cost.

        With ``T`` fixed, the new set admits a transport costing at most the old one,
        so W never increases; distinctness is kept by a linear assignment.
        """
        S = np.asarray(S, dtype=np.int64)
        free = np.flatnonzero(~self.is_labeled[S])
        if free.size == 0:
            return S.copy()
        # only the free centers' columns of the plan: with thousands of labeled
        # centers a (|S|, M) matrix would be gigabytes, and its labeled rows are unused
        Tf = sp.csr_matrix(T)[:, free]
        TF = (Tf.T @ self.cost.F) if self.cost.metric == "cosine" else None
        allowed = np.flatnonzero(~self.is_labeled[self.cand])
        f = free.size
        if allowed.size > 4 * f + 64:
            # an optimal distinct assignment almost surely uses only columns among
            # each center's few best; keeping the current ones keeps W monotone.
            # The (f, M) matrix is scanned in column blocks (M can be the whole pool).
            top = min(allowed.size - 1, 20) + 1
            per = _BLOCK_ENTRIES // max(f, 1 if TF is not None else self.N)
            step = max(top, per)
            best_v = np.empty((f, 0))
            best_p = np.empty((f, 0), dtype=np.int64)
            for start in range(0, allowed.size, step):
                pos = allowed[start: start + step]
                vals = np.hstack([best_v, self._plan_costs(Tf, TF, pos)])
                idx = np.hstack([best_p, np.broadcast_to(pos, (f, pos.size))])
                if vals.shape[1] > top:
                    sel = np.argpartition(vals, top - 1, axis=1)[:, :top]
                    vals = np.take_along_axis(vals, sel, axis=1)
                    idx = np.take_along_axis(idx, sel, axis=1)
                best_v, best_p = vals, idx
            keep = np.union1d(best_p.ravel(), self.pos[S[free]])
            allowed = keep[~self.is_labeled[self.cand[keep]]]
        C = self._plan_costs(Tf, TF, allowed)
        r, c = linear_sum_assignment(C)
        newS = S.copy()
        newS[free[r]] = self.cand[allowed[c]]
        return newS

    def nearest(self, S):
        """Index (into S) of the nearest center of every pool point, and the distance."""
        S = np.asarray(S, dtype=np.int64)
        arg = np.empty(self.N, dtype=np.int64)
        dist = np.empty(self.N)
        if self._Dc is not None and np.all(self.pos[S] >= 0):
            blk = self._Dc[:, self.pos[S]]
            arg[:] = blk.argmin(1)
            dist[:] = blk[np.arange(self.N), arg]
            return arg, dist
        for rsl in self.cost.row_chunks(S.size):
            blk = self.cost.block(rsl, S)
            a = blk.argmin(1)
            arg[rsl] = a
            dist[rsl] = blk[np.arange(a.size), a]
        return arg, dist


def _unique_arcs(rows, cols, w, n_cols):
    """Drop repeated (row, col) arcs: a COO cost passed to POT must not hold duplicates."""
    key = rows.astype(np.int64) * n_cols + cols
    _, first = np.unique(key, return_index=True)
    return rows[first].astype(np.int64), cols[first].astype(np.int64), w[first]


# Bytes per arc of the sparse transport: our int64/float64 arc arrays and their
# de-duplication, POT's copies and its network-simplex graph (measured: ~290 MB
# extra RSS for a 40K x 1500 transport, ~1M arcs, with its cost blocks).
_ARC_BYTES = 200
# Bytes per (cut, candidate) coefficient of the master: the numpy cut, its row
# and the solver's copy (PuLP's expressions for CBC are far the largest).
_CUT_BYTES = {"cbc": 200, "highs": 50, "scipy": 60}
# Cuts held for the estimate: a time-limited run's count is unknown up front,
# this is a floor that already rules out an unrestricted master on a large pool.
_CUTS_FLOOR = 200


def _base_bytes(N, d):
    """Features (a float64 copy and the normalised one), cost blocks, per-point vectors."""
    return 16.0 * N * d + 6 * 8.0 * _BLOCK_ENTRIES + 40 * 8.0 * N


def _transport_bytes(N, K):
    if _DENSE_TRANSPORT:
        # N x K cost, plan and product in float64, plus POT's full bipartite graph
        return N * K * (3 * 8.0 + 40.0)
    return N * min(K, _SCREEN_K + 3 * _PRICE_ADD) * float(_ARC_BYTES)


def _gbd_bytes(N, d, B, n_new, M, solver):
    """Estimated peak bytes of :func:`solve_gbd` (see the constants above)."""
    cache = 3 * 8.0 * N * M if N * M <= _CACHE_ENTRIES else 0.0
    order = min(8.0 * N * n_new, _ORDER_BYTES)
    master = _CUTS_FLOOR * M * float(_CUT_BYTES[solver]) + 16.0 * B * M
    return _base_bytes(N, d) + cache + _transport_bytes(N, B) + order + master


def _check_pool_memory(X, n_select, labeled, metric, max_memory, M=None, solver=None,
                       name="solve_gbd"):
    """Raise before allocating when the problem will not fit (sizes only, no copies)."""
    max_memory = check_max_memory(max_memory)
    shape = np.shape(X)
    if len(shape) != 2 or not isinstance(n_select, (int, np.integer)):
        return  # _setup raises the input error
    N = int(shape[0])
    d = N if metric == "precomputed" else int(shape[1])
    lab = np.asarray(labeled if labeled is not None else [])
    n_lab = int(lab.sum()) if lab.dtype == bool else int(lab.size)
    B = n_lab + int(n_select)
    if solver is None:
        need = _base_bytes(N, d) + _transport_bytes(N, B) + 8.0 * N * d
        advice = "subsample the pool or lower its embedding dimension, or raise max_memory"
    else:
        need = _gbd_bytes(N, d, B, int(n_select), N if M is None else min(M, N), solver)
        advice = ("lower max_candidates (None keeps every pool point as a binary), "
                  "subsample the pool or lower its embedding dimension, or raise max_memory")
    check_memory(need, max_memory,
                 f"{name} on N={N} points of d={d} with {B} centers", advice)


# ---------------------------------------------------------------------------
# heuristics
# ---------------------------------------------------------------------------


def _fractional_min(C, w):
    """Per row of C: the value where the weights ``w`` of its sorted entries first sum to 1."""
    n, s = C.shape
    k = min(s, 16)
    # the running weight reaches 1 within a row's few smallest entries almost always:
    # sort only those, and fall back to a full sort for the rare other rows
    part = np.argpartition(C, k - 1, axis=1)[:, :k] if k < s else np.tile(np.arange(s), (n, 1))
    rows = np.arange(n)[:, None]
    order = np.take_along_axis(part, np.argsort(C[rows, part], axis=1, kind="stable"), axis=1)
    cum = np.cumsum(w[order], axis=1)
    hit = cum[:, -1] >= 1.0 - 1e-12
    first = (cum >= 1.0 - 1e-12).argmax(axis=1)
    out = C[np.arange(n), order[np.arange(n), first]]
    if not hit.all():
        miss = np.flatnonzero(~hit)
        full = np.argsort(C[miss], axis=1, kind="stable")
        cf = np.cumsum(w[full], axis=1)
        f = (cf >= 1.0 - 1e-12).argmax(axis=1)
        out[miss] = C[miss[:, None], full][np.arange(miss.size), f]
    return out


def _kcenter(prob, allowed=None):
    """Greedy k-center (farthest-first) from the labeled set, over all pool rows."""
    N, B = prob.N, prob.B
    S = list(prob.labeled)
    mind = np.full(N, np.inf)
    if S:
        mind = prob.nearest(np.array(S))[1]
    else:
        # most central point: nearest the mean (deterministic, spec 6.10)
        c = prob.cost
        if c.metric == "precomputed":
            first = int(np.argmin(c.D.sum(0)))
        else:
            mu = c.F.mean(0)
            first = int(np.argmin(((c.F - mu) ** 2).sum(1)))
        if allowed is not None and not allowed[first]:
            first = int(np.flatnonzero(allowed)[0])
        S.append(first)
        mind = prob.cols([first])[:, 0]
    chosen = np.zeros(N, dtype=bool)
    chosen[S] = True
    while len(S) < B:
        score = np.where(chosen, -np.inf, mind)
        if allowed is not None:
            score = np.where(allowed, score, -np.inf)
        j = int(np.argmax(score))
        S.append(j)
        chosen[j] = True
        mind = np.minimum(mind, prob.cols([j])[:, 0])
    return np.array(S, dtype=np.int64)


def _past(deadline):
    return deadline is not None and time.perf_counter() >= deadline


def _kmedoids(prob, S0, max_iter=50, deadline=None):
    """Alternating (Voronoi) k-medoids over the candidates, labeled centers fixed."""
    S = np.asarray(S0, dtype=np.int64)
    best, best_obj = S, np.inf
    N = prob.N
    for _ in range(max_iter):
        if _past(deadline) and best_obj < np.inf:
            break
        arg, dist = prob.nearest(S)
        obj = dist.mean()
        if obj >= best_obj - 1e-12 * max(1.0, abs(best_obj)):
            break
        best, best_obj = S, obj
        T = sp.csr_matrix((np.full(N, 1.0 / N), (np.arange(N), arg)), shape=(N, S.size))
        newS = prob.move_centers(S, T)
        if set(newS.tolist()) == set(S.tolist()):
            break
        S = newS
    return best


def _lloyd_ot(prob, S0, evaluate, max_iter=50, deadline=None):
    """Transport-aware k-medoids: move centers to plan-weighted medoids until W stalls."""
    S = np.asarray(S0, dtype=np.int64)
    W, T = evaluate(S, want_plan=True)
    best, best_W = S, W
    for _ in range(max_iter):
        if _past(deadline):
            break
        newS = prob.move_centers(S, T)
        if set(newS.tolist()) == set(S.tolist()):
            break
        W, T = evaluate(newS, want_plan=True)
        if W >= best_W - 1e-12 * max(1.0, best_W):
            break
        best, best_W, S = newS, W, newS
    return best, best_W


# ---------------------------------------------------------------------------
# master problem backends
# ---------------------------------------------------------------------------


@dataclass
class _MasterResult:
    z: np.ndarray | None  # positions (into candidates) of the selected points
    eta: float | None  # value of the master's incumbent (unscaled)
    bound: float | None  # certified dual bound (unscaled); inf when infeasible
    status: str  # optimal | gap | time_limit | infeasible | unknown


class _MasterBase:
    """min eta s.t. rows over (z in {0,1}^M, eta >= 0); eta scaled by 1/scale."""

    def __init__(self, M, B, fixed, scale):
        self.M, self.B, self.scale = M, B, float(scale)
        self.fixed = np.asarray(fixed, dtype=np.int64)
        self.rows = []  # (idx, val, lo, hi) over columns 0..M-1 = z, M = eta
        self.cut_coef = []  # unscaled optimality cuts, to price warm starts
        self.cut_const = []
        self.cutoff = np.inf

    def model_value(self, z):
        """max over the cuts at the 0/1 vectors ``z`` (rows): the master's eta there."""
        if not self.cut_coef:
            return np.zeros(np.atleast_2d(z).shape[0])
        C = np.asarray(self.cut_coef)
        return np.maximum(0.0, (np.atleast_2d(z) @ C.T + np.asarray(self.cut_const)).max(1))

    def set_cutoff(self, value):
        """eta <= value: only selections whose cuts allow beating the incumbent."""
        self.cutoff = float(value)
        self._set_eta_ub(self.cutoff / self.scale + 2 * _CUT_SAFETY)

    def _scaled_cut(self, coef, const):
        # const + coef.z - eta <= 0, loosened by a hair (see _CUT_SAFETY)
        coef = np.asarray(coef, dtype=np.float64) / self.scale
        const = const / self.scale - _CUT_SAFETY
        nz = np.flatnonzero(coef)
        idx = np.append(nz, self.M)
        val = np.append(coef[nz], -1.0)
        return idx, val, -np.inf, -const

    def add_cut(self, coef, const):
        self.cut_coef.append(np.asarray(coef, dtype=np.float64))
        self.cut_const.append(float(const))
        self._store(*self._scaled_cut(coef, const))

    def add_max_common(self, positions, max_common):
        """sum_{j in positions} z_j <= max_common (no-good / prune ball)."""
        p = np.asarray(positions, dtype=np.int64)
        self._store(p, np.ones(p.size), -np.inf, float(max_common))

    def add_min_common(self, positions, min_common):
        """sum_{j in positions} z_j >= min_common (near ball)."""
        p = np.asarray(positions, dtype=np.int64)
        self._store(p, np.ones(p.size), float(min_common), np.inf)

    def _store(self, idx, val, lo, hi):
        self.rows.append((idx, val, lo, hi))
        self._add_row(idx, val, lo, hi)

    def _add_row(self, idx, val, lo, hi):
        """Backend hook: pass a new row to the solver's model."""

    def _set_eta_ub(self, value):
        """Backend hook: the cutoff on eta (scaled)."""

    def _matrix(self):
        """All rows (cardinality first) as CSR over (z, eta), with bounds."""
        M = self.M
        rows = [(np.arange(M), np.ones(M), self.B, self.B)] + self.rows
        indptr = np.cumsum([0] + [r[0].size for r in rows])
        A = sp.csr_matrix(
            (np.concatenate([r[1] for r in rows]), np.concatenate([r[0] for r in rows]), indptr),
            shape=(len(rows), M + 1),
        )
        lo = np.array([r[2] for r in rows], dtype=np.float64)
        hi = np.array([r[3] for r in rows], dtype=np.float64)
        lb = np.zeros(M + 1)
        lb[self.fixed] = 1.0
        ub = np.ones(M + 1)
        ub[M] = self.cutoff / self.scale + 2 * _CUT_SAFETY if np.isfinite(self.cutoff) else np.inf
        return A, lo, hi, lb, ub

    def solve_lp(self, time_limit):
        """LP relaxation (SciPy's HiGHS): fractional z and its exact bound (unscaled).

        Returns (None, inf) when infeasible, (None, None) when not solved.
        """
        from scipy.optimize import linprog

        A, lo, hi, lb, ub = self._matrix()
        c = np.zeros(self.M + 1)
        c[self.M] = 1.0
        fin_hi, fin_lo = np.isfinite(hi), np.isfinite(lo)
        eq = fin_hi & fin_lo & (lo == hi)
        le = fin_hi & ~eq
        ge = fin_lo & ~eq
        A_ub = sp.vstack([A[le], -A[ge]]).tocsr()
        b_ub = np.r_[hi[le], -lo[ge]]
        res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A[eq], b_eq=hi[eq],
                      bounds=np.c_[lb, ub], method="highs",
                      options={"time_limit": max(0.1, float(time_limit))})
        if res.status == 2:
            return None, np.inf
        if res.status != 0 or res.x is None:
            return None, None
        # the LP optimum is exact up to HiGHS' tolerances: loosen a hair
        return res.x[: self.M], float(res.fun) * self.scale - 1e-9 * self.scale

    def _finish(self, z, eta, bound, status):
        zpos = None if z is None else np.flatnonzero(np.asarray(z) > 0.5)
        if zpos is not None and zpos.size != self.B:
            zpos = None
        eta = None if eta is None else eta * self.scale
        if bound is not None:
            bound = bound * self.scale if np.isfinite(bound) else bound
        return _MasterResult(zpos, eta, bound, status)


class _PulpCbcMaster(_MasterBase):
    """CBC through PuLP; the model is kept and grown, CBC re-reads it each solve.

    PuLP's CBC command line returns no dual bound, so it is parsed from CBC's log
    ("Lower bound:" is printed rounded, hence loosened by half a printed digit).
    """

    def __init__(self, M, B, fixed, scale):
        super().__init__(M, B, fixed, scale)
        import pulp

        self.pulp = pulp
        self.prob = pulp.LpProblem("w_rmp", pulp.LpMinimize)
        self.z = [_pulp_var(self.prob, f"z{j}", 0, 1, "Binary") for j in range(M)]
        self.eta = _pulp_var(self.prob, "eta", 0, None, "Continuous")
        self.vars = self.z + [self.eta]
        self.prob += self.eta
        self.prob += pulp.lpSum(self.z) == B, "card"
        for j in self.fixed:
            self.z[j].lowBound = 1
        self._n = 0

    def _set_eta_ub(self, value):
        self.eta.upBound = value if np.isfinite(value) else None

    def _add_row(self, idx, val, lo, hi):
        pulp = self.pulp
        expr = pulp.LpAffineExpression([(self.vars[i], float(v)) for i, v in zip(idx, val)])
        self._n += 1
        if np.isfinite(lo) and np.isfinite(hi):
            raise ValueError("ranged rows are not used")
        if np.isfinite(hi):
            self.prob += pulp.LpConstraint(expr, pulp.LpConstraintLE, f"r{self._n}", float(hi))
        else:
            self.prob += pulp.LpConstraint(expr, pulp.LpConstraintGE, f"r{self._n}", float(lo))

    def solve(self, time_limit, gap, warm=None):
        pulp = self.pulp
        warm_ok = warm is not None
        if warm_ok:
            zw, etaw = warm
            for j, var in enumerate(self.z):
                var.setInitialValue(float(zw[j]))
            self.eta.setInitialValue(etaw / self.scale)
        fd, logpath = tempfile.mkstemp(suffix=".log", prefix="skal_cbc_")
        os.close(fd)
        try:
            solver = _cbc_solver(
                msg=False,
                timeLimit=max(0.2, float(time_limit)),
                gapRel=gap if gap > 0 else None,
                warmStart=warm_ok,
                logPath=logpath,
            )
            self.prob.solve(solver)
            with open(logpath, errors="replace") as fh:
                log = fh.read()
        finally:
            try:
                os.remove(logpath)
            except OSError:
                pass
        result = re.search(r"Result - (.*)", log)
        result = result.group(1).strip() if result else ""
        if "infeasible" in result.lower() or self.prob.status == pulp.LpStatusInfeasible:
            return _MasterResult(None, None, np.inf, "infeasible")
        has_sol = self.prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
        z = np.array([v.value() or 0.0 for v in self.z]) if has_sol else None
        eta = self.eta.value() if has_sol else None
        bound = None
        m = re.search(r"Lower bound:\s*([-+0-9.eE]+)", log)
        if m:
            bound = _printed_lower(m.group(1))
        if result.startswith("Optimal solution found"):
            if "gap" in result:
                status = "gap"
                if eta is not None:
                    alt = (1.0 - gap) * eta - 1e-9
                    bound = alt if bound is None else max(bound, alt)
            else:
                status = "optimal"
                if eta is not None:
                    bound = eta - 1e-9 * max(1.0, abs(eta))
        elif "time" in result.lower():
            status = "time_limit"
        else:
            status = "unknown"
        return self._finish(z, eta, bound, status)


def _pulp_var(prob, name, lo, hi, cat):
    # PuLP >= 3.3 deprecates free-standing LpVariable(...) in favour of add_variable
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, lo, hi, cat=cat)
    import pulp

    return pulp.LpVariable(name, lo, hi, cat=cat)


def _cbc_solver(**kwargs):
    """CBC through PuLP: a system CBC (COIN_CMD) if found, else PuLP's bundled one."""
    import warnings

    import pulp

    solver = pulp.COIN_CMD(**kwargs)
    if solver.available():
        return solver
    with warnings.catch_warnings():
        # PuLP 3.3 deprecates its bundled CBC (removed in 4.0) but it is what ships
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(**kwargs)


def _printed_lower(text):
    """A number printed rounded by CBC, lowered by half its last digit (stays a bound)."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    exp = d.as_tuple().exponent
    half = 0.5 * 10.0 ** exp if isinstance(exp, int) else 0.0
    return float(d) - half - 1e-12


class _HighspyMaster(_MasterBase):
    """HiGHS through highspy: rows added incrementally, warm start, true dual bound."""

    def __init__(self, M, B, fixed, scale):
        super().__init__(M, B, fixed, scale)
        import highspy

        self.hs = highspy
        h = highspy.Highs()
        h.silent()
        inf = highspy.kHighsInf
        lb = np.zeros(M + 1)
        ub = np.ones(M + 1)
        ub[M] = inf
        lb[self.fixed] = 1.0
        h.addVars(M + 1, lb, ub)
        h.changeColsIntegrality(
            M, np.arange(M, dtype=np.int32), np.full(M, highspy.HighsVarType.kInteger)
        )
        h.changeColCost(M, 1.0)
        h.addRow(B, B, M, np.arange(M, dtype=np.int32), np.ones(M))
        self.h = h
        self.inf = inf

    def _set_eta_ub(self, value):
        self.h.changeColBounds(self.M, 0.0, value if np.isfinite(value) else self.inf)

    def _add_row(self, idx, val, lo, hi):
        lo = -self.inf if not np.isfinite(lo) else lo
        hi = self.inf if not np.isfinite(hi) else hi
        self.h.addRow(float(lo), float(hi), len(idx), np.asarray(idx, dtype=np.int32),
                      np.asarray(val, dtype=np.float64))

    def solve(self, time_limit, gap, warm=None):
        hs, h = self.hs, self.h
        h.setOptionValue("time_limit", max(0.1, float(time_limit)))
        h.setOptionValue("mip_rel_gap", float(gap))
        if warm is not None:
            sol = hs.HighsSolution()
            zw, etaw = warm
            sol.col_value = list(np.append(np.asarray(zw, dtype=np.float64), etaw / self.scale))
            sol.value_valid = True
            h.setSolution(sol)
        h.run()
        st = h.getModelStatus()
        info = h.getInfo()
        if st == hs.HighsModelStatus.kInfeasible:
            return _MasterResult(None, None, np.inf, "infeasible")
        has_sol = info.primal_solution_status == 2
        z = eta = None
        if has_sol:
            x = np.asarray(h.getSolution().col_value)
            z, eta = x[: self.M], float(x[self.M])
        bound = float(info.mip_dual_bound)
        if not np.isfinite(bound):
            bound = None
        if st == hs.HighsModelStatus.kOptimal:
            status = "optimal" if info.mip_gap <= 1e-9 else "gap"
        elif st == hs.HighsModelStatus.kTimeLimit:
            status = "time_limit"
        else:
            status = "unknown"
        return self._finish(z, eta, bound, status)


class _ScipyMaster(_MasterBase):
    """The HiGHS bundled with SciPy (:func:`scipy.optimize.milp`); no warm start."""

    def solve(self, time_limit, gap, warm=None):
        from scipy.optimize import Bounds, LinearConstraint, milp

        M = self.M
        A, lo, hi, lb, ub = self._matrix()
        c = np.zeros(M + 1)
        c[M] = 1.0
        integ = np.ones(M + 1)
        integ[M] = 0
        res = milp(
            c,
            integrality=integ,
            bounds=Bounds(lb, ub),
            constraints=LinearConstraint(A, lo, hi),
            options={"time_limit": max(0.1, float(time_limit)), "mip_rel_gap": float(gap),
                     "disp": False},
        )
        if res.status == 2:
            return _MasterResult(None, None, np.inf, "infeasible")
        z = eta = None
        if res.x is not None:
            z, eta = res.x[:M], float(res.x[M])
        bound = getattr(res, "mip_dual_bound", None)
        if bound is not None and not np.isfinite(bound):
            bound = None
        if res.status == 0:
            gap_ = getattr(res, "mip_gap", 0.0) or 0.0
            status = "optimal" if gap_ <= 1e-9 else "gap"
            if bound is None and eta is not None:
                bound = (1.0 - gap) * eta
        elif res.status == 1:
            status = "time_limit"
        else:
            status = "unknown"
        return self._finish(z, eta, bound, status)


def _make_master(solver, M, B, fixed, scale):
    if solver == "cbc":
        return _PulpCbcMaster(M, B, fixed, scale)
    if solver == "highs":
        try:
            import highspy  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "solver='highs' needs the highspy package (pip install highspy); "
                "solver='scipy' uses the HiGHS bundled with SciPy instead."
            ) from exc
        return _HighspyMaster(M, B, fixed, scale)
    if solver == "scipy":
        return _ScipyMaster(M, B, fixed, scale)
    raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


@dataclass
class CoreSetResult:
    """Outcome of :func:`solve_gbd`.

    Attributes
    ----------
    selection : ndarray of int
        All ``B`` selected indices (labeled ones included), sorted.
    selected : ndarray of int
        The new indices (``selection`` minus the labeled ones), best first: each
        prefix greedily minimises the nearest-center cost.
    objective : float
        W of the selection (the upper bound).
    lower_bound : float or None
        Certified lower bound on the optimum (of the candidate-restricted problem
        when ``restricted``); None when pruning made the master bound invalid and
        no static bound was computed.
    gap : float or None
        ``(objective - lower_bound) / objective`` (0 when both are 0).
    history : list of dict
        One row per evaluation or master solve: ``time``, ``upper``, ``lower``,
        ``value`` (W of the set just evaluated, None for master rows),
        ``event``, ``master_time``, ``n_cuts``.
    n_iter : int
        Master solves.
    status : str
        ``"optimal"``, ``"gap"`` (tolerance reached), ``"time_limit"``, ``"max_iter"``.
    restricted : bool
        True when the binaries were restricted to a candidate subset.
    candidates : ndarray of int
    heuristics : dict
        Objective W of every warm start evaluated, by name.
    cuts : tuple or None
        ``(const, coef)`` of every optimality cut when ``keep_cuts=True``:
        ``W(z) >= const[t] + coef[t] @ z[candidates]``.
    """

    selection: np.ndarray
    selected: np.ndarray
    objective: float
    lower_bound: float | None
    gap: float | None
    history: list = field(default_factory=list)
    n_iter: int = 0
    status: str = ""
    restricted: bool = False
    candidates: np.ndarray | None = None
    heuristics: dict = field(default_factory=dict)
    cuts: tuple | None = None


def _rel_gap(ub, lb):
    if lb is None:
        return None
    if ub <= 0:
        return 0.0
    return max(0.0, (ub - lb) / ub)


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------


def _setup(X, n_select, labeled, metric, candidates=None):
    metric = _check_metric(metric)
    X = _check_features(X, metric)
    n = X.shape[0]
    lab = _check_labeled(labeled, n)
    n_select = _check_n_select(n_select, n, lab.size)
    cost = _Cost(X, metric)
    cand = np.arange(n) if candidates is None else candidates
    return cost, lab, n_select, cand


def coreset_cost(X, selection, metric="cosine", max_memory=None):
    """Discrete W1 between uniform on the pool ``X`` and uniform on ``X[selection]``.

    Parameters
    ----------
    X : array-like of shape (n, d), or (n, n) with ``metric="precomputed"``
    selection : array-like of int
        Distinct indices into ``X``.
    metric : {"cosine", "euclidean", "chord", "precomputed"}
    max_memory : float or None, default=None
        Memory limit in GiB (None: the memory available now), checked before
        the transport is built. The transport is solved on a sparse graph
        (O(N) arcs, certified optimal against all N x ``|S|`` arcs).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> round(coreset_cost(X, [1, 2], metric="euclidean"), 6)
    0.5
    """
    metric = _check_metric(metric)
    X = _check_features(X, metric)
    S = _check_labeled(selection, X.shape[0])
    if S.size == 0:
        raise ValueError("selection must not be empty.")
    _check_pool_memory(X, S.size, None, metric, max_memory, name="coreset_cost")
    prob = _Problem(_Cost(X, metric), S.size, np.zeros(0, dtype=np.int64), S)
    return prob.transport(S)[0]


def kmedoids_objective(X, selection, metric="cosine"):
    """Unbalanced relaxation of :func:`coreset_cost`: ``mean_i min_{j in S} D_ij``."""
    metric = _check_metric(metric)
    X = _check_features(X, metric)
    S = _check_labeled(selection, X.shape[0])
    if S.size == 0:
        raise ValueError("selection must not be empty.")
    prob = _Problem(_Cost(X, metric), S.size, np.zeros(0, dtype=np.int64), S)
    return float(prob.nearest(S)[1].mean())


def benders_cut(X, selection, metric="cosine", candidates=None, kind="capacity"):
    """Benders cut of the selection problem at ``selection``.

    Solves the transport to ``selection`` (row potentials ``u``). The cut
    ``W(z) >= const + coef @ z`` holds for every selection with ``|z| = B``
    (``B = len(selection)``) and is tight at ``selection``; ``const = mean(u)``.

    * ``kind="classic"`` (the paper's GBD cut): ``coef_j = v_j / B`` with the
      c-transform ``v_j = min_i (D_ij - u_i)``, the largest ``v`` keeping
      ``(u, v)`` dual-feasible, so the cut is the LP dual objective.
    * ``kind="capacity"``: ``coef_j = (1/N) * [sum of the q smallest
      (D_ij - u_i) over i]``, ``q = N/B`` (fractional last term). Validity: keep
      the support constraint "mass only on selected columns" out of the
      Lagrangian; for any ``v`` the bound
      ``(1/N) sum_i min_{j in S} (D_ij - v_j) + (1/B) sum_{j in S} v_j`` is <= W,
      and ``min_{j in S} c_ij >= u_i - sum_{j in S} (u_i - c_ij)^+`` linearises
      it; maximising each coefficient over ``v_j`` gives the formula. It
      dominates the classic coefficients and, with ``u = 0``, is the capacity
      lower bound.

    Returns
    -------
    const : float
    coef : ndarray of shape (n_candidates,)
        Over ``candidates`` (default: all points).
    value : float
        W(selection).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(30, 3))
    >>> const, coef, w = benders_cut(X, [0, 1, 2], metric="euclidean")
    >>> bool(np.isclose(const + coef[[0, 1, 2]].sum(), w))
    True
    """
    metric = _check_metric(metric)
    X = _check_features(X, metric)
    S = _check_labeled(selection, X.shape[0])
    if S.size == 0:
        raise ValueError("selection must not be empty.")
    cand = np.arange(X.shape[0]) if candidates is None else _check_labeled(candidates, X.shape[0])
    prob = _Problem(_Cost(X, metric), S.size, np.zeros(0, dtype=np.int64), cand)
    if kind not in CUTS:
        raise ValueError(f"kind must be one of {CUTS}, got {kind!r}.")
    W, u, _ = prob.transport(S)
    if kind == "classic":
        coef = prob.c_transform(u) / S.size
    else:
        coef = prob.capacity_transform(u)
    return float(u.mean()), coef, W


def kcenter_greedy(X, n_select, labeled=None, metric="cosine"):
    """Greedy k-center (Sener & Savarese): farthest-first from the labeled set.

    Starts from the point nearest the mean when nothing is labeled.
    Returns the ``n_select`` new indices in selection order.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.1], [5.0], [10.0]])
    >>> kcenter_greedy(X, 2, labeled=[0], metric="euclidean").tolist()
    [3, 2]
    """
    cost, lab, k, _ = _setup(X, n_select, labeled, metric)
    prob = _Problem(cost, lab.size + k, lab, np.zeros(0, dtype=np.int64))
    return _kcenter(prob)[lab.size:]


def kmedoids(X, n_select, labeled=None, metric="cosine", init=None, max_iter=50,
             max_memory=None):
    """Alternating (Voronoi) k-medoids with the labeled points fixed as medoids.

    The k-medoids baseline of the paper: minimises the unbalanced relaxation
    ``mean_i min_j D_ij`` of the core-set objective. Initialised by
    :func:`kcenter_greedy` unless ``init`` (new indices) is given. Memory is
    O(N d): distances are computed in blocks, never N x N. ``max_memory``
    (GiB, None: the memory available now) is checked first.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.r_[np.zeros((5, 1)), np.full((5, 1), 10.0)] + np.arange(10)[:, None] * 0.01
    >>> sorted(kmedoids(X, 2, metric="euclidean").tolist())
    [2, 7]
    """
    _check_pool_memory(X, n_select, labeled, metric, max_memory, name="kmedoids")
    cost, lab, k, cand = _setup(X, n_select, labeled, metric)
    prob = _Problem(cost, lab.size + k, lab, cand)
    S0 = _kcenter(prob) if init is None else np.r_[lab, _check_labeled(init, cost.n)]
    if S0.size != prob.B:
        raise ValueError(f"init must hold n_select={k} distinct indices.")
    S = _kmedoids(prob, S0, max_iter=max_iter)
    return _new_ordered(prob, S)


def lloyd_ot(X, n_select, labeled=None, metric="cosine", init=None, max_iter=50):
    """Transport-aware k-medoids ("Lloyd-OT", spec 5.3): a local search for the core-set.

    Alternates the exact transport to the current set and a move of every free
    point to the candidate minimising its plan-weighted cost; W never increases.
    Initialised by k-medoids unless ``init`` (new indices) is given.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 2))
    >>> S = lloyd_ot(X, 5, metric="euclidean")
    >>> bool(coreset_cost(X, S, "euclidean") <= coreset_cost(X, kmedoids(X, 5, metric="euclidean"), "euclidean") + 1e-12)
    True
    """
    cost, lab, k, cand = _setup(X, n_select, labeled, metric)
    prob = _Problem(cost, lab.size + k, lab, cand)
    if init is None:
        S0 = _kmedoids(prob, _kcenter(prob))
    else:
        S0 = np.r_[lab, _check_labeled(init, cost.n)]
        if S0.size != prob.B:
            raise ValueError(f"init must hold n_select={k} distinct indices.")

    def evaluate(S, want_plan=False):
        W, _, T = prob.transport(S)
        return W, T

    S, _ = _lloyd_ot(prob, S0, evaluate, max_iter=max_iter)
    return _new_ordered(prob, S)


def _new_ordered(prob, S):
    """New points of S ordered so that each prefix greedily covers the pool best.

    Greedy facility location with lazy gain updates: a point's coverage gain
    ``sum_i max(cur_i - D_ij, 0)`` only shrinks as ``cur`` does, so a stale gain
    is an upper bound and most points are never re-scored. This turns the
    ``O(N k^2)`` plain greedy into about ``O(N k)`` on a 40K pool.
    """
    S = np.asarray(S, dtype=np.int64)
    new = S[~prob.is_labeled[S]]
    if new.size <= 1:
        return new
    N = prob.N
    if N * new.size <= _CACHE_ENTRIES:
        D = prob.cols(new)
        col = D.__getitem__
    elif 4 * N * new.size <= _ORDER_BYTES:
        # float32 halves the N x k block; only near-ties in the gains can reorder
        D = np.empty((N, new.size), dtype=np.float32)
        for rsl, blk in prob.row_blocks(new):
            D[rsl] = blk
        col = D.__getitem__
    else:
        # no N x k block at all: a column is recomputed whenever a gain is re-scored
        D = None

        def col(key):
            return prob.cost.block(None, new[key[1]: key[1] + 1])[:, 0]
    order = []
    if prob.labeled.size:
        cur = prob.nearest(prob.labeled)[1]
    else:
        # nothing covers the pool yet: the first point is the 1-medoid of S's new points
        if D is not None:
            sums = D.sum(axis=0, dtype=np.float64)
        else:
            sums = np.array([col((slice(None), j)).sum() for j in range(new.size)])
        order.append(int(np.argmin(sums)))
        cur = np.array(col((slice(None), order[0])), dtype=np.float64)
    heap = [(-np.inf, j) for j in range(new.size) if j not in order]
    while heap:
        _, j = heapq.heappop(heap)
        dj = col((slice(None), j))
        gain = float(np.maximum(cur - dj, 0.0).sum())
        # ties go to the earlier point, as an argmax would
        if heap and (-gain, j) > heap[0]:
            heapq.heappush(heap, (-gain, j))
            continue
        order.append(j)
        np.minimum(cur, dj, out=cur)
    return new[np.asarray(order, dtype=np.int64)]


def solve_full_milp(X, n_select, labeled=None, metric="cosine", solver="scipy",
                    time_limit=None):
    """Reference: the full selection MILP (N^2 + N variables) solved directly.

    Uses the strong p-median linking ``x_ij <= z_j`` (plan scaled by N), which
    leaves the optimum unchanged and makes the LP relaxation far tighter than
    the paper's form. For small pools only (tests, checks).

    Parameters
    ----------
    solver : {"scipy", "cbc"}, default="scipy"
        SciPy's bundled HiGHS, or CBC through PuLP.
    time_limit : float, optional

    Returns
    -------
    selection : ndarray of int
        All ``B`` selected indices, sorted.
    objective : float
        W of the selection, recomputed exactly by the transport.
    proven : bool
        True when the solver proved optimality (False when stopped by ``time_limit``).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(12, 2))
    >>> S, w, proven = solve_full_milp(X, 3, metric="euclidean")
    >>> len(S), proven
    (3, True)
    """
    cost, lab, k, _ = _setup(X, n_select, labeled, metric)
    N = cost.n
    if N > 400:
        raise ValueError(f"solve_full_milp is a small-instance reference; got N={N} > 400.")
    if solver not in ("scipy", "cbc"):
        raise ValueError(f"solver must be 'scipy' or 'cbc', got {solver!r}.")
    B = lab.size + k
    D = cost.block(None, np.arange(N))
    if solver == "cbc":
        import pulp

        prob = pulp.LpProblem("full", pulp.LpMinimize)
        z = [_pulp_var(prob, f"z{j}", 0, 1, "Binary") for j in range(N)]
        x = [[_pulp_var(prob, f"x{i}_{j}", 0, 1, "Continuous") for j in range(N)]
             for i in range(N)]
        prob += pulp.lpSum(D[i, j] / N * x[i][j] for i in range(N) for j in range(N)
                           if D[i, j] > 0)
        for i in range(N):
            prob += pulp.lpSum(x[i]) == 1
        for j in range(N):
            prob += pulp.lpSum(x[i][j] for i in range(N)) == (N / B) * z[j]
            for i in range(N):
                prob += x[i][j] <= z[j]
        prob += pulp.lpSum(z) == B
        for j in lab:
            z[j].lowBound = 1
        prob.solve(_cbc_solver(msg=False, timeLimit=time_limit, gapRel=0.0))
        if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            raise RuntimeError("CBC found no solution for the full MILP within the time limit.")
        zval = np.array([v.value() or 0.0 for v in z])
        proven = prob.sol_status == pulp.LpSolutionOptimal
    else:
        from scipy.optimize import Bounds, LinearConstraint, milp

        # variables: x (N*N, row-major i*N + j), then z (N)
        nx = N * N
        ii, jj = np.divmod(np.arange(nx), N)
        rows = [
            # sum_j x_ij = 1
            sp.csr_matrix((np.ones(nx), (ii, np.arange(nx))), shape=(N, nx + N)),
            # sum_i x_ij - (N/B) z_j = 0
            sp.csr_matrix((np.r_[np.ones(nx), np.full(N, -N / B)],
                           (np.r_[jj, np.arange(N)], np.r_[np.arange(nx), nx + np.arange(N)])),
                          shape=(N, nx + N)),
            # x_ij - z_j <= 0
            sp.csr_matrix((np.r_[np.ones(nx), -np.ones(nx)],
                           (np.r_[np.arange(nx), np.arange(nx)], np.r_[np.arange(nx), nx + jj])),
                          shape=(nx, nx + N)),
            sp.csr_matrix((np.ones(N), (np.zeros(N, dtype=int), nx + np.arange(N))),
                          shape=(1, nx + N)),
        ]
        A = sp.vstack(rows).tocsr()
        lo = np.r_[np.ones(N), np.zeros(N), np.full(nx, -np.inf), B]
        hi = np.r_[np.ones(N), np.zeros(N), np.zeros(nx), B]
        lb = np.zeros(nx + N)
        lb[nx + lab] = 1.0
        integ = np.r_[np.zeros(nx), np.ones(N)]
        c = np.r_[D.ravel() / N, np.zeros(N)]
        opts = {"disp": False, "mip_rel_gap": 0.0}
        if time_limit is not None:
            opts["time_limit"] = float(time_limit)
        res = milp(c, integrality=integ, bounds=Bounds(lb, np.ones(nx + N)),
                   constraints=LinearConstraint(A, lo, hi), options=opts)
        if res.x is None:
            raise RuntimeError(f"HiGHS found no solution for the full MILP: {res.message}")
        zval = res.x[nx:]
        proven = res.status == 0
    S = np.flatnonzero(zval > 0.5)
    W = _Problem(cost, B, lab, S).transport(S)[0]
    return S, W, bool(proven)


def solve_gbd(
    X,
    n_select,
    *,
    labeled=None,
    metric="cosine",
    time_limit=60.0,
    gap=1e-3,
    milp_time_limit=None,
    milp_gap=0.1,
    solver="cbc",
    eoc=True,
    capacity_cut=True,
    pruning=False,
    near_swaps=None,
    warm_start="kcenter",
    polish=True,
    polish_iter=10,
    cut="capacity",
    max_candidates=1000,
    max_iter=500,
    random_state=None,
    verbose=False,
    callback=None,
    keep_cuts=False,
    lp_rounds=50,
    max_memory=None,
):
    """Wasserstein core-set by Generalized Benders Decomposition.

    Parameters
    ----------
    X : array-like of shape (n, d), or (n, n) with ``metric="precomputed"``
        Pool features (labeled and unlabeled points).
    n_select : int
        Number of new points to select (``B = len(labeled) + n_select``).
    labeled : array-like of int or bool mask, optional
        Already-labeled points; forced into the selection and part of the pool.
    metric : {"cosine", "euclidean", "chord", "precomputed"}, default="cosine"
        Ground cost: ``1 - cos`` (the paper's), Euclidean, Euclidean on
        L2-normalised features ("chord", a true metric), or a given matrix.
    time_limit : float, default=60
        Global wall-clock limit in seconds. The first warm start is always
        evaluated, so a feasible selection is returned even for tiny limits.
    gap : float, default=1e-3
        Stop when ``(upper - lower) / upper <= gap``.
    milp_time_limit : float, optional
        Limit per master solve; default ``min(180, max(1, remaining / 4))``.
    milp_gap : float, default=0.1
        Relative optimality gap of each master solve (the paper's 10 %),
        tightened to half the current global gap once that is smaller (else the
        bounds could not meet). The lower bound always uses the master's dual
        bound, never its incumbent value.
    solver : {"cbc", "highs", "scipy"}, default="cbc"
        Master MILP backend: CBC via PuLP, HiGHS via ``highspy`` (when
        installed), or SciPy's bundled HiGHS.
    eoc : bool, default=True
        Enhanced optimality cuts: the static lower bound (6) and, for true
        metrics ("euclidean", "chord"), the triangle (7) and dual (8) cuts of
        every evaluated set. 1 - cos is no metric, so (7)-(8) are skipped for it.
    capacity_cut : bool, default=True
        Static capacity cut ``eta >= sum_j rho_j z_j`` (valid for any cost).
    pruning : bool, default=False
        Paper's pruning (P): restrict the master to ``near_swaps`` swaps of the
        incumbent. Heuristic: the lower bound is then only the static one.
    near_swaps : int, optional
        Radius of the pruning ball in swaps; default ``max(2, ceil(B / 4))``.
    warm_start : {"kcenter", "kmedoids", "lloyd_ot", "all"}, default="kcenter"
        Initial selections evaluated before the first master solve.
    polish : bool, default=True
        Run Lloyd-OT on every master solution (each step adds a cut).
    polish_iter : int, default=10
    cut : {"capacity", "classic"}, default="capacity"
        Benders cut from the sub-problem's row potentials u. "classic" (the
        paper's): ``mean(u) + (1/B) sum_j v_j z_j`` with the c-transform
        ``v_j = min_i (D_ij - u_i)``. "capacity": ``mean(u) + sum_j rho_j(u) z_j``
        with ``rho_j(u)`` the mean of the N/B smallest ``D_ij - u_i`` times B/N,
        which dominates the classic cut coefficient by coefficient and is equally
        tight (see :func:`benders_cut`).
    max_candidates : int or None, default=1000
        Binaries are restricted to this many candidates when the pool is larger
        (labeled points, warm starts, and the points nearest MiniBatchKMeans
        centroids). None: all points.
    max_iter : int, default=500
        Maximum master solves.
    random_state : int, RandomState or None
        Seeds the candidate clustering.
    verbose : bool, default=False
        Show a tqdm progress bar (progress is also logged at INFO on
        ``skal.ot.mip``).
    callback : callable, optional
        Called with each history row (dict).
    lp_rounds : int, default=50
        Before the MILP iterations, up to this many rounds of cuts at the
        master's LP-relaxation solution (Kelley's method on the strong
        relaxation; rows u from :meth:`strong_dual`-style coordinate ascent).
        They lift the master's LP bound, which makes each MILP solve much
        faster and the lower bound much higher. Takes at most a third of the
        time left. 0 (or ``pruning``) skips it.
    keep_cuts : bool, default=False
        Store every optimality cut of the master in ``result.cuts`` as
        ``(const (n_cuts,), coef (n_cuts, n_candidates))`` (for checks).
    max_memory : float or None, default=None
        Memory limit in GiB; None: the memory available now. The peak is
        estimated from N, d, B and the candidate count before anything is
        allocated, and a ValueError naming the knobs (``max_candidates``,
        ``max_memory``) is raised when it does not fit. The transport is kept
        sparse (O(N) arcs), so the peak is O(N d) plus the master's cuts
        (O(n_cuts x n_candidates)).

    Returns
    -------
    CoreSetResult

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(30, 4))
    >>> res = solve_gbd(X, 3, labeled=[0], metric="euclidean", time_limit=3)
    >>> 0 in res.selection, len(res.selected)
    (True, 3)
    """
    t_start = time.perf_counter()
    time_limit = _check_positive("time_limit", time_limit)
    gap = _check_fraction("gap", gap)
    milp_gap = _check_fraction("milp_gap", milp_gap)
    milp_time_limit = _check_positive("milp_time_limit", milp_time_limit, allow_none=True)
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")
    if cut not in CUTS:
        raise ValueError(f"cut must be one of {CUTS}, got {cut!r}.")
    if warm_start not in WARM_STARTS:
        raise ValueError(f"warm_start must be one of {WARM_STARTS}, got {warm_start!r}.")
    if max_candidates is not None and (
        isinstance(max_candidates, bool) or not isinstance(max_candidates, (int, np.integer))
        or max_candidates < 1
    ):
        raise ValueError(f"max_candidates must be a positive int or None, got {max_candidates!r}.")
    for name, val in (("max_iter", max_iter), ("polish_iter", polish_iter),
                      ("lp_rounds", lp_rounds)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
            raise ValueError(f"{name} must be a non-negative int, got {val!r}.")
    rng = check_random_state(random_state)
    _check_pool_memory(X, n_select, labeled, metric, max_memory, M=max_candidates,
                       solver=solver)

    cost, lab, k, _ = _setup(X, n_select, labeled, metric)
    N, B = cost.n, lab.size + k
    if near_swaps is None:
        near_swaps = max(2, math.ceil(B / 4))
    def elapsed():
        return time.perf_counter() - t_start

    # trivial instances: nothing free to choose
    if k == 0 or B == N:
        S = lab if k == 0 else np.arange(N)
        prob = _Problem(cost, B, lab, S)
        W = prob.transport(S)[0]
        return CoreSetResult(np.sort(S), _new_ordered(prob, S), W, W, 0.0,
                             [dict(time=elapsed(), upper=W, lower=W, value=W,
                                   event="trivial", master_time=0.0, n_cuts=0)],
                             0, "optimal", False, np.sort(S), {})

    # ---- warm starts and candidates -------------------------------------------
    full = _Problem(cost, B, lab, np.zeros(0, dtype=np.int64))
    starts = {"kcenter": _kcenter(full)}
    restricted = max_candidates is not None and N > max_candidates
    if not restricted:
        prob = hprob = _Problem(cost, B, lab, np.arange(N))
    else:
        # k-medoids / Lloyd-OT over every point when affordable (1 - cos is linear
        # in the center, so plan-weighted medoids need no N x N block); their picks
        # then join the candidates, so GBD starts no worse than they end
        prob = None
        hprob = (_Problem(cost, B, lab, np.arange(N))
                 if cost.metric == "cosine" or N <= 5000 else None)
    if hprob is not None:
        _heuristic_starts(hprob, starts, warm_start, t_start + time_limit)
    if restricted:
        cand = _candidate_set(cost, lab, np.concatenate(list(starts.values())),
                              max_candidates, rng)
        restricted = cand.size < N
        prob = _Problem(cost, B, lab, cand)
        if hprob is None:
            _heuristic_starts(prob, starts, warm_start, t_start + time_limit)
    del hprob
    cand = prob.cand
    logger.info("GBD: N=%d, B=%d (%d labeled), %d candidates%s", N, B, lab.size, prob.M,
                " (restricted)" if restricted else "")

    # ---- static quantities --------------------------------------------------
    m, Mx, rho = prob.column_stats()
    lab_pos = prob.pos[lab]
    free_pos = np.flatnonzero(~prob.is_labeled[cand])
    # static bound: min over selections of a linear cut = labeled part + smallest free part
    def _static_min(coef):
        return float(coef[lab_pos].sum() + np.sort(coef[free_pos])[: B - lab.size].sum())

    static_lb = 0.0
    eoc6 = (1.0 / B - 1.0 / N) * m
    if capacity_cut:
        static_lb = max(static_lb, _static_min(rho))
    if eoc:
        static_lb = max(static_lb, _static_min(eoc6))
    triangle = eoc and cost.metric in _TRUE_METRICS

    # ---- state --------------------------------------------------------------
    history = []
    seen = {}  # frozenset -> W
    state = dict(ub=np.inf, best=None, u_best=None, lb=static_lb, n_cuts=0, master=None)
    pending = []  # cuts found before the master exists (its scale needs a first W)

    def record(event, value=None, master_time=0.0):
        row = dict(time=elapsed(), upper=state["ub"], lower=state["lb"], value=value,
                   event=event, master_time=master_time, n_cuts=state["n_cuts"])
        history.append(row)
        if callback is not None:
            callback(row)
        return row

    def add_cuts(S, W, u):
        if cut == "capacity":
            coef = prob.capacity_transform(u)
        else:
            coef = prob.c_transform(u) / B
        cuts = [(coef, float(u.mean()))]  # Benders
        p = prob.pos[S]
        if triangle:
            # (7): eta >= (1/B) sum_{i in S} m_i (1 - z_i) - W
            coef = np.zeros(prob.M)
            coef[p] = -m[p] / B
            cuts.append((coef, m[p].sum() / B - W))
            # (8): eta >= W - (1/B) sum_{i in S} Mx_i (1 - z_i)
            coef = np.zeros(prob.M)
            coef[p] = Mx[p] / B
            cuts.append((coef, W - Mx[p].sum() / B))
        master = state["master"]
        for coef, const in cuts:
            if master is None:
                pending.append((coef, const))
            else:
                master.add_cut(coef, const)
        state["n_cuts"] += len(cuts)
        if master is None:
            pending.append(("nogood", p))
        else:
            master.add_max_common(p, B - 1)

    state["seen"] = lambda S: frozenset(np.asarray(S).tolist()) in seen

    def evaluate(S, want_plan=False, event="eval"):
        S = np.asarray(S, dtype=np.int64)
        key = frozenset(S.tolist())
        if key in seen and not want_plan:
            return seen[key], None
        W, u, T = prob.transport(S)
        if key not in seen:
            seen[key] = W
            add_cuts(S, W, u)
            if W < state["ub"]:
                state["ub"], state["best"], state["u_best"] = W, np.sort(S), u
                if pruning and state["master"] is not None:
                    state["master"].add_min_common(prob.pos[S], B - near_swaps)
            record(event, W)
        return W, T

    heuristics = {name: evaluate(S, event=name)[0] for name, S in starts.items()}

    # ---- master -------------------------------------------------------------
    scale = state["ub"] if state["ub"] > 0 else 1.0
    master = _make_master(solver, prob.M, B, lab_pos, scale)
    if capacity_cut:
        master.add_cut(rho, 0.0)
    if eoc:
        master.add_cut(eoc6, 0.0)
    for item in pending:
        if isinstance(item[0], str):
            master.add_max_common(item[1], B - 1)
        else:
            master.add_cut(*item)
    if pruning:
        master.add_min_common(prob.pos[state["best"]], B - near_swaps)
    state["master"] = master
    pending.clear()

    if lp_rounds and not pruning:
        # at most a third of the time: the MILP iterations need the rest
        lp_end = elapsed() + (time_limit - elapsed()) / 3.0
        done = _lp_phase(prob, master, state, evaluate, record, lp_rounds,
                         lambda: lp_end - elapsed(), rng, polish, min(3, polish_iter),
                         t_start + lp_end)
    else:
        done = False

    status = "max_iter"
    n_iter = 0
    use_cutoff = True
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc="GBD", leave=False)
    try:
        while n_iter < max_iter and not done:
            if state["ub"] <= 0 or state["ub"] - state["lb"] <= gap * state["ub"]:
                status = "optimal" if state["lb"] >= state["ub"] else "gap"
                break
            remaining = time_limit - elapsed()
            if remaining <= 0.05:
                status = "time_limit"
                break
            tl = min(180.0, max(1.0, remaining / 4.0)) if milp_time_limit is None \
                else milp_time_limit
            tl = min(tl, remaining)
            # eta <= incumbent prunes the search and turns "infeasible" into a proof,
            # but can leave a time-limited master with nothing to return: then the
            # next solve goes without it
            master.set_cutoff(state["ub"] if use_cutoff and not pruning else np.inf)
            warm = _warm_point(prob, master, state["best"], seen, rng)
            t0 = time.perf_counter()
            # the master's bound is only within its own gap of its optimum: tighten that
            # gap as the global one closes, or the bounds could never meet
            cur_gap = (state["ub"] - state["lb"]) / state["ub"]
            res = master.solve(tl, min(milp_gap, max(0.5 * gap, 0.5 * cur_gap)), warm)
            mt = time.perf_counter() - t0
            n_iter += 1
            if res.status == "infeasible":
                # no unevaluated selection (in the ball when pruning) can beat the
                # incumbent according to the cuts: it is optimal
                if not pruning:
                    state["lb"] = state["ub"]
                record("master", master_time=mt)
                status = "optimal" if not pruning else "exhausted"
                break
            if res.bound is not None and not pruning:
                state["lb"] = max(state["lb"], min(state["ub"], res.bound))
            record("master", master_time=mt)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(upper=f"{state['ub']:.4g}", lower=f"{state['lb']:.4g}")
            logger.info("GBD iter %d: upper %.6g lower %.6g (master %.2fs, %s)", n_iter,
                        state["ub"], state["lb"], mt, res.status)
            use_cutoff = res.z is not None
            if res.z is None:
                continue
            if elapsed() >= time_limit:
                status = "time_limit"
                break
            S = prob.cand[res.z]
            if frozenset(S.tolist()) in seen:
                # only possible through solver tolerances; the no-good row forbids it
                logger.warning("GBD: master proposed an evaluated set; stopping.")
                status = "stalled"
                break
            evaluate(S, event="master_solution")
            if polish and polish_iter > 0 and elapsed() < time_limit:
                _lloyd_ot(prob, S, lambda S, want_plan=False: evaluate(S, want_plan, "polish"),
                          max_iter=polish_iter, deadline=t_start + time_limit)
        else:
            status = "max_iter"
    finally:
        if bar is not None:
            bar.close()
    if done or (not pruning and state["lb"] >= state["ub"]):
        status = "optimal"
    elif state["ub"] - state["lb"] <= gap * state["ub"] and not pruning:
        status = "gap"

    best = state["best"]
    lb = state["lb"]
    cuts = None
    if keep_cuts:
        cuts = (np.asarray(master.cut_const), np.asarray(master.cut_coef))
    return CoreSetResult(
        cuts=cuts,
        selection=best,
        selected=_new_ordered(prob, best),
        objective=state["ub"],
        lower_bound=lb,
        gap=_rel_gap(state["ub"], lb),
        history=history,
        n_iter=n_iter,
        status=status,
        restricted=restricted,
        candidates=cand,
        heuristics=heuristics,
    )


def _lp_phase(prob, master, state, evaluate, record, rounds, remaining, rng, polish,
              polish_iter, deadline):
    """Cutting planes at fractional master solutions. Returns True if optimality is proven."""
    stall = 0
    last = -np.inf
    for _ in range(rounds):
        if remaining() <= 0.05:
            return False
        master.set_cutoff(state["ub"])
        t0 = time.perf_counter()
        zbar, bound = master.solve_lp(remaining())
        mt = time.perf_counter() - t0
        if bound is None:
            return False
        if not np.isfinite(bound):
            state["lb"] = state["ub"]  # no selection can beat the incumbent
            record("lp", master_time=mt)
            return True
        state["lb"] = max(state["lb"], min(state["ub"], bound))
        record("lp", master_time=mt)
        if state["ub"] - state["lb"] <= 1e-12 * state["ub"]:
            return True
        if np.all(np.minimum(zbar, 1 - zbar) < 1e-6):
            S = prob.cand[zbar > 0.5]
            if S.size != prob.B or state["seen"](S):
                return False
            evaluate(S, event="lp_solution")  # its cut and no-good row move the LP on
            continue
        u, val = prob.strong_dual(zbar, state["u_best"])
        if val > bound * (1 + 1e-6) + 1e-12:
            master.add_cut(prob.capacity_transform(u), float(u.mean()))
            state["n_cuts"] += 1
        # a rounding of the fractional point is a cheap candidate selection
        S = _round_top(prob, zbar)
        if remaining() > 0 and not state["seen"](S):
            evaluate(S, event="lp_rounding")
            if polish and polish_iter > 0:
                _lloyd_ot(prob, S, lambda S, want_plan=False: evaluate(S, want_plan, "polish"),
                          max_iter=polish_iter, deadline=deadline)
        if val <= bound * (1 + 1e-6) + 1e-12:
            return False  # no cut separates the LP point: the LP phase has converged
        stall = stall + 1 if bound <= last * (1 + 1e-4) else 0
        last = max(last, bound)
        if stall >= 5:
            return False
    return False


def _round_top(prob, zbar):
    """The B candidates with the largest LP value (labeled ones included, fixed at 1)."""
    z = np.array(zbar, dtype=np.float64)
    z[prob.pos[prob.labeled]] = 2.0
    return prob.cand[np.argsort(-z, kind="stable")[: prob.B]]


def _heuristic_starts(prob, starts, warm_start, deadline):
    """Add k-medoids / Lloyd-OT selections to ``starts`` (dict name -> set) as asked."""
    if warm_start == "kcenter" or _past(deadline):
        return
    starts["kmedoids"] = _kmedoids(prob, starts["kcenter"], deadline=deadline)

    def plain(S, want_plan=False):
        W, _, T = prob.transport(S)
        return W, T

    if warm_start in ("lloyd_ot", "all") and not _past(deadline):
        starts["lloyd_ot"] = _lloyd_ot(prob, starts["kmedoids"], plain, deadline=deadline)[0]
    if warm_start == "all" and not _past(deadline):
        starts["lloyd_ot_kcenter"] = _lloyd_ot(prob, starts["kcenter"], plain,
                                               deadline=deadline)[0]


def _warm_point(prob, master, best, seen, rng, n_try=256):
    """Best of a few unevaluated one-swap neighbours of the incumbent, priced by the cuts.

    Returns ``(z, eta)`` feasible for the master (no-good rows hold as it is
    unevaluated, eta is the max of the cuts there) or None.
    """
    if best is None:
        return None
    free_in = best[~prob.is_labeled[best]]
    outside = np.setdiff1d(prob.cand, best)
    if free_in.size == 0 or outside.size == 0:
        return None
    a = free_in[rng.randint(free_in.size, size=n_try)]
    b = outside[rng.randint(outside.size, size=n_try)]
    base = np.zeros(prob.M)
    base[prob.pos[best]] = 1.0
    Z = np.repeat(base[None, :], n_try, axis=0)
    Z[np.arange(n_try), prob.pos[a]] = 0.0
    Z[np.arange(n_try), prob.pos[b]] = 1.0
    vals = master.model_value(Z)
    for t in np.argsort(vals, kind="stable"):
        if vals[t] > master.cutoff:
            return None
        key = frozenset(prob.cand[Z[t] > 0.5].tolist())
        if key not in seen:
            return Z[t], float(vals[t])
    return None


def _candidate_set(cost, lab, S_kc, max_candidates, rng):
    """Labeled + warm starts + points nearest MiniBatchKMeans centroids (~max_candidates)."""
    from sklearn.cluster import MiniBatchKMeans

    base = np.unique(np.r_[lab, S_kc])
    # many labeled points must not crowd out the free candidates entirely
    n_clusters = max(max_candidates - base.size, max_candidates // 2, 1)
    n_clusters = min(n_clusters, cost.n - base.size)
    if n_clusters < 1:
        return base
    if cost.metric == "precomputed":
        # no coordinates to cluster: a random subset keeps the pool's density
        others = np.setdiff1d(np.arange(cost.n), base)
        pick = rng.choice(others, size=min(n_clusters, others.size), replace=False)
        return np.unique(np.r_[base, pick])
    F = cost.F
    km = MiniBatchKMeans(
        n_clusters=n_clusters,
        batch_size=max(1024, 2 * n_clusters),
        n_init=1,
        max_iter=20,
        init_size=min(cost.n, max(3 * n_clusters, 3 * 1024)),
        random_state=rng.randint(np.iinfo(np.int32).max),
    ).fit(F)
    C = km.cluster_centers_
    # nearest pool point to every centroid, in row chunks
    best_d = np.full(C.shape[0], np.inf)
    best_i = np.zeros(C.shape[0], dtype=np.int64)
    csq = (C ** 2).sum(1)
    step = max(1, _BLOCK_ENTRIES // C.shape[0])
    for s in range(0, cost.n, step):
        Fr = F[s: s + step]
        d = cost.sq[s: s + step][:, None] + csq[None, :] - 2.0 * Fr @ C.T
        a = d.argmin(0)
        dv = d[a, np.arange(C.shape[0])]
        upd = dv < best_d
        best_d[upd] = dv[upd]
        best_i[upd] = a[upd] + s
    return np.unique(np.r_[base, best_i])
