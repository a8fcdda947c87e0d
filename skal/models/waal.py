"""WAAL training: a skorch classifier that learns from labeled and unlabeled rows.

Shui, Zhou, Gagné and Wang, "Deep Active Learning: Unified and Principled Method
for Query and Training", AISTATS 2020 (arXiv:1911.09162). The authors' code is
``cjshui/WAAL``.

The net has three parts: a feature extractor ``f`` (the module's ``.features``), a
classifier head ``h`` (the module's ``.classifier``) and a critic ``g`` (a separate
module, sigmoid output in [0, 1]). Each training iteration pairs a labeled and an
unlabeled mini-batch and takes two steps:

* step A, on ``f`` and ``h``:
  ``CE(h(f(x_l)), y_l) + mu * [mean g(f(x_u)) - r * mean g(f(x_l))]``;
* step B, on ``g``: ``-mu * [mean g(z_u) - r * mean g(z_l)] + gp_weight * mu * GP``,
  where ``GP`` is the WGAN-GP gradient penalty of ``g`` on interpolated features.

The critic estimates the Wasserstein-1 distance between unlabeled and labeled
features; the feature extractor learns to shrink it, which is how the unlabeled
pool shapes the representation. :class:`skal.WAAL` then queries with the trained
critic.
"""

import warnings

import numpy as np
import torch
from skorch.dataset import Dataset as SkorchDataset
from skorch.setter import optimizer_setter
from skorch.utils import TeeGenerator, to_device

from ..base import user_stacklevel, with_unlabeled_tag
from ..nets import NeuralNetClassifier
from ._waal_data import (
    _append_unlabeled,
    _as_tensor,
    _check_X,
    _check_y,
    _frozen,
    _identity_collate,
    _PairedDataset,
)
from ._waal_parts import (
    _GP_POINTS,
    _LABEL_WEIGHTS,
    _PENALTIES,
    TrunkHead,
    WAALCritic,
    WAALLeNet,
    _first_linear,
    _has_interface,
    critic_gradient_penalty,
    critic_loss,
    label_weight_value,
)

__all__ = [
    "WAAL_PRESETS",
    "TrunkHead",
    "WAALClassifier",
    "WAALCritic",
    "WAALLeNet",
    "critic_gradient_penalty",
    "critic_loss",
    "label_weight_value",
]

_SAMPLINGS = ("cycle", "replacement")
_SCHEDULES = ("constant", "step")

#: Parameter sets of :class:`WAALClassifier` (use with :meth:`WAALClassifier.from_preset`).
#:
#: ``"released_code"`` reproduces the inner loop of the authors' ``cjshui/WAAL``
#: (including its gradient penalty, whose sign makes the critic *maximise* it);
#: ``"paper"`` follows the paper's text and its Table 3 for Fashion-MNIST/SVHN
#: (it needs ``query_size``). The class defaults are the spec's recommendation:
#: the released code's values with a correct WGAN-GP penalty.
WAAL_PRESETS = {
    "released_code": {
        "mu": 2e-3,
        "label_weight": "ratio",
        "scale_mu": False,
        "gradient_penalty": "released",
        "gp_weight": 2.0,
        "gp_points": "all",
        "refresh_features": True,
        "labeled_sampling": "cycle",
        "lr_schedule": "constant",
        "lr": 0.01,
        "optimizer": torch.optim.SGD,
        "optimizer__momentum": 0.5,
        "batch_size": 64,
        "max_epochs": 80,
    },
    "paper": {
        "mu": 1e-2,
        "label_weight": "paper",
        "scale_mu": True,
        "gradient_penalty": "wgan",
        "gp_weight": 2.0,
        "gp_points": "interpolates",
        "refresh_features": True,
        "labeled_sampling": "replacement",
        "lr_schedule": "step",
        "lr": 0.01,
        "optimizer": torch.optim.SGD,
        "optimizer__momentum": 0.5,
        "batch_size": 64,
        "max_epochs": 80,
    },
}


