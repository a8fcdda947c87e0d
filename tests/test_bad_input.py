"""The usual mistakes, for every public strategy and the learner: a clear error,
raised before any state changes, and everything still usable afterwards.

Strategies are enumerated from ``skal.__all__``, so new ones are covered as they
are added; give them small constructor arguments in ``SMALL`` if the defaults
are slow.
"""

import inspect

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.svm import LinearSVC

import skal
from skal import ActiveLearner
from skal.base import QueryStrategy, ScoreBasedStrategy

SMALL = {
    "BALD": {"n_passes": 2},
    "BALNet": {"n_candidates": 50},
    "DFAL": {"max_iter": 3},
    "DQBC": {"n_members": 2, "finetune_epochs": 1},
    "KMedoidsCoreSet": {"max_iter": 3},
    "WassersteinCoreSet": {"time_limit": 5.0, "max_candidates": 40, "max_iter": 5},
    "WassersteinDiversity": {"n_target": 40, "n_fixed": 40},
    "WassersteinPrototypes": {"n_candidates": 40, "n_target": 40, "n_fixed": 40},
}
#: Strategies that need a particular kind of model.
NEEDS_WAAL_NET = {"WAAL"}

STRATEGIES = sorted(
    name for name in skal.__all__
    if inspect.isclass(getattr(skal, name)) and issubclass(getattr(skal, name), QueryStrategy)
    and getattr(skal, name) not in (QueryStrategy, ScoreBasedStrategy)
)


def _strategy(name):
    kwargs = dict(SMALL.get(name, {}))
    if "random_state" in inspect.signature(getattr(skal, name)).parameters:
        kwargs["random_state"] = 0
    return getattr(skal, name)(**kwargs)


@pytest.fixture(scope="module")
def data(digits_split):
    X, y, _, _ = digits_split
    return X[:40], y[:40], X[300:340]


@pytest.fixture(scope="module")
def waal_net(data):
    from skal.nets import DigitsCNN

    X, y, pool = data
    net = skal.WAALClassifier(DigitsCNN, module__n_classes=10, max_epochs=1, random_state=0,
                              verbose=0)
    return net.fit(np.concatenate([X, pool]), np.concatenate([y, np.full(len(pool), -1)]))


def _model(name, trained_net, waal_net):
    return waal_net if name in NEEDS_WAAL_NET else trained_net


def _bad_pools(pool):
    nan = pool.copy()
    nan[3, 0, 2, 2] = np.nan
    inf = pool.copy()
    inf[0, 0, 0, 0] = np.inf
    strings = pool.astype(object)
    strings[1, 0, 0, 0] = "a"
    return {
        "nan": (nan, ValueError, "contains NaN"),
        "inf": (inf, ValueError, "contains infinity"),
        "complex": (pool.astype(np.complex64), ValueError, "Complex data not supported"),
        "object": (strings, ValueError, "could not convert string to float"),
        "empty": (pool[:0], ValueError, "empty"),
    }


BAD_N = [(0, ">= 1"), (-2, ">= 1"), (41, "larger than the pool"), (2.0, "must be an int")]


def _check_valid(idx, n_pool, n):
    assert idx.shape == (n,) and len(set(idx.tolist())) == n
    assert idx.min() >= 0 and idx.max() < n_pool


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_rejects_bad_input_and_stays_usable(name, data, trained_net, waal_net):
    X, y, pool = data
    model = _model(name, trained_net, waal_net)
    strategy = _strategy(name)
    for bad, error, message in _bad_pools(pool).values():
        with pytest.raises(error, match=message):
            strategy.query(model, bad, 2, X_labeled=X, y_labeled=y)
    for n, message in BAD_N:
        with pytest.raises(ValueError, match=message):
            strategy.query(model, pool, n, X_labeled=X, y_labeled=y)
    with pytest.raises(ValueError, match="X_labeled has 40 rows but y_labeled has 39"):
        strategy.query(model, pool, 2, X_labeled=X, y_labeled=y[:-1])
    # A pool of one row is a valid pool.
    np.testing.assert_array_equal(strategy.query(model, pool[:1], 1, X_labeled=X, y_labeled=y),
                                  [0])
    _check_valid(strategy.query(model, pool, 3, X_labeled=X, y_labeled=y), len(pool), 3)


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_given_a_model_it_cannot_use(name, data):
    # A linear model without predict_proba: model-agnostic strategies work or say what is
    # missing; deep strategies say they need a skorch net. Never an AttributeError from
    # deep inside.
    X, y, pool = data
    flat_X, flat_pool = X.reshape(len(X), -1), pool.reshape(len(pool), -1)
    model = LinearSVC().fit(flat_X, y)
    strategy = _strategy(name)
    try:
        idx = strategy.query(model, flat_pool, 2, X_labeled=flat_X, y_labeled=y)
    except (TypeError, ValueError, NotFittedError) as exc:
        assert any(word in str(exc) for word in ("predict_proba", "skorch", "torch", "WAAL",
                                                 "dropout", "probabilities")), str(exc)
    else:
        _check_valid(idx, len(pool), 2)


