"""Query by committee: DQBC (dropout committees, Ducoffe's thesis ch. 3) and QBC.

A *dropout committee* is sampled from one trained network, without training an
ensemble: each member is a "partial network" in which a random subset of the
units of every hidden layer is switched off (batchwise dropout, Graham 2015),
and whose class-output layer is then fine-tuned on the labeled set.
:class:`DQBC` scores the pool by the committee's soft disagreement with its
majority vote (Eq. 3.3 of the thesis); :class:`QueryByCommittee` offers the
classic disagreement measures (vote entropy, KL to the consensus) on a dropout
committee or on any list of fitted classifiers.
"""

import contextlib
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import nn
from torch.nn import functional as F

from ..base import ScoreBasedStrategy, check_pool
from ..nets import (
    DEFAULT_INFERENCE_BATCH_SIZE,
    eval_mode,
    get_net,
    iter_batches,
    last_linear,
    predict_proba,
    to_logits,
)

__all__ = [
    "DQBC",
    "QueryByCommittee",
    "DropoutCommittee",
    "dropout_committee",
    "maskable_layers",
    "majority_vote",
    "soft_vote_disagreement",
    "vote_disagreement",
    "vote_entropy",
    "consensus_kl",
]

_SEED_MAX = np.iinfo(np.int32).max


# ---------------------------------------------------------------------------
# Disagreement measures on committee outputs of shape (n_members, n, n_classes)
# ---------------------------------------------------------------------------
def _check_committee_proba(proba):
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 3:
        raise ValueError(
            "committee probabilities must have shape (n_members, n_samples, n_classes), "
            f"got {proba.shape}."
        )
    if proba.shape[0] == 0 or proba.shape[2] == 0:
        raise ValueError(f"committee probabilities have an empty axis: {proba.shape}.")
    return proba


def _votes(proba):
    """Vote counts, shape (n, n_classes): how many members predict each class."""
    _, n, n_classes = proba.shape
    picks = proba.argmax(axis=2)  # (n_members, n)
    counts = np.zeros((n, n_classes), dtype=np.int64)
    np.add.at(counts, (np.broadcast_to(np.arange(n), picks.shape), picks), 1)
    return counts


def majority_vote(proba):
    """The committee's majority label (Eq. 3.2 of the thesis).

    ``LABEL(x) = argmax_j sum_i 1[j = argmax_k p_i(k|x)]``; ties go to the
    lowest class index.

    Parameters
    ----------
    proba : array-like of shape (n_members, n_samples, n_classes)

    Returns
    -------
    labels : ndarray of shape (n_samples,)

    Examples
    --------
    >>> p = np.array([[[0.9, 0.1]], [[0.2, 0.8]], [[0.6, 0.4]]])
    >>> majority_vote(p)
    array([0])
    """
    return _votes(_check_committee_proba(proba)).argmax(axis=1)


def soft_vote_disagreement(proba):
    """DQBC's soft disagreement ``rg(x)`` (Eq. 3.3 of the thesis).

    ``rg(x) = sum_i [max_j p_i(j|x) - p_i(LABEL(x)|x)]`` with ``LABEL`` the
    majority vote: members that agree with the majority add 0, a dissenting
    member adds the gap between its own top class and the majority class.

    Parameters
    ----------
    proba : array-like of shape (n_members, n_samples, n_classes)

    Returns
    -------
    scores : ndarray of shape (n_samples,)

    Examples
    --------
    >>> p = np.array([[[0.9, 0.1]], [[0.2, 0.8]], [[0.6, 0.4]]])
    >>> soft_vote_disagreement(p).round(2)   # only member 2 dissents: 0.8 - 0.2
    array([0.6])
    """
    proba = _check_committee_proba(proba)
    label = _votes(proba).argmax(axis=1)
    p_label = np.take_along_axis(proba, label[None, :, None], axis=2)[..., 0]
    return (proba.max(axis=2) - p_label).sum(axis=0)


def vote_disagreement(proba):
    """Number of members whose prediction differs from the majority vote.

    The hard score of the thesis's released code (``compute_margin``).

    Examples
    --------
    >>> p = np.array([[[0.9, 0.1]], [[0.2, 0.8]], [[0.6, 0.4]]])
    >>> vote_disagreement(p)
    array([1.])
    """
    proba = _check_committee_proba(proba)
    counts = _votes(proba)
    return (proba.shape[0] - counts.max(axis=1)).astype(float)