class WAALClassifier(NeuralNetClassifier):
    """A skorch classifier trained with WAAL's min-max objective on labeled + unlabeled rows.

    ``fit(X, y)`` takes unlabeled rows as ``y == -1`` (scikit-learn's semi-supervised
    convention). Labeled and unlabeled mini-batches of ``batch_size`` rows are paired;
    an epoch is one pass over the unlabeled rows, with labeled rows cycled (or, if
    there are more labeled rows, the other way round). Each iteration takes a
    feature-extractor/classifier step on ``CE + mu * gap`` and a critic step on
    ``-mu * gap + gp_weight * mu * GP`` with ``gap = mean g(z_u) - r * mean g(z_l)``.
    Three optimizers (all of class ``optimizer`` with the same settings) update the
    feature extractor (``optimizer_``), the classifier (``optimizer_classifier_``)
    and the critic (``optimizer_critic_``).

    With ``mu=0`` the unlabeled rows are not even forwarded: training is plain
    supervised training on the labeled rows (the critic keeps its initial weights;
    its loss is scaled by ``mu``).

    The module must expose ``.features`` (input -> feature vector) and
    ``.classifier`` (features -> logits), as skal's zoo (``DigitsCNN``, ``LeNet5``,
    ``VGG8``) and :class:`WAALLeNet` do; other modules (torchvision models) are split
    at their last ``nn.Linear`` with :meth:`TrunkHead.split`.

    Parameters
    ----------
    module : torch module class or instance
    critic : torch module class, instance or None, default=None
        Maps features to one raw score per row (the sigmoid is applied by the net).
        ``None`` uses :class:`WAALCritic` (D -> 50 -> ReLU -> Dropout(0.5) -> 1), with D
        taken from ``module.embedding_dim`` or the classifier's first ``nn.Linear``;
        set ``critic__in_features`` otherwise. ``critic__*`` parameters are routed to it.
    mu : float, default=2e-3
        Weight of the adversarial term (released code; the paper's Table 3 says 1e-2).
    label_weight : {"ratio", "paper", "exact", "one"} or float, default="ratio"
        ``r``, see :func:`label_weight_value` (``"ratio"`` = L/U, released code;
        ``"paper"`` = the paper's C0). Recomputed at every ``fit``.
    query_size : int or None, default=None
        The query batch size B, needed by ``label_weight="paper"`` and ``"exact"``.
    scale_mu : bool, default=False
        Use the paper's ``mu' = mu * U / (L + U)`` instead of ``mu`` (the code does not).
    gradient_penalty : {"wgan", "one_sided", "released"} or None, default="wgan"
        ``"wgan"``: the critic minimises ``+gp_weight * mu * GP`` (WGAN-GP, the paper's
        intent). ``"one_sided"``: the same with ``max(0, ||grad|| - 1)**2``.
        ``"released"``: the released code's reversed sign (the critic *maximises* the
        penalty, which flattens it while ``||grad|| < 1``). ``None``: no penalty.
    gp_weight : float, default=2.0
        Penalty weight, multiplied by ``mu`` (released code: 2).
    gp_points : {"interpolates", "all"}, default="interpolates"
        Where the penalty is taken: interpolates only (WGAN-GP) or interpolates plus
        both endpoints (released code).
    refresh_features : bool, default=True
        Recompute the features (no grad, train mode) after step A for the critic step,
        as the released code does; False reuses step A's features (one forward less).
    labeled_sampling : {"cycle", "replacement"}, default="cycle"
        Labeled rows of the pairs: cycled over a shuffled index (released code) or
        drawn with replacement (the paper's text).
    lr_schedule : {"constant", "step"}, default="constant"
        ``"step"``: lr x 0.1 after 50% and x 0.01 after 75% of the epochs (paper).
    optimizer : torch optimizer class, default=torch.optim.SGD
    lr : float, default=0.01
    batch_size : int, default=64
        Rows of each kind per iteration (64 labeled + 64 unlabeled).
    max_epochs : int, default=80
    random_state : int, RandomState instance or None, default=None
        Seeds the module and critic initialisation and training (shuffling,
        dropout, interpolation weights) without touching torch's global RNG.
    **kwargs
        Other skorch parameters. ``optimizer__momentum`` defaults to 0.5 and
        ``iterator_train__shuffle`` to True. ``train_split`` (default None) splits
        the *labeled* rows only.

    Attributes
    ----------
    module_, critic_ : nn.Module
    optimizer_, optimizer_classifier_, optimizer_critic_ : torch optimizers
    n_labeled_, n_unlabeled_ : int
        Rows used in the last ``fit``.
    label_weight_, mu_effective_ : float
        ``r`` and the adversarial weight used in the last ``fit``.
    history_ : skorch History
        Besides skorch's entries, each epoch records ``train_ce``, ``critic_gap``
        (the critic's estimate of the gap), ``gradient_penalty`` and
        ``critic_grad_norm`` (mean ``||grad_z g||``; near or above 1 means the
        ``"released"`` penalty sign is destabilising).

    Examples
    --------
    >>> import numpy as np
    >>> from skal.nets import DigitsCNN
    >>> from skal.datasets import load_digits_images
    >>> X, y = load_digits_images()
    >>> y_semi = np.where(np.arange(len(y)) < 200, y, -1)[:600]  # 200 labeled, 400 not
    >>> net = WAALClassifier(DigitsCNN, module__n_classes=10, max_epochs=1,
    ...                      random_state=0, verbose=0)
    >>> net.fit(X[:600], y_semi).predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        module,
        critic=None,
        *,
        mu=2e-3,
        label_weight="ratio",
        query_size=None,
        scale_mu=False,
        gradient_penalty="wgan",
        gp_weight=2.0,
        gp_points="interpolates",
        refresh_features=True,
        labeled_sampling="cycle",
        lr_schedule="constant",
        optimizer=torch.optim.SGD,
        lr=0.01,
        batch_size=64,
        max_epochs=80,
        **kwargs,
    ):
        if optimizer is torch.optim.SGD:
            # The paper's SGD momentum; other optimizers may not take it.
            kwargs.setdefault("optimizer__momentum", 0.5)
        kwargs.setdefault("iterator_train__shuffle", True)
        # Set before skorch's __init__: afterwards skorch refuses to store a torch
        # module instance outside its initialize_* methods.
        self.critic = critic
        super().__init__(
            module,
            optimizer=optimizer,
            lr=lr,
            batch_size=batch_size,
            max_epochs=max_epochs,
            **kwargs,
        )
        self.mu = mu
        self.label_weight = label_weight
        self.query_size = query_size
        self.scale_mu = scale_mu
        self.gradient_penalty = gradient_penalty
        self.gp_weight = gp_weight
        self.gp_points = gp_points
        self.refresh_features = refresh_features
        self.labeled_sampling = labeled_sampling
        self.lr_schedule = lr_schedule

    @classmethod
    def from_preset(cls, preset, module, **params):
        """A net configured by a :data:`WAAL_PRESETS` entry; ``params`` override it.

        Examples
        --------
        >>> from skal.nets import DigitsCNN
        >>> WAALClassifier.from_preset("released_code", DigitsCNN).gradient_penalty
        'released'
        """
        if preset not in WAAL_PRESETS:
            raise ValueError(f"preset must be one of {sorted(WAAL_PRESETS)}, got {preset!r}.")
        return cls(module, **{**WAAL_PRESETS[preset], **params})

    def __sklearn_tags__(self):
        return with_unlabeled_tag(super().__sklearn_tags__())

    def fit(self, X, y, X_unlabeled=None, **fit_params):
        """Train from scratch (unless ``warm_start``) on labeled and unlabeled rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
        y : array-like of shape (n_samples,)
            Class indices ``0..K-1``; ``-1`` marks unlabeled rows.
        X_unlabeled : array-like of shape (n_unlabeled, ...), default=None
            More unlabeled rows, appended with ``y = -1``. Lets loops that only pass
            labeled data to ``fit`` (modAL: ``learner.teach(X, y, X_unlabeled=pool)``)
            still give WAAL its pool.

        Returns
        -------
        self
        """
        X = _check_X(self, X, reset=True)
        X, y = _append_unlabeled(X, y, X_unlabeled)
        return super().fit(X, y, **fit_params)

    def partial_fit(self, X, y=None, classes=None, X_unlabeled=None, **fit_params):
        """Continue training; see :meth:`fit`."""
        X = _check_X(self, X, reset=not hasattr(self, "n_features_in_"))
        X, y = _append_unlabeled(X, y, X_unlabeled)
        return super().partial_fit(X, y, classes=classes, **fit_params)

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits), after scikit-learn's input checks."""
        return super().predict_proba(_check_X(self, X, reset=False))

    # ------------------------------------------------------------- validation

    def _check_params(self):
        mu = self.mu
        if isinstance(mu, bool) or not isinstance(mu, (int, float, np.integer, np.floating)) or (
            not np.isfinite(mu) or mu < 0
        ):
            raise ValueError(f"mu must be a finite float >= 0, got {mu!r}.")
        if not (isinstance(self.label_weight, str) and self.label_weight in _LABEL_WEIGHTS):
            label_weight_value(self.label_weight, 1, 2)  # floats: validates the value
        if self.gradient_penalty not in _PENALTIES:
            raise ValueError(
                f"gradient_penalty must be one of {_PENALTIES}, got {self.gradient_penalty!r}."
            )
        gp_weight = self.gp_weight
        if isinstance(gp_weight, bool) or not isinstance(
            gp_weight, (int, float, np.integer, np.floating)
        ) or not np.isfinite(gp_weight) or gp_weight < 0:
            raise ValueError(f"gp_weight must be a finite float >= 0, got {gp_weight!r}.")
        if self.gp_points not in _GP_POINTS:
            raise ValueError(f"gp_points must be one of {_GP_POINTS}, got {self.gp_points!r}.")
        if self.labeled_sampling not in _SAMPLINGS:
            raise ValueError(
                f"labeled_sampling must be one of {_SAMPLINGS}, got {self.labeled_sampling!r}."
            )
        if self.lr_schedule not in _SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {_SCHEDULES}, got {self.lr_schedule!r}."
            )

    def check_data(self, X, y=None):
        self._check_params()
        n = len(X) if not isinstance(X, torch.Tensor) else X.shape[0]
        y = _check_y(y, n)
        self.classes_inferred_ = np.unique(y[y >= 0])

    # ------------------------------------------------------------- components

    def initialize_module(self):
        super().initialize_module()
        if not _has_interface(self.module_):
            # torchvision-style networks: the last nn.Linear is the class head.
            self.module_ = TrunkHead.split(self.module_)
        kwargs = self.get_params_for("critic")
        critic = self.critic
        if critic is None:
            critic = WAALCritic
            if "in_features" not in kwargs:
                kwargs["in_features"] = self._feature_dim()
        # Separate seed stream: the module's initial weights stay those of a plain
        # NeuralNetClassifier with the same random_state.
        with self._seeded(2):
            self.critic_ = self.initialized_instance(critic, kwargs)
        return self

    def _feature_dim(self):
        dim = getattr(self.module_, "embedding_dim", None)
        if dim is None:
            linear = _first_linear(self.module_.classifier)
            dim = None if linear is None else linear.in_features
        if dim is None:
            raise ValueError(
                f"Cannot infer the feature dimension of {type(self.module_).__name__} for "
                "the critic: set critic__in_features (or give the module an "
                "`embedding_dim` attribute)."
            )
        return int(dim)

    def initialize_optimizer(self, *args, **kwargs):
        head = {id(p) for p in self.module_.classifier.parameters()}
        trunk = [(n, p) for n, p in self.module_.named_parameters() if id(p) not in head]
        pgroups, opt_kwargs = self.get_params_for_optimizer("optimizer", trunk)
        self.optimizer_ = self.optimizer(*pgroups, **opt_kwargs)
        pgroups, opt_kwargs = self.get_params_for_optimizer(
            "optimizer", self.module_.classifier.named_parameters(prefix="classifier")
        )
        self.optimizer_classifier_ = self.optimizer(*pgroups, **opt_kwargs)
        pgroups, opt_kwargs = self.get_params_for_optimizer(
            "optimizer", self.critic_.named_parameters()
        )
        self.optimizer_critic_ = self.optimizer(*pgroups, **opt_kwargs)
        return self

    def set_params(self, **kwargs):
        super().set_params(**kwargs)
        if self.initialized_:
            # skorch routes lr / optimizer__* to optimizer_ only; the three optimizers
            # share their settings.
            for key, value in kwargs.items():
                if key == "lr" or key.startswith("optimizer__"):
                    for attr in ("optimizer_classifier_", "optimizer_critic_"):
                        optimizer_setter(self, key, value, optimizer_attr=attr,
                                         optimizer_name="optimizer")
        return self

    # ------------------------------------------------------------- data

    def get_split_datasets(self, X, y=None, **fit_params):
        X = _as_tensor(X)
        y = _check_y(y, X.shape[0])
        labeled = np.flatnonzero(y >= 0)
        unlabeled = np.flatnonzero(y == -1)
        X_l = X[torch.as_tensor(labeled)]
        y_l = torch.as_tensor(y[labeled])
        X_u = X[torch.as_tensor(unlabeled)] if unlabeled.size else None
        dataset_valid = None
        if self.train_split:
            dataset_train, dataset_valid = self.train_split(
                SkorchDataset(X_l, y_l), y[labeled], **fit_params
            )
            if not isinstance(dataset_train, torch.utils.data.Subset):
                raise TypeError(
                    "WAALClassifier needs a train_split that returns torch Subsets (e.g. "
                    "skorch.dataset.ValidSplit)."
                )
            keep = torch.as_tensor(np.asarray(dataset_train.indices), dtype=torch.long)
            X_l, y_l = X_l[keep], y_l[keep]
            if X_l.shape[0] == 0:
                raise ValueError("train_split left no labeled rows for training.")
        self.n_labeled_ = int(X_l.shape[0])
        self.n_unlabeled_ = 0 if X_u is None else int(X_u.shape[0])
        if self.n_unlabeled_ == 0:
            warnings.warn(
                "WAALClassifier got no unlabeled rows (y == -1): training reduces to "
                "supervised cross-entropy and the critic is not trained. Pass the pool "
                "with y = -1 (skal.ActiveLearner does).",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
            self.label_weight_, self.mu_effective_ = 0.0, 0.0
        else:
            self.label_weight_ = label_weight_value(
                self.label_weight, self.n_labeled_, self.n_unlabeled_, self.query_size
            )
            mu = float(self.mu)
            if self.scale_mu:
                mu *= self.n_unlabeled_ / (self.n_labeled_ + self.n_unlabeled_)
            self.mu_effective_ = mu
        dataset = _PairedDataset(X_l, y_l, X_u, self.labeled_sampling)
        return dataset, dataset_valid

    def get_iterator(self, dataset, training=False):
        if not isinstance(dataset, _PairedDataset):
            return super().get_iterator(dataset, training=training)
        kwargs = self.get_params_for("iterator_train")
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        # Whole batches come out of _PairedDataset.__getitems__ already stacked.
        kwargs["collate_fn"] = _identity_collate
        return torch.utils.data.DataLoader(dataset, **kwargs)

    # ------------------------------------------------------------- training

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        self._fit_epochs_ = epochs if epochs is not None else self.max_epochs
        self._fit_epoch_ = 0
        optimizers = self._waal_optimizers()
        self._base_lrs_ = [[group["lr"] for group in opt.param_groups] for opt in optimizers]
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        finally:
            # The step schedule is relative to this call: leave the optimizers as found.
            for opt, lrs in zip(optimizers, self._base_lrs_, strict=False):
                for group, lr in zip(opt.param_groups, lrs, strict=False):
                    group["lr"] = lr

    def _waal_optimizers(self):
        return [self.optimizer_, self.optimizer_classifier_, self.optimizer_critic_]

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid,
                               **kwargs)
        epoch = getattr(self, "_fit_epoch_", 0)
        total = getattr(self, "_fit_epochs_", self.max_epochs)
        if self.lr_schedule == "step":
            factor = 1.0 if epoch < 0.5 * total else (0.1 if epoch < 0.75 * total else 0.01)
            for opt, lrs in zip(self._waal_optimizers(), self._base_lrs_, strict=False):
                for group, lr in zip(opt.param_groups, lrs, strict=False):
                    group["lr"] = lr * factor
        self._fit_epoch_ = epoch + 1

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_end(net, dataset_train=dataset_train, dataset_valid=dataset_valid,
                             **kwargs)
        batches = self.history[-1, "batches"]
        for key in ("train_ce", "critic_gap", "gradient_penalty", "critic_grad_norm"):
            values = [b[key] for b in batches if key in b]
            if values:
                self.history.record(key, float(np.mean(values)))

    def critic_value(self, z):
        """Critic value ``g(z) = sigmoid(critic_(z))`` in [0, 1], one per row."""
        return torch.sigmoid(self.critic_(z)).reshape(-1)

    def _critic_gap(self, z_labeled, z_unlabeled):
        return self.critic_value(z_unlabeled).mean() - self.label_weight_ * self.critic_value(
            z_labeled
        ).mean()

    def train_step(self, batch, **fit_params):
        """One WAAL iteration: a feature/classifier step, then a critic step."""
        if fit_params:
            raise TypeError(
                f"WAALClassifier.fit takes no extra fit parameters, got {sorted(fit_params)}."
            )
        self._set_training(True)
        Xi, yi = batch
        x_u = None
        if isinstance(Xi, (tuple, list)):
            Xi, x_u = Xi
        x_l = to_device(Xi, self.device)
        y_l = to_device(yi, self.device)
        mu = self.mu_effective_
        adversarial = x_u is not None and mu > 0
        module = self.module_

        # Step A: feature extractor and classifier, critic frozen.
        self.optimizer_.zero_grad()
        self.optimizer_classifier_.zero_grad()
        z_l = module.features(x_l)
        logits = module.classifier(z_l)
        ce = self.get_loss(logits, y_l, X=x_l, training=True)
        loss = ce
        if adversarial:
            x_u = to_device(x_u, self.device)
            z_u = module.features(x_u)
            with _frozen(self.critic_):
                gap = self._critic_gap(z_l, z_u)
            loss = ce + mu * gap
        loss.backward()
        self.notify(
            "on_grad_computed",
            named_parameters=TeeGenerator(module.named_parameters()),
            batch=batch,
            training=True,
        )
        self.optimizer_.step()
        self.optimizer_classifier_.step()
        self.history.record_batch("train_ce", ce.item())

        # Step B: critic, features fixed.
        if adversarial:
            if self.refresh_features:
                with torch.no_grad():
                    z_l_d, z_u_d = module.features(x_l), module.features(x_u)
            else:
                z_l_d, z_u_d = z_l.detach(), z_u.detach()
            self.optimizer_critic_.zero_grad()
            loss_d, stats = critic_loss(
                self.critic_value, z_l_d, z_u_d, label_weight=self.label_weight_, mu=mu,
                gradient_penalty=self.gradient_penalty, gp_weight=self.gp_weight,
                gp_points=self.gp_points,
            )
            loss_d.backward()
            self.optimizer_critic_.step()
            for key, value in stats.items():
                self.history.record_batch(key, value.item())

        return {"loss": loss.detach(), "y_pred": logits.detach()}
