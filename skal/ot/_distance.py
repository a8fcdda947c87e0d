"""The 2-Wasserstein distance between weighted point sets.

Three solvers behind one function, :func:`wasserstein2`:

* ``"exact"``: POT's network simplex (``ot.emd2``);
* ``"sinkhorn"``: POT's log-domain Sinkhorn on the cost divided by its maximum;
* ``"ipot"``: the inexact proximal point method of Xie et al. (2019), which POT
  does not ship (:func:`ipot`).

The ground cost is always the squared Euclidean distance, so the optimal
transport cost is W2^2 and :func:`wasserstein2` returns its square root unless
``squared=True``.
"""

from numbers import Integral, Real

import numpy as np
import ot
from scipy.special import logsumexp

from ._memory import check_memory

__all__ = ["ipot", "sqeuclidean_cost", "wasserstein2"]

_METHODS = ("exact", "sinkhorn", "ipot")
# Defaults for the regularised solvers, on a cost scaled to [0, 1] (see the spec,
# section 2.6: these reproduce exact-greedy prototypes, the thesis's raw setting
# does not).
_DEFAULT_REG = {"sinkhorn": 1e-2, "ipot": 0.1}
_DEFAULT_N_ITER = {"sinkhorn": 1000, "ipot": 100}
# Bytes per (source, target) pair at the peak of one transport: the cost, the plan and
# the network simplex's arcs (exact), or the kernel, plan and temporaries in the log
# domain (Sinkhorn, IPOT), all n x m float64.
_W2_BYTES_PER_PAIR = 64.0


def sqeuclidean_cost(X, Y):
    """Squared Euclidean distances between the rows of ``X`` and ``Y``.

    Computed in float64 and clipped at zero (the expansion
    ``|x|^2 - 2 x.y + |y|^2`` can go slightly negative).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    Y : ndarray of shape (m, d)

    Returns
    -------
    C : ndarray of shape (n, m)

    Examples
    --------
    >>> sqeuclidean_cost(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]))
    array([[25.]])
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    # in place: one n x m array at any time (the same values as |x|^2 - 2 x.y + |y|^2)
    C = X @ Y.T
    C *= -2.0
    C += (X * X).sum(1)[:, None]
    C += (Y * Y).sum(1)[None, :]
    np.maximum(C, 0.0, out=C)
    return C


def _as_points(X, name):
    if hasattr(X, "detach"):  # torch tensor
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty array of points.")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {X.dtype}.")
    X = X.reshape(X.shape[0], -1).astype(np.float64, copy=False)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return X


def _as_weights(w, n, name):
    """Validate weights and return them normalised to sum 1 (uniform if None)."""
    if w is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.shape[0] != n:
        raise ValueError(f"{name} has {w.shape[0]} entries for {n} points.")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{name} must be finite and non-negative.")
    total = w.sum()
    if total <= 0:
        raise ValueError(f"{name} must have a positive sum.")
    return w / total


def _check_method(method, reg, n_iter):
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    if method == "exact":
        return None, None
    if reg is None:
        reg = _DEFAULT_REG[method]
    if isinstance(reg, bool) or not isinstance(reg, Real) or not reg > 0:
        raise ValueError(f"reg must be a positive number, got {reg!r}.")
    if n_iter is None:
        n_iter = _DEFAULT_N_ITER[method]
    if isinstance(n_iter, bool) or not isinstance(n_iter, Integral) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive int, got {n_iter!r}.")
    return float(reg), int(n_iter)


def ipot(a, b, M, *, beta=0.1, n_iter=100, n_inner=1, log=False):
    """Inexact proximal point optimal transport (IPOT, Xie et al. 2019).

    Each outer iteration solves the entropic problem with the previous plan as a
    proximal reference, ``T <- argmin <M, T> + beta * KL(T || T_prev)``, by
    ``n_inner`` Sinkhorn sweeps. Unlike Sinkhorn, the iterates converge to the
    exact (unregularised) plan whatever ``beta``; ``beta`` only sets the speed.
    Computed in the log domain, so a small ``beta`` does not underflow.

    Parameters
    ----------
    a : ndarray of shape (n,)
        Source weights (sum 1).
    b : ndarray of shape (m,)
        Target weights (sum 1).
    M : ndarray of shape (n, m)
        Ground cost. Scale it to about [0, 1] (e.g. divide by its max) for
        ``beta`` to mean the same on every problem.
    beta : float, default=0.1
        Proximal step (the thesis uses 1e-3 on a raw cost, which underflows or
        stalls in 10 iterations; 0.1 on a normalised cost works best).
    n_iter : int, default=100
        Outer (proximal) iterations.
    n_inner : int, default=1
        Sinkhorn sweeps per outer iteration (1, as Xie et al. recommend).
    log : bool, default=False
        Also return a dict with the source and target log-scalings.

    Returns
    -------
    T : ndarray of shape (n, m)
        Transport plan. Its column sums equal ``b``; its row sums approach ``a``.

    References
    ----------
    Y. Xie, X. Wang, R. Wang, H. Zha. "A Fast Proximal Point Method for Computing
    Exact Wasserstein Distance", UAI 2019.

    Examples
    --------
    >>> import numpy as np
    >>> a, b = np.full(2, 0.5), np.full(2, 0.5)
    >>> M = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> T = ipot(a, b, M, n_iter=50)
    >>> round(float((T * M).sum()), 4)
    0.0
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    M = np.asarray(M, dtype=np.float64)
    if M.shape != (a.shape[0], b.shape[0]):
        raise ValueError(f"M has shape {M.shape}, expected {(a.shape[0], b.shape[0])}.")
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}.")
    if n_iter < 1 or n_inner < 1:
        raise ValueError("n_iter and n_inner must be >= 1.")
    with np.errstate(divide="ignore"):
        log_a, log_b = np.log(a), np.log(b)
    log_G = -M / beta
    log_T = np.zeros_like(M)  # T^(0) = 1
    log_v = np.full(b.shape[0], -np.log(b.shape[0]))  # the algorithm's b = 1/m
    log_u = np.zeros(a.shape[0])
    for _ in range(n_iter):
        log_Q = log_G + log_T
        for _ in range(n_inner):
            log_u = log_a - logsumexp(log_Q + log_v[None, :], axis=1)
            log_v = log_b - logsumexp(log_Q + log_u[:, None], axis=0)
        log_T = log_u[:, None] + log_Q + log_v[None, :]
    T = np.exp(log_T)
    if log:
        return T, {"log_u": log_u, "log_v": log_v}
    return T