def vote_entropy(proba):
    """Entropy of the committee's vote distribution (Dagan & Engelson 1995).

    ``-sum_c V(c)/K log(V(c)/K)`` with ``V(c)`` the number of the ``K``
    members that predict class ``c``.

    Examples
    --------
    >>> p = np.array([[[0.9, 0.1]], [[0.2, 0.8]]])
    >>> vote_entropy(p).round(3)
    array([0.693])
    """
    proba = _check_committee_proba(proba)
    share = _votes(proba) / proba.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(share > 0, share * np.log(share), 0.0)
    return np.maximum(-terms.sum(axis=1), 0.0)


def consensus_kl(proba, eps=1e-12):
    """Mean KL divergence of the members from the consensus (McCallum & Nigam 1998).

    ``(1/K) sum_i KL(p_i || p_bar)`` with ``p_bar`` the members' mean
    distribution (skactiveml's ``KL_divergence``; modAL's
    ``max_disagreement_sampling`` takes the max over members instead).

    Examples
    --------
    >>> p = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    >>> consensus_kl(p).round(3)
    array([0.693])
    """
    proba = _check_committee_proba(proba)
    consensus = proba.mean(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(np.maximum(proba, eps)) - np.log(np.maximum(consensus, eps))
        terms = np.where(proba > 0, proba * ratio, 0.0)
    return np.maximum(terms.sum(axis=2).mean(axis=0), 0.0)


_MEASURES = {
    "soft": soft_vote_disagreement,
    "vote": vote_disagreement,
    "vote_entropy": vote_entropy,
    "consensus_kl": consensus_kl,
}


# ---------------------------------------------------------------------------
# Dropout committees
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Unit:
    """One maskable hidden layer.

    ``layer`` is the Linear/Conv module whose units are dropped; ``target`` is
    the module whose output the mask multiplies (the layer itself, or the
    BatchNorm right after it).
    """

    layer: str
    target: str
    n_units: int
    channel_last: bool  # Linear: units on the last axis; Conv: channels on axis 1


def _probe_order(module, x_probe):
    """Names of the leaf modules in the order a forward pass calls them."""
    order = []
    handles = []
    for name, sub in module.named_modules():
        if next(sub.children(), None) is None:
            handles.append(sub.register_forward_pre_hook(
                lambda _m, _inp, name=name: order.append(name)
            ))
    try:
        with eval_mode(module), torch.no_grad():
            module(x_probe)
    finally:
        for handle in handles:
            handle.remove()
    return order


def maskable_layers(module, x_probe):
    """The hidden layers a dropout committee masks, in forward order.

    Every ``nn.Linear`` and convolution called in a forward pass, except the
    class-output layer (:func:`skal.nets.last_linear`). When a layer is
    immediately followed by a BatchNorm over its units (conv-BN blocks, as in
    ResNets), the mask is applied after the BatchNorm, so that a dropped
    channel is really zero rather than the BatchNorm's shift.

    Parameters
    ----------
    module : torch.nn.Module
    x_probe : torch.Tensor
        One input batch (a single sample is enough) to find the call order.

    Returns
    -------
    units : list of _Unit

    Raises
    ------
    ValueError
        If the module has no class-output ``nn.Linear`` or no maskable hidden layer.

    Examples
    --------
    >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> [u.layer for u in maskable_layers(m, torch.zeros(1, 4))]
    ['0']
    """
    head_name, _ = last_linear(module)
    named = dict(module.named_modules())
    order = _probe_order(module, x_probe)
    units, seen = [], set()
    for i, name in enumerate(order):
        layer = named[name]
        if name in seen or name == head_name:
            continue
        seen.add(name)
        if isinstance(layer, nn.Linear):
            n_units, channel_last = layer.out_features, True
        elif isinstance(layer, nn.modules.conv._ConvNd):
            n_units, channel_last = layer.out_channels, False
        else:
            continue
        target = name
        if i + 1 < len(order):
            following = named[order[i + 1]]
            if (
                isinstance(following, nn.modules.batchnorm._BatchNorm)
                and following.num_features == n_units
            ):
                target = order[i + 1]
        units.append(_Unit(name, target, int(n_units), channel_last))
    if not units:
        raise ValueError(
            f"{type(module).__name__} has no maskable hidden layer: a dropout committee "
            "drops units of the nn.Linear / nn.Conv layers before the class-output layer, "
            "and this network has none (only its output layer). Use a network with hidden "
            "layers, or QueryByCommittee with a list of fitted estimators."
        )
    return units


def _draw_mask(n_units, dropout, rng):
    # Exactly n - floor(n p) units are kept, as in the author's code: a plain
    # Bernoulli draw can switch off every channel of a small layer (LeNet's 6
    # filters: 1.6 % per member at p = 0.5), which makes the member constant.
    n_drop = int(np.floor(n_units * dropout + 1e-9))
    n_keep = max(1, n_units - n_drop)
    mask = np.zeros(n_units, dtype=np.float32)
    mask[rng.choice(n_units, n_keep, replace=False)] = 1.0 / (1.0 - dropout)
    return mask


def _module_device(module):
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


class DropoutCommittee:
    """A committee of partial networks sampled from one trained network.

    Made by :func:`dropout_committee` (and kept by :class:`DQBC` as
    ``committee_``). It stores only the masks and the fine-tuned output layers,
    never the network, so it pickles small; :meth:`predict_proba` applies it
    to the network it was built from, through forward hooks that are removed
    afterwards.

    Attributes
    ----------
    units : list
        The masked layers (``.layer``, ``.target``, ``.n_units``).
    masks : list of list of ndarray
        ``masks[k][l]``: member ``k``'s mask of unit ``l``, zeros for dropped
        units and ``1 / (1 - dropout)`` for kept ones.
    heads : list of (ndarray, ndarray or None) or None
        Each member's fine-tuned output layer ``(weight, bias)``; None when the
        members use the full network's output layer (no fine-tuning).
    head_name : str
        Name of the class-output layer.
    loss_before, loss_after : ndarray of shape (n_members,) or None
        Each member's mean cross-entropy on the labeled set before and after
        fine-tuning (None without fine-tuning).
    """

    def __init__(self, units, masks, heads, head_name, loss_before=None, loss_after=None):
        self.units = list(units)
        self.masks = masks
        self.heads = heads
        self.head_name = head_name
        self.loss_before = loss_before
        self.loss_after = loss_after

    @property
    def n_members(self):
        return len(self.masks)

    def __repr__(self):
        tuned = "fine-tuned" if self.heads is not None else "not fine-tuned"
        return (
            f"DropoutCommittee(n_members={self.n_members}, "
            f"masked_layers={len(self.units)}, {tuned})"
        )

    def _check_module(self, module):
        named = dict(module.named_modules())
        for unit in self.units:
            layer = named.get(unit.layer)
            if layer is None or unit.target not in named:
                raise ValueError(
                    f"this committee was built for another network: it has no layer "
                    f"{unit.layer!r}."
                )
            n = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
            if n != unit.n_units:
                raise ValueError(
                    f"this committee was built for another network: layer {unit.layer!r} "
                    f"has {n} units, not {unit.n_units}."
                )
        return named

    @contextlib.contextmanager
    def _hooks(self, module, *, capture=None, use_heads=True):
        """Install the masks (and heads); yield ``select(k)`` choosing the member.

        If ``capture`` is a list, the input of the class-output layer is
        appended to it on each call.
        """
        named = self._check_module(module)
        device = _module_device(module)
        masks = [
            [torch.as_tensor(m, device=device) for m in member] for member in self.masks
        ]
        heads = None
        if use_heads and self.heads is not None:
            heads = [
                (
                    torch.as_tensor(w, device=device),
                    None if b is None else torch.as_tensor(b, device=device),
                )
                for w, b in self.heads
            ]
        current = {"k": 0}

        def make_mask_hook(i, channel_last):
            def hook(_module, _inputs, output):
                mask = masks[current["k"]][i]
                if channel_last:
                    return output * mask.to(output.dtype)
                shape = (-1,) + (1,) * (output.ndim - 2)
                return output * mask.to(output.dtype).view(shape)

            return hook

        def head_hook(_module, inputs, output):
            if capture is not None:
                capture.append(inputs[0].detach())
            if heads is None:
                return None
            weight, bias = heads[current["k"]]
            return F.linear(inputs[0], weight.to(output.dtype),
                            None if bias is None else bias.to(output.dtype))

        handles = []
        try:
            for i, unit in enumerate(self.units):
                handles.append(named[unit.target].register_forward_hook(
                    make_mask_hook(i, unit.channel_last)
                ))
            handles.append(named[self.head_name].register_forward_hook(head_hook))

            def select(k):
                current["k"] = k

            yield select
        finally:
            for handle in handles:
                handle.remove()

    def iter_proba(self, estimator, X, *, batch_size=None):
        """Members' class probabilities, one pool chunk at a time.

        Each chunk goes to the device once and through the ``n_members``
        partial networks, so the pool is read once and the work is
        ``n_members`` forward passes.

        Yields
        ------
        rows : slice
        proba : ndarray of shape (n_members, n_rows, n_classes)
        """
        net, transform = get_net(estimator)
        X = check_pool(transform(X), name="X")
        module = net.module_
        device = _module_device(module)
        batch_size = _check_batch_size(batch_size)
        with eval_mode(module), torch.no_grad(), self._hooks(module) as select:
            for rows, batch in iter_batches(X, batch_size, device):
                logits = []
                for k in range(self.n_members):
                    select(k)
                    logits.append(to_logits(net, module(batch)))
                proba = torch.softmax(torch.stack(logits).double(), dim=2)
                yield rows, proba.cpu().numpy()

    def predict_proba(self, estimator, X, *, batch_size=None):
        """Class probabilities of every member.

        Parameters
        ----------
        estimator : object
            The network the committee was built from (see
            :func:`skal.nets.get_net`).
        X : array-like of shape (n_samples, ...)
        batch_size : int or None, default=None

        Returns
        -------
        proba : ndarray of shape (n_members, n_samples, n_classes)
        """
        out = None
        for rows, proba in self.iter_proba(estimator, X, batch_size=batch_size):
            if out is None:
                out = np.empty((self.n_members, len(X), proba.shape[2]))
            out[:, rows] = proba
        return out

    def features(self, estimator, X, *, batch_size=None):
        """Each member's penultimate features (input of the class-output layer).

        Returns
        -------
        features : list of torch.Tensor of shape (n_samples, n_features)
            On the network's device.
        """
        net, transform = get_net(estimator)
        X = transform(X)
        module = net.module_
        device = _module_device(module)
        captured = [[] for _ in range(self.n_members)]
        sink = []
        with eval_mode(module), torch.no_grad(), \
                self._hooks(module, capture=sink, use_heads=False) as select:
            for _, batch in iter_batches(X, _check_batch_size(batch_size), device):
                for k in range(self.n_members):
                    select(k)
                    sink.clear()
                    module(batch)
                    captured[k].append(sink[-1])
        feats = [torch.cat(c) if c else torch.empty(0, device=device) for c in captured]
        for f in feats:
            if f.ndim != 2:
                raise ValueError(
                    "the class-output layer must receive flat (n_samples, n_features) "
                    f"inputs to fine-tune a committee; got shape {tuple(f.shape)}."
                )
        return feats


def _check_batch_size(batch_size):
    if batch_size is None:
        return DEFAULT_INFERENCE_BATCH_SIZE
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}.")
    return int(batch_size)


