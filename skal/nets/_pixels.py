"""A label-free embedding of raw inputs, for strategies that cluster before any net is trained."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

__all__ = ["Flatten", "pixel_pca"]


class Flatten(TransformerMixin, BaseEstimator):
    """Rows of ``X`` as flat vectors: ``(n_samples, ...) -> (n_samples, n_features)``.

    Stateless, so it is fitted from the start; a class rather than a
    ``FunctionTransformer`` so its repr (and a benchmark's config key built
    from it) does not hold a memory address.

    Examples
    --------
    >>> Flatten().transform(np.zeros((3, 1, 2, 2))).shape
    (3, 4)
    """

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = np.asarray(X)
        return X.reshape(len(X), -1)

    def __sklearn_is_fitted__(self):
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


def pixel_pca(n_components=50, *, random_state=0):
    """An unfitted ``Flatten -> PCA`` pipeline, for the strategies' ``embedding=``.

    TypiClust and ProbCover were designed for a fixed, self-supervised feature
    space; the penultimate layer of a net trained on 100 labels is neither fixed
    nor good. The principal components of the pixels are a cheap stand-in that
    needs no labels and no training. Given unfitted, the strategy fits it once on
    the first pool it sees and keeps it (``embedding_``), so the space does not
    move between rounds.

    Parameters
    ----------
    n_components : int, default=50
    random_state : int, default=0
        Seeds PCA's randomized solver (used on large pools).

    Returns
    -------
    sklearn.pipeline.Pipeline

    Examples
    --------
    >>> from skal.strategies.typiclust import TypiClust
    >>> X = np.random.RandomState(0).rand(60, 1, 4, 4)
    >>> idx = TypiClust(embedding=pixel_pca(5), random_state=0).query(None, X, 3)
    >>> len(set(idx.tolist()))
    3
    """
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline

    return make_pipeline(Flatten(), PCA(n_components=n_components, random_state=random_state))
