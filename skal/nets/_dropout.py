"""Monte-Carlo dropout inference that runs the deterministic prefix only once."""

import contextlib
import weakref

import numpy as np
import torch
import torch.fx
from sklearn.utils import check_random_state

from ._glue import _batch_size, _net_device, eval_mode, get_net, iter_batches, to_logits

__all__ = ["dropout_layers", "mc_dropout_proba", "split_at_first_dropout", "seeded_torch"]

_DROPOUT_FUNCTIONS = {
    torch.nn.functional.dropout,
    torch.nn.functional.dropout1d,
    torch.nn.functional.dropout2d,
    torch.nn.functional.dropout3d,
    torch.nn.functional.alpha_dropout,
    torch.nn.functional.feature_alpha_dropout,
}


def dropout_layers(module):
    """The dropout modules of ``module``.

    Raises
    ------
    ValueError
        If the module has none: MC-dropout strategies cannot sample from it.

    Examples
    --------
    >>> len(dropout_layers(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())))
    1
    """
    layers = [m for m in module.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    if not layers:
        raise ValueError(
            f"{type(module).__name__} has no dropout layers (nn.Dropout, nn.Dropout2d, ...); "
            "an MC-dropout strategy needs them. Add dropout to the module or use another strategy."
        )
    return layers


@contextlib.contextmanager
def seeded_torch(random_state, device=None):
    """Seed torch inside the block and restore the global RNG state afterwards.

    Dropout modules and skorch's data loaders draw from torch's global RNG; forking
    it keeps results reproducible without side effects on the caller's RNG.
    """
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    devices = []
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        devices = list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield seed


def _is_dropout_node(node, modules):
    if node.op == "call_module":
        return isinstance(modules.get(node.target), torch.nn.modules.dropout._DropoutNd)
    if node.op == "call_function":
        return node.target in _DROPOUT_FUNCTIONS
    return False


_SPLIT_CACHE = weakref.WeakKeyDictionary()


def split_at_first_dropout(module):
    """Split ``module`` into a deterministic prefix and a stochastic suffix.

    Everything computed before the first dropout layer is the same in every
    MC-dropout pass, so it only needs to run once. The split uses a ``torch.fx``
    trace; modules that cannot be traced return ``None``.

    Returns
    -------
    (prefix, suffix) or None
        ``suffix(*prefix(x))`` equals ``module(x)``. They share ``module``'s
        parameters and layers.
    """
    if module in _SPLIT_CACHE:
        return _SPLIT_CACHE[module]
    split = None
    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception:  # data-dependent control flow and the like
        traced = None
    if traced is not None:
        split = _split_graph(module, traced)
    _SPLIT_CACHE[module] = split
    return split


def _split_graph(module, traced):
    modules = dict(traced.named_modules())
    nodes = list(traced.graph.nodes)
    cut = next((i for i, n in enumerate(nodes) if _is_dropout_node(n, modules)), None)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if cut is None or len(placeholders) != 1 or cut <= len(placeholders):
        return None
    before = set(nodes[:cut])
    # Values computed before the cut and still needed after it.
    crossing = []
    for node in nodes[:cut]:
        if any(user not in before for user in node.users) and node not in crossing:
            crossing.append(node)
    if not crossing:
        return None

    prefix_graph = torch.fx.Graph()
    env = {}
    for node in nodes[:cut]:
        env[node] = prefix_graph.node_copy(node, lambda n: env[n])
    prefix_graph.output(tuple(env[n] for n in crossing))

    suffix_graph = torch.fx.Graph()
    env = {}
    for i, node in enumerate(crossing):
        env[node] = suffix_graph.placeholder(f"carried_{i}")
    for node in nodes[cut:]:
        env[node] = suffix_graph.node_copy(node, lambda n: env[n])
    return torch.fx.GraphModule(traced, prefix_graph), torch.fx.GraphModule(traced, suffix_graph)


def _repeat(value, n):
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return value.repeat(n, *([1] * (value.dim() - 1)))
    return value


@contextlib.contextmanager
def _dropout_on(module):
    layers = dropout_layers(module)
    with eval_mode(module):
        for layer in layers:
            layer.train()
        yield


def mc_dropout_proba(estimator, X, n_passes, *, random_state=None, batch_size=None):
    """Class probabilities under ``n_passes`` Monte-Carlo dropout samples.

    Only dropout layers are switched to training mode; BatchNorm and the rest
    stay in eval mode. The part of the network before the first dropout layer is
    deterministic and runs once per batch instead of ``n_passes`` times.

    Parameters
    ----------
    estimator : object
        See :func:`skal.nets.get_net`.
    X : array-like of shape (n_samples, ...)
    n_passes : int
        Number of stochastic forward passes.
    random_state : int, RandomState instance or None
        Seeds the dropout masks (the global torch RNG is left untouched).
    batch_size : int, default=DEFAULT_INFERENCE_BATCH_SIZE

    Returns
    -------
    proba : ndarray of shape (n_passes, n_samples, n_classes)

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> net = cnn_classifier("digits", 10).initialize()
    >>> X = np.zeros((4, 1, 8, 8), dtype="float32")
    >>> mc_dropout_proba(net, X, n_passes=3, random_state=0).shape
    (3, 4, 10)
    """
    net, X = _net_and_input(estimator, X, n_passes)
    module = net.module_
    split = split_at_first_dropout(module)

    def forward(batch):
        if split is None:
            return torch.stack([to_logits(net, module(batch)) for _ in range(n_passes)])
        prefix, suffix = split
        # All passes go through the suffix as one batch: dropout draws an
        # independent mask per row, and one large call beats many small ones.
        return to_logits(net, suffix(*[_repeat(t, n_passes) for t in prefix(batch)]))

    with _dropout_on(module), seeded_torch(random_state, _net_device(net)):
        return passes_proba(net, X, n_passes, forward, batch_size)


def _net_and_input(estimator, X, n_passes):
    if isinstance(n_passes, bool) or not isinstance(n_passes, (int, np.integer)) or n_passes < 1:
        raise ValueError(f"n_passes must be a positive int, got {n_passes!r}.")
    net, transform = get_net(estimator)
    return net, transform(X)


def passes_proba(net, X, n_passes, forward, batch_size=None):
    """Softmax of ``forward(batch)`` (``n_passes`` stacked passes) over ``X``, batch by batch.

    The loop shared by the Monte-Carlo dropout samplers: ``forward`` maps a batch
    of ``b`` rows to logits of ``n_passes * b`` rows, pass-major.

    Returns
    -------
    proba : ndarray of shape (n_passes, n_samples, n_classes), float64
    """
    out = None
    with torch.no_grad():
        for rows, batch in iter_batches(X, _batch_size(batch_size), _net_device(net)):
            logits = forward(batch).reshape(n_passes, batch.shape[0], -1)
            proba = torch.softmax(logits.double(), dim=2).cpu().numpy()
            if out is None:
                out = np.empty((n_passes, X.shape[0], proba.shape[2]), dtype=np.float64)
            out[:, rows] = proba
    return out