def _check_committee_params(n_members, dropout, finetune_epochs, finetune_lr,
                            finetune_batch_size):
    if isinstance(n_members, bool) or not isinstance(n_members, Integral) or n_members < 2:
        raise ValueError(f"n_members must be an int >= 2, got {n_members!r}.")
    if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}.")
    if (isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, Integral)
            or finetune_epochs < 0):
        raise ValueError(f"finetune_epochs must be an int >= 0, got {finetune_epochs!r}.")
    if isinstance(finetune_lr, bool) or not isinstance(finetune_lr, Real) or not finetune_lr > 0:
        raise ValueError(f"finetune_lr must be a positive float, got {finetune_lr!r}.")
    if (isinstance(finetune_batch_size, bool) or not isinstance(finetune_batch_size, Integral)
            or finetune_batch_size < 1):
        raise ValueError(
            f"finetune_batch_size must be a positive int, got {finetune_batch_size!r}."
        )


def _labeled_targets(y_labeled, n_outputs):
    """Class indices for the net's outputs, and the rows that carry a label."""
    y = np.asarray(y_labeled).ravel()
    keep = np.ones(y.shape[0], dtype=bool)
    if y.dtype.kind in "iuf":
        keep = y != -1  # skal's marker of unlabeled rows
        y_kept = y[keep]
        if y_kept.dtype.kind == "f" and not np.all(np.mod(y_kept, 1) == 0):
            y_kept = None
    else:
        y_kept = None
    if y_kept is None or (y_kept.size and (y_kept.min() < 0 or y_kept.max() >= n_outputs)):
        raise ValueError(
            f"y_labeled must hold class indices 0..{n_outputs - 1} of the network's outputs "
            "(as skorch nets are trained; skal.ActiveLearner passes them encoded), got "
            f"values {np.unique(y)[:10].tolist()}."
        )
    return y_kept.astype(np.int64), keep


