"""BALNet: Bayesian batch active learning through the variational free energy.

Ducoffe, *Active Learning and Input Space Analysis for Deep Networks*, ch. 5
(Ducoffe & Precioso 2016). A Laplace approximation at the trained weights gives
the prior ``N(w, I_A^-1)`` and the posterior ``N(w, I_{A u B}^-1)``, with ``I_X``
the empirical Fisher of the set ``X``; bounding the free energy leads to the
batch criterion (thesis Eq. 5.11)::

    B = argmax_B Tr(I_{A u B} I_A^-1)

With the Kronecker-factored (KFAC) Fisher, blocks ``psi_l (x) tau_l`` per layer
(Eq. 5.20)::

    Tr(I_{A u B} I_A^-1) = sum_l Tr(psi_{A u B,l} psi_{A,l}^-1) Tr(tau_{A u B,l} tau_{A,l}^-1)

and, since the factors of ``A u B`` are means of per-sample factors, each trace
is affine in per-candidate scalars (appendix A.3.2), which is what the greedy
search below adds up.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state

from ..base import QueryStrategy, candidate_subset, check_pool, user_stacklevel
from ..nets import eval_mode, get_net, iter_batches, to_logits
from ._kfac import (
    damped_inverses,
    factor_sums,
    find_blocks,
    iter_block_stats,
    sample_coefficients,
)

__all__ = ["BALNet", "greedy_trace_selection", "trace_criterion"]

# Backward passes keep per-position activations (im2col patches) alive, so the
# default chunk is smaller than skal.nets' inference batch.
_DEFAULT_BATCH_SIZE = 64
# The diversity step stands for P by k-means centroids (weighted by cluster mass)
# of a pool sample: W2 against 60,000 points would dominate the query, and a
# plain 1,000-point sample is noisy enough in pixel space that the greedy
# partly matches the sample rather than the pool.
_DIVERSITY_SAMPLE = 10_000
_DIVERSITY_TARGET = 1000


def trace_criterion(a, c, e, const, batch):
    """``Tr(I_{A u B} I_A^-1)`` from per-candidate coefficients.

    Parameters
    ----------
    a, c : ndarray of shape (n_candidates, n_layers)
        ``Tr(psi_j psi_A^-1)`` and ``Tr(tau_j tau_A^-1)`` per candidate and KFAC block.
    e : ndarray of shape (n_candidates,)
        The diagonal blocks' ``sum_p F_j,p / D_A,p``.
    const : dict
        ``n`` (= ``|A|``), ``phi``, ``tau`` (per-block sums of the same traces
        over ``A``) and ``delta`` (same for the diagonal blocks).
    batch : array-like of int
        Rows of ``a`` forming ``B`` (may be empty when ``|A| > 0``).

    Returns
    -------
    value : float

    Examples
    --------
    >>> const = {"n": 2, "phi": np.array([2.0]), "tau": np.array([2.0]), "delta": 0.0}
    >>> trace_criterion(np.ones((3, 1)), np.ones((3, 1)), np.zeros(3), const, [])
    1.0
    """
    batch = np.asarray(batch, dtype=np.int64)
    m = const["n"] + batch.shape[0]
    if m == 0:
        raise ValueError("The criterion needs a non-empty labeled set or batch.")
    Sa = const["phi"] + a[batch].sum(0)
    Sc = const["tau"] + c[batch].sum(0)
    Se = const["delta"] + e[batch].sum()
    # Factors of A u B are means over |A| + |B| samples: one 1/m per factor of
    # a Kronecker block, one 1/m for a diagonal block.
    return float((Sa * Sc).sum() / m**2 + Se / m)


def greedy_trace_selection(a, c, e, const, n_select, objective="max"):
    """Greedy batch: add, one at a time, the candidate that maximises (or minimises) the criterion.

    Each step costs ``O(n_candidates * n_layers)``: with the sums over the
    batch so far kept, the criterion of ``B u {j}`` is a product of two affine
    functions of ``a_j`` and ``c_j`` per layer (thesis A.3.2-A.3.3).

    Parameters
    ----------
    a, c, e, const : see :func:`trace_criterion`
    n_select : int
    objective : {"max", "min"}, default="max"

    Returns
    -------
    chosen : ndarray of shape (n_select,)
        Row indices in selection order. Ties go to the lower index.
    first_scores : ndarray of shape (n_candidates,)
        The criterion of each candidate queried alone, ``Tr(I_{A u {j}} I_A^-1)``.
    values : ndarray of shape (n_select,)
        The criterion of the batch after each selection.

    Examples
    --------
    >>> const = {"n": 1, "phi": np.array([1.0]), "tau": np.array([1.0]), "delta": 0.0}
    >>> a = np.array([[1.0], [3.0], [2.0]])
    >>> greedy_trace_selection(a, a, np.zeros(3), const, 2)[0]
    array([1, 2])
    """
    n = a.shape[0]
    Sa = np.array(const["phi"], dtype=np.float64)
    Sc = np.array(const["tau"], dtype=np.float64)
    Se = float(const["delta"])
    free = np.ones(n, dtype=bool)
    chosen, values, first = [], [], None
    sign = 1.0 if objective == "max" else -1.0
    for step in range(n_select):
        m = const["n"] + step + 1
        scores = ((Sa + a) * (Sc + c)).sum(1) / m**2 + (Se + e) / m
        if first is None:
            first = scores.copy()
        key = np.where(free, sign * scores, -np.inf)
        j = int(np.argmax(key))  # first maximum: ties go to the lower index
        chosen.append(j)
        values.append(scores[j])
        free[j] = False
        Sa += a[j]
        Sc += c[j]
        Se += e[j]
    return np.asarray(chosen, dtype=np.int64), first, np.asarray(values)


class BALNet(QueryStrategy):
    """Bayesian batch active learning with the KFAC Fisher (BALNet, "FISHER").

    Greedily builds the batch ``B`` that maximises ``Tr(I_{A u B} I_A^-1)``
    (Ducoffe, thesis Eq. 5.11 and 5.20), with ``A`` the labeled set and ``I``
    the Kronecker-factored empirical Fisher of the network at its trained
    weights. Dense, convolutional and recurrent weight matrices get KFAC
    blocks; convolution biases and BatchNorm parameters get the diagonal of
    their exact Fisher. Optionally, a Wasserstein step keeps the batch
    representative of the pool (thesis Eq. 5.15, section 9.4).

    Parameters
    ----------
    n_candidates : int or None, default=1000
        Score a random subset of the pool of this size (the author's code uses
        1,000); ``None`` scores the whole pool. At least
        ``n_instances * diversity`` candidates are drawn.
    damping : float, default=1e-3
        Tikhonov damping of the labeled set's factors, relative to their scale:
        ``psi_A + lambda I`` with ``lambda = damping * Tr(psi_A) / dim(psi_A)``,
        the same for ``tau_A``, and ``D_A + damping * mean(D_A)`` for diagonal
        blocks. Needed because ``I_A`` is singular while ``|A|`` is smaller than
        the factor sizes. ``0`` uses pseudo-inverses (the thesis's undamped
        criterion; unstable with few labels). The numerator ``I_{A u B}`` is
        never damped.
    objective : {"max", "min"}, default="max"
        ``"max"`` is the thesis's argmax; the author's released code greedily
        minimises the same quantity.
    diversity : int or None, default=None
        ``M``: pre-select ``n_instances * M`` candidates with the criterion, then
        keep the ``n_instances`` whose union with the labeled set is closest in
        W2 to the pool (labeled and unlabeled; 1,000 k-means centroids of a
        random sample of 10,000 points, squared Euclidean cost on the flattened
        inputs the network sees). The spec suggests ``M = 10``. Needs
        ``X_labeled`` for the "union" part; without it the batch alone is
        matched to the pool. Score more than ``n_instances * M`` candidates
        (``n_candidates``), or the pre-selection keeps them all and the
        criterion plays no part (a ``UserWarning`` says so).
    label_mode : {"predicted", "expected"}, default="predicted"
        Label used for a candidate's gradient: the predicted class (the author's
        code), or every class weighted by its predicted probability (the true
        Fisher; one backward pass per class). The labeled set always uses its
        true labels.
    batch_size : int or None, default=None
        Samples per forward/backward pass (64 when None).
    random_state : int, RandomState instance or None, default=None
        Seeds the candidate subset and the diversity step's pool sample.

    Attributes
    ----------
    candidates_ : ndarray
        Pool indices of the candidates scored in the last query.
    criterion_ : float
        ``Tr(I_{A u B} I_A^-1)`` of the last queried batch (before the
        diversity step).
    blocks_ : list of str
        The Fisher blocks used (parameter names).
    last_utilities_ : ndarray of shape (n_pool,)
        Each candidate's criterion when queried alone (negated for
        ``objective="min"``, so higher is preferred); ``-inf`` outside the
        candidates.

    Notes
    -----
    ``y_labeled`` must hold class indices of the network's outputs (0 to
    ``n_classes - 1``); :class:`skal.ActiveLearner` passes them encoded.
    Without ``y_labeled`` the labeled set uses predicted labels; with no
    labeled set at all, the candidates' own Fisher stands in for ``I_A``. The
    network runs in eval mode (dropout off, BatchNorm with running statistics),
    so each sample's gradient is its own.

    Per query the cost is one forward and backward pass over the labeled set
    and one over the candidates (``n_classes`` backward passes with
    ``label_mode="expected"``), plus an eigendecomposition of each factor; the
    greedy search itself is ``O(n_instances * n_candidates * n_layers)``.

    Examples
    --------
    >>> import numpy as np
    >>> from skal.nets import cnn_classifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(60, 1, 8, 8).astype("float32")
    >>> y = np.arange(60) % 3
    >>> net = cnn_classifier("digits", 3, max_epochs=1, random_state=0).fit(X[:30], y[:30])
    >>> idx = BALNet(n_candidates=20, random_state=0).query(
    ...     net, X[30:], 4, X_labeled=X[:30], y_labeled=y[:30])
    >>> idx.shape
    (4,)
    """

    def __init__(
        self,
        n_candidates=1000,
        damping=1e-3,
        objective="max",
        diversity=None,
        label_mode="predicted",
        batch_size=None,
        random_state=None,
    ):
        self.n_candidates = n_candidates
        self.damping = damping
        self.objective = objective
        self.diversity = diversity
        self.label_mode = label_mode
        self.batch_size = batch_size
        self.random_state = random_state

    # -- validation -----------------------------------------------------

    def _check_params(self):
        if isinstance(self.damping, bool) or not isinstance(self.damping, Real) \
                or not np.isfinite(self.damping) or self.damping < 0:
            raise ValueError(f"damping must be a finite float >= 0, got {self.damping!r}.")
        if self.objective not in ("max", "min"):
            raise ValueError(f"objective must be 'max' or 'min', got {self.objective!r}.")
        if self.label_mode not in ("predicted", "expected"):
            raise ValueError(
                f"label_mode must be 'predicted' or 'expected', got {self.label_mode!r}.")
        if self.diversity is not None and (
                isinstance(self.diversity, bool) or not isinstance(self.diversity, Integral)
                or self.diversity < 1):
            raise ValueError(f"diversity must be None or an int >= 1, got {self.diversity!r}.")
        if self.batch_size is not None and (
                isinstance(self.batch_size, bool) or not isinstance(self.batch_size, Integral)
                or self.batch_size < 1):
            raise ValueError(f"batch_size must be None or an int >= 1, got {self.batch_size!r}.")

    # -- the statistics -------------------------------------------------

    def _setup(self, estimator):
        net, transform = get_net(estimator)
        module = net.module_
        blocks, owners = find_blocks(module)
        try:
            device = next(module.parameters()).device
        except StopIteration:  # pragma: no cover - find_blocks needs parameters
            device = torch.device("cpu")

        def log_prob_fn(out):
            return F.log_softmax(to_logits(net, out).float(), dim=1)

        return module, transform, blocks, owners, device, log_prob_fn

    def _statistics(self, estimator, X_cand, X_labeled, y_labeled):
        """Coefficients ``a, c, e`` of the candidates and the labeled set's constants."""
        module, transform, blocks, owners, device, log_prob_fn = self._setup(estimator)
        bs = self.batch_size or _DEFAULT_BATCH_SIZE
        X_cand = transform(X_cand)

        def stats(X, targets):
            return iter_block_stats(
                module, blocks, owners, iter_batches(X, bs, device), log_prob_fn, targets)

        with eval_mode(module):
            if X_labeled is not None:
                X_lab = transform(X_labeled)
                if y_labeled is None:
                    targets = "predicted"
                else:
                    n_out = _n_outputs(module, X_lab, device, log_prob_fn)
                    targets = _label_codes(y_labeled, n_out)
                sums = factor_sums(stats(X_lab, targets), blocks)
            else:
                # No labeled set: the candidates' own Fisher is the prior.
                sums = factor_sums(stats(X_cand, self.label_mode), blocks)
            inv, const = damped_inverses(sums, blocks, float(self.damping))
            if not const["kfac"] and not const["diag"]:
                raise ValueError(
                    f"None of the supported layers of {type(module).__name__} ran in its "
                    "forward pass (layers called through torch.nn.functional are not seen).")
            a, c, e = sample_coefficients(
                stats(X_cand, self.label_mode), X_cand.shape[0], inv, const)
        if X_labeled is None:
            const = dict(const, n=0, phi=np.zeros_like(const["phi"]),
                         tau=np.zeros_like(const["tau"]), delta=0.0)
        self.blocks_ = [blocks[i].name for i in const["kfac"] + const["diag"]]
        return a, c, e, const

    # -- public ---------------------------------------------------------

    def criterion(self, estimator, X_batch, *, X_labeled=None, y_labeled=None):
        """``Tr(I_{A u B} I_A^-1)`` of a given batch ``B`` (KFAC, damped ``I_A``).

        Parameters
        ----------
        estimator : estimator
            See :meth:`query`.
        X_batch : array-like of shape (n_batch, ...)
            The batch ``B`` (labels per ``label_mode``).
        X_labeled, y_labeled : array-like, default=None
            The labeled set ``A``.

        Returns
        -------
        value : float
        """
        self._check_params()
        X_batch = check_pool(X_batch, name="X_batch")
        X_labeled, y_labeled = _check_labeled(X_labeled, y_labeled)
        a, c, e, const = self._statistics(estimator, X_batch, X_labeled, y_labeled)
        return trace_criterion(a, c, e, const, np.arange(X_batch.shape[0]))

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        self._check_params()
        X_labeled, y_labeled = _check_labeled(X_labeled, y_labeled)
        rng = check_random_state(self.random_state)
        n_pool = X_pool.shape[0]
        n_pre = min(n_instances * (self.diversity or 1), n_pool)
        cand = candidate_subset(n_pool, self.n_candidates, n_pre, rng)
        cand = np.arange(n_pool) if cand is None else cand
        if self.diversity is not None and n_instances < n_pre == cand.shape[0]:
            warnings.warn(
                f"BALNet scores {cand.shape[0]} candidates and pre-selects "
                f"n_instances * diversity = {n_pre} of them, i.e. all: the criterion "
                "does not narrow the diversity step's choice. Score more candidates "
                "(n_candidates; None scores the whole pool) or lower diversity.",
                UserWarning, stacklevel=user_stacklevel())

        a, c, e, const = self._statistics(estimator, X_pool[cand], X_labeled, y_labeled)
        chosen, first, values = greedy_trace_selection(
            a, c, e, const, min(n_pre, cand.shape[0]), self.objective)
        self.candidates_ = cand
        self.criterion_ = float(values[n_instances - 1])
        utilities = np.full(n_pool, -np.inf)
        utilities[cand] = first if self.objective == "max" else -first
        self.last_utilities_ = utilities

        if self.diversity is not None and chosen.shape[0] > n_instances:
            keep = self._diverse(estimator, X_pool, cand[chosen], n_instances,
                                 X_labeled, rng)
            chosen = chosen[keep]
            self.criterion_ = trace_criterion(a, c, e, const, chosen)
        return cand[chosen[:n_instances]]

    def _diverse(self, estimator, X_pool, pre, n_instances, X_labeled, rng):
        """Indices into ``pre`` of the Wasserstein prototypes (thesis Eq. 5.15)."""
        from ..ot import greedy_prototypes

        _, transform = get_net(estimator)
        n_pool = X_pool.shape[0]
        X_fixed = None if X_labeled is None else _flat(transform(X_labeled))
        n_all = n_pool + (0 if X_fixed is None else X_fixed.shape[0])
        sample = np.sort(rng.choice(n_all, size=min(_DIVERSITY_SAMPLE, n_all), replace=False))
        X_target = _flat(transform(X_pool[sample[sample < n_pool]]))
        if X_fixed is not None:
            X_target = np.concatenate([X_target, X_fixed[sample[sample >= n_pool] - n_pool]])
        # Screened greedy, as WassersteinPrototypes does by default: exact greedy
        # made the diversity step dominate the query by 100x.
        return greedy_prototypes(
            _flat(transform(X_pool[pre])), X_target, n_instances, X_fixed=X_fixed,
            n_target=_DIVERSITY_TARGET, quantize=True, max_solves="auto", random_state=rng)


