"""Greedy Wasserstein prototypes (Ducoffe thesis, ch. 9; Eq. 5.15 of sec. 5.2).

Pick, one at a time, the candidate whose addition most lowers
``W2(fixed ∪ chosen, target)`` (uniform mass on every selected or fixed point).

With the exact solver, each step evaluates the candidates lazily: any dual
potential ``g`` of a transport problem to the same target gives, through its
c-transform ``f(x) = min_j C(x, y_j) - g_j``, a lower bound
``<f, a'> + <g, b> <= OT(a', b)`` for *every* source measure ``a'`` (weak
duality). Candidates are solved in increasing order of their bound and the
search stops when the next bound exceeds the best exact value found, so the
result is the same as the brute-force greedy step while most candidates are
never solved. Each solved problem adds its dual to the bounds of the others,
and the network simplex is warm-started from the current potentials.
"""

import warnings

import numpy as np
import ot
from sklearn.cluster import MiniBatchKMeans
from sklearn.utils import check_random_state

from ..base import check_int
from ._distance import _as_points, _as_weights, _check_method, sqeuclidean_cost
from ._memory import check_memory

__all__ = ["greedy_prototypes", "reduce_measure"]

# Lower bounds within this relative gap of the best value are solved anyway, so
# float round-off in the duals never prunes the true best candidate.
_PRUNE_RTOL = 1e-9

# max_solves="auto": 20 solves per step (within ~1.5 % of the exact greedy on
# digits) while the query stays under ~400 solves, then fewer per step, down to
# one (within ~4 %), so a query's cost grows like k rather than 20 k. The lower
# bounds are tight only when one more point barely changes the measure, i.e.
# when X_fixed outweighs the batch; a selection made mostly from scratch keeps
# 20 per step (PCA-50 Fashion-MNIST, k = 100 and no fixed set: 4 solves per step
# were no better than random subsets, 20 were 9-17 % better).
_AUTO_SOLVES_PER_STEP = 20
_AUTO_SOLVES_PER_QUERY = 400

# Entries of the candidate-cost rows processed at once in the bounds (~8 MB of float64):
# the candidates' cost matrix is the only n_candidates x n_target array ever held.
_CHUNK_ENTRIES = 1_000_000


