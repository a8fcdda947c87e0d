"""The transport sub-problem (sparse, screened, certified optimal) and the memory estimates.

:class:`_TransportMixin` gives :class:`skal.ot.mip._problem._Problem` its exact
transport ``W(S)``; the estimates below size a whole solve before it allocates.
"""

import sys
import time

import numpy as np
import ot
import scipy.sparse as sp

from .._memory import check_max_memory, check_memory
from ._common import _BLOCK_ENTRIES, _CACHE_ENTRIES, _ORDER_BYTES, _PRICE_ADD, _PRICE_TOL, _SCREEN_K


def _dense_transport():
    """The benchmarks' switch ``skal.ot.mip._DENSE_TRANSPORT``, read on the package."""
    return sys.modules[__package__]._DENSE_TRANSPORT


class _TransportMixin:
    """Transport methods of ``_Problem`` (which holds ``N``, ``cost``, ``cols``, ``row_blocks``)."""

    # -- transport --------------------------------------------------------
    def transport(self, S):
        """Exact W(S), row potentials u and the plan (sparse, at most N + |S| - 1 nonzeros)."""
        S = np.asarray(S, dtype=np.int64)
        t0 = time.perf_counter()
        if _dense_transport():
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


def _unique_arcs(rows, cols, w, n_cols):
    """Drop repeated (row, col) arcs: a COO cost passed to POT must not hold duplicates."""
    key = rows.astype(np.int64) * n_cols + cols
    first = np.unique(key, return_index=True)[1]
    del key
    return rows[first].astype(np.int64, copy=False), cols[first].astype(np.int64, copy=False), \
        w[first]


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
    if _dense_transport():
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

