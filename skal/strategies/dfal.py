"""Margin-based deep active learning (Ducoffe's thesis, chapter 4): DFAL, CEAL, EGL.

- :class:`DFAL` queries the samples with the smallest DeepFool perturbation
  (closest to the decision boundary) and adds their adversarial copies to the
  training set with the oracle's label.
- :class:`CEAL` queries by uncertainty and pseudo-labels the confident rest.
- :class:`EGL` queries the samples whose expected gradient is the largest.
"""

import numbers
import warnings

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap

from ..adversarial import _check_norm, deepfool
from ..base import (
    ScoreBasedStrategy,
    candidate_subset,
    check_int,
    check_taught,
    top_k,
    user_stacklevel,
)
from ..nets import eval_mode, get_net, predict_proba, to_logits
from .uncertainty import _MEASURES, uncertainty

__all__ = ["CEAL", "DFAL", "EGL"]

DEEPFOOL_BATCH_SIZE = 128
# Pool rows transformed and attacked at a time: bounds DFAL's memory on big pools.
_POOL_CHUNK = 4096

# Failed attacks (label unchanged after max_iter steps) rank after every
# successful one while keeping the utilities finite; among themselves they are
# still ordered by the size of the perturbation they reached.
_FAILED_OFFSET = 1e12


def _module_device(module):
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


class _Logits(torch.nn.Module):
    """The net's module with its output turned into logits (log-probabilities
    for modules ending in a softmax: their differences are the logit differences)."""

    def __init__(self, net):
        super().__init__()
        self.inner = net.module_
        self._net = net

    def forward(self, x):
        return to_logits(self._net, self.inner(x))


def _unwrap_learner(estimator):
    for _ in range(10):
        if hasattr(estimator, "query_strategy") and (
            hasattr(estimator, "estimator_") or hasattr(estimator, "estimator")
        ):
            inner = getattr(estimator, "estimator_", None)
            estimator = inner if inner is not None else estimator.estimator
        else:
            break
    return estimator


def _pipeline_heads(estimator):
    """The transforming steps in front of the net, outermost first ([] if none)."""
    heads = []
    current = _unwrap_learner(estimator)
    for _ in range(10):
        if not hasattr(current, "steps"):
            break
        head = current[:-1]
        if any(step not in (None, "passthrough") for _, step in head.steps):
            heads.append(head)
        current = _unwrap_learner(current.steps[-1][1])
    return heads


def _row_keys(X, dtype):
    X = np.ascontiguousarray(X, dtype=dtype)
    if X.shape[0] == 0:
        return []
    return [row.tobytes() for row in X.reshape(X.shape[0], -1)]


_PRESELECT = ("margin", "random")


def _check_preselect(strategy):
    """Validate ``preselect`` / ``n_candidates`` / ``candidate_factor`` before any work."""
    preselect = strategy.preselect
    if preselect is not None and preselect not in _PRESELECT:
        raise ValueError(
            f"preselect must be 'margin', 'random' or None (the whole pool), got {preselect!r}."
        )
    check_int(strategy.n_candidates, "n_candidates", allow_none=True)
    check_int(strategy.candidate_factor, "candidate_factor")
    if preselect is None and strategy.n_candidates is not None:
        raise ValueError(
            f"n_candidates={strategy.n_candidates!r} needs a pre-selection: set "
            "preselect='margin' or 'random' (preselect=None scores the whole pool)."
        )


def _preselect_size(strategy, n_instances):
    """How many candidates the pre-selection keeps (before the pool's size caps it)."""
    if strategy.n_candidates is not None:
        return strategy.n_candidates
    return int(strategy.candidate_factor) * int(n_instances)


def _preselected(strategy, estimator, X_pool, n_instances):
    """The pre-selected candidates (sorted pool indices), or None for the whole pool.

    ``n_candidates`` (or ``candidate_factor * n_instances``) of them: the
    smallest-margin samples (one batched inference pass over the pool) or a
    random subset drawn from ``random_state``.
    """
    _check_preselect(strategy)
    if strategy.preselect is None:
        return None
    n_pool = X_pool.shape[0]
    size = _preselect_size(strategy, n_instances)
    if strategy.preselect == "random":
        return candidate_subset(n_pool, size, n_instances, strategy.random_state)
    size = max(int(size), int(n_instances))
    if size >= n_pool:
        return None
    margins = uncertainty(predict_proba(estimator, X_pool), "margin")
    # Sorted, so candidate order is pool order and top_k's ties stay global.
    return np.sort(top_k(margins, size))


