"""WAAL's training data: paired labeled/unlabeled batches and WAALClassifier's input checks."""

import numpy as np
import torch
from sklearn.utils import check_array, column_or_1d
from skorch.utils import is_dataset, to_numpy


class _PairedDataset(torch.utils.data.Dataset):
    """Pairs of (labeled, unlabeled) rows; one epoch is ``max(L, U)`` pairs.

    Position ``i`` holds unlabeled row ``i mod U`` and labeled row ``i mod L``
    (``labeled_sampling="cycle"``, the released code) or a uniformly drawn labeled
    row (``"replacement"``, the paper's text). Batches are gathered with one
    indexing operation (``__getitems__``) instead of per-row collation.
    """

    def __init__(self, X_labeled, y_labeled, X_unlabeled, labeled_sampling="cycle"):
        self.X_labeled = X_labeled
        self.y_labeled = y_labeled
        self.X_unlabeled = X_unlabeled
        self.labeled_sampling = labeled_sampling

    @property
    def n_labeled(self):
        return self.X_labeled.shape[0]

    @property
    def n_unlabeled(self):
        return 0 if self.X_unlabeled is None else self.X_unlabeled.shape[0]

    def __len__(self):
        return max(self.n_labeled, self.n_unlabeled)

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.labeled_sampling == "replacement" and self.n_unlabeled:
            lab = torch.randint(self.n_labeled, (idx.shape[0],))
        else:
            lab = idx % self.n_labeled
        x_l, y_l = self.X_labeled[lab], self.y_labeled[lab]
        if not self.n_unlabeled:
            return x_l, y_l
        return (x_l, self.X_unlabeled[idx % self.n_unlabeled]), y_l

    def __getitem__(self, i):
        (batch_x, batch_y) = self.__getitems__([i])
        if isinstance(batch_x, tuple):
            return (batch_x[0][0], batch_x[1][0]), batch_y[0]
        return batch_x[0], batch_y[0]


def _identity_collate(batch):
    return batch


def _as_tensor(X):
    if is_dataset(X):
        raise TypeError(
            "WAALClassifier.fit takes arrays (X, y with -1 for unlabeled rows), not a "
            "torch Dataset."
        )
    if isinstance(X, torch.Tensor):
        # A tensor already on the GPU stays there: batches are then gathered on-device.
        X = X.detach()
    else:
        X = torch.as_tensor(np.asarray(X))
    if X.dtype == torch.float64:
        X = X.float()
    if X.dim() == 0:
        raise ValueError("X must be an array of samples, got a scalar.")
    return X


def _check_y(y, n_samples):
    if y is None:
        raise ValueError(
            "This WAALClassifier estimator requires y to be passed, but the target y is None: "
            "WAALClassifier needs y, class labels for labeled rows and -1 for unlabeled rows."
        )
    y = np.asarray(to_numpy(y) if isinstance(y, torch.Tensor) else y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}.")
    if y.shape[0] != n_samples:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{n_samples}, "
            f"{y.shape[0]}] (X has {n_samples} rows but y has {y.shape[0]})."
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(
                "Unknown label type: continuous. y must hold integer class labels (-1 for "
                "unlabeled rows)."
            )
    elif y.dtype.kind not in "iu":
        raise ValueError(
            f"y must hold integer class labels 0..K-1 and -1 for unlabeled rows, got dtype "
            f"{y.dtype}. Encode labels first (skal.ActiveLearner does it for you)."
        )
    y = y.astype(np.int64)
    if (y < -1).any():
        raise ValueError("y holds negative labels other than -1 (the mark of unlabeled rows).")
    if not (y >= 0).any():
        raise ValueError(
            f"WAALClassifier needs labeled rows, but all {n_samples} rows of y are -1 "
            "(unlabeled)."
        )
    return y


def _check_X(net, X, *, reset, name="X"):
    """scikit-learn's input checks (dense, numeric, finite, not complex) for arrays.

    float64, integer and boolean arrays become float32, the dtype of the module's
    weights. Tensors pass as they are (they may live on the GPU).
    """
    if isinstance(X, torch.Tensor) or is_dataset(X):
        return X
    X = check_array(X, accept_sparse=False, dtype="numeric", allow_nd=True,
                    ensure_all_finite=True, input_name=name)
    n_features = X.shape[1] if X.ndim > 1 else 1
    if reset:
        net.n_features_in_ = n_features
    elif getattr(net, "n_features_in_", n_features) != n_features:
        raise ValueError(
            f"X has {n_features} features, but {type(net).__name__} is expecting "
            f"{net.n_features_in_} features as input."
        )
    return X if X.dtype in (np.float32, np.float16) else X.astype(np.float32)


def _append_unlabeled(X, y, X_unlabeled):
    if X_unlabeled is None:
        return X, y
    X = to_numpy(X) if isinstance(X, torch.Tensor) else np.asarray(X)
    X_unlabeled = (
        to_numpy(X_unlabeled) if isinstance(X_unlabeled, torch.Tensor) else np.asarray(X_unlabeled)
    )
    if X_unlabeled.shape[1:] != X.shape[1:]:
        raise ValueError(
            f"X_unlabeled has samples of shape {X_unlabeled.shape[1:]}, X has {X.shape[1:]}."
        )
    y = _check_y(y, X.shape[0]) if y is not None else None
    if y is None:
        raise ValueError("WAALClassifier needs y: class labels, -1 for unlabeled rows.")
    X = np.concatenate([X, X_unlabeled.astype(X.dtype, copy=False)])
    y = np.concatenate([y, np.full(X_unlabeled.shape[0], -1, dtype=np.int64)])
    return X, y


class _frozen:
    """Turn off gradients of a module's parameters inside the block."""

    def __init__(self, module):
        self.params = [p for p in module.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)
        return False
