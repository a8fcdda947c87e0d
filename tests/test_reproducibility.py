"""Same random_state, same queries, with any skorch net, and no global RNG side effects."""

import numpy as np
import skorch
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

import skal.learner
from skal import BALD, ActiveLearner, ActiveLearningClassifier, UncertaintySampling, simulate


class _Tiny(nn.Module):
    def __init__(self, n_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(16, n_classes))

    def forward(self, x):
        return self.body(x)


def _plain_net():
    # skorch's own classifier: no random_state parameter at all.
    net = skorch.NeuralNetClassifier(_Tiny, criterion=nn.CrossEntropyLoss, max_epochs=2,
                                     lr=0.1, batch_size=32, train_split=None, verbose=0,
                                     iterator_train__shuffle=True)
    return make_pipeline(FunctionTransformer(lambda X: X.astype(np.float32)), net)


def _rng_states():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy()


def _assert_states_equal(a, b):
    assert torch.equal(a[0], b[0]), "the global torch RNG state changed"
    np.testing.assert_array_equal(a[1], b[1])


def _queries(X, y, pool):
    learner = ActiveLearner(_plain_net(), BALD(n_passes=4, random_state=3), random_state=0)
    learner.fit(X, y)
    first = learner.query(pool, 5)
    learner.teach(pool[first], np.arange(5) % 10)
    weights = next(learner.estimator_[-1].module_.parameters()).detach().clone()
    return np.concatenate([first, learner.query(pool, 5)]), weights


def test_plain_skorch_net_in_pipeline_gives_same_queries(digits_split):
    X, y, _, _ = digits_split
    pool = X[100:400]
    before = _rng_states()
    a, wa = _queries(X[:60], y[:60], pool)
    _assert_states_equal(before, _rng_states())
    torch.manual_seed(123)  # whatever the caller's global state, the result is the same
    b, wb = _queries(X[:60], y[:60], pool)
    np.testing.assert_array_equal(a, b)
    assert torch.equal(wa, wb)


def test_without_the_forked_seed_a_plain_net_is_not_reproducible(digits_split, monkeypatch):
    # The control for the test above: skorch alone draws from the global RNG.
    monkeypatch.setattr(skal.learner, "_torch_seeded", lambda estimator, seed: _null())
    X, y, _, _ = digits_split
    torch.manual_seed(1)
    _, wa = _queries(X[:60], y[:60], X[100:400])
    torch.manual_seed(2)
    _, wb = _queries(X[:60], y[:60], X[100:400])
    assert not torch.equal(wa, wb)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_random_state_none_leaves_torch_global_rng_in_charge(digits_split):
    X, y, _, _ = digits_split
    torch.manual_seed(0)
    a = ActiveLearner(_plain_net(), UncertaintySampling()).fit(X[:40], y[:40])
    torch.manual_seed(0)
    b = ActiveLearner(_plain_net(), UncertaintySampling()).fit(X[:40], y[:40])
    # Same global seed, same weights: no hidden seeding happened.
    assert torch.equal(next(a.estimator_[-1].module_.parameters()),
                       next(b.estimator_[-1].module_.parameters()))


def test_active_learning_classifier_and_simulate_are_reproducible(digits_split):
    X, y, X_test, y_test = digits_split
    X, y = X[:200], y[:200]
    probas = []
    for seed in (5, 6):
        torch.manual_seed(seed)
        clf = ActiveLearningClassifier(_plain_net(), UncertaintySampling(), n_initial=20,
                                       batch_size=10, n_queries=2, random_state=0).fit(X, y)
        probas.append(clf.predict_proba(X_test[:50]))
    np.testing.assert_allclose(probas[0], probas[1])
    runs = []
    for seed in (5, 6):
        torch.manual_seed(seed)
        runs.append(simulate(_plain_net(), BALD(n_passes=3), X, y, X_test[:100], y_test[:100],
                             n_initial=20, batch_size=10, n_queries=2, random_state=4,
                             progress=False))
    for qa, qb in zip(runs[0].queried_indices, runs[1].queried_indices, strict=True):
        np.testing.assert_array_equal(qa, qb)
    np.testing.assert_allclose(runs[0].accuracy, runs[1].accuracy)


def test_global_states_untouched_by_simulate(digits_split):
    seed = 0
    X, y, X_test, y_test = digits_split
    torch.manual_seed(99)
    np.random.seed(99)
    before = _rng_states()
    simulate(_plain_net(), UncertaintySampling(), X[:100], y[:100], X_test[:50], y_test[:50],
             n_initial=20, batch_size=10, n_queries=1, random_state=seed, progress=False)
    _assert_states_equal(before, _rng_states())
