import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from torch import nn

from skal import BALD, ActiveLearningClassifier, CoreSet, RandomSampling, UncertaintySampling
from skal.nets import NeuralNetClassifier
from skal.strategies.bayesian import bald_scores
from skal.strategies.coreset import k_center_greedy, min_sq_distances
from skal.strategies.uncertainty import uncertainty


def _random_proba(rng, n=50, c=4):
    p = rng.dirichlet(np.ones(c) * 0.3, size=n)
    p[:5] = np.eye(c)[rng.randint(c, size=5)]  # saturated rows: exact 0 and 1
    return p


def _slow_uncertainty(p, measure):
    out = []
    for row in p:
        s = sorted(row, reverse=True)
        if measure == "least_confident":
            out.append(1 - s[0])
        elif measure == "margin":
            out.append(-(s[0] - s[1]))
        else:
            out.append(-sum(v * np.log(v) for v in row if v > 0))
    return np.array(out)


@pytest.mark.parametrize("measure", ["least_confident", "margin", "entropy"])
def test_uncertainty_measures_match_reference(measure):
    p = _random_proba(np.random.RandomState(0))
    u = uncertainty(p, measure)
    assert np.isfinite(u).all()
    np.testing.assert_allclose(u, _slow_uncertainty(p, measure), atol=1e-12)


def test_uncertainty_rejects_unknown_measure(trained_net, digits_split):
    with pytest.raises(ValueError, match="measure"):
        UncertaintySampling(measure="nope").query(trained_net, digits_split[0][:10], 1)


def test_bald_scores_match_reference():
    rng = np.random.RandomState(1)
    mc = np.stack([_random_proba(rng, 30, 3) for _ in range(6)])
    expected = []
    for i in range(30):
        mean = mc[:, i].mean(axis=0)
        h = -sum(v * np.log(v) for v in mean if v > 0)
        eh = np.mean([-sum(v * np.log(v) for v in p if v > 0) for p in mc[:, i]])
        expected.append(max(h - eh, 0.0))
    np.testing.assert_allclose(bald_scores(mc), expected, atol=1e-12)
    assert (bald_scores(mc) >= 0).all()


def test_entropy_query_on_net_is_top_entropy(trained_net, digits_split):
    X = digits_split[0][300:500]
    strategy = UncertaintySampling()
    idx = strategy.query(trained_net, X, 10)
    u = strategy.utilities(trained_net, X)
    np.testing.assert_array_equal(idx, np.argsort(-u, kind="stable")[:10])


def test_bald_queries_are_valid_and_seeded(trained_net, digits_split):
    X = digits_split[0][300:500]
    a = BALD(n_passes=5, random_state=0).query(trained_net, X, 10)
    b = BALD(n_passes=5, random_state=0).query(trained_net, X, 10)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 10 and a.max() < len(X)
    sub = BALD(n_passes=5, n_candidates=40, random_state=0).query(trained_net, X, 10)
    assert len(np.unique(sub)) == 10


def test_bald_errors_on_net_without_dropout_and_on_sklearn_models(digits_split):
    X, y = digits_split[0][:40], digits_split[1][:40]
    net = NeuralNetClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), max_epochs=1,
                              verbose=0, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="no dropout"):
        BALD().query(net, X, 2)
    clf = LogisticRegression(max_iter=200).fit(X.reshape(40, -1), y)
    with pytest.raises(TypeError, match="LogisticRegression"):
        BALD().query(clf, X.reshape(40, -1), 2)


def _slow_k_center(X, k, X_centers):
    D = cdist(X, X_centers, "sqeuclidean").min(axis=1)
    chosen = []
    for _ in range(k):
        D_masked = D.copy()
        D_masked[chosen] = -1
        new = int(np.argmax(D_masked))
        chosen.append(new)
        D = np.minimum(D, cdist(X, X[new:new + 1], "sqeuclidean")[:, 0])
    return chosen


def test_k_center_greedy_matches_reference():
    rng = np.random.RandomState(0)
    X = rng.randn(200, 5)
    centers = rng.randn(7, 5)
    np.testing.assert_array_equal(k_center_greedy(X, 15, X_centers=centers),
                                  _slow_k_center(X, 15, centers))
    np.testing.assert_allclose(min_sq_distances(X, centers),
                               cdist(X, centers, "sqeuclidean").min(axis=1), atol=1e-9)