def _member_losses(features, weight, bias, y):
    """Mean cross-entropy of each member's head on its own features, shape (K,)."""
    logits = torch.matmul(features, weight.transpose(-1, -2))
    if bias is not None:
        logits = logits + bias.unsqueeze(-2)
    n_members, n, n_classes = logits.shape
    losses = F.cross_entropy(
        logits.reshape(-1, n_classes), y.repeat(n_members), reduction="none"
    )
    return losses.view(n_members, n).mean(dim=1)


def _finetune_heads(features, y, weight0, bias0, *, epochs, lr, batch_size, seed):
    """Fine-tune every member's output layer on its cached features, all at once.

    ``features`` has shape (n_members, n, d). The members' heads are stacked
    and trained together with Adam on the sum of their losses: the gradients
    and Adam's element-wise updates of one member do not depend on the others,
    so this equals training them one by one on the same minibatch order, with
    n_members times fewer steps.
    """
    n_members = features.shape[0]
    weight = weight0.detach().expand(n_members, *weight0.shape).clone().requires_grad_(True)
    bias = None
    if bias0 is not None:
        bias = bias0.detach().expand(n_members, *bias0.shape).clone().requires_grad_(True)
    params = [weight] if bias is None else [weight, bias]
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = features.shape[1]
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(features.device)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                optimizer.zero_grad()
                _member_losses(features[:, idx], weight, bias, y[idx]).sum().backward()
                optimizer.step()
    return weight.detach(), None if bias is None else bias.detach()


