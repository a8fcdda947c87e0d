"""Consistent MC dropout: one dropout mask per pass, shared by every sample of the pool.

:func:`skal.nets.mc_dropout_proba` draws an independent mask per row, which is
right for per-sample scores (BALD) but not for joint ones: BatchBALD's joint
entropy needs ``p(y_i | w_k)`` for *one* weight sample ``w_k`` across all the
points of a batch (Kirsch et al. 2019, "consistent MC dropout").
"""

import contextlib

import numpy as np
import torch
from sklearn.utils import check_random_state

from ..nets import dropout_layers, eval_mode, split_at_first_dropout, to_logits
from ..nets._dropout import _net_and_input, _repeat, passes_proba

__all__ = ["consistent_mc_dropout_proba"]

# Element-wise masks; the channel-wise ones drop whole feature maps.
_ELEMENTWISE = (torch.nn.Dropout,)
_CHANNELWISE = (torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)


def _mask_shape(layer, x):
    if isinstance(layer, _CHANNELWISE) and x.dim() > 2:
        return (x.shape[1],) + (1,) * (x.dim() - 2)
    return tuple(x.shape[1:])


@contextlib.contextmanager
def _fixed_masks(module, n_passes, generator):
    """Dropout layers stay in eval mode; a hook multiplies by the pass's fixed mask.

    Rows arrive pass-major (``n_passes`` blocks of the same batch), so row ``r``
    belongs to pass ``r // batch``.
    """
    layers = dropout_layers(module)
    for layer in layers:
        if not isinstance(layer, _ELEMENTWISE + _CHANNELWISE):
            raise TypeError(
                f"Consistent MC dropout supports nn.Dropout and nn.Dropout1d/2d/3d, not "
                f"{type(layer).__name__}."
            )
    masks = {}

    def hook(layer, inputs, output):
        x = inputs[0]
        if layer not in masks:
            keep = 1.0 - float(layer.p)
            shape = (n_passes,) + _mask_shape(layer, x)
            if keep <= 0.0:
                mask = torch.zeros(shape)
            else:
                mask = torch.bernoulli(torch.full(shape, keep), generator=generator) / keep
            masks[layer] = mask.to(device=x.device, dtype=x.dtype)
        return x * masks[layer].repeat_interleave(x.shape[0] // n_passes, dim=0)

    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        with eval_mode(module):
            yield
    finally:
        for handle in handles:
            handle.remove()


def consistent_mc_dropout_proba(estimator, X, n_passes, *, random_state=None, batch_size=None):
    """Class probabilities under ``n_passes`` dropout masks, each shared by all rows.

    Pass ``k`` is the network with one fixed set of dropped units (a weight
    sample ``w_k``), applied to every row of ``X``: duplicates of a sample get
    the same probabilities in every pass. The deterministic part before the
    first dropout runs once per batch (as :func:`skal.nets.mc_dropout_proba`).

    Parameters
    ----------
    estimator : object
        See :func:`skal.nets.get_net`.
    X : array-like of shape (n_samples, ...)
        The whole pool: the masks are drawn once per call.
    n_passes : int
    random_state : int, RandomState instance or None, default=None
        Seeds the masks (torch's global RNG is not used).
    batch_size : int or None, default=None

    Returns
    -------
    proba : ndarray of shape (n_passes, n_samples, n_classes)

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> net = cnn_classifier("digits", 10).initialize()
    >>> X = np.zeros((4, 1, 8, 8), dtype="float32")
    >>> p = consistent_mc_dropout_proba(net, X, 3, random_state=0)
    >>> p.shape, bool(np.allclose(p[:, 0], p[:, 3]))
    ((3, 4, 10), True)
    """
    net, X = _net_and_input(estimator, X, n_passes)
    module = net.module_
    split = split_at_first_dropout(module)
    generator = torch.Generator().manual_seed(
        int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    )

    def forward(batch):
        if split is None:
            return to_logits(net, module(_repeat(batch, n_passes)))
        prefix, suffix = split
        return to_logits(net, suffix(*[_repeat(t, n_passes) for t in prefix(batch)]))

    with _fixed_masks(module, n_passes, generator):
        return passes_proba(net, X, n_passes, forward, batch_size)
