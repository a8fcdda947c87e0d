"""skal strategies inside modAL's own ActiveLearner (modAL-python 0.4.2.1).

modAL breaks on scikit-learn >= 1.8, so .ci/run runs these in an environment
with scikit-learn 1.7.x: ``python -m pytest -m modal tests/test_modal.py``.
"""

import numpy as np
import pytest

from skal import (
    BADGE,
    BALD,
    CEAL,
    DFAL,
    DQBC,
    EGL,
    BALNet,
    BatchBALD,
    ClusterMargin,
    CoreSet,
    KMedoidsCoreSet,
    PowerBALD,
    ProbCover,
    RandomSampling,
    StochasticBatch,
    TypiClust,
    UncertaintySampling,
    WassersteinCoreSet,
    WassersteinPrototypes,
)
from skal.nets import cnn_classifier

modAL = pytest.importorskip("modAL")
pytestmark = pytest.mark.modal

from modAL.models import ActiveLearner as ModalLearner  # noqa: E402


class _CountingEntropy(UncertaintySampling):
    def _utilities(self, estimator, X):
        self.n_calls_ = getattr(self, "n_calls_", 0) + 1
        return super()._utilities(estimator, X)


@pytest.mark.parametrize(
    "strategy",
    [UncertaintySampling(), BALD(n_passes=3, random_state=0), CoreSet(),
     RandomSampling(random_state=0), DQBC(n_members=3, finetune_epochs=1, random_state=0),
     DFAL(max_iter=5, n_candidates=60), BALNet(n_candidates=60, random_state=0),
     WassersteinPrototypes(random_state=0), WassersteinCoreSet(time_limit=10, random_state=0),
     KMedoidsCoreSet(), EGL(n_candidates=60, random_state=0), CEAL(),
     # the strategies peers ship (issue 21), and a rank-drawn batch
     BADGE(random_state=0), BatchBALD(n_passes=3, n_candidates=40, n_joint_samples=200,
                                      random_state=0),
     PowerBALD(n_passes=3, random_state=0), TypiClust(random_state=0),
     ProbCover(random_state=0), ClusterMargin(random_state=0),
     StochasticBatch(UncertaintySampling(), mode="softrank", random_state=0)],
    ids=lambda s: type(s).__name__,
)
def test_skal_strategy_in_modal_loop(strategy, digits_split):
    X, y, X_test, y_test = digits_split
    net = cnn_classifier("digits", 10, max_epochs=2, random_state=0)
    learner = ModalLearner(estimator=net, query_strategy=strategy,
                           X_training=X[:30], y_training=y[:30])
    pool_X, pool_y = X[30:300], y[30:300]
    for _ in range(2):
        idx, instances = learner.query(pool_X, n_instances=5)
        idx = np.asarray(idx)
        assert len(np.unique(idx)) == 5 and idx.max() < len(pool_X)
        np.testing.assert_array_equal(instances, pool_X[idx])
        learner.teach(pool_X[idx], pool_y[idx])
        pool_X, pool_y = np.delete(pool_X, idx, axis=0), np.delete(pool_y, idx)
    assert len(learner.y_training) == 40
    assert 0.0 <= learner.score(X_test, y_test) <= 1.0


def test_modal_query_computes_once_and_returns_metrics(digits_split):
    X, y, _, _ = digits_split
    net = cnn_classifier("digits", 10, max_epochs=1, random_state=0)
    strategy = _CountingEntropy()
    learner = ModalLearner(estimator=net, query_strategy=strategy,
                           X_training=X[:30], y_training=y[:30])
    idx, _, metrics = learner.query(X[30:200], n_instances=4, return_metrics=True)
    assert strategy.n_calls_ == 1
    expected = strategy.utilities(learner, X[30:200])[idx]
    np.testing.assert_allclose(metrics, expected)


def test_waal_in_modal_loop(digits_split):
    from skal import WAAL, WAALClassifier
    from skal.nets import DigitsCNN

    X, y, _, _ = digits_split
    net = WAALClassifier(DigitsCNN, module__n_classes=10, max_epochs=1, random_state=0, verbose=0)
    pool_X, pool_y = X[30:300], y[30:300]
    learner = ModalLearner(estimator=net, query_strategy=WAAL(), X_training=X[:30],
                           y_training=y[:30], X_unlabeled=pool_X)
    idx, _ = learner.query(pool_X, n_instances=5)
    assert len(np.unique(idx)) == 5
    rest = np.delete(np.arange(len(pool_X)), idx)
    learner.teach(pool_X[idx], pool_y[idx], X_unlabeled=pool_X[rest])
    assert learner.estimator.n_unlabeled_ == len(rest)


def test_dfal_copies_taught_to_modal_learner(digits_split):
    """modAL's teach adds only what it is given: DFAL's copies are taught by hand."""
    X, y, _, _ = digits_split
    net = cnn_classifier("digits", 10, max_epochs=2, random_state=0)
    dfal = DFAL(max_iter=5, n_candidates=60)
    learner = ModalLearner(estimator=net, query_strategy=dfal,
                           X_training=X[:30], y_training=y[:30])
    idx, _ = learner.query(X[30:300], n_instances=5)
    X_adv, y_adv = dfal.augment(X[30:300][idx], y[30:300][idx])
    assert 1 <= len(X_adv) <= 5 and set(y_adv) <= set(y[30:300][idx])
    learner.teach(np.concatenate([X[30:300][idx], X_adv]), np.concatenate([y[30:300][idx], y_adv]))
    assert len(learner.y_training) == 35 + len(y_adv)