def dropout_committee(
    estimator,
    X_probe,
    *,
    n_members=5,
    dropout=0.5,
    X_labeled=None,
    y_labeled=None,
    finetune_epochs=10,
    finetune_lr=1e-3,
    finetune_batch_size=64,
    batch_size=None,
    random_state=None,
):
    """Sample a committee of partial networks from a trained network (DQBC).

    Each member draws one mask per hidden layer, shared by every sample
    (batchwise dropout): ``floor(n * dropout)`` of the ``n`` units of each
    hidden ``nn.Linear`` and ``n`` channels of each hidden convolution are
    switched off and the others rescaled by ``1 / (1 - dropout)``. The input
    and the class-output layer are never masked. Then each member's
    class-output layer, starting from the full network's, is fine-tuned with
    Adam on the labeled set while the rest stays frozen; the member's
    penultimate features are computed once (one forward pass of the labeled
    set per member) and only the last layer is trained on them.

    Parameters
    ----------
    estimator : object
        A fitted skorch net, a Pipeline ending in one, or an active learner
        (see :func:`skal.nets.get_net`).
    X_probe : array-like of shape (n_samples, ...)
        A few raw samples (the first is used) to trace the order of the layers.
    n_members : int, default=5
    dropout : float, default=0.5
        Fraction of the units of each hidden layer a member drops.
    X_labeled, y_labeled : array-like or None, default=None
        The labeled set, ``y_labeled`` holding class indices of the network's
        outputs (rows with ``-1`` are ignored). Without it (or with
        ``finetune_epochs=0``) the members keep the full network's output layer.
    finetune_epochs : int, default=10
    finetune_lr : float, default=1e-3
    finetune_batch_size : int, default=64
    batch_size : int or None, default=None
        Inference batch size for the labeled features.
    random_state : int, RandomState instance or None, default=None
        Seeds the masks and the fine-tuning order.

    Returns
    -------
    committee : DropoutCommittee

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> X = np.random.RandomState(0).rand(20, 1, 8, 8).astype("float32")
    >>> y = np.arange(20) % 2
    >>> net = cnn_classifier("digits", 2, max_epochs=1, random_state=0).fit(X, y)
    >>> committee = dropout_committee(net, X, n_members=3, X_labeled=X, y_labeled=y,
    ...                               random_state=0)
    >>> committee.predict_proba(net, X).shape
    (3, 20, 2)
    """
    _check_committee_params(n_members, dropout, finetune_epochs, finetune_lr,
                            finetune_batch_size)
    rng = check_random_state(random_state)
    net, transform = get_net(estimator)
    module = net.module_
    device = _module_device(module)
    X_probe = check_pool(transform(X_probe), name="X_probe")
    probe = next(iter_batches(X_probe[:1], 1, device))[1]
    units = maskable_layers(module, probe)
    head_name, head = last_linear(module)

    masks = [[_draw_mask(u.n_units, dropout, rng) for u in units] for _ in range(int(n_members))]
    # Drawn after the masks, so the committee does not depend on the fine-tuning settings.
    seed = rng.randint(_SEED_MAX)
    committee = DropoutCommittee(units, masks, None, head_name)

    if X_labeled is None or y_labeled is None or finetune_epochs == 0:
        return committee
    X_labeled = check_pool(X_labeled, name="X_labeled")
    if len(y_labeled) != X_labeled.shape[0]:
        raise ValueError(
            f"X_labeled has {X_labeled.shape[0]} rows but y_labeled has {len(y_labeled)}."
        )
    y, keep = _labeled_targets(y_labeled, head.out_features)
    if y.size == 0:
        return committee
    X_labeled = X_labeled[keep]
    y = torch.as_tensor(y, device=device)
    weight0 = head.weight.detach()
    bias0 = None if head.bias is None else head.bias.detach()
    with torch.no_grad():
        feats = torch.stack(committee.features(estimator, X_labeled, batch_size=batch_size))
        feats = feats.to(weight0.dtype)
        weight, bias = _finetune_heads(
            feats, y, weight0, bias0, epochs=int(finetune_epochs), lr=float(finetune_lr),
            batch_size=int(finetune_batch_size), seed=int(seed),
        )
        before = _member_losses(feats, weight0, bias0, y).cpu().numpy()
        after = _member_losses(feats, weight, bias, y).cpu().numpy()
    weight = weight.cpu().numpy()
    bias = None if bias is None else bias.cpu().numpy()
    heads = [(weight[k], None if bias is None else bias[k]) for k in range(int(n_members))]
    committee.heads = heads
    committee.loss_before = before.astype(float)
    committee.loss_after = after.astype(float)
    return committee


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------
class DQBC(ScoreBasedStrategy):
    """Query by dropout committee (Ducoffe & Precioso, thesis ch. 3).

    Builds a committee of ``n_members`` partial networks from the trained
    network by batchwise dropout (one mask per hidden layer and member, shared
    by all samples, removing whole units of ``nn.Linear`` layers and whole
    channels of convolutions), fine-tunes each member's output layer on the
    labeled set, and queries the samples the committee disagrees on most:

    ``rg(x) = sum_i [max_j p_i(j|x) - p_i(LABEL(x)|x)]``, ``LABEL`` the
    majority vote (Eq. 3.3).

    Works with any skorch network made of standard layers (the zoo's
    DigitsCNN, LeNet5, VGG8, torchvision ResNets, ...): masks are forward
    hooks on the hidden ``nn.Linear`` / ``nn.Conv*`` layers, applied after the
    BatchNorm that follows a layer if any.

    Parameters
    ----------
    n_members : int, default=5
        Committee size (5 in the thesis, 3 in the author's code).
    dropout : float, default=0.5
        Fraction of each hidden layer's units a member drops.
    score : {"soft", "vote"}, default="soft"
        ``"soft"``: ``rg(x)`` above. ``"vote"``: the number of members that
        disagree with the majority (the author's released code).
    finetune_epochs : int, default=10
        Epochs of Adam on each member's output layer. ``0``, or querying
        without a labeled set, skips fine-tuning: the members then share the
        full network's output layer.
    finetune_lr : float, default=1e-3
    finetune_batch_size : int, default=64
    n_candidates : int or None, default=None
        Score a random subset of the pool of this size (the thesis uses
        ``30 * n_instances``); None scores the whole pool.
    batch_size : int or None, default=None
        Inference batch size.
    random_state : int, RandomState instance or None, default=None
        Seeds the masks, the fine-tuning and the candidate subset.

    Attributes
    ----------
    committee_ : DropoutCommittee
        The committee of the last query (masks, fine-tuned heads, labeled
        losses before and after fine-tuning).

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> X = np.random.RandomState(0).rand(30, 1, 8, 8).astype("float32")
    >>> y = np.arange(30) % 3
    >>> net = cnn_classifier("digits", 3, max_epochs=2, random_state=0).fit(X[:12], y[:12])
    >>> idx = DQBC(random_state=0).query(net, X[12:], 4, X_labeled=X[:12], y_labeled=y[:12])
    >>> idx.shape
    (4,)
    """

    def __init__(
        self,
        n_members=5,
        dropout=0.5,
        score="soft",
        finetune_epochs=10,
        finetune_lr=1e-3,
        finetune_batch_size=64,
        n_candidates=None,
        batch_size=None,
        random_state=None,
    ):
        self.n_members = n_members
        self.dropout = dropout
        self.score = score
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.finetune_batch_size = finetune_batch_size
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.random_state = random_state

    def build_committee(self, estimator, X_probe, *, X_labeled=None, y_labeled=None,
                        random_state=None):
        """Sample (and fine-tune) a dropout committee with this strategy's settings.

        ``random_state`` defaults to the strategy's. See :func:`dropout_committee`.
        """
        return dropout_committee(
            estimator, X_probe,
            n_members=self.n_members, dropout=self.dropout,
            X_labeled=X_labeled, y_labeled=y_labeled,
            finetune_epochs=self.finetune_epochs, finetune_lr=self.finetune_lr,
            finetune_batch_size=self.finetune_batch_size, batch_size=self.batch_size,
            random_state=self.random_state if random_state is None else random_state,
        )

    def _check_score(self):
        if self.score not in ("soft", "vote"):
            raise ValueError(f"score must be 'soft' or 'vote', got {self.score!r}.")

    def _prepare(self, estimator, X_pool, *, X_labeled=None, y_labeled=None):
        self._check_score()
        self.committee_ = self.build_committee(
            estimator, X_pool, X_labeled=X_labeled, y_labeled=y_labeled
        )

    def _utilities(self, estimator, X):
        measure = _MEASURES[self.score]
        scores = np.empty(X.shape[0])
        for rows, proba in self.committee_.iter_proba(estimator, X, batch_size=self.batch_size):
            scores[rows] = measure(proba)
        return scores


