"""Training recipes: one per data set, shared by the CLI, simulate, the benchmarks and the docs.

A recipe says how a learner is trained every round: the module, the optimizer and
its learning rate, the batch size, the number of epochs, whether part of the
labeled set is held out for early stopping, and the training-batch augmentation.
:func:`training_recipe` builds the (unfitted) skorch net; :func:`describe_recipe`
prints it.

At small label counts a held-out split costs labels the model needs and is too
small to choose an epoch: early stopping on 4-8 held-out digits kept near-chance
weights in a third of the first rounds. So no recipe holds labels out below
:data:`MIN_HOLDOUT_LABELS` labels; it trains its fixed number of epochs on all of
them instead.
"""

import math

import numpy as np
import torch
from skorch.callbacks import Callback

__all__ = [
    "MIN_HOLDOUT_LABELS",
    "RECIPES",
    "AugmentCollate",
    "AverageLastEpochs",
    "HoldoutSplit",
    "WhenValidated",
    "describe_recipe",
    "training_recipe",
]

#: Fewest labels at which a recipe holds part of them out for early stopping.
#: Below it, training runs the recipe's fixed ``max_epochs`` on every label.
MIN_HOLDOUT_LABELS = 1000

# Per data set. The values are part of the benchmark runner's resume key, so a
# change here reruns that data set's benchmarks.
RECIPES = {
    "fashion-mnist": {
        "module": "FashionLeNet(width=2, conv_dropout=0.25) (the WAAL paper's LeNet, 2x wider, "
                  "inputs standardised)",
        "optimizer": "Adam", "lr": 1e-3, "batch_size": 64, "max_epochs": 60,
        "holdout": 0.1, "early_stopping_patience": 8, "plateau_patience": 3,
        "plateau_factor": 0.3, "augmentation": "random horizontal flip + shifts of up to 2 px",
        "waal_max_epochs": 20, "waal_patience": 4, "waal_optimizer": "SGD", "waal_lr": 0.01,
    },
    "digits": {
        "module": "skal.nets.DigitsCNN (conv 16-32, dense 64, dropout 0.5)",
        # With lr 1e-2 (the CLI's recipe until #24) more rounds ended near chance.
        "optimizer": "Adam", "lr": 3e-3, "batch_size": 16, "max_epochs": 60,
        # No held-out labels: early stopping on the 4-44 labels a 20 % split leaves
        # kept near-chance weights in a third of the first rounds (0.10-0.17 test
        # accuracy with 20 labels, 0.56-0.64 with a fixed 60 epochs).
        "holdout": None, "early_stopping_patience": None, "plateau_patience": None,
        "plateau_factor": None, "augmentation": None,
        # The mean of the last 15 epochs' weights (AverageLastEpochs): on the quick
        # start it brought the largest round-to-round drop from 6.2 to 2.9 points.
        "average_last_epochs": 15,
        # WAAL's SGD (lr 0.01) leaves the digits CNN near chance with 20 labels.
        "waal_max_epochs": 20, "waal_patience": None, "waal_optimizer": "Adam", "waal_lr": 3e-3,
    },
}
# The small-budget protocol: Fashion-MNIST's recipe with the thesis's batch and,
# as on digits, no labels held out (10-100 held-out images are too few to choose
# an epoch), so no callbacks that need a validation loss.
RECIPES["fashion-mnist-thesis"] = {
    **RECIPES["fashion-mnist"], "batch_size": 32, "holdout": None,
    "early_stopping_patience": None, "plateau_patience": None, "plateau_factor": None,
    "waal_patience": None,
}
# The cold-start-like protocol (10 + 9 x 10 labels) trains as the small-budget one.
RECIPES["fashion-mnist-low"] = dict(RECIPES["fashion-mnist-thesis"])


