"""Reach the torch module behind an estimator and run batched inference on it."""

import contextlib

import numpy as np
import torch
from sklearn.exceptions import NotFittedError

__all__ = [
    "DEFAULT_INFERENCE_BATCH_SIZE",
    "get_net",
    "resolve_device",
    "iter_batches",
    "eval_mode",
    "predict_logits",
    "predict_proba",
    "embed",
    "features",
    "last_linear",
]

# Measured in benchmarks/bench_inference.py: on a 2-core CPU a LeNet is fastest
# with mid-sized batches; very large batches lose cache locality.
DEFAULT_INFERENCE_BATCH_SIZE = 256


def resolve_device(device="auto"):
    """Turn ``"auto"`` into CUDA when available, else CPU.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _is_skorch_net(obj):
    try:
        from skorch import NeuralNet
    except ImportError:  # pragma: no cover - skorch is a dependency
        return False
    return isinstance(obj, NeuralNet)


def _identity(X):
    return X


def get_net(estimator):
    """Find the fitted skorch net behind ``estimator``.

    Parameters
    ----------
    estimator : object
        A skorch ``NeuralNet``, a ``Pipeline`` whose last step is one, or an
        active learner (skal's, whose fitted model is ``estimator_``, or modAL's,
        whose model is ``estimator``).

    Returns
    -------
    net : skorch.NeuralNet
        The fitted net; ``net.module_`` is the torch module.
    transform : callable
        Applies the pipeline's steps before the net to raw samples (identity
        when there is no pipeline).

    Raises
    ------
    NotFittedError
        If the net has not been fitted.
    TypeError
        If there is no skorch net behind ``estimator``.

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> net, transform = get_net(cnn_classifier("digits", 10).initialize())
    >>> type(net.module_).__name__
    'DigitsCNN'
    """
    transforms = []
    current = estimator
    for _ in range(10):  # learners and pipelines nest a few levels at most
        if _is_skorch_net(current):
            if not getattr(current, "initialized_", False) or not hasattr(current, "module_"):
                raise NotFittedError(
                    f"This {type(current).__name__} is not fitted yet; fit it before querying."
                )
            return current, _compose(transforms)
        if hasattr(current, "query_strategy") and (
            hasattr(current, "estimator_") or hasattr(current, "estimator")
        ):
            inner = getattr(current, "estimator_", None)
            if inner is None:
                if _looks_like_skal_learner(current):
                    raise NotFittedError(
                        f"This {type(current).__name__} is not fitted yet; call fit first."
                    )
                inner = current.estimator
            current = inner
            continue
        if hasattr(current, "steps") and hasattr(current, "named_steps"):
            head = current[:-1]
            transforms.append(head.transform)
            current = current.steps[-1][1]
            continue
        break
    raise TypeError(
        f"This strategy needs a skorch neural net (a torch module), but got "
        f"{type(current).__name__}. Wrap the module in skorch's NeuralNetClassifier, "
        f"e.g. skal.nets.cnn_classifier(...)."
    )


def _looks_like_skal_learner(obj):
    return type(obj).__module__.startswith("skal.")


def _compose(transforms):
    if not transforms:
        return _identity

    def transform(X):
        for t in transforms:
            X = t(X)
        return X

    return transform


def _net_device(net):
    try:
        return next(net.module_.parameters()).device
    except StopIteration:
        return resolve_device(getattr(net, "device", "auto"))


def iter_batches(X, batch_size, device):
    """Stream ``X`` to ``device`` in float32 chunks.

    Yields
    ------
    rows : slice
        The rows of ``X`` in this chunk.
    batch : torch.Tensor
        Those rows as a float32 tensor on ``device``.

    Examples
    --------
    >>> [b.shape[0] for _, b in iter_batches(np.zeros((5, 2)), 2, "cpu")]
    [2, 2, 1]
    """
    n = X.shape[0]
    batch_size = int(batch_size)
    for start in range(0, n, batch_size):
        rows = slice(start, min(start + batch_size, n))
        chunk = X[rows]
        if isinstance(chunk, torch.Tensor):
            batch = chunk.to(device=device, dtype=torch.float32)
        else:
            batch = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(device)
        yield rows, batch


@contextlib.contextmanager
def eval_mode(module):
    """Put ``module`` in eval mode and restore each submodule's mode afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.train(training)


