"""Public functions besides GBD: the exact objective, Benders cuts, heuristics, the full MILP."""

import numpy as np
import scipy.sparse as sp

from ._common import CUTS, _check_features, _check_labeled, _check_metric, _Cost, _setup
from ._heuristics import _kcenter, _kmedoids, _lloyd_ot, _new_ordered
from ._master import _cbc_solver, _pulp_var
from ._problem import _Problem
from ._transport import _check_pool_memory


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
    >>> km = kmedoids(X, 5, metric="euclidean")
    >>> bool(coreset_cost(X, S, "euclidean") <= coreset_cost(X, km, "euclidean") + 1e-12)
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

