"""WAAL's network parts and losses: the critic, the paper's LeNet, the trunk/head split.

Also the critic's objective (:func:`critic_loss`), its gradient penalty and the
weight of the labeled term. :class:`skal.models.WAALClassifier` trains with
them; all are importable from :mod:`skal.models.waal` and :mod:`skal.models`.
"""

import copy

import numpy as np
import torch
from torch import nn

from ..nets import last_linear

_LABEL_WEIGHTS = ("ratio", "paper", "exact", "one")
_PENALTIES = ("wgan", "one_sided", "released", None)
_GP_POINTS = ("interpolates", "all")


class WAALCritic(nn.Module):
    """WAAL's critic head: ``in_features -> hidden -> ReLU -> Dropout -> 1``.

    It returns the raw score; :class:`WAALClassifier` applies the sigmoid, so the
    critic value ``g`` lies in [0, 1] as in the paper and the released code.

    Parameters
    ----------
    in_features : int
        Dimension of the feature extractor's output.
    hidden_units : int, default=50
    dropout : float, default=0.5

    Examples
    --------
    >>> WAALCritic(320)(torch.zeros(4, 320)).shape
    torch.Size([4, 1])
    """

    def __init__(self, in_features, hidden_units=50, dropout=0.5):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden_units),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_units, 1),
        )

    def forward(self, z):
        return self.net(z.flatten(1))