# Run conv nets in channels-last layout on CPU: oneDNN's max_pool2d is several
# times faster in NHWC, and it was about half of LeNet's NCHW inference time
# (benchmarks/bench_scaling.py --inference-only measures both layouts).
# Set to False to keep the module's own layout.
CHANNELS_LAST_ON_CPU = True


def _has_conv2d(module):
    return any(isinstance(m, torch.nn.Conv2d) for m in module.modules())


class _InferenceLayout:
    """Run ``module`` in channels-last layout inside a ``with`` block where it pays.

    On CPU, the 4-D weights of a module with ``Conv2d`` layers are viewed
    channels-last for the block and put back (the same tensors) afterwards, so the
    module, its optimizer and its state dict see no change. A module that cannot
    run channels-last (one that calls ``view`` on its activations) falls back to
    its own layout at the first batch.

    Examples
    --------
    >>> conv = torch.nn.Conv2d(1, 2, 3)
    >>> with _InferenceLayout(conv, "cpu") as layout:
    ...     out = layout.forward(conv, torch.zeros(1, 1, 5, 5))
    ...     layout.memory_format == torch.channels_last
    True
    >>> conv.weight.is_contiguous()
    True
    """

    def __init__(self, module, device):
        self.memory_format = None
        self._saved = []
        if CHANNELS_LAST_ON_CPU and torch.device(device).type == "cpu" and _has_conv2d(module):
            self.memory_format = torch.channels_last
            self._module = module

    def __enter__(self):
        if self.memory_format is not None:
            for p in list(self._module.parameters()) + list(self._module.buffers()):
                if p.dim() == 4:
                    self._saved.append((p, p.data))
                    # .to() restrides even where both layouts coincide (1 channel)
                    p.data = p.data.to(memory_format=self.memory_format)
        return self

    def __exit__(self, *exc):
        self.restore()
        return False

    def restore(self):
        for p, data in self._saved:
            p.data = data
        self._saved = []
        self.memory_format = None

    def forward(self, module, batch):
        if self.memory_format is None or batch.dim() != 4:
            return module(batch)
        try:
            return module(batch.to(memory_format=self.memory_format))
        except RuntimeError:
            # e.g. x.view(n, -1) needs NCHW strides; a genuine error recurs below.
            self.restore()
            return module(batch)


def _first_output(out):
    # skorch's convention: with several outputs, the first holds the predictions.
    return out[0] if isinstance(out, (tuple, list)) else out


def outputs_are_logits(net):
    """Whether the net's module returns logits (CrossEntropyLoss) or probabilities.

    skorch's ``NeuralNetClassifier`` defaults to ``NLLLoss`` with modules that
    end in a softmax; skal's zoo uses ``CrossEntropyLoss`` on logits.
    """
    criterion = getattr(net, "criterion_", getattr(net, "criterion", None))
    if isinstance(criterion, type):
        return issubclass(criterion, torch.nn.CrossEntropyLoss)
    return isinstance(criterion, torch.nn.CrossEntropyLoss)


def to_logits(net, output):
    """Convert the module's output to logits (log-probabilities if it gives probabilities)."""
    output = _first_output(output)
    if outputs_are_logits(net):
        return output
    return torch.log(output.clamp_min(1e-12))


def _batch_size(batch_size):
    if batch_size is None:
        return DEFAULT_INFERENCE_BATCH_SIZE
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    return batch_size


def predict_logits(estimator, X, *, batch_size=None):
    """Logits of the net behind ``estimator``, computed in no-grad batches.

    Parameters
    ----------
    estimator : object
        See :func:`get_net`.
    X : array-like of shape (n_samples, ...)
        Raw samples (the pipeline's transforms are applied).
    batch_size : int, default=DEFAULT_INFERENCE_BATCH_SIZE

    Returns
    -------
    logits : ndarray of shape (n_samples, n_classes)

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> net = cnn_classifier("digits", 10).initialize()
    >>> predict_logits(net, np.zeros((3, 1, 8, 8), dtype="float32")).shape
    (3, 10)
    """
    net, transform = get_net(estimator)
    X = transform(X)
    module = net.module_
    device = _net_device(net)
    out = None
    with eval_mode(module), torch.no_grad(), _InferenceLayout(module, device) as layout:
        for rows, batch in iter_batches(X, _batch_size(batch_size), device):
            logits = to_logits(net, layout.forward(module, batch)).float().cpu().numpy()
            if out is None:
                out = np.empty((X.shape[0], logits.shape[1]), dtype=np.float32)
            out[rows] = logits
    return out