def _transport_cost(a, b, M, method, reg, n_iter, normalize_cost, scale=None):
    """OT cost <M, T> for one problem; ``scale`` overrides the normalisation constant."""
    if method == "exact":
        n_max = max(100_000, 50 * M.shape[0] * M.shape[1])
        return float(ot.emd2(a, b, M, numItermax=n_max))
    if normalize_cost:
        scale = float(M.max()) if scale is None else float(scale)
        Mn = M / scale if scale > 0 else M
    else:
        Mn = M
    if method == "sinkhorn":
        T = ot.sinkhorn(a, b, Mn, reg, method="sinkhorn_log", numItermax=n_iter,
                        stopThr=1e-9, warn=False)
    else:
        T = ipot(a, b, Mn, beta=reg, n_iter=n_iter)
    return float((T * M).sum())


def wasserstein2(X, Y, a=None, b=None, *, method="exact", reg=None, n_iter=None,
                 normalize_cost=True, squared=False, max_memory=None):
    """2-Wasserstein distance between two weighted point sets.

    The ground cost is the squared Euclidean distance, so the optimal transport
    cost is ``W2^2``; the function returns ``W2`` (its square root) unless
    ``squared=True``.

    Parameters
    ----------
    X : array-like of shape (n, ...)
        Source points; trailing dimensions are flattened (images are vectors).
    Y : array-like of shape (m, ...)
        Target points, same number of features as ``X``.
    a, b : array-like of shape (n,) and (m,), default=None
        Non-negative weights, normalised to sum 1. ``None`` means uniform.
    method : {"exact", "sinkhorn", "ipot"}, default="exact"
        ``"exact"`` solves the linear program with POT's network simplex
        (``ot.emd2``); on CPU it is also the fastest for a few thousand points.
        ``"sinkhorn"`` is POT's log-domain entropic solver: its plan is blurred,
        so its cost over-estimates W2^2 and tends to it as ``reg -> 0``.
        ``"ipot"`` (:func:`ipot`) converges to the exact cost as ``n_iter`` grows.
    reg : float, default=None
        Entropic regularisation (Sinkhorn, default 1e-2) or proximal step (IPOT,
        default 0.1), relative to the normalised cost.
    n_iter : int, default=None
        Iteration cap (Sinkhorn default 1000, with early stopping; IPOT default 100).
    normalize_cost : bool, default=True
        Divide the cost by its maximum before Sinkhorn / IPOT, so ``reg`` does
        not depend on the data scale. The returned value is always in the
        original units. (The thesis's raw-cost setting, reg 1e-3 and 10
        iterations, under-flows or picks prototypes worse than random.)
        Ignored by ``"exact"``.
    squared : bool, default=False
        Return ``W2^2`` instead of ``W2``.
    max_memory : float or None, default=None
        Memory limit in GiB (None: the memory available now). The n x m cost and
        the solver's n x m arrays are estimated before anything is allocated; a
        ValueError names the knobs when they do not fit.

    Returns
    -------
    distance : float

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0]])
    >>> wasserstein2(X, X + 3.0)
    3.0
    >>> wasserstein2(X, X + 3.0, squared=True)
    9.0
    """
    X = _as_points(X, "X")
    Y = _as_points(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"X and Y must have the same number of features, got {X.shape[1]} and {Y.shape[1]}."
        )
    a = _as_weights(a, X.shape[0], "a")
    b = _as_weights(b, Y.shape[0], "b")
    reg, n_iter = _check_method(method, reg, n_iter)
    n, m = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    check_memory(
        _W2_BYTES_PER_PAIR * n * m, max_memory,
        f"wasserstein2 between {n} and {m} points ({method})",
        "reduce the point sets first (skal.ot.reduce_measure) or raise max_memory",
    )
    # Zero-mass points carry nothing and would put log(0) into the iterative solvers.
    X, a = X[a > 0], a[a > 0]
    Y, b = Y[b > 0], b[b > 0]
    M = sqeuclidean_cost(X, Y)
    cost = max(_transport_cost(a, b, M, method, reg, n_iter, normalize_cost), 0.0)
    return cost if squared else float(np.sqrt(cost))
