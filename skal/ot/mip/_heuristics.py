"""Warm starts and heuristics: center moves, k-center, k-medoids, Lloyd-OT, ordering, candidates."""

import heapq
import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from ._common import _BLOCK_ENTRIES, _CACHE_ENTRIES, _ORDER_BYTES


class _MovesMixin:
    """Center moves of ``_Problem`` (which holds ``N``, ``cand``, ``cost``, the cost blocks)."""

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
