"""Random sampling: the baseline every strategy must beat."""

from sklearn.utils import check_random_state

from ..base import QueryStrategy


class RandomSampling(QueryStrategy):
    """Query samples uniformly at random, ignoring the model.

    Parameters
    ----------
    random_state : int, RandomState instance or None, default=None

    Examples
    --------
    >>> import numpy as np
    >>> RandomSampling(random_state=0).query(None, np.zeros((10, 2)), 3)
    array([2, 8, 4])
    """

    def __init__(self, random_state=None):
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # the pool is never read, only counted
        return tags

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        rng = check_random_state(self.random_state)
        return rng.choice(X_pool.shape[0], size=n_instances, replace=False)
