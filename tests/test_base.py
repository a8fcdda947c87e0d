import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skal.base import (
    QueryStrategy,
    ScoreBasedStrategy,
    accepts_unlabeled,
    candidate_subset,
    check_n_instances,
    check_pool,
    top_k,
    with_unlabeled_tag,
)


def test_top_k_matches_stable_sort_with_ties():
    rng = np.random.RandomState(0)
    for _ in range(50):
        scores = rng.randint(0, 5, size=rng.randint(1, 40)).astype(float)
        k = rng.randint(1, len(scores) + 1)
        expected = np.argsort(-scores, kind="stable")[:k]
        np.testing.assert_array_equal(top_k(scores, k), expected)


def test_top_k_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([0.0, np.nan]), 1)


def test_candidate_subset_is_reproducible_distinct_and_large_enough():
    a = candidate_subset(1000, 50, 10, random_state=3)
    b = candidate_subset(1000, 50, 10, random_state=3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 50 and a.min() >= 0 and a.max() < 1000
    assert len(candidate_subset(1000, 5, 10, random_state=0)) == 10
    assert candidate_subset(40, 50, 10, random_state=0) is None
    with pytest.raises(ValueError, match="n_candidates"):
        candidate_subset(10, 0, 1, random_state=0)


@pytest.mark.parametrize(
    "X, message",
    [(np.zeros((0, 3)), "empty"), (np.array([[np.nan, 1.0]]), "NaN"),
     (np.array([[1.0, np.inf]]), "infinity"), (np.array(3.0), "scalar")],
)
def test_check_pool_rejects_bad_pools(X, message):
    with pytest.raises(ValueError, match=message):
        check_pool(X)


@pytest.mark.parametrize("n, message", [(0, ">= 1"), (11, "larger than the pool"),
                                        (2.0, "must be an int"), (True, "must be an int")])
def test_check_n_instances_rejects_bad_values(n, message):
    with pytest.raises(ValueError, match=message):
        check_n_instances(n, 10)


class _Duplicates(QueryStrategy):
    def _query(self, estimator, X_pool, n_instances, **kwargs):
        return np.zeros(n_instances, dtype=int)


class _Counting(ScoreBasedStrategy):
    def __init__(self, n_candidates=None, random_state=None):
        self.n_candidates = n_candidates
        self.random_state = random_state

    def _utilities(self, estimator, X):
        self.calls_ = getattr(self, "calls_", 0) + 1
        return X[:, 0]


def test_query_rejects_strategy_returning_duplicates():
    with pytest.raises(RuntimeError, match="distinct"):
        _Duplicates().query(None, np.zeros((5, 1)), 2)


def test_query_checks_labeled_set_lengths():
    with pytest.raises(ValueError, match="y_labeled"):
        _Counting().query(None, np.zeros((5, 1)), 1, X_labeled=np.zeros((3, 1)), y_labeled=[0])


def test_modal_call_returns_indices_and_utilities_computing_once():
    X = np.arange(10.0)[:, None]

    class Learner:
        X_training = np.zeros((2, 1))
        y_training = np.array([0, 1])

    strategy = _Counting()
    indices, utilities = strategy(Learner(), X, n_instances=3)
    np.testing.assert_array_equal(indices, [9, 8, 7])
    np.testing.assert_array_equal(utilities, [9.0, 8.0, 7.0])
    assert strategy.calls_ == 1


def test_candidate_subset_restricts_scoring():
    X = np.arange(100.0)[:, None]
    strategy = _Counting(n_candidates=10, random_state=0)
    chosen = strategy.query(None, X, 3)
    candidates = candidate_subset(100, 10, 3, random_state=0)
    np.testing.assert_array_equal(chosen, np.sort(candidates)[::-1][:3])


def test_unlabeled_tag_survives_pipelines():
    class SemiSupervised(LogisticRegression):
        def __sklearn_tags__(self):
            return with_unlabeled_tag(super().__sklearn_tags__())

    assert accepts_unlabeled(SemiSupervised())
    assert accepts_unlabeled(make_pipeline(StandardScaler(), SemiSupervised()))
    assert not accepts_unlabeled(LogisticRegression())
    assert clone(SemiSupervised()).__sklearn_tags__().estimator_type == "classifier"
