"""The master problem (W-RMP) and its MILP backends: CBC via PuLP, HiGHS via highspy, SciPy."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np
import scipy.sparse as sp

from ._common import _CUT_SAFETY, SOLVERS


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
        terms = [(self.vars[i], float(v)) for i, v in zip(idx, val, strict=True)]
        expr = pulp.LpAffineExpression(terms)
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