class DFAL(ScoreBasedStrategy):
    """DeepFool Active Learning: query the samples closest to the decision boundary.

    Each candidate is attacked with DeepFool (:func:`skal.adversarial.deepfool`,
    batched); the norm of the perturbation ``r`` upper-bounds the sample's
    distance to the decision boundary, and the smallest are queried
    (utility ``-||r||``). With ``add_adversarial=True`` the adversarial copies
    ``x + r`` of the queried samples are added to the training set with the
    oracle's label (:meth:`augment`): one annotation, two training examples.
    ``add_adversarial=False`` is the thesis's ``DFAL_`` ablation.

    Ducoffe & Precioso, "Adversarial active learning for deep networks: a
    margin based approach", 2018 (thesis chapter 4).

    Parameters
    ----------
    max_iter : int, default=50
        DeepFool steps per sample. The thesis's code uses 10.
    overshoot : float, default=0.02
        DeepFool overshoot (``(1 + overshoot) * r``). The thesis's code uses 0.
    norm : {2, np.inf}, default=2
        The attack's norm; utilities use the same norm.
    preselect : {"margin", "random"} or None, default="margin"
        Which samples are attacked. ``"margin"``: the pool's most uncertain
        (smallest top-2 margin, one batched inference pass), where DeepFool's
        perturbations are small anyway; ``"random"``: a random subset (the
        thesis's code); ``None``: the whole pool (the paper's DFAL).
    n_candidates : int or None, default=None
        Size of the pre-selected set. ``None`` means
        ``candidate_factor * n_instances``. The thesis's code: 300 random.
    candidate_factor : int, default=5
        Pre-selected candidates per queried sample when ``n_candidates`` is None.
        Chosen so that at a 40K pool and batches of 500 the query costs a few
        margin queries (``benchmarks/bench_scaling.py``).
    add_adversarial : bool, default=True
        Whether :meth:`augment` returns the adversarial copies.
    batch_size : int or None, default=None
        Samples attacked together (default 128).
    random_state : int, RandomState instance or None, default=None
        Draws the candidate subset with ``preselect="random"``.

    Attributes
    ----------
    last_utilities_ : ndarray
        Utilities of the last query (``-inf`` outside the candidate set).
    candidates_ : ndarray or None
        Pool indices attacked at the last query (None: the whole pool).
    adversarial_ : ndarray or None
        Adversarial copies of the last queried samples, in the input space of
        the pool (NaN rows where the attack failed); None when unavailable.

    Notes
    -----
    The attack runs on the net's input, i.e. after a Pipeline's transforming
    steps. The copies are mapped back with the steps' ``inverse_transform``;
    if a step has none, no copies are added (with a warning) and DFAL behaves
    like ``DFAL_``. Attacks that do not change the label within ``max_iter`` steps
    rank after all successful ones and give no copy. The module runs in eval
    mode, so samples of a batch never interact (BatchNorm uses running stats).

    Examples
    --------
    >>> import numpy as np
    >>> from skal.nets import cnn_classifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(40, 1, 8, 8).astype("float32")
    >>> y = np.arange(40) % 3
    >>> net = cnn_classifier("digits", 3, max_epochs=1, random_state=0).fit(X[:20], y[:20])
    >>> dfal = DFAL(random_state=0)
    >>> idx = dfal.query(net, X[20:], n_instances=2)
    >>> X_adv, y_adv = dfal.augment(X[20:][idx], y[20:][idx])
    >>> X_adv.shape
    (2, 1, 8, 8)
    """

    def __init__(
        self,
        max_iter=50,
        overshoot=0.02,
        norm=2,
        preselect="margin",
        n_candidates=None,
        candidate_factor=5,
        add_adversarial=True,
        batch_size=None,
        random_state=None,
    ):
        self.max_iter = max_iter
        self.overshoot = overshoot
        self.norm = norm
        self.preselect = preselect
        self.n_candidates = n_candidates
        self.candidate_factor = candidate_factor
        self.add_adversarial = add_adversarial
        self.batch_size = batch_size
        self.random_state = random_state

    def _attack(self, estimator, X, n_keep=0):
        """Attack ``X`` chunk by chunk.

        Returns the utilities of every row, and for the ``n_keep`` best rows
        (best first, ties to the lower index, as ``top_k``) their positions, their
        adversarial versions in the net's input space and the success flags;
        plus the pipeline transform. Only the best rows' perturbations are kept,
        so memory does not grow with the pool.
        """
        check_int(self.batch_size, "batch_size", allow_none=True)
        norm = _check_norm(self.norm)
        net, transform = get_net(estimator)
        module = _Logits(net)
        device = _module_device(net.module_)
        n = X.shape[0]
        utilities = np.empty(n, dtype=np.float64)
        best = np.empty(0, dtype=np.int64)
        best_adv = best_ok = None
        for start in range(0, n, _POOL_CHUNK):
            stop = min(n, start + _POOL_CHUNK)
            Xt = np.asarray(transform(X[start:stop]))
            if Xt.dtype.kind != "f":
                Xt = Xt.astype(np.float32)
            r, labels, adv_labels, _ = deepfool(
                module, Xt, max_iter=self.max_iter, overshoot=self.overshoot, norm=norm,
                batch_size=self.batch_size or DEEPFOOL_BATCH_SIZE, device=device,
                return_labels=True,
            )
            flat = r.reshape(r.shape[0], -1).astype(np.float64)
            norms = np.linalg.norm(flat, ord=2 if norm == 2 else np.inf, axis=1)
            ok = labels != adv_labels
            utilities[start:stop] = np.where(ok, -norms, -_FAILED_OFFSET - norms)
            if n_keep:
                # Merge this chunk's best into the running best; sorting the
                # merged rows by index keeps top_k's tie-breaking global.
                local = top_k(utilities[start:stop], n_keep)
                rows = np.concatenate([best, start + local])
                adv = Xt[local] + r[local]
                adv = adv if best_adv is None else np.concatenate([best_adv, adv])
                ok = ok[local] if best_ok is None else np.concatenate([best_ok, ok[local]])
                by_index = np.argsort(rows, kind="stable")
                keep = by_index[top_k(utilities[rows[by_index]], n_keep)]
                best, best_adv, best_ok = rows[keep], adv[keep], ok[keep]
        return utilities, best, best_adv, best_ok, transform

    def _utilities(self, estimator, X):
        return self._attack(estimator, X)[0]

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        self.adversarial_ = None
        self._queried_rows = None
        check_int(self.batch_size, "batch_size", allow_none=True)
        _check_norm(self.norm)
        candidates = _preselected(self, estimator, X_pool, n_instances)
        self.candidates_ = candidates
        X_cand = X_pool if candidates is None else X_pool[candidates]
        utilities, chosen, X_adv, success, transform = self._attack(
            estimator, X_cand, n_keep=n_instances
        )
        if candidates is None:
            self.last_utilities_ = utilities
            indices = chosen
        else:
            self.last_utilities_ = np.full(X_pool.shape[0], -np.inf)
            self.last_utilities_[candidates] = utilities
            indices = candidates[chosen]
        self._queried_rows = X_pool[indices]
        if self.add_adversarial:
            self.adversarial_ = self._to_pool_space(estimator, transform, X_adv, success, X_pool)
        return indices

    def _to_pool_space(self, estimator, transform, X_adv, success, X_pool):
        heads = _pipeline_heads(estimator)
        X_target = np.asarray(X_adv, dtype=np.float64)
        try:
            for head in reversed(heads):
                X_adv = head.inverse_transform(X_adv)
            X_adv = np.asarray(X_adv)
            if X_adv.shape[1:] != X_pool.shape[1:]:
                raise ValueError(
                    f"inverse_transform gave samples of shape {X_adv.shape[1:]} instead of "
                    f"{X_pool.shape[1:]}"
                )
            if heads:
                # A step whose inverse_transform is not its inverse (e.g. a
                # FunctionTransformer without inverse_func) must not pass silently.
                back = np.asarray(transform(X_adv), dtype=np.float64)
                if back.shape != X_target.shape or not np.allclose(
                    back, X_target, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(X_target).max())
                ):
                    raise ValueError("inverse_transform does not invert transform")
        except (AttributeError, ValueError, TypeError, NotImplementedError) as exc:
            warnings.warn(
                "DFAL cannot map its adversarial copies back through the pipeline's "
                f"transforming steps ({exc}); no copies will be added (DFAL_ behaviour). "
                "Give every step an inverse_transform, or use add_adversarial=False.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
            return None
        dtype = X_pool.dtype if X_pool.dtype.kind == "f" else np.float32
        X_adv = X_adv.astype(dtype, copy=True)
        X_adv[~success] = np.nan
        return X_adv

    def augment(self, X_queried, y_queried):
        """Adversarial copies of the last queried samples, with their oracle labels.

        Rows of ``X_queried`` that are not among the samples returned by the last
        query (or whose attack failed) get no copy; with ``add_adversarial=False``
        nothing is returned.

        Parameters
        ----------
        X_queried : array-like of shape (n, ...)
            Queried samples, as given to the oracle (any order, any subset).
        y_queried : array-like of shape (n,)
            Their labels.

        Returns
        -------
        X_extra : ndarray of shape (m, ...)
            ``x + r`` for the matched rows, in the pool's input space.
        y_extra : ndarray of shape (m,)
        """
        X_queried, y_queried = check_taught(X_queried, y_queried)
        adv = getattr(self, "adversarial_", None)
        rows = getattr(self, "_queried_rows", None)
        empty = (X_queried[:0].astype(adv.dtype if adv is not None else X_queried.dtype),
                 y_queried[:0])
        if not self.add_adversarial or adv is None or rows is None or len(X_queried) == 0:
            return empty
        if X_queried.shape[1:] != rows.shape[1:]:
            return empty
        lookup = {key: i for i, key in enumerate(_row_keys(rows, rows.dtype))}
        src, dst = [], []
        for j, key in enumerate(_row_keys(X_queried, rows.dtype)):
            i = lookup.get(key)
            if i is not None and not np.isnan(adv[i]).any():
                src.append(i)
                dst.append(j)
        if not src:
            return empty
        return adv[src].copy(), y_queried[dst]


def _column_labels(estimator, n_columns):
    """Label of each predict_proba column of ``estimator``."""
    if hasattr(estimator, "query_strategy"):
        classes = getattr(estimator, "classes_", None)
        if classes is not None:  # skal's ActiveLearner: columns follow classes_
            return np.asarray(classes)
        inner = getattr(estimator, "estimator_", None)
        return _column_labels(inner if inner is not None else estimator.estimator, n_columns)
    try:
        get_net(estimator)
    except TypeError:
        classes = getattr(estimator, "classes_", None)
        return np.arange(n_columns) if classes is None else np.asarray(classes)
    # skorch predicts the column index, whatever classes it has seen.
    return np.arange(n_columns)


class CEAL(ScoreBasedStrategy):
    """Cost-Effective Active Learning: uncertainty queries plus pseudo-labels.

    Queries the most uncertain samples, and pseudo-labels every other pool
    sample whose prediction entropy is below ``delta`` with the predicted
    class. The pseudo-labels are recomputed at every query and handed to the
    learner through :meth:`augment`; they are never sent to the oracle.

    Wang et al., "Cost-effective active learning for deep image classification",
    IEEE TCSVT 2017 (a baseline of the thesis's chapter 4, where
    ``delta`` is 0.05 on MNIST, 0.19 on Shoe-Bag and 0.08 on Quick-Draw).

    Parameters
    ----------
    measure : {"entropy", "least_confident", "margin"}, default="entropy"
        Uncertainty used to choose the queries.
    delta : float, default=0.05
        Entropy threshold (nats) under which a sample is pseudo-labeled.
    batch_size : int or None, default=None
        Inference batch size for torch nets.

    Attributes
    ----------
    last_utilities_ : ndarray
        Uncertainty of every pool sample at the last query.
    pseudo_indices_ : ndarray
        Pool indices pseudo-labeled at the last query (the queried ones excluded).
    pseudo_labels_ : ndarray
        Their labels (in the estimator's label space).

    Notes
    -----
    Original CEAL does not keep pseudo-labels from one round to the next:
    each round's set replaces the previous one. The class attribute
    ``transient_augment = True`` tells a learner to do so.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> clf = LogisticRegression().fit([[-3.0], [-2.0], [2.0], [3.0]], [0, 0, 1, 1])
    >>> ceal = CEAL(delta=0.2)
    >>> X_pool = np.array([[-9.0], [0.1], [9.0]])
    >>> idx = ceal.query(clf, X_pool, 1)
    >>> idx, ceal.augment(X_pool[idx], [1])[1]
    (array([1]), array([0, 1]))
    """

    transient_augment = True

    def __init__(self, measure="entropy", delta=0.05, batch_size=None):
        self.measure = measure
        self.delta = delta
        self.batch_size = batch_size

    def _check_params(self):
        if self.measure not in _MEASURES:
            raise ValueError(f"measure must be one of {_MEASURES}, got {self.measure!r}.")
        if isinstance(self.delta, bool) or not isinstance(self.delta, numbers.Real) or not (
            0 <= self.delta < np.inf
        ):
            raise ValueError(f"delta must be a finite float >= 0, got {self.delta!r}.")
        check_int(self.batch_size, "batch_size", allow_none=True)

    def _utilities(self, estimator, X):
        self._check_params()
        return uncertainty(predict_proba(estimator, X, batch_size=self.batch_size), self.measure)

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        self._check_params()
        proba = predict_proba(estimator, X_pool, batch_size=self.batch_size)
        utilities = uncertainty(proba, self.measure)
        if not np.isfinite(utilities).all():
            raise RuntimeError("CEAL produced non-finite utilities.")
        indices = top_k(utilities, n_instances)
        self.last_utilities_ = utilities

        labels = _column_labels(estimator, proba.shape[1])
        pred = proba.argmax(axis=1)
        confident = uncertainty(proba, "entropy") < self.delta
        confident[indices] = False
        # A column beyond the learner's known classes has no label to give.
        confident &= pred < len(labels)
        self.pseudo_indices_ = np.flatnonzero(confident)
        self.pseudo_labels_ = labels[pred[self.pseudo_indices_]]
        self._pool = X_pool
        self._queried_rows = X_pool[indices]
        return indices

    def augment(self, X_queried, y_queried):
        """Pseudo-labeled pool samples from the last query.

        Returns nothing when none of ``X_queried`` is among the last queried
        samples (the pseudo-labels belong to that query). Rows equal to a
        ``X_queried`` row are left out.

        Returns
        -------
        X_extra : ndarray of shape (m, ...)
        y_extra : ndarray of shape (m,)
        """
        X_queried, y_queried = check_taught(X_queried, y_queried)
        rows = getattr(self, "_queried_rows", None)
        pool = getattr(self, "_pool", None)
        empty = X_queried[:0], y_queried[:0]
        if rows is None or pool is None or X_queried.shape[1:] != rows.shape[1:]:
            return empty
        queried = set(_row_keys(rows, rows.dtype))
        taught = set(_row_keys(X_queried, rows.dtype))
        if not queried & taught:
            return empty
        X_extra = pool[self.pseudo_indices_]
        keep = np.array([k not in taught for k in _row_keys(X_extra, rows.dtype)], dtype=bool)
        return X_extra[keep], self.pseudo_labels_[keep]


class EGL(ScoreBasedStrategy):
    """Expected Gradient Length: query the samples that would change the model most.

    Utility ``sum_k p(k|x) ||grad_w loss(x, k)||_2``, the expected norm of the
    gradient of the cross-entropy over all trainable weights if ``x`` had label
    ``k``. Per-sample, per-class gradients are computed in batches with
    ``torch.func`` (``vmap`` of ``jacrev`` over ``functional_call``), in eval mode.

    Zhang, Lease & Wallace, "Active discriminative text representation
    learning", AAAI 2017 (eq. 2.5-2.6 of the thesis). The thesis's code instead
    takes the norm of the unweighted mean gradient; this class follows the
    equations.

    Parameters
    ----------
    preselect : {"random", "margin"} or None, default="random"
        Which samples are scored: a random subset (as the thesis's code did),
        the smallest-margin samples, or (``None``) the whole pool.
    n_candidates : int or None, default=None
        Size of the pre-selected set. ``None`` means
        ``candidate_factor * n_instances``. The thesis's code: 300.
    candidate_factor : int, default=5
        Pre-selected candidates per queried sample when ``n_candidates`` is None.
        At 5 a query of 500 from 40K Fashion-MNIST images costs 4.7x margin's
        (10: 7.3x; docs/scaling.md).
    batch_size : int or None, default=None
        Samples per batch. ``None`` picks the largest batch whose gradients
        (``batch * n_classes * n_weights`` floats) fit in about 64 MB.
    random_state : int, RandomState instance or None, default=None
        Draws the candidate subset with ``preselect="random"``.

    Attributes
    ----------
    last_utilities_ : ndarray
        Utilities of the last query (``-inf`` outside the candidate set).
    candidates_ : ndarray or None
        Pool indices scored at the last query (None: the whole pool).

    Examples
    --------
    >>> import numpy as np
    >>> from skal.nets import cnn_classifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(30, 1, 8, 8).astype("float32")
    >>> net = cnn_classifier("digits", 3, max_epochs=1, random_state=0)
    >>> net = net.fit(X[:20], np.arange(20) % 3)
    >>> EGL().utilities(net, X[20:]).shape
    (10,)
    """

    _MEMORY_FLOATS = 1 << 24

    def __init__(self, preselect="random", n_candidates=None, candidate_factor=5,
                 batch_size=None, random_state=None):
        self.preselect = preselect
        self.n_candidates = n_candidates
        self.candidate_factor = candidate_factor
        self.batch_size = batch_size
        self.random_state = random_state

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        check_int(self.batch_size, "batch_size", allow_none=True)
        candidates = _preselected(self, estimator, X_pool, n_instances)
        self.candidates_ = candidates
        if candidates is None:
            self.last_utilities_ = self._checked_utilities(estimator, X_pool)
            return top_k(self.last_utilities_, n_instances)
        scores = self._checked_utilities(estimator, X_pool[candidates])
        self.last_utilities_ = np.full(X_pool.shape[0], -np.inf)
        self.last_utilities_[candidates] = scores
        return candidates[top_k(scores, n_instances)]

    def _utilities(self, estimator, X):
        check_int(self.batch_size, "batch_size", allow_none=True)
        net, transform = get_net(estimator)
        Xt = np.asarray(transform(X))
        module = net.module_
        device = _module_device(module)
        params = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}
        if not params:
            raise ValueError(f"{type(module).__name__} has no trainable weights; EGL needs some.")
        fixed = {k: v.detach() for k, v in module.named_parameters() if not v.requires_grad}
        fixed.update(dict(module.named_buffers()))
        n_weights = sum(p.numel() for p in params.values())

        def class_losses(p, x):
            out = functional_call(module, ({**p, **fixed},), (x[None],))
            # Cross-entropy of x for every possible label k.
            return -torch.log_softmax(to_logits(net, out)[0], dim=0)

        per_sample = vmap(jacrev(class_losses), in_dims=(None, 0))
        dtype = next(iter(params.values())).dtype
        out = np.empty(Xt.shape[0], dtype=np.float64)
        batch = self.batch_size
        with eval_mode(module):
            start = 0
            while start < Xt.shape[0]:
                stop = Xt.shape[0] if batch is None else min(Xt.shape[0], start + batch)
                if batch is None:
                    stop = start + 1  # the first sample tells the number of classes
                xb = torch.as_tensor(np.ascontiguousarray(Xt[start:stop])).to(device, dtype)
                with torch.no_grad():
                    proba = torch.softmax(to_logits(net, module(xb)), dim=1)
                jac = per_sample(params, xb)
                sq = sum(g.flatten(2).pow(2).sum(2) for g in jac.values())
                out[start:stop] = (proba * sq.sqrt()).sum(1).double().cpu().numpy()
                if batch is None:
                    batch = max(1, min(256, self._MEMORY_FLOATS // (proba.shape[1] * n_weights)))
                start = stop
        return out
