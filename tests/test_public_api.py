"""Every public estimator follows scikit-learn's rules: clone, get/set_params, pickle."""

import inspect
import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone

import skal
import skal.ot

PUBLIC = sorted(
    {
        obj
        for module in (skal, skal.ot, skal.strategies, skal.models)
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator)
        and not inspect.isabstract(obj) and obj.__module__.startswith("skal")
        and obj not in (skal.QueryStrategy, skal.ScoreBasedStrategy)
    },
    key=lambda c: c.__name__,
)


def _instance(cls):
    if cls in (skal.ActiveLearner, skal.ActiveLearningClassifier):
        return cls(skal.nets.cnn_classifier("digits", 10), skal.BALD(n_passes=3), random_state=1)
    if cls is skal.WAALClassifier:
        return cls(skal.nets.DigitsCNN, module__n_classes=10)
    return cls()


def test_public_classes_are_found():
    names = {c.__name__ for c in PUBLIC}
    assert {"DQBC", "DFAL", "BALNet", "WAAL", "WassersteinPrototypes", "BALD",
            "ActiveLearner", "WAALClassifier"} <= names


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_clone_get_set_params_and_pickle(cls):
    est = _instance(cls)
    params = est.get_params(deep=False)
    copy = clone(est)
    assert type(copy) is cls
    for name, value in copy.get_params(deep=False).items():
        if isinstance(value, BaseEstimator):
            assert type(value) is type(params[name])
        elif not callable(value):
            assert np.all(value == params[name]) or value is params[name]
    if "random_state" in params:
        copy.set_params(random_state=123)
        assert copy.random_state == 123 and est.random_state != 123
    restored = pickle.loads(pickle.dumps(est))
    assert restored.get_params(deep=False).keys() == params.keys()
    assert repr(restored)


def test_strategies_share_the_modal_protocol():
    strategies = [c for c in PUBLIC if issubclass(c, skal.QueryStrategy)]
    assert len(strategies) >= 14
    for cls in strategies:
        sig = inspect.signature(cls.query)
        assert list(sig.parameters)[:4] == ["self", "estimator", "X_pool", "n_instances"]
        assert callable(cls.__call__) and callable(cls.augment)
