"""WassersteinPrototypes and WassersteinDiversity (skal.strategies.wasserstein)."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from skal.base import QueryStrategy
from skal.ot import wasserstein2
from skal.strategies.uncertainty import UncertaintySampling
from skal.strategies.wasserstein import WassersteinDiversity, WassersteinPrototypes


def _flat(X):
    return np.asarray(X, dtype=np.float64).reshape(len(X), -1)


def _labeled_pool_w2(X_pool, X_labeled, idx):
    """W2(labeled ∪ batch, pool ∪ labeled) in input space: the objective."""
    target = np.concatenate([_flat(X_pool), _flat(X_labeled)])
    return wasserstein2(np.concatenate([_flat(X_labeled), _flat(X_pool[idx])]), target)


@pytest.fixture(scope="module")
def pool(digits_split):
    X, y, _, _ = digits_split
    return X[300:700], X[:20], y[:20]


def test_prototypes_beat_random_batches(pool):
    X_pool, X_lab, y_lab = pool
    X_pool = X_pool[:200]
    strategy = WassersteinPrototypes(embedding="input", n_candidates=None, n_target=None,
                                     random_state=0)
    idx = strategy.query(None, X_pool, 10, X_labeled=X_lab, y_labeled=y_lab)
    assert idx.shape == (10,) and len(set(idx.tolist())) == 10
    assert idx.min() >= 0 and idx.max() < len(X_pool)
    w = _labeled_pool_w2(X_pool, X_lab, idx)
    rng = np.random.RandomState(0)
    randoms = [_labeled_pool_w2(X_pool, X_lab, rng.choice(len(X_pool), 10, replace=False))
               for _ in range(10)]
    assert w < min(randoms)
    assert strategy.objective_.shape == (10,)
    assert strategy.objective_[-1] == pytest.approx(w, rel=1e-6)


def test_prototypes_seeded_and_subsampled(pool):
    X_pool, X_lab, _ = pool
    kw = {"embedding": "input", "n_candidates": 150, "n_target": 100, "n_fixed": 10}
    a = WassersteinPrototypes(random_state=3, **kw).query(None, X_pool, 5, X_labeled=X_lab)
    b = WassersteinPrototypes(random_state=3, **kw).query(None, X_pool, 5, X_labeled=X_lab)
    np.testing.assert_array_equal(a, b)
    s = WassersteinPrototypes(random_state=3, **kw)
    s.query(None, X_pool, 5)
    assert np.isin(a, s.candidates_).all()


def test_prototypes_in_model_embedding_and_modal_protocol(pool, trained_net):
    X_pool, X_lab, y_lab = pool

    class Learner:  # what modAL's ActiveLearner exposes
        estimator = trained_net
        query_strategy = None
        X_training, y_training = X_lab, y_lab

    strategy = WassersteinPrototypes(embedding="model", n_candidates=100, n_target=100,
                                     random_state=0)
    idx, utilities = strategy(Learner(), X_pool, 4)
    assert idx.shape == (4,) and len(set(idx.tolist())) == 4
    np.testing.assert_array_equal(utilities, [4.0, 3.0, 2.0, 1.0])  # best first
    assert np.array_equal(idx, strategy.query(trained_net, X_pool, 4, X_labeled=X_lab))


def test_unfitted_transformer_is_fitted_once_and_survives_clone(pool):
    X_pool, X_lab, _ = pool
    strategy = WassersteinPrototypes(embedding=PCA(n_components=5), n_candidates=100,
                                     n_target=100, random_state=0)
    strategy.query(None, X_pool.reshape(len(X_pool), -1), 3,
                   X_labeled=X_lab.reshape(len(X_lab), -1))
    fitted = strategy.embedding_
    assert fitted.n_components_ == 5 and not hasattr(strategy.embedding, "components_")
    strategy.query(None, X_pool.reshape(len(X_pool), -1), 3)
    assert strategy.embedding_ is fitted
    twin = clone(strategy)
    assert isinstance(twin.embedding, PCA) and not hasattr(twin, "embedding_")
    # A callable works as a feature map too.
    idx = WassersteinPrototypes(embedding=lambda X: _flat(X)[:, :10], n_candidates=50,
                                random_state=0).query(None, X_pool, 3)
    assert idx.shape == (3,)


@pytest.mark.parametrize("params, match", [
    ({"embedding": "pixels"}, "embedding"),
    ({"embedding": 3}, "embedding"),
    ({"method": "lp"}, "method"),
    ({"n_target": 0}, "n_target"),
    ({"max_solves": "fast"}, "max_solves"),
    ({"max_solves": 0}, "max_solves"),
])
def test_prototypes_bad_params(pool, params, match):
    X_pool, _, _ = pool
    with pytest.raises(ValueError, match=match):
        WassersteinPrototypes(**params).query(None, X_pool, 2)


# ----------------------------------------------------------------- diversity


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(-2, 1, (150, 2)), rng.normal(2, 1, (150, 2))])
    y = (np.arange(300) >= 150).astype(int)
    clf = LogisticRegression().fit(X, y)
    return X, clf


def test_diversity_picks_among_base_candidates(blobs):
    X, clf = blobs
    base = UncertaintySampling()
    top = base.query(clf, X, 40)
    strategy = WassersteinDiversity(UncertaintySampling(), oversample=4, embedding="input",
                                    random_state=0)
    idx = strategy.query(clf, X, 10, X_labeled=X[:5])
    assert len(set(idx.tolist())) == 10
    assert set(idx.tolist()) <= set(top.tolist())
    np.testing.assert_array_equal(strategy.candidates_, top)
    # Spread along the boundary beats the 10 most uncertain (clustered) points.
    target = np.concatenate([X, X[:5]])
    w_div = wasserstein2(np.concatenate([X[:5], X[idx]]), target)
    w_top = wasserstein2(np.concatenate([X[:5], X[top[:10]]]), target)
    assert w_div < w_top
    # modAL: utilities are the base strategy's scores of the chosen samples.
    idx2, u = strategy(clf, X, 10)
    np.testing.assert_allclose(u, base.utilities(clf, X)[idx2])


def test_oversample_one_is_the_base_strategy(blobs):
    X, clf = blobs
    got = WassersteinDiversity(UncertaintySampling(), oversample=1).query(clf, X, 7)
    np.testing.assert_array_equal(got, UncertaintySampling().query(clf, X, 7))


def test_diversity_without_base_is_seeded(blobs):
    X, _ = blobs
    a = WassersteinDiversity(oversample=5, embedding="input", random_state=1).query(None, X, 4)
    b = WassersteinDiversity(oversample=5, embedding="input", random_state=1).query(None, X, 4)
    np.testing.assert_array_equal(a, b)


def test_diversity_is_grid_searchable():
    strategy = WassersteinDiversity(UncertaintySampling(measure="entropy"), oversample=3)
    params = strategy.get_params(deep=True)
    assert params["base_strategy__measure"] == "entropy"
    strategy.set_params(base_strategy__measure="margin", oversample=5)
    assert strategy.base_strategy.measure == "margin" and strategy.oversample == 5
    twin = clone(strategy)
    assert twin.base_strategy is not strategy.base_strategy
    assert twin.get_params()["base_strategy__measure"] == "margin"


class _Augmenting(QueryStrategy):
    """Stub base strategy that records augment calls."""

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        return np.arange(n_instances)

    def augment(self, X_queried, y_queried):
        self.seen_ = len(X_queried)
        return X_queried * 2, y_queried


def test_diversity_forwards_augment(blobs):
    X, _ = blobs
    base = _Augmenting()
    strategy = WassersteinDiversity(base, oversample=3, embedding="input", random_state=0)
    idx = strategy.query(None, X, 4)
    assert set(idx.tolist()) <= set(range(12))
    X_extra, _y_extra = strategy.augment(X[idx], np.zeros(4))
    np.testing.assert_array_equal(X_extra, X[idx] * 2)
    assert base.seen_ == 4
    X_extra, _ = WassersteinDiversity(oversample=3).augment(X[idx], np.zeros(4))
    assert X_extra.shape == (0, 2)


@pytest.mark.parametrize("params, match", [
    ({"oversample": 0}, "oversample"),
    ({"base_strategy": "entropy"}, "base_strategy"),
    ({"method": "emd"}, "method"),
])
def test_diversity_bad_params(blobs, params, match):
    X, clf = blobs
    with pytest.raises(ValueError, match=match):
        WassersteinDiversity(**params).query(clf, X, 2)
