"""Is the labeled set still representative of the pool?

Active-learning criteria bias the labeled set away from the data distribution.
Two cheap per-round diagnostics, meant for embeddings (e.g.
:func:`skal.nets.embed` of the current model):

* :func:`two_sample_test`: the classifier two-sample test (C2ST, Lopez-Paz &
  Oquab 2017; Oquab thesis sec. 5.3). A classifier learns to tell the two
  samples apart; its held-out accuracy is the statistic, ~N(1/2, 1/(4 n_test))
  when they come from the same distribution.
* :func:`labeled_pool_distance`: W2 between the labeled set and the pool
  (Ducoffe thesis, Eq. 5.15: the quantity Wasserstein selectors minimise).
* :func:`gaussian_wasserstein2`: the closed-form W2 between Gaussian fits (the
  FID formula), cheaper still.

All subsample large inputs (seeded) so a call stays well under a second.
"""

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.stats import norm
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

from .base import check_int
from .ot._distance import _as_points, wasserstein2

__all__ = [
    "TwoSampleTestResult",
    "gaussian_wasserstein2",
    "labeled_pool_distance",
    "two_sample_test",
]


@dataclass(frozen=True)
class TwoSampleTestResult:
    """Outcome of :func:`two_sample_test`.

    Attributes
    ----------
    statistic : float
        Held-out accuracy of the classifier telling the samples apart (0.5:
        indistinguishable; 1: fully separable).
    pvalue : float
        One-sided p-value of ``statistic`` under H0 (same distribution).
    n_test : int
        Held-out samples the accuracy is measured on.
    n_per_sample : int
        Samples used from each set after balancing / subsampling.
    """

    statistic: float
    pvalue: float
    n_test: int
    n_per_sample: int


def _subsample(X, n, rng):
    if X.shape[0] <= n:
        return X
    return X[np.sort(rng.choice(X.shape[0], size=n, replace=False))]


