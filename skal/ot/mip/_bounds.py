"""Cut coefficients and bounds: c-transform, capacity transform, strong LP dual, column stats."""

import math

import numpy as np
import scipy.sparse as sp

from ._common import _BLOCK_ENTRIES, _CACHE_ENTRIES, _EXACT_LP_ENTRIES


class _BoundsMixin:
    """Bound methods of ``_Problem`` (which holds ``N``, ``B``, ``cand``, the cost blocks)."""

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
