import itertools

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from torch import nn

from skal import (
    BALD,
    ActiveLearner,
    ActiveLearningClassifier,
    BatchBALD,
    PowerBALD,
    RandomSampling,
    StochasticBatch,
    UncertaintySampling,
)
from skal.base import top_k
from skal.nets import NeuralNetClassifier, cnn_classifier
from skal.strategies._consistent_dropout import consistent_mc_dropout_proba
from skal.strategies.batchbald import batchbald_select
from skal.strategies.stochastic import stochastic_batch


def _mc(seed, K, N, C, concentration=0.5):
    return np.random.RandomState(seed).dirichlet(np.ones(C) * concentration, size=(K, N))


def _brute_mi(P, batch):
    """I(y_batch; w) by enumerating every label configuration of the batch."""
    K, _, C = P.shape
    configs = np.array(list(itertools.product(range(C), repeat=len(batch))))  # (C^n, n)
    per_weight = np.prod([P[:, i, configs[:, j]] for j, i in enumerate(batch)], axis=0)
    p = per_weight.mean(axis=0)  # p(configuration) = mean over the weight samples
    joint = -np.sum(p[p > 0] * np.log(p[p > 0]))
    conditional = sum(-np.sum(P[:, i] * np.log(P[:, i])) / K for i in batch)
    return joint - conditional


def _brute_greedy(P, n):
    chosen, scores = [], []
    for _ in range(n):
        gains = [(_brute_mi(P, chosen + [x]), x) for x in range(P.shape[1]) if x not in chosen]
        best = max(g for g, _ in gains)
        pick = min(x for g, x in gains if g == best)
        chosen.append(pick)
        scores.append(best)
    return chosen, scores


@pytest.mark.parametrize("seed,K,N,C,n", [(0, 4, 6, 3, 3), (1, 3, 5, 3, 2), (2, 6, 7, 2, 4)])
def test_exact_greedy_matches_brute_force(seed, K, N, C, n):
    P = _mc(seed, K, N, C)
    idx, scores = batchbald_select(P, n, n_joint_samples=10_000, random_state=0)
    ref_idx, ref_scores = _brute_greedy(P, n)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-10, atol=1e-12)
    assert np.all(np.diff(scores) >= -1e-12)  # MI only grows with the batch
    # The first pick is the top BALD sample.
    from skal.strategies.bayesian import bald_scores
    assert idx[0] == np.argmax(bald_scores(P))


def test_sampled_joint_entropy_is_close_to_exact():
    # 3 classes: exact up to 6 points (729 configurations), sampled for picks 8 and 9.
    P = _mc(3, 5, 12, 3, concentration=1.0)
    idx, scores = batchbald_select(P, 9, n_joint_samples=2000, random_state=0)
    assert len(np.unique(idx)) == 9
    for step in (7, 8):
        batch = idx[:step + 1].tolist()
        assert abs(scores[step] - _brute_mi(P, batch)) < 0.05
        # The sampled pick is near the best exact gain.
        best = max(_brute_mi(P, batch[:-1] + [x]) for x in range(12) if x not in batch[:-1])
        assert _brute_mi(P, batch) > best - 0.05
    again, _ = batchbald_select(P, 9, n_joint_samples=2000, random_state=0)
    np.testing.assert_array_equal(idx, again)


def test_batchbald_avoids_a_redundant_copy():
    # Points 0-2 are copies of one informative point; point 3 is as informative on
    # its own (same BALD) but about other weight samples. Top-2 BALD takes two copies.
    P = _mc(4, 8, 4, 3, concentration=0.3)
    P[:, 1] = P[:, 0]
    P[:, 2] = P[:, 0]
    P[:, 3] = P[::-1, 0]
    idx, _ = batchbald_select(P, 2, random_state=0)
    assert idx.tolist() == [0, 3]