def test_bald_needs_dropout(data):
    from torch import nn

    from skal.nets import NeuralNetClassifier

    X, y, pool = data
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    net = NeuralNetClassifier(module, max_epochs=1, random_state=0, verbose=0).fit(X, y)
    with pytest.raises(ValueError, match="dropout"):
        skal.BALD(n_passes=2).query(net, pool, 2)


@pytest.fixture(scope="module")
def learners(data, waal_net):
    from skal.nets import cnn_classifier

    X, y, pool = data
    out = {}
    for name in STRATEGIES:
        if name in NEEDS_WAAL_NET:
            est = clone(waal_net)
        else:
            est = cnn_classifier("digits", 10, max_epochs=1, random_state=0)
        out[name] = ActiveLearner(est, _strategy(name), classes=np.arange(10), random_state=0)
        out[name].fit(X, y, X_unlabeled=pool)
    return out


def _snapshot(learner):
    return (learner.X_training.copy(), learner.y_training.copy(), learner.estimator_,
            learner.classes_.copy(), learner.pending_query_)


def _same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] is b[2]
    np.testing.assert_array_equal(a[3], b[3])


@pytest.mark.parametrize("name", STRATEGIES)
def test_learner_rejects_bad_input_and_stays_usable(name, data, learners):
    pool = data[2]
    learner = learners[name]
    before = _snapshot(learner)
    for bad, error, message in _bad_pools(pool).values():
        with pytest.raises(error, match=message):
            learner.query(bad, 2)
    with pytest.raises(ValueError, match="samples of shape"):
        learner.query(pool[:, :, :7, :7], 2)
    for n, message in BAD_N:
        with pytest.raises(ValueError, match=message):
            learner.query(pool, n)
    with pytest.raises(ValueError, match=r"labels \[11\] not in classes"):
        learner.teach(pool[:2], np.array([1, 11]))
    with pytest.raises(ValueError, match="samples of shape"):
        learner.teach(pool[:2, :, :7, :7], np.array([1, 2]))
    with pytest.raises(ValueError, match="contains NaN"):
        learner.teach(_bad_pools(pool)["nan"][0][:4], np.array([1, 2, 3, 4]))
    _same(before, _snapshot(learner))
    _check_valid(learner.query(pool, 2), len(pool), 2)
    np.testing.assert_array_equal(learner.query(pool[:1], 1), [0])


def test_learner_with_a_model_without_predict_proba(data):
    X, y, pool = data
    flat = X.reshape(len(X), -1)
    learner = ActiveLearner(LinearSVC(), skal.UncertaintySampling(), random_state=0).fit(flat, y)
    with pytest.raises(TypeError, match="predict_proba"):
        learner.query(pool.reshape(len(pool), -1), 2)
    assert learner.pending_query_ is None and len(learner.X_training) == 40
    # Wrong number of features: scikit-learn's message.
    with pytest.raises(ValueError, match="X_pool has 10 features, but ActiveLearner is expecting "
                                         "64 features as input"):
        learner.query(np.zeros((5, 10)), 1)
    np.testing.assert_array_equal(learner.predict(flat[:3]), LinearSVC().fit(flat, y).predict(
        flat[:3]))