@pytest.mark.parametrize("block, tile", [(12, 5), (7, 3), (1, 1), (1 << 20, 256)])
def test_min_sq_distances_tiles_cover_every_row_and_center(monkeypatch, block, tile):
    from skal.strategies import coreset

    monkeypatch.setattr(coreset, "_BLOCK_ELEMENTS", block)
    monkeypatch.setattr(coreset, "_TILE_CENTERS", tile)
    rng = np.random.RandomState(1)
    X, centers = rng.randn(53, 4), rng.randn(11, 4)
    np.testing.assert_allclose(min_sq_distances(X, centers),
                               cdist(X, centers, "sqeuclidean").min(axis=1), atol=1e-9)


def test_k_center_without_labeled_set_is_seeded():
    X = np.random.RandomState(0).randn(50, 3)
    a = k_center_greedy(X, 5, random_state=1)
    np.testing.assert_array_equal(a, k_center_greedy(X, 5, random_state=1))
    assert len(np.unique(a)) == 5


def test_coreset_on_net_uses_embeddings(trained_net, digits_split):
    from skal.nets import embed

    X, _, _, _ = digits_split
    pool, labeled = X[300:500], X[:50]
    idx = CoreSet().query(trained_net, pool, 8, X_labeled=labeled)
    expected = k_center_greedy(embed(trained_net, pool), 8, X_centers=embed(trained_net, labeled))
    np.testing.assert_array_equal(idx, expected)


def test_random_sampling_is_seeded_and_distinct():
    X = np.zeros((30, 2))
    a = RandomSampling(random_state=0).query(None, X, 10)
    np.testing.assert_array_equal(a, RandomSampling(random_state=0).query(None, X, 10))
    assert len(np.unique(a)) == 10


@pytest.mark.parametrize("strategy", [RandomSampling(random_state=1), UncertaintySampling("margin"),
                                      BALD(n_passes=3), CoreSet(embedding="input")])
def test_strategies_clone_and_set_params(strategy):
    c = clone(strategy)
    assert c.get_params() == strategy.get_params()
    c.set_params(random_state=7)
    assert c.random_state == 7 and strategy.random_state != 7


def test_uncertainty_beats_random_on_digits(digits_split):
    X, y, X_test, y_test = digits_split
    X, X_test = X.reshape(len(X), -1), X_test.reshape(len(X_test), -1)
    scores = {}
    strategies = {"random": RandomSampling(), "margin": UncertaintySampling("margin")}
    for name, strategy in strategies.items():
        accs = []
        for seed in range(3):
            clf = ActiveLearningClassifier(LogisticRegression(max_iter=300), strategy, n_initial=20,
                                           batch_size=10, n_queries=8, random_state=seed)
            accs.append(clf.fit(X, y).score(X_test, y_test))
        scores[name] = np.mean(accs)
    assert scores["margin"] > scores["random"] + 0.02, scores



def test_coreset_normalize_is_k_center_on_unit_vectors():
    rng = np.random.RandomState(3)
    # Rows of very different norms: raw distances follow the norms, cosine ones do not.
    X = rng.rand(60, 5) * rng.choice([0.1, 1.0, 20.0], size=(60, 1))
    lab = rng.rand(4, 5)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    lab_unit = lab / np.linalg.norm(lab, axis=1, keepdims=True)
    got = CoreSet(embedding="input", normalize=True).query(None, X, 6, X_labeled=lab)
    np.testing.assert_array_equal(got, _slow_k_center(unit, 6, lab_unit))
    raw = CoreSet(embedding="input").query(None, X, 6, X_labeled=lab)
    np.testing.assert_array_equal(raw, _slow_k_center(X, 6, lab))
    assert set(raw) != set(got)
    # The raw k-center goes for the largest norms first, the normalised one does not.
    norms = np.linalg.norm(X, axis=1)
    assert norms[raw].min() >= np.quantile(norms, 0.6) > norms[got].min()


def test_coreset_normalize_must_be_bool():
    with pytest.raises(TypeError, match="normalize must be a bool"):
        CoreSet(embedding="input", normalize="yes").query(None, np.eye(3), 1)
