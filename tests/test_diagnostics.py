"""skal.diagnostics: classifier two-sample test and labeled-vs-pool distances."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from skal.diagnostics import (
    TwoSampleTestResult,
    gaussian_wasserstein2,
    labeled_pool_distance,
    two_sample_test,
)
from skal.ot import wasserstein2


def test_same_distribution_is_rarely_significant():
    rng = np.random.RandomState(0)
    pvalues = [two_sample_test(rng.normal(size=(200, 5)), rng.normal(size=(200, 5)),
                               random_state=seed).pvalue for seed in range(20)]
    # Under H0 the p-value is ~uniform: 20 tests at 5% give about one rejection.
    assert sum(p < 0.05 for p in pvalues) <= 3
    assert np.mean(pvalues) > 0.25


@pytest.mark.parametrize("classifier", ["knn", "mlp", LogisticRegression()])
def test_shifted_distribution_is_significant(classifier):
    rng = np.random.RandomState(1)
    res = two_sample_test(rng.normal(size=(300, 4)), rng.normal(0.7, 1.0, size=(300, 4)),
                          classifier=classifier, random_state=0)
    assert isinstance(res, TwoSampleTestResult)
    assert res.statistic > 0.6 and res.pvalue < 1e-3
    assert res.n_test == 300 and res.n_per_sample == 300


def test_two_sample_test_balances_and_caps_sizes():
    rng = np.random.RandomState(2)
    small, big = rng.normal(size=(40, 3)), rng.normal(size=(5000, 3))
    res = two_sample_test(small, big, random_state=0)
    assert res.n_per_sample == 40 and res.n_test == 40
    res = two_sample_test(big, big + 0.5, max_samples=100, random_state=0)
    assert res.n_per_sample == 100
    a = two_sample_test(small, big, random_state=3)
    b = two_sample_test(small, big, random_state=3)
    assert a == b
    # Images are flattened.
    res = two_sample_test(rng.rand(30, 1, 4, 4), rng.rand(30, 1, 4, 4), random_state=0)
    assert 0 <= res.pvalue <= 1


def test_two_sample_test_bad_input():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="features"):
        two_sample_test(X, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        two_sample_test(X[:1], X)
    with pytest.raises(ValueError, match="classifier"):
        two_sample_test(X, X, classifier="svm")
    with pytest.raises(ValueError, match="test_size"):
        two_sample_test(X, X, test_size=1.5)


def test_labeled_pool_distance():
    rng = np.random.RandomState(3)
    pool = rng.normal(size=(300, 2))
    lab = pool[:30]
    d = labeled_pool_distance(lab, pool[30:])
    assert d == pytest.approx(wasserstein2(lab, pool))  # target = pool ∪ labeled
    d_unl = labeled_pool_distance(lab, pool[30:], include_labeled=False)
    assert d_unl == pytest.approx(wasserstein2(lab, pool[30:]))
    assert labeled_pool_distance(lab + 3.0, pool[30:]) > d
    big = rng.normal(size=(5000, 2))
    a = labeled_pool_distance(lab, big, max_samples=200, random_state=0)
    assert a == labeled_pool_distance(lab, big, max_samples=200, random_state=0)
    with pytest.raises(ValueError, match="features"):
        labeled_pool_distance(lab, np.zeros((5, 3)))


def test_gaussian_wasserstein2_closed_form():
    rng = np.random.RandomState(4)
    X = rng.normal(size=(4000, 1))
    Y = rng.normal(2.0, 3.0, size=(4000, 1))
    # 1-D Gaussians: W2^2 = (mu_a - mu_b)^2 + (s_a - s_b)^2.
    expected = np.sqrt((X.mean() - Y.mean()) ** 2 + (X.std(ddof=1) - Y.std(ddof=1)) ** 2)
    assert gaussian_wasserstein2(X, Y) == pytest.approx(expected, rel=1e-4)
    assert gaussian_wasserstein2(X, X) == pytest.approx(0.0, abs=1e-2)
    # Fewer samples than features: regularised, still finite.
    assert np.isfinite(gaussian_wasserstein2(rng.normal(size=(5, 20)), rng.normal(size=(50, 20))))
