"""Model zoo: the thesis's CNNs, a small CNN for 8x8 digits, torchvision models."""

import numpy as np
import skorch
import torch
from torch import nn

from ._dropout import seeded_torch
from ._glue import resolve_device

__all__ = [
    "NeuralNetClassifier", "DigitsCNN", "FashionLeNet", "LeNet5", "VGG8", "TorchvisionNet",
    "cnn_classifier",
]


class NeuralNetClassifier(skorch.NeuralNetClassifier):
    """skorch's ``NeuralNetClassifier`` on logits, with a ``random_state``.

    The module must return logits: the criterion defaults to
    ``CrossEntropyLoss``. With ``random_state`` set, weight initialisation and
    training (shuffling, dropout) are reproducible, and torch's global RNG is
    left as it was.

    Parameters
    ----------
    module : torch module class or instance
    criterion : torch criterion, default=CrossEntropyLoss
    train_split : callable or None, default=None
        No internal validation split by default: in active learning every label
        is precious.
    random_state : int, RandomState instance or None, default=None
    **kwargs
        Any other skorch ``NeuralNetClassifier`` parameter.

    Examples
    --------
    >>> import numpy as np
    >>> from skal.nets import NeuralNetClassifier, DigitsCNN
    >>> net = NeuralNetClassifier(DigitsCNN, module__n_classes=2, max_epochs=1,
    ...                           random_state=0, verbose=0)
    >>> X = np.random.RandomState(0).rand(8, 1, 8, 8).astype("float32")
    >>> net.fit(X, np.array([0, 1] * 4)).predict(X).shape
    (8,)
    """

    def __init__(
        self,
        module,
        criterion=nn.CrossEntropyLoss,
        train_split=None,
        random_state=None,
        **kwargs,
    ):
        super().__init__(module, criterion=criterion, train_split=train_split, **kwargs)
        self.random_state = random_state

    def _seeded(self, offset):
        if self.random_state is None:
            return _null_context()
        seed = self.random_state
        if isinstance(seed, (int, np.integer)):
            seed = int(seed) + offset
        return seeded_torch(seed, self.device)

    def initialize_module(self):
        with self._seeded(0):
            return super().initialize_module()

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        with self._seeded(1):
            return super().fit_loop(X, y, epochs=epochs, **fit_params)


class _null_context:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class _TrunkHead(nn.Module):
    """A trunk (``features``, giving a flat vector) followed by a head (``classifier``)."""

    def forward(self, x):
        return self.classifier(self.features(x))


def _flat_dim(trunk, in_channels, input_size):
    with torch.no_grad():
        return trunk(torch.zeros(1, in_channels, input_size, input_size)).shape[1]