class QueryByCommittee(ScoreBasedStrategy):
    """Query by committee with the classic disagreement measures.

    The committee is either a dropout committee sampled from the trained
    network (as in :class:`DQBC`), or a list of fitted classifiers with
    ``predict_proba`` (as modAL's ``Committee`` or scikit-activeml's
    ``QueryByCommittee``).

    Parameters
    ----------
    committee : None, DQBC or list of estimators, default=None
        ``None``: a dropout committee with :class:`DQBC`'s defaults, built
        from the queried network (or, when the estimator passed to
        :meth:`query` is a modAL ``Committee``, its ``learner_list``).
        A :class:`DQBC` instance: a dropout committee with its settings
        (``n_members``, ``dropout``, fine-tuning). A list of fitted
        classifiers: those, whatever estimator :meth:`query` receives; their
        ``predict_proba`` columns must be the same classes. Note that
        ``sklearn.base.clone`` (hence ``GridSearchCV``) returns unfitted copies
        of listed estimators; wrap them in ``sklearn.frozen.FrozenEstimator``
        to keep them fitted.
    measure : {"vote_entropy", "consensus_kl"}, default="vote_entropy"
        Vote entropy of the members' predictions, or the mean KL divergence
        of the members from their mean distribution.
    n_candidates : int or None, default=None
        Score a random subset of the pool of this size.
    batch_size : int or None, default=None
        Inference batch size.
    random_state : int, RandomState instance or None, default=None
        Seeds the dropout committee and the candidate subset.

    Attributes
    ----------
    committee_ : DropoutCommittee or list
        The committee of the last query.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.randn(40, 2), rng.randint(2, size=40)
    >>> members = [LogisticRegression().fit(X, y),
    ...            DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)]
    >>> QueryByCommittee(members).query(None, X, 3).shape
    (3,)
    """

    def __init__(self, committee=None, measure="vote_entropy", n_candidates=None,
                 batch_size=None, random_state=None):
        self.committee = committee
        self.measure = measure
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.random_state = random_state

    def _check_params(self):
        if self.measure not in ("vote_entropy", "consensus_kl"):
            raise ValueError(
                f"measure must be 'vote_entropy' or 'consensus_kl', got {self.measure!r}."
            )
        committee = self.committee
        if committee is None or isinstance(committee, DQBC):
            return
        if isinstance(committee, (list, tuple)):
            if len(committee) < 2:
                raise ValueError(
                    f"a committee needs at least 2 members, got {len(committee)}."
                )
            return
        raise ValueError(
            "committee must be None, a DQBC instance (dropout committee settings) or a "
            f"list of fitted classifiers, got {type(committee).__name__}."
        )

    def _resolve(self, estimator, X_probe, X_labeled, y_labeled, random_state):
        committee = self.committee
        if committee is None and hasattr(estimator, "learner_list"):
            committee = list(estimator.learner_list)  # modAL's Committee
            if len(committee) < 2:
                raise ValueError(
                    f"a committee needs at least 2 members, got {len(committee)}."
                )
        if isinstance(committee, (list, tuple)):
            return list(committee)
        spec = DQBC() if committee is None else committee
        return spec.build_committee(
            estimator, X_probe, X_labeled=X_labeled, y_labeled=y_labeled,
            random_state=random_state,
        )

    def _prepare(self, estimator, X_pool, *, X_labeled=None, y_labeled=None):
        self._check_params()
        self.committee_ = self._resolve(
            estimator, X_pool, X_labeled, y_labeled, self.random_state
        )

    def _utilities(self, estimator, X):
        measure = _MEASURES[self.measure]
        committee = self.committee_
        scores = np.empty(X.shape[0])
        if isinstance(committee, DropoutCommittee):
            for rows, proba in committee.iter_proba(estimator, X, batch_size=self.batch_size):
                scores[rows] = measure(proba)
            return scores
        return measure(_members_proba(committee, X, self.batch_size))


