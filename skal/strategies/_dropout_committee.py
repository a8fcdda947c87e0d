"""Dropout committees: partial networks sampled from one trained net, with fine-tuned heads.

:func:`dropout_committee` builds a :class:`DropoutCommittee` for DQBC and
QueryByCommittee; both are importable from :mod:`skal.strategies.committee`.
"""

import contextlib
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import nn
from torch.nn import functional as F

from ..base import check_pool
from ..nets import (
    DEFAULT_INFERENCE_BATCH_SIZE,
    eval_mode,
    get_net,
    iter_batches,
    last_linear,
    to_logits,
)

_SEED_MAX = np.iinfo(np.int32).max


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