def predict_proba(estimator, X, *, batch_size=None):
    """Class probabilities from any classifier, batched for torch nets.

    Torch nets run through :func:`predict_logits`; other estimators use their
    own ``predict_proba``.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> clf = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    >>> predict_proba(clf, [[0.0]]).shape
    (1, 2)
    """
    try:
        get_net(estimator)
    except TypeError:
        if not hasattr(estimator, "predict_proba"):
            raise TypeError(
                f"{type(estimator).__name__} has no predict_proba; this strategy needs "
                "class probabilities."
            ) from None
        return np.asarray(estimator.predict_proba(X), dtype=float)
    logits = torch.from_numpy(predict_logits(estimator, X, batch_size=batch_size))
    return torch.softmax(logits.double(), dim=1).numpy()


def last_linear(module):
    """The last ``nn.Linear`` of ``module`` (the class-output layer) and its name.

    Raises
    ------
    ValueError
        If the module has no ``nn.Linear`` layer.

    Examples
    --------
    >>> last_linear(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 4)))[0]
    '1'
    """
    found = None
    for name, sub in module.named_modules():
        if isinstance(sub, torch.nn.Linear):
            found = (name, sub)
    if found is None:
        raise ValueError(
            f"{type(module).__name__} has no nn.Linear layer: cannot find its class-output "
            "layer or penultimate features."
        )
    return found


def embed(estimator, X, *, batch_size=None):
    """Penultimate-layer features: the input of the module's last ``nn.Linear``.

    Returns
    -------
    features : ndarray of shape (n_samples, n_features)

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> net = cnn_classifier("digits", 10).initialize()
    >>> embed(net, np.zeros((2, 1, 8, 8), dtype="float32")).shape
    (2, 64)
    """
    net, transform = get_net(estimator)
    X = transform(X)
    module = net.module_
    _, head = last_linear(module)
    captured = {}

    def hook(_module, inputs):
        captured["features"] = inputs[0]

    handle = head.register_forward_pre_hook(hook)
    out = None
    try:
        device = _net_device(net)
        with eval_mode(module), torch.no_grad(), _InferenceLayout(module, device) as layout:
            for rows, batch in iter_batches(X, _batch_size(batch_size), device):
                layout.forward(module, batch)
                feats = captured.pop("features").flatten(1).float().cpu().numpy()
                if out is None:
                    out = np.empty((X.shape[0], feats.shape[1]), dtype=np.float32)
                out[rows] = feats
    finally:
        handle.remove()
    return out


def features(estimator, X, embedding="auto", *, batch_size=None):
    """Feature vectors of ``X`` for distance-based strategies (core-set, Wasserstein).

    Parameters
    ----------
    estimator : object
        See :func:`get_net`; only used for ``"model"`` (and ``"auto"``).
    X : array-like of shape (n_samples, ...)
    embedding : {"auto", "model", "input"}, fitted transformer or callable, default="auto"
        ``"model"``: :func:`embed` (penultimate layer of the net); ``"input"``:
        the flattened inputs; ``"auto"``: the model's when ``estimator`` is a
        fitted torch net, else the inputs; a fitted transformer (anything with
        ``transform``) or a callable is applied to ``X``.
    batch_size : int or None, default=None
        Inference batch size for ``"model"``.

    Returns
    -------
    features : ndarray of shape (n_samples, n_features), float64

    Examples
    --------
    >>> features(None, np.zeros((3, 1, 2, 2)), "input").shape
    (3, 4)
    """
    if isinstance(embedding, str):
        if embedding not in ("auto", "model", "input"):
            raise ValueError(
                "embedding must be 'auto', 'model', 'input', a transformer or a callable, "
                f"got {embedding!r}."
            )
        mode = embedding
        if mode == "auto":
            try:
                get_net(estimator)
                mode = "model"
            except (TypeError, NotFittedError):
                mode = "input"
        Z = embed(estimator, X, batch_size=batch_size) if mode == "model" else X
    elif hasattr(embedding, "transform"):
        Z = embedding.transform(X)
    elif callable(embedding):
        Z = embedding(X)
    else:
        raise ValueError(
            "embedding must be 'auto', 'model', 'input', a transformer (with transform) or a "
            f"callable, got {type(embedding).__name__}."
        )
    Z = np.asarray(Z, dtype=np.float64)
    return Z.reshape(Z.shape[0], -1)