class DigitsCNN(_TrunkHead):
    """A small CNN for 8x8 images (sklearn's digits), fast on a CPU.

    Parameters
    ----------
    n_classes : int, default=10
    in_channels : int, default=1
    input_size : int, default=8
    dropout : float, default=0.5
        Dropout before the output layer (MC-dropout strategies need it).

    Examples
    --------
    >>> DigitsCNN()(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, n_classes=10, in_channels=1, input_size=8, dropout=0.5):
        super().__init__()
        trunk = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        flat = _flat_dim(trunk, in_channels, input_size)
        self.features = nn.Sequential(*trunk, nn.Linear(flat, 64), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(64, n_classes)
        self.embedding_dim = 64


class LeNet5(_TrunkHead):
    """LeNet5 as in Ducoffe's thesis (appendix A.2.2).

    Parameters
    ----------
    n_classes : int, default=10
    in_channels : int, default=1
    input_size : int, default=28
    variant : {"code", "printed"}, default="code"
        ``"code"`` follows the author's released Keras code (conv 6-16-120,
        dense 84, dense n_classes, dropout 0.5, output); ``"printed"`` follows
        table A.2 as printed (conv 6 and 120, dense 84 and 10). The spec
        recommends the code version; the printed table looks garbled.

    Examples
    --------
    >>> LeNet5()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, n_classes=10, in_channels=1, input_size=28, variant="code"):
        super().__init__()
        if variant == "code":
            trunk = nn.Sequential(
                nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
                nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
                nn.Conv2d(16, 120, 1),
                nn.Flatten(),
            )
        elif variant == "printed":
            trunk = nn.Sequential(
                nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
                nn.Conv2d(6, 120, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
                nn.Flatten(),
            )
        else:
            raise ValueError(f"variant must be 'code' or 'printed', got {variant!r}.")
        flat = _flat_dim(trunk, in_channels, input_size)
        self.features = nn.Sequential(
            *trunk,
            nn.Linear(flat, 84), nn.ReLU(),
            nn.Linear(84, n_classes), *( [nn.ReLU()] if variant == "printed" else [] ),
            nn.Dropout(0.5),
        )
        self.classifier = nn.Linear(n_classes, n_classes)
        self.embedding_dim = n_classes


class VGG8(_TrunkHead):
    """VGG8 as in the thesis's released code: six 3x3 conv layers and two dense layers.

    Parameters
    ----------
    n_classes : int, default=10
    in_channels : int, default=1
    input_size : int, default=28
    width : int, default=64
        Channels of the first block (64 in the thesis); the blocks use 1x, 2x,
        4x, 8x this. Smaller values give a CPU-friendly net.
    dense : int, default=4096
        Units of the hidden dense layer.

    Examples
    --------
    >>> VGG8(width=8, dense=32)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, n_classes=10, in_channels=1, input_size=28, width=64, dense=4096):
        super().__init__()

        def conv(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]

        w = width
        trunk = nn.Sequential(
            *conv(in_channels, w), nn.MaxPool2d(2), nn.Dropout(0.25),
            *conv(w, 2 * w), nn.MaxPool2d(2), nn.Dropout(0.25),
            *conv(2 * w, 4 * w), *conv(4 * w, 4 * w), nn.MaxPool2d(2), nn.Dropout(0.25),
            *conv(4 * w, 8 * w), *conv(8 * w, 8 * w), nn.MaxPool2d(2, ceil_mode=True),
            nn.Dropout(0.25),
            nn.Flatten(),
        )
        flat = _flat_dim(trunk, in_channels, input_size)
        self.features = nn.Sequential(*trunk, nn.Linear(flat, dense), nn.ReLU(), nn.Dropout(0.5))
        self.classifier = nn.Linear(dense, n_classes)
        self.embedding_dim = dense


class _Standardize(nn.Module):
    """``(x - mean) / std`` with fixed constants (kept in the module so that the
    strategies, DeepFool included, work on the raw [0, 1] images)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x):
        return (x - self.mean) / self.std