def test_matches_batchbald_redux():
    redux = pytest.importorskip("batchbald_redux.batchbald")
    P = _mc(5, 7, 20, 4)
    idx, scores = batchbald_select(P, 4, n_joint_samples=100_000, random_state=0)
    log_p = torch.from_numpy(np.log(P.transpose(1, 0, 2)))
    theirs = redux.get_batchbald_batch(log_p, 4, 100_000, dtype=torch.double)
    assert idx.tolist() == theirs.indices
    np.testing.assert_allclose(scores, theirs.scores, rtol=1e-8)


def test_select_rejects_bad_input():
    P = _mc(0, 3, 4, 2)
    with pytest.raises(ValueError, match="n_passes, n_samples, n_classes"):
        batchbald_select(P[0], 2)
    with pytest.raises(ValueError, match="larger than the pool"):
        batchbald_select(P, 5)
    with pytest.raises(ValueError, match="n_joint_samples"):
        batchbald_select(P, 2, n_joint_samples=0)


class _DropNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(16, 3)

    def forward(self, X):
        return self.head(self.drop(self.body(X)))


def test_consistent_dropout_shares_masks_across_rows_and_batches():
    X = np.random.RandomState(0).normal(size=(40, 4)).astype(np.float32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = NeuralNetClassifier(_DropNet, max_epochs=1, train_split=None, verbose=0,
                                  device="cpu").fit(X, np.arange(40) % 3)
    pool = np.concatenate([X[:30], X[:1]])  # row 30 is a copy of row 0
    p = consistent_mc_dropout_proba(net, pool, 6, random_state=0, batch_size=4)
    np.testing.assert_allclose(p[:, 30], p[:, 0], rtol=1e-5)
    assert not np.allclose(p[0], p[1])  # the passes differ
    # Batching and row order do not change a pass.
    order = np.arange(31)[::-1]
    q = consistent_mc_dropout_proba(net, pool[order], 6, random_state=0, batch_size=31)
    np.testing.assert_allclose(q[:, order], p, rtol=1e-5)
    # Pass k is one masked network, logits = W (h * m_k) + b with m_k in {0, 2}^16
    # for every row: recover m_k by least squares on the centred log-probabilities.
    with torch.no_grad():
        h = net.module_.body(torch.from_numpy(pool[:30])).double().numpy()
        W = net.module_.head.weight.double().numpy()
        b = net.module_.head.bias.double().numpy()
    alive = np.abs(h).sum(axis=0) > 0
    Wc, bc = W - W.mean(axis=0), b - b.mean()
    A = (h[:, None, alive] * Wc[None, :, alive]).reshape(-1, alive.sum())
    assert np.linalg.matrix_rank(A) == alive.sum()  # the mask is identifiable
    for k in range(6):
        log_p = np.log(p[k, :30])
        rhs = (log_p - log_p.mean(axis=1, keepdims=True) - bc).reshape(-1)
        mask, *_ = np.linalg.lstsq(A, rhs, rcond=None)
        np.testing.assert_allclose(A @ mask, rhs, atol=1e-6)
        np.testing.assert_allclose(mask, np.where(mask > 1, 2.0, 0.0), atol=1e-4)


def test_batchbald_on_a_net(trained_net, digits_split):
    X = digits_split[0][300:600]
    strategy = BatchBALD(n_passes=8, n_candidates=100, random_state=0)
    idx = strategy.query(trained_net, X, 6)
    assert len(np.unique(idx)) == 6 and idx.max() < len(X)
    np.testing.assert_array_equal(idx, BatchBALD(n_passes=8, n_candidates=100,
                                                 random_state=0).query(trained_net, X, 6))
    # Picks come from the 100 best BALD scores, the first is the best of them.
    assert np.isin(idx, top_k(strategy.last_utilities_, 100)).all()
    assert idx[0] == np.argmax(strategy.last_utilities_)
    assert np.all(np.diff(strategy.batch_scores_) > 0)


def test_batchbald_learner_and_errors(trained_net, digits_split):
    X, y, _, _ = digits_split
    learner = ActiveLearner(cnn_classifier("digits", 10, max_epochs=1, random_state=0),
                            BatchBALD(n_passes=4, n_candidates=50, random_state=0),
                            random_state=0).fit(X[:30], y[:30])
    assert len(np.unique(learner.query(X[30:200], n_instances=5))) == 5
    clf = LogisticRegression().fit(X[:40].reshape(40, -1), y[:40])
    with pytest.raises(TypeError, match="skorch neural net"):
        BatchBALD().query(clf, X[:40].reshape(40, -1), 2)
    with pytest.raises(ValueError, match="n_passes"):
        BatchBALD(n_passes=0).query(trained_net, X[:40], 2)
    with pytest.raises(ValueError, match="n_candidates"):
        BatchBALD(n_candidates=0).query(trained_net, X[:40], 2)
    net = NeuralNetClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), max_epochs=1,
                              train_split=None, verbose=0).fit(X[:40], y[:40])
    with pytest.raises(ValueError, match="no dropout"):
        BatchBALD().query(net, X[:40], 2)