def _unwrap_frozen(member):
    # FrozenEstimator hides the skorch net from skal.nets.get_net; look through it
    # so the net runs batched instead of through skorch's predict_proba.
    try:
        from sklearn.frozen import FrozenEstimator
    except ImportError:  # pragma: no cover - sklearn < 1.6
        return member
    while isinstance(member, FrozenEstimator):
        member = member.estimator
    return member


def _members_proba(members, X, batch_size):
    probas = []
    for i, member in enumerate(members):
        proba = predict_proba(_unwrap_frozen(member), X, batch_size=batch_size)
        if proba.ndim != 2 or proba.shape[0] != X.shape[0]:
            raise ValueError(
                f"committee member {i} ({type(member).__name__}) returned probabilities of "
                f"shape {proba.shape} for {X.shape[0]} samples."
            )
        probas.append(proba)
    widths = {p.shape[1] for p in probas}
    if len(widths) != 1:
        raise ValueError(
            "committee members disagree on the number of classes "
            f"({sorted(widths)}); fit them on the same classes."
        )
    classes = [getattr(_unwrap_frozen(m), "classes_", None) for m in members]
    known = [np.asarray(c) for c in classes if c is not None]
    if known and any(c.shape != known[0].shape or np.any(c != known[0]) for c in known):
        raise ValueError("committee members were fitted on different classes_.")
    return np.stack(probas)