def _flat(X):
    X = np.asarray(X)
    return X.reshape(X.shape[0], -1)


def _check_labeled(X_labeled, y_labeled):
    if X_labeled is None:
        return None, None
    X_labeled = check_pool(X_labeled, name="X_labeled")
    if y_labeled is not None:
        y_labeled = np.asarray(y_labeled)
        if y_labeled.shape[0] != X_labeled.shape[0]:
            raise ValueError(
                f"X_labeled has {X_labeled.shape[0]} rows but y_labeled has {y_labeled.shape[0]}.")
    return X_labeled, y_labeled


def _n_outputs(module, X, device, log_prob_fn):
    with torch.no_grad():
        x = next(iter_batches(X[:1], 1, device))[1]
        return int(log_prob_fn(module(x)).shape[1])


def _label_codes(y, n_classes):
    """``y`` as class indices of the network's outputs."""
    y = np.asarray(y)
    if y.dtype.kind not in "iub" and not (
            y.dtype.kind == "f" and np.array_equal(y, np.round(y))):
        raise ValueError(
            "y_labeled must hold class indices 0..n_classes-1 of the network's outputs "
            f"(skal.ActiveLearner passes them encoded), got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(
            f"y_labeled must hold class indices in [0, {n_classes - 1}] (the network has "
            f"{n_classes} outputs), got values in [{y.min()}, {y.max()}].")
    return y