class AugmentCollate:
    """Training-batch augmentation as a DataLoader ``collate_fn``.

    Random horizontal flips and random translations of up to ``shift`` pixels
    (zero padding, i.e. background for Fashion-MNIST). It runs on training batches
    only (skorch's ``iterator_train__collate_fn``), so validation, prediction and
    every strategy see the images as they are. It draws from torch's global RNG,
    which :class:`skal.nets.NeuralNetClassifier` seeds inside ``fit`` from its
    ``random_state`` (and restores afterwards).

    Parameters
    ----------
    flip : bool, default=True
    shift : int, default=2

    Examples
    --------
    >>> X, y = AugmentCollate(flip=False, shift=0)([(torch.ones(1, 4, 4), 0)] * 2)
    >>> X.shape, y.tolist()
    (torch.Size([2, 1, 4, 4]), [0, 0])
    """

    def __init__(self, flip=True, shift=2):
        self.flip = flip
        self.shift = shift

    def __repr__(self):
        return f"AugmentCollate(flip={self.flip}, shift={self.shift})"

    def __call__(self, items):
        X, y = torch.utils.data.default_collate(items)
        if not isinstance(X, torch.Tensor) or X.dim() != 4:
            return X, y
        n = X.shape[0]
        if self.flip:
            flip = torch.rand(n) < 0.5
            X = torch.where(flip[:, None, None, None], X.flip(-1), X)
        if self.shift:
            s = int(self.shift)
            h, w = X.shape[-2:]
            padded = torch.nn.functional.pad(X, (s, s, s, s))
            dy = torch.randint(0, 2 * s + 1, (n,))
            dx = torch.randint(0, 2 * s + 1, (n,))
            rows = (dy[:, None] + torch.arange(h)[None, :])[:, :, None]  # (n, h, 1)
            cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, :]  # (n, 1, w)
            batch = torch.arange(n)[:, None, None]
            # Advanced indexing puts the channel axis last: (n, h, w, c).
            X = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()
        return X, y


class HoldoutSplit:
    """Hold out a fraction of the labeled set for early stopping, from ``min_labels`` on.

    Stratified when every class present has at least two labels and the held-out
    part can hold one of each; a plain random split otherwise. The split depends
    only on the labeled set and ``random_state``. Returns torch ``Subset`` objects,
    as :class:`skorch.dataset.ValidSplit` does (which it uses). With fewer than
    ``min_labels`` labels nothing is held out: it returns every row for training
    and no validation set, and callbacks wrapped in :class:`WhenValidated` sit
    that fit out.

    Parameters
    ----------
    fraction : float, default=0.1
    random_state : int, default=0
    min_labels : int, default=MIN_HOLDOUT_LABELS

    Examples
    --------
    >>> from skorch.dataset import Dataset
    >>> ds = Dataset(np.zeros((20, 1), "float32"), np.arange(20) % 2)
    >>> train, valid = HoldoutSplit(0.2, min_labels=10)(ds, np.arange(20) % 2)
    >>> len(train), len(valid)
    (16, 4)
    >>> train, valid = HoldoutSplit(0.2, min_labels=1000)(ds, np.arange(20) % 2)
    >>> len(train), valid is None
    (20, True)
    """

    def __init__(self, fraction=0.1, random_state=0, min_labels=MIN_HOLDOUT_LABELS):
        self.fraction = fraction
        self.random_state = random_state
        self.min_labels = min_labels

    def __repr__(self):
        return (f"HoldoutSplit(fraction={self.fraction}, random_state={self.random_state}, "
                f"min_labels={self.min_labels})")

    def __call__(self, dataset, y=None, groups=None):
        from skorch.dataset import ValidSplit

        if len(dataset) < self.min_labels:
            # A Subset, not the dataset itself: WAALClassifier reads its indices.
            return torch.utils.data.Subset(dataset, list(range(len(dataset)))), None
        stratified = False
        if y is not None:
            y = np.asarray(y)
            counts = np.unique(y, return_counts=True)[1]
            n_valid = math.ceil(self.fraction * len(y))
            stratified = counts.min() >= 2 and counts.size <= n_valid <= len(y) - counts.size
        split = ValidSplit(self.fraction, stratified=stratified, random_state=self.random_state)
        return split(dataset, y, groups)


