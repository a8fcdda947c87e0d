"""Embedding and parameter checks shared by TypiClust, ProbCover and Cluster-Margin."""

from numbers import Real

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import normalize as l2_normalize
from sklearn.utils.validation import check_is_fitted

from ..nets import features


def check_embedding(embedding):
    """Raise a ValueError unless ``embedding`` follows :func:`skal.nets.features`' convention.

    Examples
    --------
    >>> check_embedding("input")
    """
    if isinstance(embedding, str):
        if embedding not in ("auto", "model", "input"):
            raise ValueError(
                "embedding must be 'auto', 'model', 'input', a transformer or a callable, "
                f"got {embedding!r}."
            )
    elif not (hasattr(embedding, "transform") or callable(embedding)):
        raise ValueError(
            "embedding must be 'auto', 'model', 'input', a transformer (with transform) or a "
            f"callable, got {type(embedding).__name__}."
        )


def check_real(value, name, *, low=None, high=None, low_open=False):
    """A real hyperparameter, checked against ``[low, high]`` (``(low, high]`` if ``low_open``).

    Examples
    --------
    >>> check_real(0.5, "alpha", low=0, high=1, low_open=True)
    0.5
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if low is not None and (value < low or (low_open and value == low)):
        bound = "> " if low_open else ">= "
        raise ValueError(f"{name} must be {bound}{low}, got {value!r}.")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}.")
    return float(value)


def embed_pool_and_labeled(strategy, estimator, X_pool, X_labeled, *, normalize=False):
    """Embeddings of the pool and of the labeled set (or ``None``) in the strategy's space.

    ``strategy.embedding`` follows :func:`skal.nets.features`. A transformer given
    fitted is used as is; an unfitted one (e.g. after ``clone`` in a grid search)
    is fitted once, without labels, on the pool and the labeled set of the first
    query, and kept in ``strategy.embedding_`` for the next ones, so the space
    does not move between rounds.

    Returns
    -------
    Z_pool : ndarray of shape (n_pool, n_features)
    Z_labeled : ndarray of shape (n_labeled, n_features) or None
    """
    emb = strategy.embedding
    if hasattr(emb, "transform"):
        emb = _fitted_transformer(strategy, X_pool, X_labeled)
    bs = getattr(strategy, "batch_size", None)
    Z_pool = features(estimator, X_pool, emb, batch_size=bs)
    Z_lab = None
    if X_labeled is not None and len(X_labeled):
        Z_lab = features(estimator, X_labeled, emb, batch_size=bs)
        if Z_lab.shape[1] != Z_pool.shape[1]:
            raise ValueError(
                f"Labeled embeddings have {Z_lab.shape[1]} features, pool ones "
                f"{Z_pool.shape[1]}."
            )
    if normalize:
        # Zero rows stay zero (sklearn's normalize leaves them alone).
        Z_pool = l2_normalize(Z_pool)
        Z_lab = None if Z_lab is None else l2_normalize(Z_lab)
    return Z_pool, Z_lab


def uses_model_space(strategy, estimator):
    """Whether the strategy's embedding is the net's (it moves when the net is retrained).

    Examples
    --------
    >>> class S: embedding = "input"
    >>> uses_model_space(S(), None)
    False
    """
    emb = strategy.embedding
    if not isinstance(emb, str):
        return False
    if emb == "model":
        return True
    if emb == "auto":
        from ..nets import get_net

        try:
            get_net(estimator)
            return True
        except (TypeError, NotFittedError):
            return False
    return False


def _fitted_transformer(strategy, X_pool, X_labeled):
    emb = strategy.embedding
    try:
        check_is_fitted(emb)
        return emb
    except NotFittedError:
        pass
    fitted = getattr(strategy, "embedding_", None)
    if fitted is None or getattr(strategy, "_embedding_source", None) is not emb:
        X_fit = X_pool if X_labeled is None else np.concatenate([X_pool, X_labeled])
        fitted = clone(emb).fit(X_fit)
        strategy.embedding_ = fitted
        strategy._embedding_source = emb
    return fitted