class WAALLeNet(nn.Module):
    """The WAAL paper's Fashion-MNIST network (the PyTorch MNIST-example LeNet).

    ``features``: conv 10@5x5, max-pool, ReLU, conv 20@5x5, Dropout2d(0.5), max-pool,
    ReLU, flatten (320 values for 28x28 inputs). ``classifier``: 320 -> 50 -> ReLU ->
    Dropout(0.5) -> ``n_classes`` logits. The paper calls it "LeNet5".

    Parameters
    ----------
    n_classes : int, default=10
    in_channels : int, default=1
    input_size : int, default=28
        Side of the square input images (at least 16).

    Examples
    --------
    >>> WAALLeNet()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> WAALLeNet().embedding_dim
    320
    """

    def __init__(self, n_classes=10, in_channels=1, input_size=28):
        super().__init__()
        if input_size < 16:
            raise ValueError(f"WAALLeNet needs images of at least 16x16, got {input_size}.")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 10, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(10, 20, kernel_size=5), nn.Dropout2d(0.5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(),
        )
        side = ((input_size - 4) // 2 - 4) // 2
        self.embedding_dim = 20 * side * side
        self.classifier = nn.Sequential(
            nn.Linear(self.embedding_dim, 50), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(50, n_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class TrunkHead(nn.Module):
    """A ``features`` trunk followed by a ``classifier`` head: WAAL's module interface.

    ``forward(x) = classifier(features(x))``. Modules of skal's zoo already follow
    this interface; :meth:`split` adapts any network whose last ``nn.Linear`` is its
    final operation (torchvision classifiers: ResNet's ``fc``, VGG's last layer, ...).

    Parameters
    ----------
    features : nn.Module
        Input -> feature vector (the critic's input).
    classifier : nn.Module
        Feature vector -> logits.

    Examples
    --------
    >>> import torchvision
    >>> net = TrunkHead.split(torchvision.models.resnet18(num_classes=10))
    >>> net.features(torch.zeros(2, 3, 32, 32)).shape, net.classifier
    (torch.Size([2, 512]), Linear(in_features=512, out_features=10, bias=True))
    """

    def __init__(self, features, classifier):
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(self.features(x))

    @property
    def embedding_dim(self):
        linear = _first_linear(self.classifier)
        return None if linear is None else linear.in_features

    @classmethod
    def split(cls, model):
        """Split ``model`` at its last ``nn.Linear``: the rest becomes ``features``.

        ``model`` is copied, never modified. The split is only faithful when that
        layer's output is the model's output (no softmax or reshaping after it).
        """
        model = copy.deepcopy(model)
        name, linear = last_linear(model)
        parent = model
        *path, leaf = name.split(".")
        for part in path:
            parent = getattr(parent, part)
        setattr(parent, leaf, nn.Identity())
        return cls(model, linear)


def _first_linear(module):
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            return sub
    return None


def _has_interface(module):
    return isinstance(getattr(module, "features", None), nn.Module) and isinstance(
        getattr(module, "classifier", None), nn.Module
    )


# --------------------------------------------------------------------------- math


def label_weight_value(label_weight, n_labeled, n_unlabeled, query_size=None):
    """Weight ``r`` of the labeled term in the critic gap ``mean g(z_u) - r mean g(z_l)``.

    With ``gamma = U / L`` and ``alpha = B / L`` (``B`` = ``query_size``):

    * ``"ratio"``: ``L / U`` (released code);
    * ``"paper"``: ``C0 = (gamma - alpha) / (gamma**2 (1 + alpha))`` (paper, Sec. 3.3);
    * ``"exact"``: ``(gamma - alpha) / (gamma (1 + alpha))``, the full-batch
      coefficient before the paper's extra ``1 / gamma`` damping;
    * ``"one"``: 1 (DeepAL+'s port);
    * a float: that value.

    Examples
    --------
    >>> round(label_weight_value("paper", 1000, 9000, query_size=1000), 4)
    0.0494
    >>> label_weight_value("ratio", 1000, 4000)
    0.25
    """
    if isinstance(label_weight, (int, float, np.integer, np.floating)) and not isinstance(
        label_weight, bool
    ):
        if not np.isfinite(label_weight) or label_weight < 0:
            raise ValueError(f"label_weight must be a finite float >= 0, got {label_weight!r}.")
        return float(label_weight)
    if label_weight not in _LABEL_WEIGHTS:
        raise ValueError(
            f"label_weight must be one of {_LABEL_WEIGHTS} or a float, got {label_weight!r}."
        )
    if label_weight == "one":
        return 1.0
    if n_labeled < 1 or n_unlabeled < 1:
        raise ValueError("label_weight needs at least one labeled and one unlabeled row.")
    if label_weight == "ratio":
        return n_labeled / n_unlabeled
    if query_size is None:
        raise ValueError(
            f"label_weight={label_weight!r} depends on the query batch size: set query_size."
        )
    if isinstance(query_size, bool) or not isinstance(query_size, (int, np.integer)) or (
        query_size < 1
    ):
        raise ValueError(f"query_size must be an int >= 1, got {query_size!r}.")
    gamma = n_unlabeled / n_labeled
    alpha = query_size / n_labeled
    if alpha >= gamma:
        raise ValueError(
            f"query_size={query_size} must be smaller than the number of unlabeled "
            f"rows ({n_unlabeled}) for label_weight={label_weight!r}."
        )
    if label_weight == "paper":
        return (gamma - alpha) / (gamma**2 * (1.0 + alpha))
    return (gamma - alpha) / (gamma * (1.0 + alpha))


def critic_gradient_penalty(
    critic, z_labeled, z_unlabeled, *, points="interpolates", one_sided=False, eps=None
):
    """WGAN-GP gradient penalty of a critic on features (Gulrajani et al., 2017).

    ``mean_i (||grad_z g(z_i)||_2 - 1)**2`` over the points ``z_i``: for each pair,
    ``z_u + eps * (z_l - z_u)`` with ``eps ~ U(0, 1)``; with ``points="all"`` the
    two endpoints are added (as the released WAAL code does). The gradient is built
    with ``create_graph=True``, so the penalty can be minimised through the critic's
    parameters (and through the features, if they require grad).

    Parameters
    ----------
    critic : callable
        Maps a batch of features to one value per row (shape ``(n,)`` or ``(n, 1)``).
        Rows must not interact (no BatchNorm in train mode).
    z_labeled, z_unlabeled : torch.Tensor of shape (n, ...)
        Paired features; the same number of rows.
    points : {"interpolates", "all"}, default="interpolates"
    one_sided : bool, default=False
        Penalise only norms above 1: ``max(0, ||grad|| - 1)**2``.
    eps : torch.Tensor of shape (n,) or None
        Interpolation weights; drawn from torch's RNG when None.

    Returns
    -------
    penalty : torch.Tensor
        Scalar.
    grad_norms : torch.Tensor of shape (n_points,)
        ``||grad_z g||`` at each point (detached), for monitoring.

    Examples
    --------
    >>> w = torch.tensor([3.0, 4.0])
    >>> gp, norms = critic_gradient_penalty(lambda z: z @ w, torch.ones(2, 2), torch.zeros(2, 2))
    >>> float(gp)  # (||w|| - 1)**2 everywhere for a linear critic
    16.0
    """
    if points not in _GP_POINTS:
        raise ValueError(f"points must be one of {_GP_POINTS}, got {points!r}.")
    if z_labeled.shape != z_unlabeled.shape:
        raise ValueError(
            f"Paired features must have the same shape, got {tuple(z_labeled.shape)} and "
            f"{tuple(z_unlabeled.shape)}."
        )
    n = z_labeled.shape[0]
    shape = (n,) + (1,) * (z_labeled.dim() - 1)
    if eps is None:
        eps = torch.rand(shape, device=z_labeled.device, dtype=z_labeled.dtype)
    else:
        eps = torch.as_tensor(eps, device=z_labeled.device, dtype=z_labeled.dtype).reshape(shape)
    z = z_unlabeled + eps * (z_labeled - z_unlabeled)
    if points == "all":
        z = torch.cat([z, z_unlabeled, z_labeled], dim=0)
    if not z.requires_grad:
        # Detached features: the penalty still needs d g / d z, so z becomes a leaf.
        z = z.detach().requires_grad_(True)
    values = critic(z).reshape(-1)
    (grad,) = torch.autograd.grad(values.sum(), z, create_graph=True)
    # The small constant keeps the norm differentiable where the gradient vanishes.
    norms = torch.sqrt(grad.flatten(1).pow(2).sum(dim=1) + 1e-12)
    excess = norms - 1.0
    if one_sided:
        excess = torch.clamp(excess, min=0.0)
    return excess.pow(2).mean(), norms.detach()


def critic_loss(
    critic,
    z_labeled,
    z_unlabeled,
    *,
    label_weight,
    mu,
    gradient_penalty="wgan",
    gp_weight=2.0,
    gp_points="interpolates",
    eps=None,
):
    """The loss the critic minimises in one WAAL critic step.

    ``-mu * gap + s * gp_weight * mu * GP`` with ``gap = mean g(z_u) - r mean g(z_l)``
    and ``s = +1`` (``"wgan"``, ``"one_sided"``) or ``-1`` (``"released"``: the released
    code's sign, which makes the critic maximise the penalty).

    Parameters
    ----------
    critic : callable
        Features -> critic values in [0, 1], one per row.
    z_labeled, z_unlabeled : torch.Tensor of shape (n, ...)
        Paired features (usually detached).
    label_weight : float
        ``r``.
    mu : float
    gradient_penalty : {"wgan", "one_sided", "released"} or None, default="wgan"
    gp_weight : float, default=2.0
    gp_points : {"interpolates", "all"}, default="interpolates"
    eps : torch.Tensor or None
        Interpolation weights, see :func:`critic_gradient_penalty`.

    Returns
    -------
    loss : torch.Tensor
        Scalar, differentiable in the critic's parameters.
    stats : dict
        ``critic_gap`` and, with a penalty, ``gradient_penalty`` and
        ``critic_grad_norm`` (detached tensors).

    Examples
    --------
    >>> g = lambda z: torch.sigmoid(z.sum(1))
    >>> loss, stats = critic_loss(g, torch.zeros(3, 2), torch.ones(3, 2), label_weight=1.0,
    ...                           mu=1.0, gradient_penalty=None)
    >>> round(float(stats["critic_gap"]), 3)  # sigmoid(2) - sigmoid(0)
    0.381
    """
    if gradient_penalty not in _PENALTIES:
        raise ValueError(
            f"gradient_penalty must be one of {_PENALTIES}, got {gradient_penalty!r}."
        )
    gap = critic(z_unlabeled).mean() - label_weight * critic(z_labeled).mean()
    loss = -mu * gap
    stats = {"critic_gap": gap.detach()}
    if gradient_penalty is not None:
        penalty, norms = critic_gradient_penalty(
            critic, z_labeled, z_unlabeled, points=gp_points,
            one_sided=gradient_penalty == "one_sided", eps=eps,
        )
        sign = -1.0 if gradient_penalty == "released" else 1.0
        loss = loss + sign * gp_weight * mu * penalty
        stats["gradient_penalty"] = penalty.detach()
        stats["critic_grad_norm"] = norms.mean()
    return loss, stats