# --- PowerBALD and stochastic batches -------------------------------------------------

@pytest.mark.parametrize("mode", ["power", "softmax", "softrank"])
def test_first_pick_follows_the_sampling_weights(mode):
    scores = np.array([0.1, 0.5, 1.0, 2.0, 0.0])
    beta = 1.5
    if mode == "power":
        w = scores ** beta
    elif mode == "softmax":
        w = np.exp(beta * scores)
    else:
        w = np.array([4.0, 3.0, 2.0, 1.0, 5.0]) ** -beta
    n = 2500
    first = [stochastic_batch(scores, 1, mode=mode, beta=beta, random_state=s)[0] for s in range(n)]
    freq = np.bincount(first, minlength=5) / n
    np.testing.assert_allclose(freq, w / w.sum(), atol=0.035)


def test_stochastic_batch_limits_and_seeds():
    scores = np.random.RandomState(0).rand(50)
    a = stochastic_batch(scores, 10, random_state=3)
    assert len(np.unique(a)) == 10
    np.testing.assert_array_equal(a, stochastic_batch(scores, 10, random_state=3))
    np.testing.assert_array_equal(stochastic_batch(scores, 10, beta=1e4, random_state=3),
                                  top_k(scores, 10))
    uniform = [stochastic_batch(scores, 1, beta=0.0, random_state=s)[0] for s in range(2000)]
    assert np.bincount(uniform, minlength=50).max() < 100  # ~40 each
    with pytest.raises(ValueError, match="scores >= 0"):
        stochastic_batch(-scores, 2)
    with pytest.raises(ValueError, match="mode"):
        stochastic_batch(scores, 2, mode="gumbel")
    with pytest.raises(ValueError, match="beta"):
        stochastic_batch(scores, 2, beta=-1)
    with pytest.raises(ValueError, match="larger than the pool"):
        stochastic_batch(scores, 51)


def test_powerbald_on_a_net(trained_net, digits_split):
    X = digits_split[0][300:500]
    a = PowerBALD(n_passes=5, random_state=0).query(trained_net, X, 10)
    assert len(np.unique(a)) == 10
    again = PowerBALD(n_passes=5, random_state=0).query(trained_net, X, 10)
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, PowerBALD(n_passes=5, random_state=1).query(trained_net, X, 10))
    # A large beta is top-k BALD with the same dropout masks.
    bald = BALD(n_passes=5, random_state=0).utilities(trained_net, X)
    greedy = PowerBALD(n_passes=5, beta=1e4, random_state=0).query(trained_net, X, 10)
    np.testing.assert_array_equal(greedy, top_k(bald, 10))
    # PowerBALD is StochasticBatch around BALD (the wrapper's default base).
    np.testing.assert_array_equal(PowerBALD(random_state=4).query(trained_net, X, 10),
                                  StochasticBatch(random_state=4).query(trained_net, X, 10))
    sub = PowerBALD(n_passes=5, n_candidates=40, random_state=0)
    idx = sub.query(trained_net, X, 5)
    assert np.isfinite(sub.last_utilities_).sum() == 40
    assert np.isfinite(sub.last_utilities_[idx]).all()