def two_sample_test(A, B, *, classifier="knn", test_size=0.5, max_samples=1000,
                    random_state=None):
    """Classifier two-sample test: could ``A`` and ``B`` come from the same distribution?

    Both samples are cut to the same size (the smaller one's, at most
    ``max_samples``) so chance accuracy is 1/2, labeled 0 / 1, split
    (stratified) into train and test; the classifier's test accuracy ``t`` is
    the statistic. Under H0, ``n_test * t ~ Binomial(n_test, 1/2)``, hence the
    p-value ``1 - Phi((t - 1/2) * 2 sqrt(n_test))`` (Lopez-Paz & Oquab, ICLR 2017).

    Parameters
    ----------
    A, B : array-like of shape (n_a, ...) and (n_b, ...)
        The two samples (typically embeddings of the labeled set and of the
        pool); trailing dimensions are flattened.
    classifier : {"knn", "mlp"} or sklearn classifier, default="knn"
        ``"knn"``: k-nearest neighbours with ``k ~ sqrt(n_test)`` (odd), on
        standardised features: fast, no training. ``"mlp"``: 20 hidden ReLU
        units, Adam (the paper's C2ST-NN). An estimator is cloned and fitted.
    test_size : float, default=0.5
        Held-out fraction.
    max_samples : int or None, default=1000
        Cap per sample, to keep the test cheap on large pools.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    result : TwoSampleTestResult
        ``statistic`` (accuracy), ``pvalue``, ``n_test``, ``n_per_sample``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> same = two_sample_test(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)),
    ...                        random_state=0)
    >>> shifted = two_sample_test(rng.normal(size=(300, 2)), rng.normal(1, 1, (300, 2)),
    ...                           random_state=0)
    >>> bool(same.pvalue > 0.05), bool(shifted.pvalue < 0.01)
    (True, True)
    """
    A = _as_points(A, "A")
    B = _as_points(B, "B")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"A has {A.shape[1]} features, B has {B.shape[1]}.")
    check_int(max_samples, "max_samples", allow_none=True)
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}.")
    rng = check_random_state(random_state)
    n = min(A.shape[0], B.shape[0])
    if max_samples is not None:
        n = min(n, max_samples)
    n_test = round(2 * n * test_size)
    if n < 2 or n_test < 2 or 2 * n - n_test < 2:
        raise ValueError(
            f"two_sample_test needs at least 2 samples in each set for both the train "
            f"and the test split; got {A.shape[0]} and {B.shape[0]}."
        )
    A, B = _subsample(A, n, rng), _subsample(B, n, rng)
    X = np.concatenate([A, B])
    y = np.repeat([0, 1], n)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=n_test, stratify=y, random_state=rng.randint(2**31 - 1))
    if isinstance(classifier, str):
        if classifier == "knn":
            # Odd k, so two classes never tie.
            k = round(np.sqrt(n_test)) | 1
            k = min(k, X_tr.shape[0] - 1 + X_tr.shape[0] % 2)
            clf = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k))
        elif classifier == "mlp":
            clf = make_pipeline(StandardScaler(), MLPClassifier(
                hidden_layer_sizes=(20,), max_iter=100, random_state=rng.randint(2**31 - 1)))
        else:
            raise ValueError(
                f"classifier must be 'knn', 'mlp' or an estimator, got {classifier!r}.")
    elif hasattr(classifier, "fit") and hasattr(classifier, "predict"):
        clf = clone(classifier)
    else:
        raise ValueError(f"classifier must be 'knn', 'mlp' or an estimator, got {classifier!r}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 100 epochs, as the paper
        clf.fit(X_tr, y_tr)
    t = float(np.mean(clf.predict(X_te) == y_te))
    pvalue = float(norm.sf((t - 0.5) * 2.0 * np.sqrt(y_te.shape[0])))
    return TwoSampleTestResult(statistic=t, pvalue=pvalue, n_test=int(y_te.shape[0]),
                               n_per_sample=int(n))


def labeled_pool_distance(X_labeled, X_pool, *, include_labeled=True, max_samples=1000,
                          method="exact", random_state=None):
    """W2 between the labeled set and the pool (squared Euclidean ground cost).

    Parameters
    ----------
    X_labeled : array-like of shape (n_labeled, ...)
    X_pool : array-like of shape (n_pool, ...)
        Unlabeled pool; with ``include_labeled`` the target is pool ∪ labeled,
        the data distribution the labeled set should represent (thesis Eq. 5.15).
    include_labeled : bool, default=True
    max_samples : int or None, default=1000
        Each side is uniformly subsampled to at most this many points (seeded),
        so one call is one transport problem of bounded size. Subsampling adds
        a positive bias that shrinks with ``max_samples``; compare values
        computed with the same setting.
    method : {"exact", "sinkhorn", "ipot"}, default="exact"
        See :func:`skal.ot.wasserstein2`.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    distance : float
        W2 (not squared).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> pool = rng.normal(size=(500, 2))
    >>> near = labeled_pool_distance(pool[:50], pool[50:], random_state=0)
    >>> far = labeled_pool_distance(pool[:50] + 3.0, pool[50:], random_state=0)
    >>> bool(near < far)
    True
    """
    L = _as_points(X_labeled, "X_labeled")
    P = _as_points(X_pool, "X_pool")
    if L.shape[1] != P.shape[1]:
        raise ValueError(f"X_labeled has {L.shape[1]} features, X_pool has {P.shape[1]}.")
    check_int(max_samples, "max_samples", allow_none=True)
    rng = check_random_state(random_state)
    target = np.concatenate([P, L]) if include_labeled else P
    if max_samples is not None:
        L = _subsample(L, max_samples, rng)
        target = _subsample(target, max_samples, rng)
    return wasserstein2(L, target, method=method)


def gaussian_wasserstein2(A, B, *, eps=1e-6):
    """W2 between Gaussian fits of two samples (the closed form behind FID).

    ``W2^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})``.
    A lower bound of the empirical W2 (equal for Gaussians), O(n d^2 + d^3).

    Parameters
    ----------
    A, B : array-like of shape (n_a, d) and (n_b, d)
    eps : float, default=1e-6
        Added to both covariance diagonals: a labeled set smaller than the
        feature dimension has a singular covariance.

    Returns
    -------
    distance : float
        W2 (not squared).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(2000, 2))
    >>> round(gaussian_wasserstein2(X, X + [3.0, 4.0]), 3)
    5.0
    """
    A = _as_points(A, "A")
    B = _as_points(B, "B")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"A has {A.shape[1]} features, B has {B.shape[1]}.")
    if A.shape[0] < 2 or B.shape[0] < 2:
        raise ValueError("gaussian_wasserstein2 needs at least 2 samples in each set.")
    d = A.shape[1]
    mu_a, mu_b = A.mean(0), B.mean(0)
    S_a = np.atleast_2d(np.cov(A, rowvar=False)) + eps * np.eye(d)
    S_b = np.atleast_2d(np.cov(B, rowvar=False)) + eps * np.eye(d)
    root_a = linalg.sqrtm(S_a).real
    cross = linalg.sqrtm(root_a @ S_b @ root_a).real
    w2sq = float(((mu_a - mu_b) ** 2).sum() + np.trace(S_a + S_b - 2.0 * cross))
    return float(np.sqrt(max(w2sq, 0.0)))