def reduce_measure(X, weights=None, n_max=1000, *, quantize=False, random_state=None):
    """Shrink a weighted point set to at most ``n_max`` support points.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    weights : ndarray of shape (n,), default=None
        Non-negative masses (uniform if None). The returned masses keep the
        same total.
    n_max : int or None, default=1000
        Support size cap; ``None`` keeps every point.
    quantize : bool, default=False
        ``False``: uniform random subsample, the kept points share the total mass
        in proportion to their weights. ``True``: k-means (``MiniBatchKMeans``)
        centroids, each carrying the mass of its cluster, a closer approximation
        of the measure (the W2 between the two is the quantisation error) at the
        price of a k-means fit.
    random_state : int, RandomState instance or None

    Returns
    -------
    X_reduced : ndarray of shape (n_kept, d)
    weights_reduced : ndarray of shape (n_kept,)

    Examples
    --------
    >>> import numpy as np
    >>> Xr, wr = reduce_measure(np.arange(10.0)[:, None], n_max=4, random_state=0)
    >>> Xr.shape, float(wr.sum())
    ((4, 1), 10.0)
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    total = w.sum()
    keep = w > 0
    X, w = X[keep], w[keep]
    if n_max is None or X.shape[0] <= n_max:
        return X, w
    rng = check_random_state(random_state)
    if quantize:
        km = MiniBatchKMeans(
            n_clusters=int(n_max), n_init=1, random_state=rng.randint(2**31 - 1),
            batch_size=max(1024, 3 * int(n_max)),
        )
        with warnings.catch_warnings():
            # Duplicate points can leave fewer distinct clusters than asked.
            warnings.simplefilter("ignore")
            labels = km.fit_predict(X, sample_weight=w)
        mass = np.bincount(labels, weights=w, minlength=km.n_clusters)
        used = mass > 0
        return km.cluster_centers_[used].astype(np.float64), mass[used]
    idx = np.sort(rng.choice(X.shape[0], size=int(n_max), replace=False))
    w_kept = w[idx]
    return X[idx], w_kept * (total / w_kept.sum())


def _emd(a, b, M, potentials_init=None):
    """Exact OT cost and both potentials (POT network simplex)."""
    n_max = max(100_000, 50 * M.shape[0] * M.shape[1])
    if potentials_init is not None and _WARM_START:
        try:
            cost, log = ot.emd2(a, b, M, numItermax=n_max, log=True,
                                potentials_init=potentials_init)
            return float(cost), log["u"], log["v"]
        except TypeError:  # POT < 0.9.6 has no warm start
            _disable_warm_start()
    cost, log = ot.emd2(a, b, M, numItermax=n_max, log=True)
    return float(cost), log["u"], log["v"]


_WARM_START = True


def _disable_warm_start():
    global _WARM_START
    _WARM_START = False


def greedy_prototypes(X_candidates, X_target, n_prototypes, *, X_fixed=None,
                      target_weights=None, n_target=1000, quantize=True, n_fixed=1000,
                      method="exact", reg=None, n_iter=None, normalize_cost=True,
                      max_solves=None, device="auto", return_objective=False,
                      random_state=None, max_memory=None):
    """Greedy Wasserstein prototypes: a subset of candidates close to a target in W2.

    Adds, one at a time, the candidate ``x`` minimising
    ``W2(uniform(X_fixed ∪ chosen ∪ {x}), target)`` with the squared Euclidean
    ground cost (Ducoffe, thesis ch. 9; with ``X_fixed`` the labeled set, this
    is the active-learning selection of Eq. 5.15). The thesis states an
    approximation bound for this greedy search; its proof does not hold (see the
    docs), so treat the result as a good heuristic. W2 along the selection
    is not always decreasing.

    Parameters
    ----------
    X_candidates : array-like of shape (n_candidates, ...)
        Points to choose from; trailing dimensions are flattened.
    X_target : array-like of shape (n_target_points, ...)
        The distribution to match (in active learning: the whole pool, labeled
        and unlabeled).
    n_prototypes : int
        How many candidates to choose, ``1 <= n_prototypes <= n_candidates``.
    X_fixed : array-like of shape (n_fixed_points, ...), default=None
        Points already selected (the labeled set), each with the same mass as a
        prototype. They are not candidates.
    target_weights : array-like of shape (n_target_points,), default=None
        Non-negative target masses (uniform if None).
    n_target : int or None, default=1000
        Cap on the target support. A larger target is quantised (k-means
        centroids) or subsampled (``quantize=False``) so each transport problem
        stays small on large pools. ``None`` keeps the whole target.
    quantize : bool, default=True
        Reduce the target and ``X_fixed`` to k-means centroids weighted by
        cluster mass (see :func:`reduce_measure`); ``False`` subsamples them
        uniformly, which is cheaper but noisy in high dimension: the greedy
        then matches the sample rather than the pool (on a 50-D Fashion-MNIST
        embedding, worse than random subsets at k = 100 and 500).
    n_fixed : int or None, default=1000
        Same cap for ``X_fixed``; its total mass stays ``len(X_fixed)`` prototypes'
        worth.
    method : {"exact", "sinkhorn", "ipot"}, default="exact"
        Transport solver (see :func:`skal.ot.wasserstein2`). ``"exact"`` uses a
        lazy, warm-started search that returns the same choices as evaluating
        every candidate; the regularised solvers evaluate every candidate.
    reg, n_iter, normalize_cost
        Solver settings for ``"sinkhorn"`` / ``"ipot"``. The cost is divided by
        the maximum over all candidates, fixed points and target points, so
        every candidate is scored with the same regularisation.
    max_solves : int, "auto" or None, default=None
        ``"exact"`` only: cap on the transport problems solved per step. The
        candidates are tried in order of their duality lower bound, so a cap
        keeps the most promising ones and the step becomes an approximation.
        ``None`` solves until the bound proves the best candidate (the
        brute-force greedy's choice). On a digits embedding (64-D, 1,300
        candidates, k = 10) a cap of 20 is 12x faster and ends within 1.5 % of
        the exact greedy's W2. ``"auto"`` caps at
        ``max(1, min(20, 400 // n_prototypes))``: 20 for batches of up to 20,
        one for batches of 400 or more, so large batches stay affordable. It
        keeps 20 when ``X_fixed`` has fewer points than ``n_prototypes``: the
        bounds are loose when the batch makes up most of the selection.
    device : str or torch.device, default="auto"
        Where ``"sinkhorn"`` / ``"ipot"`` solve their batched problems (all
        candidates of a step at once); ``"auto"`` picks CUDA when available.
        The exact solver always runs on CPU.
    return_objective : bool, default=False
        Also return W2 after each selection (exact, or the solver's estimate).
    random_state : int, RandomState instance or None
        Seeds the target / fixed-set reduction.
    max_memory : float or None, default=None
        Memory limit in GiB (None: the memory available now). The peak, the
        ``n_candidates x n_target`` cost matrix and the transport problems, is
        estimated before the target is reduced or any cost computed; a
        ValueError names the knobs (``n_target``, ``n_fixed``, fewer candidates,
        ``max_memory``) when it does not fit.

    Returns
    -------
    indices : ndarray of shape (n_prototypes,)
        Distinct indices into ``X_candidates``, in selection order.
    objective : ndarray of shape (n_prototypes,)
        Only with ``return_objective=True``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(0, 0.1, (30, 2)), rng.normal(5, 0.1, (10, 2))])
    >>> idx = greedy_prototypes(X, X, 4, random_state=0)
    >>> int((idx < 30).sum())  # 3 of 4 prototypes in the 3x larger cluster
    3
    """
    Xc = _as_points(X_candidates, "X_candidates")
    Xt = _as_points(X_target, "X_target")
    if Xt.shape[1] != Xc.shape[1]:
        raise ValueError(
            f"X_target has {Xt.shape[1]} features, X_candidates has {Xc.shape[1]}."
        )
    n_prototypes = check_int(n_prototypes, "n_prototypes", 1)
    if n_prototypes > Xc.shape[0]:
        raise ValueError(
            f"n_prototypes={n_prototypes} is larger than the number of candidates "
            f"({Xc.shape[0]})."
        )
    n_target = check_int(n_target, "n_target", 1, allow_none=True)
    n_fixed = check_int(n_fixed, "n_fixed", 1, allow_none=True)
    n_fixed_points = 0 if X_fixed is None else len(X_fixed)
    max_solves = _check_max_solves(max_solves, n_prototypes, n_fixed_points)
    reg, n_iter = _check_method(method, reg, n_iter)
    wt = _as_weights(target_weights, Xt.shape[0], "target_weights")
    rng = check_random_state(random_state)
    m = Xt.shape[0] if n_target is None else min(n_target, Xt.shape[0])
    n_f = n_fixed_points if n_fixed is None else min(n_fixed, n_fixed_points)
    check_memory(
        _prototypes_bytes(Xc.shape[0], m, n_f, n_prototypes), max_memory,
        f"greedy_prototypes on {Xc.shape[0]} candidates, a target of {m} and "
        f"{n_f} fixed points",
        "lower n_target or n_fixed (None keeps every point), pass fewer candidates "
        "(the strategies' n_candidates), or raise max_memory",
    )

    Xt, wt = reduce_measure(Xt, wt, n_target, quantize=quantize, random_state=rng)
    b = wt / wt.sum()
    if n_fixed_points:
        Xf = _as_points(X_fixed, "X_fixed")
        if Xf.shape[1] != Xc.shape[1]:
            raise ValueError(
                f"X_fixed has {Xf.shape[1]} features, X_candidates has {Xc.shape[1]}."
            )
        Xf, mass_f = reduce_measure(Xf, None, n_fixed, quantize=quantize, random_state=rng)
    else:
        Xf, mass_f = np.empty((0, Xc.shape[1])), np.empty(0)

    # Every transport problem is a row subset of these two matrices.
    C_cand = sqeuclidean_cost(Xc, Xt)
    C_fixed = sqeuclidean_cost(Xf, Xt)
    scale = max(C_cand.max(), C_fixed.max() if C_fixed.size else 0.0)

    if method == "exact":
        chosen, objective = _greedy_exact(C_cand, C_fixed, mass_f, b, n_prototypes, max_solves)
    else:
        chosen, objective = _greedy_regularised(
            C_cand, C_fixed, mass_f, b, n_prototypes, method, reg, n_iter,
            normalize_cost, scale, device,
        )
    chosen = np.asarray(chosen, dtype=np.int64)
    if return_objective:
        return chosen, np.sqrt(np.maximum(np.asarray(objective), 0.0))
    return chosen


def _prototypes_bytes(n_cand, m, n_fixed, k):
    """Estimated peak bytes of :func:`greedy_prototypes` past its inputs' O(n d) copies.

    The candidates' and fixed points' costs to the ``m`` target points (float64),
    cost blocks of ``_CHUNK_ENTRIES``, and one transport problem of
    ``(n_fixed + k) x m`` arcs (cost, plan and the solver's graph).
    """
    return 8.0 * m * (n_cand + n_fixed) + 4 * 8.0 * _CHUNK_ENTRIES + 64.0 * (n_fixed + k) * m


def _by_rows(C, rows, fn):
    """``fn(C[rows])`` (one value per row) computed in blocks of rows: no copy of ``C``."""
    out = np.empty(rows.size)
    step = max(1, _CHUNK_ENTRIES // max(1, C.shape[1]))
    for start in range(0, rows.size, step):
        out[start:start + step] = fn(C[rows[start:start + step]])
    return out


def _row_min(C, rows, g):
    """``min_j (C[r, j] - g_j)`` for every ``r`` in ``rows``."""
    return _by_rows(C, rows, lambda block: np.min(block - g[None, :], axis=1))


def _check_max_solves(max_solves, n_prototypes, n_fixed_points=0):
    """The per-step cap as an int (or None), resolving ``"auto"``."""
    if isinstance(max_solves, str):
        if max_solves != "auto":
            raise ValueError(
                f"max_solves must be a positive int, 'auto' or None, got {max_solves!r}."
            )
        if n_fixed_points < n_prototypes:
            return _AUTO_SOLVES_PER_STEP
        return max(1, min(_AUTO_SOLVES_PER_STEP, _AUTO_SOLVES_PER_QUERY // n_prototypes))
    return check_int(max_solves, "max_solves", 1, allow_none=True)


def _better(value, idx, best_value, best_idx):
    """Strictly lower cost wins; ties (to round-off) go to the lower index."""
    tol = _PRUNE_RTOL * max(1.0, abs(best_value))
    if value < best_value - tol:
        return True
    return abs(value - best_value) <= tol and idx < best_idx


def _greedy_exact(C_cand, C_fixed, mass_f, b, k, max_solves=None):
    n_cand = C_cand.shape[0]
    available = np.ones(n_cand, dtype=bool)
    chosen, objective = [], []
    g = None  # target potential of the current selection's optimal plan
    f_cur = None  # its source potential on the current support
    for _ in range(k):
        rows = np.vstack([C_fixed, C_cand[chosen]]) if chosen else C_fixed
        counts = np.concatenate([mass_f, np.ones(len(chosen))])
        total = counts.sum() + 1.0
        a = np.append(counts, 1.0) / total
        cand = np.flatnonzero(available)

        if rows.shape[0] == 0:
            # A single point carries all the mass: its cost is its mean cost to the target.
            values = _by_rows(C_cand, cand, lambda block: block @ b)
            j = cand[np.lexsort((cand, values))[0]]
            chosen.append(int(j))
            objective.append(float(values[cand == j][0]))
            available[j] = False
            g = None
            continue

        # Lower bounds from the current optimum's dual: weak duality, with the
        # c-transform making (f, g) feasible for every support point.
        if g is None:
            _, f_cur, g = _emd(counts / counts.sum(), b, rows)
        f_cand = _row_min(C_cand, cand, g)
        lower = (counts @ np.min(rows - g[None, :], axis=1) + g @ b * total + f_cand) / total
        solved = np.zeros(cand.shape[0], dtype=bool)
        n_solved = 0
        best_value, best_idx, best_g = np.inf, -1, None
        while not solved.all():
            # Next: the unsolved candidate with the lowest bound (ties -> lowest index).
            pos = int(np.argmin(np.where(solved, np.inf, lower)))
            threshold = best_value + _PRUNE_RTOL * max(1.0, abs(best_value))
            if best_g is not None and (lower[pos] > threshold or n_solved == max_solves):
                break
            j = int(cand[pos])
            solved[pos] = True
            n_solved += 1
            # Warm start: the current potentials, extended to the new point by c-transform.
            init = (np.append(f_cur, f_cand[pos]), g)
            value, _, g_new = _emd(a, b, np.vstack([rows, C_cand[j]]), potentials_init=init)
            if best_g is None or _better(value, j, best_value, best_idx):
                best_value, best_idx, best_g = value, j, g_new
            # The new dual bounds the other candidates too; tightening the
            # contenders (bound below the best value) prunes more of the queue.
            open_ = np.flatnonzero(~solved & (lower <= best_value))
            if open_.size:
                base = counts @ np.min(rows - g_new[None, :], axis=1) + g_new @ b * total
                lower2 = (base + _row_min(C_cand, cand[open_], g_new)) / total
                lower[open_] = np.maximum(lower[open_], lower2)
        chosen.append(best_idx)
        objective.append(best_value)
        available[best_idx] = False
        g = best_g
        f_cur = np.min(np.vstack([rows, C_cand[best_idx]]) - g[None, :], axis=1)
    return chosen, objective


# Largest exponent of the Gibbs kernel the scaling (matmul) solvers take: the
# kernel exp(-x) then stays above ~1e-87 and its scalings far inside float64.
_MAX_KERNEL_EXPONENT = 200.0


def _batched_regularised(rows, cand_rows, a, b, method, reg, n_iter, device,
                         chunk_elems=4_000_000, index=None):
    """Transport costs of many problems sharing all source rows but the last.

    Problem ``c`` has cost matrix ``vstack([rows, cand_rows[c]])`` (already
    normalised), source ``a`` and target ``b``; all are solved together with
    torch. With ``index`` the problems are those of ``cand_rows[index]``, gathered
    a chunk at a time. When the kernel cannot underflow (``1/reg`` for Sinkhorn,
    ``n_iter/beta`` for IPOT below ``_MAX_KERNEL_EXPONENT``) the scaling form
    is used: the shared rows make each iteration two batched matrix products,
    O(n m B) multiply-adds and only O((n + B) m) exponentials. Otherwise (or if
    it overflows) the log-domain form, O(n m B) exponentials. Returns <M, T>.
    """
    import torch

    from ..nets import resolve_device

    device = resolve_device(device)
    kw = {"dtype": torch.float64, "device": device}
    n_shared, m = rows.shape
    per_chunk = max(1, chunk_elems // ((n_shared + 1) * m))
    rows_t = torch.as_tensor(rows, **kw)
    a_t = torch.as_tensor(a, **kw)
    b_t = torch.as_tensor(b, **kw)
    exponent = 1.0 / reg if method == "sinkhorn" else n_iter / reg
    n_problems = cand_rows.shape[0] if index is None else index.size
    out = np.empty(n_problems)
    for start in range(0, n_problems, per_chunk):
        chunk = slice(start, start + per_chunk) if index is None else index[start:start + per_chunk]
        last = torch.as_tensor(cand_rows[chunk], **kw)
        values = None
        if exponent <= _MAX_KERNEL_EXPONENT:
            solver = _sinkhorn_scaling if method == "sinkhorn" else _ipot_scaling
            values = solver(rows_t, last, a_t, b_t, reg, n_iter)
            if not torch.isfinite(values).all():
                values = None
        if values is None:
            values = _log_domain(rows_t, last, a_t, b_t, method, reg, n_iter)
        out[start:start + last.shape[0]] = values.cpu().numpy()
    return out


def _sinkhorn_scaling(Cr, Cl, a, b, reg, n_iter):
    """Batched Sinkhorn, u/v scalings; rows Cr (n_s, m) shared, last rows Cl (B, m)."""
    import torch

    Kr, Kl = torch.exp(-Cr / reg), torch.exp(-Cl / reg)
    a_s, a_l = a[:-1], a[-1]
    B = Cl.shape[0]
    # POT's order (sinkhorn_log): u = 1, then v, u alternately; rows end exact.
    U_r = torch.ones(B, Cr.shape[0], dtype=Cl.dtype, device=Cl.device)
    U_l = torch.ones(B, dtype=Cl.dtype, device=Cl.device)
    for it in range(n_iter):
        V = b / (U_r @ Kr + Kl * U_l[:, None])
        U_r = a_s / (V @ Kr.T)
        U_l = a_l / (Kl * V).sum(1)
        if it % 10 == 0:
            # Stop as POT does, once the target marginal is met.
            err = ((U_r @ Kr + Kl * U_l[:, None]) * V - b).abs().sum(1)
            if err.max() < 1e-9:
                break
    return ((U_r @ (Kr * Cr)) * V).sum(1) + U_l * (Kl * Cl * V).sum(1)


def _ipot_scaling(Cr, Cl, a, b, beta, n_iter):
    """Batched IPOT (see :func:`skal.ot.ipot`) in scaling form.

    After t proximal steps the plan is diag(P) exp(-t C / beta) diag(R): the
    kernel power is shared by all candidates, the scalings P, R are not.
    """
    import torch

    Gr, Gl = torch.exp(-Cr / beta), torch.exp(-Cl / beta)
    Kr, Kl = torch.ones_like(Cr), torch.ones_like(Cl)
    B, m = Cl.shape
    n_s = Cr.shape[0]
    a_s, a_l = a[:-1], a[-1]
    P_r = torch.ones(B, n_s, dtype=Cl.dtype, device=Cl.device)
    P_l = torch.ones(B, dtype=Cl.dtype, device=Cl.device)
    R = torch.ones_like(Cl)
    v = torch.full_like(Cl, 1.0 / m)
    for _ in range(n_iter):
        Kr, Kl = Kr * Gr, Kl * Gl  # exp(-t C / beta)
        Rv = R * v
        x_r = a_s / (P_r * (Rv @ Kr.T))
        x_l = a_l / (P_l * (Kl * Rv).sum(1))
        P_r, P_l = P_r * x_r, P_l * x_l
        v = b / (R * (P_r @ Kr + Kl * P_l[:, None]))
        R = R * v
        # The split of scale between P and R is free; keep it balanced so the
        # products never leave float64.
        s = torch.sqrt(R.amax(1) / torch.maximum(P_r.amax(1) if n_s else P_l, P_l))
        P_r, P_l, R = P_r * s[:, None], P_l * s, R / s[:, None]
    return ((P_r @ (Kr * Cr)) * R).sum(1) + P_l * (Kl * Cl * R).sum(1)


def _log_domain(Cr, Cl, a, b, method, reg, n_iter):
    """Batched log-domain Sinkhorn / IPOT: safe for any ``reg``, O(n m B) exps."""
    import torch

    B, m = Cl.shape
    M = torch.cat([Cr.expand(B, *Cr.shape), Cl[:, None, :]], dim=1)
    log_K = -M / reg
    log_a, log_b = torch.log(a), torch.log(b)
    if method == "sinkhorn":
        log_u = torch.zeros(B, M.shape[1], dtype=M.dtype, device=M.device)
        for it in range(n_iter):
            log_v = log_b - torch.logsumexp(log_K + log_u[:, :, None], dim=1)
            log_u = log_a - torch.logsumexp(log_K + log_v[:, None, :], dim=2)
            if it % 10 == 0:
                col = torch.logsumexp(log_K + log_u[:, :, None] + log_v[:, None, :], dim=1)
                if (col.exp() - b).abs().sum(1).max() < 1e-9:
                    break
        log_T = log_u[:, :, None] + log_K + log_v[:, None, :]
    else:
        log_T = torch.zeros_like(M)
        log_v = torch.full_like(Cl, -float(np.log(m)))
        for _ in range(n_iter):
            log_Q = log_K + log_T
            log_u = log_a - torch.logsumexp(log_Q + log_v[:, None, :], dim=2)
            log_v = log_b - torch.logsumexp(log_Q + log_u[:, :, None], dim=1)
            log_T = log_u[:, :, None] + log_Q + log_v[:, None, :]
    return (log_T.exp() * M).sum(dim=(1, 2))


def _greedy_regularised(C_cand, C_fixed, mass_f, b, k, method, reg, n_iter,
                        normalize_cost, scale, device):
    if not normalize_cost or not scale > 0:
        scale = 1.0
    # in place: the caller's matrices are not used again, and a copy would double the peak
    C_cand = np.divide(C_cand, scale, out=C_cand)
    C_fixed = np.divide(C_fixed, scale, out=C_fixed)
    n_cand = C_cand.shape[0]
    available = np.ones(n_cand, dtype=bool)
    chosen, objective = [], []
    for _ in range(k):
        rows = np.vstack([C_fixed, C_cand[chosen]]) if chosen else C_fixed
        counts = np.concatenate([mass_f, np.ones(len(chosen))])
        a = np.append(counts, 1.0) / (counts.sum() + 1.0)
        cand = np.flatnonzero(available)
        with np.errstate(all="ignore"):
            values = _batched_regularised(rows, C_cand, a, b, method, reg, n_iter,
                                          device, index=cand)
        # Non-finite scores (solver overflow) are skipped, never chosen.
        finite = np.isfinite(values)
        if not finite.any():
            raise FloatingPointError(
                f"every {method} transport cost was non-finite; raise reg or keep "
                "normalize_cost=True."
            )
        values = np.where(finite, values, np.inf)
        pos = int(np.argmin(values))  # ties -> lowest index
        chosen.append(int(cand[pos]))
        objective.append(float(values[pos]) * scale)
        available[cand[pos]] = False
    return chosen, objective