class FashionLeNet(nn.Module):
    """The WAAL paper's Fashion-MNIST LeNet, optionally widened, with input scaling.

    ``features``: standardise, conv ``10w``@5x5, max-pool, ReLU, conv ``20w``@5x5,
    Dropout2d, max-pool, ReLU, flatten (``320w`` values for 28x28 inputs).
    ``classifier``: ``320w -> 50w -> ReLU -> Dropout(0.5) -> n_classes``. With
    ``width=1`` and ``conv_dropout=0.5`` the layers are those of
    :class:`skal.models.WAALLeNet`. The ``features`` / ``classifier`` split is the
    one :class:`skal.models.WAALClassifier` needs, and the dropout layers are the
    ones MC-dropout strategies sample.

    Parameters
    ----------
    n_classes : int, default=10
    in_channels : int, default=1
    input_size : int, default=28
    width : int, default=2
        Multiplies every layer's width.
    conv_dropout : float, default=0.25
        Dropout2d rate after the second convolution (0.5 in the paper).
    mean, std : float
        Input standardisation (Fashion-MNIST's pixel mean and std).

    Examples
    --------
    >>> FashionLeNet()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, n_classes=10, in_channels=1, input_size=28, width=2, conv_dropout=0.25,
                 mean=0.2860, std=0.3530):
        super().__init__()
        c1, c2, hidden = 10 * width, 20 * width, 50 * width
        self.features = nn.Sequential(
            _Standardize(mean, std),
            nn.Conv2d(in_channels, c1, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=5), nn.Dropout2d(conv_dropout), nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
        )
        side = ((input_size - 4) // 2 - 4) // 2
        self.embedding_dim = c2 * side * side
        self.classifier = nn.Sequential(
            nn.Linear(self.embedding_dim, hidden), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class TorchvisionNet(nn.Module):
    """A torchvision classification model by name, untrained, any input channels.

    Parameters
    ----------
    name : str
        A torchvision model name, e.g. ``"resnet18"``.
    n_classes : int, default=10
    in_channels : int, default=3
        The first convolution is replaced when this is not 3.

    Examples
    --------
    >>> TorchvisionNet("resnet18", n_classes=4, in_channels=1)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 4])
    """

    def __init__(self, name, n_classes=10, in_channels=3):
        super().__init__()
        import torchvision

        try:
            self.model = torchvision.models.get_model(name, weights=None, num_classes=n_classes)
        except ValueError as exc:
            raise ValueError(f"Unknown architecture {name!r}: {exc}") from None
        if in_channels != 3:
            _replace_first_conv(self.model, in_channels)

    def forward(self, x):
        return self.model(x)


def _replace_first_conv(model, in_channels):
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Conv2d):
            parent = model
            *path, leaf = name.split(".")
            for part in path:
                parent = getattr(parent, part)
            setattr(
                parent,
                leaf,
                nn.Conv2d(
                    in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                    layer.padding, layer.dilation, layer.groups, layer.bias is not None,
                ),
            )
            return
    raise ValueError("the torchvision model has no Conv2d layer to adapt to in_channels.")


_ZOO = {"digits": DigitsCNN, "lenet5": LeNet5, "vgg8": VGG8, "fashion-lenet": FashionLeNet}
_DEFAULT_RECIPE = {"max_epochs": 10, "lr": 1e-3, "batch_size": 32}


def cnn_classifier(
    arch,
    n_classes,
    *,
    in_channels=1,
    max_epochs=None,
    lr=None,
    batch_size=None,
    optimizer=torch.optim.Adam,
    device="auto",
    random_state=None,
    verbose=0,
    **net_kwargs,
):
    """A ready-to-fit skorch classifier for one of the zoo's architectures.

    Parameters
    ----------
    arch : str
        ``"digits"`` (small CNN for 1x8x8), ``"lenet5"``, ``"vgg8"``, or any
        torchvision classification model name (``"resnet18"``, ...), untrained.
    n_classes : int
        Number of classes; fixed so that a class first seen later fits the net.
    in_channels : int, default=1
    max_epochs, lr, batch_size : int, float, int or None
        Training recipe; None takes the architecture's default: Adam with lr
        1e-3, batch 32 and 10 epochs as in the thesis, except for ``"digits"``,
        which takes :func:`skal.recipes.training_recipe`'s digits recipe (60
        epochs, lr 3e-3, batch 16: with a few dozen labels fewer epochs or a
        larger rate leave the net near chance).
    optimizer : torch optimizer class, default=Adam
    device : {"auto", "cpu", "cuda", ...}, default="auto"
        ``"auto"`` picks CUDA when available.
    random_state : int or None, default=None
        Seeds weight initialisation and training.
    **net_kwargs
        Passed to :class:`NeuralNetClassifier` (``module__input_size=...``,
        callbacks, ...).

    Returns
    -------
    net : NeuralNetClassifier

    Examples
    --------
    >>> net = cnn_classifier("digits", n_classes=10, max_epochs=2, random_state=0)
    >>> net.module
    <class 'skal.nets._zoo.DigitsCNN'>
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}.")
    params = {"module__n_classes": int(n_classes), "module__in_channels": in_channels}
    if arch in _ZOO:
        module = _ZOO[arch]
    elif isinstance(arch, str):
        module = TorchvisionNet
        params["module__name"] = arch
        TorchvisionNet(arch, n_classes=2, in_channels=in_channels)  # fail early on bad names
    else:
        raise ValueError(f"arch must be a string, got {arch!r}.")
    recipe = _DEFAULT_RECIPE
    if arch == "digits":
        from ..recipes import RECIPES  # the one digits recipe (CLI, simulate, benchmarks)

        recipe = RECIPES["digits"]
    params.update(
        max_epochs=recipe["max_epochs"] if max_epochs is None else max_epochs,
        lr=recipe["lr"] if lr is None else lr,
        batch_size=recipe["batch_size"] if batch_size is None else batch_size,
        optimizer=optimizer,
        device=str(resolve_device(device)),
        random_state=random_state,
        verbose=verbose,
        iterator_train__shuffle=True,
    )
    params.update(net_kwargs)
    return NeuralNetClassifier(module, **params)