def test_stochastic_batch_wraps_any_score_strategy(digits_split):
    X, y = digits_split[0][:300].reshape(300, -1), digits_split[1][:300]
    clf = LogisticRegression(max_iter=200).fit(X[:50], y[:50])
    strategy = StochasticBatch(UncertaintySampling("margin"), mode="softrank", random_state=0)
    idx = strategy.query(clf, X[50:], 8)
    assert len(np.unique(idx)) == 8
    with pytest.raises(ValueError, match="softmax"):
        StochasticBatch(UncertaintySampling("margin")).query(clf, X[50:], 8)
    with pytest.raises(ValueError, match="score-based"):
        StochasticBatch(RandomSampling()).query(clf, X[50:], 8)
    with pytest.raises(TypeError, match="predict_proba"):
        StochasticBatch(UncertaintySampling()).query(object(), X[50:], 8)
    copy = clone(strategy).set_params(base_strategy__measure="entropy", beta=2.0)
    assert copy.base_strategy.measure == "entropy" and strategy.base_strategy.measure == "margin"
    search = GridSearchCV(
        ActiveLearningClassifier(LogisticRegression(max_iter=200), RandomSampling(), n_initial=20,
                                 batch_size=10, n_queries=2, random_state=0),
        {"query_strategy": [StochasticBatch(UncertaintySampling("entropy"), random_state=0)],
         "query_strategy__beta": [0.5, 2.0]}, cv=2).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_softrank_dqbc_draws_by_dqbc_rank(trained_net, digits_split):
    from skal import DQBC
    from skal.registry import make_strategy

    X = digits_split[0][300:500]
    strategy = make_strategy("softrank-dqbc", random_state=0)
    assert isinstance(strategy, StochasticBatch) and isinstance(strategy.base_strategy, DQBC)
    assert strategy.mode == "softrank"
    a = strategy.query(trained_net, X, 10)
    assert len(np.unique(a)) == 10 and a.max() < len(X)
    np.testing.assert_array_equal(a, clone(strategy).query(trained_net, X, 10))
    # The draw ranks DQBC's own utilities; a huge beta gives DQBC's top-k.
    scores = DQBC(random_state=0).utilities(trained_net, X)
    greedy = StochasticBatch(DQBC(random_state=0), mode="softrank", beta=1e4, random_state=0)
    np.testing.assert_array_equal(np.sort(greedy.query(trained_net, X, 10)),
                                  np.sort(top_k(scores, 10)))


def test_powerbald_and_batchbald_grid_search_with_a_net(digits_split):
    X, y, _, _ = digits_split
    clf = ActiveLearningClassifier(cnn_classifier("digits", 10, max_epochs=1), RandomSampling(),
                                   n_initial=20, batch_size=10, n_queries=1, random_state=0)
    grid = {"query_strategy": [PowerBALD(n_passes=3), BatchBALD(n_passes=3, n_candidates=40)]}
    search = GridSearchCV(clf, grid, cv=2).fit(X[:200], y[:200])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


class _ModalLike:
    """What modAL's ActiveLearner hands a query strategy: .estimator, .X_training, .y_training."""

    def __init__(self, estimator, X, y):
        self.estimator, self.X_training, self.y_training = estimator, X, y
        self.query_strategy = None


@pytest.mark.parametrize(
    "strategy",
    [BatchBALD(n_passes=4, n_candidates=60, random_state=0), PowerBALD(n_passes=4, random_state=0),
     StochasticBatch(BALD(n_passes=4, random_state=0), random_state=0)],
    ids=lambda s: type(s).__name__,
)
def test_modal_protocol(strategy, trained_net, digits_split):
    X, y = digits_split[0], digits_split[1]
    learner = _ModalLike(trained_net, X[:30], y[:30])
    idx, utilities = strategy(learner, X[300:450], 5)
    assert len(np.unique(idx)) == 5 and idx.max() < 150
    np.testing.assert_allclose(utilities, strategy.last_utilities_[idx])
    assert np.isfinite(utilities).all()
