"""Generalized Benders Decomposition: :func:`solve_gbd`, its LP phase and its result."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.utils import check_random_state

from ._common import (
    _TRUE_METRICS,
    CUTS,
    SOLVERS,
    WARM_STARTS,
    _check_fraction,
    _check_positive,
    _setup,
)
from ._heuristics import (
    _candidate_set,
    _heuristic_starts,
    _kcenter,
    _lloyd_ot,
    _new_ordered,
    _round_top,
    _warm_point,
)
from ._master import _make_master
from ._problem import _Problem
from ._transport import _check_pool_memory

# progress is logged on the package's logger, skal.ot.mip, as documented
logger = logging.getLogger(__package__)


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
