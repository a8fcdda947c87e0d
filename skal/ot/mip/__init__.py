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

# The solver is split by job (each module's first line says what it holds):
# _common (constants, validation, cost oracle), _problem (the instance), _transport (the
# transport sub-problem, memory estimates), _bounds (cut coefficients, bounds), _heuristics
# (warm starts, moves, ordering, candidates), _master (MILP backends), _functions (the public
# functions but GBD) and _gbd (the Benders loop).

import importlib

from ._common import METRICS, SOLVERS
from ._functions import (
    benders_cut,
    coreset_cost,
    kcenter_greedy,
    kmedoids,
    kmedoids_objective,
    lloyd_ot,
    solve_full_milp,
)
from ._gbd import CoreSetResult, solve_gbd

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

# The dense transport of the original implementation (N x |S| cost and plan in
# float64), kept only for benchmarks/bench_wasserstein_coreset.py --compare-dense.
# Set it here (``mip._DENSE_TRANSPORT = True``): the transport reads it on this package.
_DENSE_TRANSPORT = False

# results pickled by earlier versions name the class here, where it was defined
CoreSetResult.__module__ = __name__

_MODULES = ("_common", "_problem", "_transport", "_bounds", "_heuristics", "_master",
            "_functions", "_gbd")


def __getattr__(name):
    """The other names of the former single module (``_Problem``, ``_Cost``, ...)."""
    if not name.startswith("__"):
        for mod in _MODULES:
            module = importlib.import_module(f"{__name__}.{mod}")
            if name in vars(module):
                return vars(module)[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