class AverageLastEpochs(Callback):
    """Finish training on the average of the last epochs' weights.

    A skorch callback: from epoch ``max_epochs - n_epochs + 1`` on it keeps a
    running mean of the module's floating-point weights (buffers included), and
    when training ends it loads that mean into the module. On the digits quick
    start (``skal`` with no arguments, 3 seeds x 5 strategies) averaging the last
    15 of 60 epochs brought the largest round-to-round drop of test accuracy from
    6.2 to 2.9 points, at the same cost (docs/simulation.md). The digits recipe
    uses it (``RECIPES["digits"]["average_last_epochs"]``).

    Parameters
    ----------
    n_epochs : int, default=15
        Epochs averaged. Training with fewer epochs averages all of them.

    Examples
    --------
    >>> import numpy as np
    >>> from skal.nets import cnn_classifier
    >>> net = cnn_classifier("digits", 2, max_epochs=3, random_state=0,
    ...                      callbacks=[("average", AverageLastEpochs(2))])
    >>> X = np.random.RandomState(0).rand(8, 1, 8, 8).astype("float32")
    >>> dict(net.fit(X, np.arange(8) % 2).callbacks_)["average"].n_averaged_
    2
    """

    def __init__(self, n_epochs=15):
        self.n_epochs = n_epochs

    def initialize(self):
        if isinstance(self.n_epochs, bool) or not isinstance(self.n_epochs, int) \
                or self.n_epochs < 1:
            raise ValueError(f"n_epochs must be a positive int, got {self.n_epochs!r}.")
        return self

    def on_train_begin(self, net, **kwargs):
        self.average_, self.n_averaged_ = None, 0
        self.first_epoch_ = len(net.history) + max(int(net.max_epochs) - self.n_epochs, 0)

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) <= self.first_epoch_:
            return
        state = net.module_.state_dict()
        self.n_averaged_ += 1
        if self.average_ is None:
            self.average_ = {k: v.detach().clone() for k, v in state.items()}
            return
        for key, value in state.items():
            if value.is_floating_point():
                self.average_[key] += (value.detach() - self.average_[key]) / self.n_averaged_

    def on_train_end(self, net, **kwargs):
        if self.average_ is not None:
            net.module_.load_state_dict(self.average_)
        self.average_ = None  # the weights live in the module; don't pickle a second copy


class WhenValidated(Callback):
    """Run a skorch callback's epoch-end step only in epochs with a validation score.

    Early stopping and learning-rate plateaus read ``valid_loss``; a fit whose
    :class:`HoldoutSplit` held nothing out (too few labels) has none, and then
    trains its fixed number of epochs.

    Parameters
    ----------
    callback : skorch Callback
    monitor : str, default="valid_loss"

    Examples
    --------
    >>> from skorch.callbacks import EarlyStopping
    >>> WhenValidated(EarlyStopping(patience=3)).monitor
    'valid_loss'
    """

    def __init__(self, callback, monitor="valid_loss"):
        self.callback = callback
        self.monitor = monitor

    def initialize(self):
        self.callback.initialize()
        return self

    def on_train_begin(self, net, **kwargs):
        self.callback.on_train_begin(net, **kwargs)

    def on_train_end(self, net, **kwargs):
        self.callback.on_train_end(net, **kwargs)

    def on_epoch_begin(self, net, **kwargs):
        self.callback.on_epoch_begin(net, **kwargs)

    def on_epoch_end(self, net, **kwargs):
        if self.monitor in net.history[-1]:
            self.callback.on_epoch_end(net, **kwargs)

    def on_batch_begin(self, net, **kwargs):
        self.callback.on_batch_begin(net, **kwargs)

    def on_batch_end(self, net, **kwargs):
        self.callback.on_batch_end(net, **kwargs)


def _recipe(dataset):
    if dataset not in RECIPES:
        raise ValueError(f"Unknown data set {dataset!r}: skal has no recipe for it; choose one of "
                         f"{', '.join(RECIPES)}.")
    return RECIPES[dataset]


def training_recipe(dataset, *, n_classes=10, semi_supervised=False, max_epochs=None, lr=None,
                    device="auto", random_state=None):
    """The unfitted learner of skal's training recipe for ``dataset``.

    Every round retrains from scratch (as in the papers) with Adam. From
    :data:`MIN_HOLDOUT_LABELS` labels on, Fashion-MNIST holds 10 % of the
    *labeled* set out (as the thesis code does) to drive early stopping (the best
    epoch's weights are kept) and a learning-rate cut by 0.3 when the held-out
    loss plateaus, and training batches are augmented with flips and small
    shifts. With fewer labels, and always on digits and in the small-budget
    Fashion-MNIST protocols, it trains a fixed 60 epochs on all labels; on digits
    the supervised net then loads the mean of the last 15 epochs' weights
    (:class:`AverageLastEpochs`), which keeps one unlucky last epoch from costing
    a round several points of accuracy (not WAAL's: its critic is trained against
    the last weights).

    Parameters
    ----------
    dataset : {"digits", "fashion-mnist", "fashion-mnist-thesis", "fashion-mnist-low"}
    n_classes : int, default=10
    semi_supervised : bool, default=False
        Return a :class:`skal.models.WAALClassifier` on the same module (for the
        ``waal`` strategy): WAAL's own recipe and paired labeled/unlabeled
        batches, with early stopping on the same held-out labels (on the last
        weights: the critic must match the features it was trained with).
    max_epochs : int or None, default=None
        Override the recipe's epoch cap (quick runs).
    lr : float or None, default=None
        Override the recipe's learning rate.
    device : str, default="auto"
    random_state : int or None, default=None
        Seeds weight initialisation, shuffling, dropout and augmentation. Left
        ``None``, :func:`skal.simulate` seeds it from the run's seed.

    Returns
    -------
    skal.nets.NeuralNetClassifier or skal.models.WAALClassifier

    Examples
    --------
    >>> net = training_recipe("fashion-mnist", max_epochs=2, random_state=0)
    >>> net.max_epochs, type(net.train_split).__name__
    (2, 'HoldoutSplit')
    >>> net = training_recipe("digits")
    >>> net.train_split is None, net.max_epochs, net.lr
    (True, 60, 0.003)
    """
    from skorch.callbacks import EarlyStopping, LRScheduler

    from .nets import DigitsCNN, FashionLeNet, NeuralNetClassifier, resolve_device

    recipe = _recipe(dataset)
    module = FashionLeNet if dataset.startswith("fashion-mnist") else DigitsCNN
    holdout = recipe["holdout"]
    common = {
        "module__n_classes": int(n_classes),
        "train_split": HoldoutSplit(holdout, random_state=0) if holdout else None,
        "device": str(resolve_device(device)),
        "random_state": random_state,
        "verbose": 0,
    }
    if semi_supervised:
        from .models import WAALClassifier

        return WAALClassifier(
            module,
            optimizer=getattr(torch.optim, recipe["waal_optimizer"]),
            lr=recipe["waal_lr"] if lr is None else lr,
            max_epochs=max_epochs or recipe["waal_max_epochs"],
            callbacks=(
                [("early_stopping",
                  WhenValidated(EarlyStopping(patience=recipe["waal_patience"])))]
                if holdout else []
            ),
            **common,
        )
    callbacks = [] if not holdout else [
        ("plateau", WhenValidated(LRScheduler(
            policy=torch.optim.lr_scheduler.ReduceLROnPlateau, monitor="valid_loss",
            patience=recipe["plateau_patience"], factor=recipe["plateau_factor"]))),
        ("early_stopping", WhenValidated(EarlyStopping(
            patience=recipe["early_stopping_patience"], load_best=True))),
    ]
    if recipe.get("average_last_epochs"):
        callbacks.append(("average", AverageLastEpochs(recipe["average_last_epochs"])))
    extra = {}
    if recipe["augmentation"]:
        extra["iterator_train__collate_fn"] = AugmentCollate(flip=True, shift=2)
    return NeuralNetClassifier(
        module,
        optimizer=getattr(torch.optim, recipe["optimizer"]),
        lr=recipe["lr"] if lr is None else lr,
        batch_size=recipe["batch_size"],
        max_epochs=max_epochs or recipe["max_epochs"],
        iterator_train__shuffle=True,
        callbacks=callbacks,
        **common,
        **extra,
    )


def describe_recipe(recipe):
    """A recipe in one sentence (the CLI's ``--recipe``, the docs, the results page).

    Parameters
    ----------
    recipe : str or dict
        A data set's name (a key of :data:`RECIPES`) or a recipe dict.

    Examples
    --------
    >>> print(describe_recipe("digits"))  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    skal.nets.DigitsCNN (...); Adam (lr 0.003), batch 16, 60 epochs on every label
    (none held out), then the mean of the last 15 epochs' weights; no augmentation.
    """
    r = _recipe(recipe) if isinstance(recipe, str) else recipe
    aug = r["augmentation"] or "no augmentation"
    head = f"{r['module']}; {r['optimizer']} (lr {r['lr']:g}), batch {r['batch_size']}, "
    if not r["holdout"]:
        average = r.get("average_last_epochs")
        kept = f", then the mean of the last {average} epochs' weights" if average else ""
        return head + f"{r['max_epochs']} epochs on every label (none held out){kept}; {aug}."
    return (
        head + f"at most {r['max_epochs']} epochs; from {MIN_HOLDOUT_LABELS:,} labels on, "
        f"{100 * r['holdout']:.0f} % of the labeled set held out: early stopping (patience "
        f"{r['early_stopping_patience']}, best weights kept) and lr x{r['plateau_factor']} after "
        f"{r['plateau_patience']} epochs without progress (with fewer labels, "
        f"{r['max_epochs']} epochs on every label); {aug}."
    )
