import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skal import (
    BALD,
    ActiveLearner,
    ActiveLearningClassifier,
    CoreSet,
    QueryStrategy,
    RandomSampling,
    UncertaintySampling,
)
from skal.base import with_unlabeled_tag
from skal.nets import cnn_classifier


def _net(**kwargs):
    return cnn_classifier("digits", 10, max_epochs=2, random_state=0, **kwargs)


def _flatten(X):
    return X.reshape(len(X), -1)


def test_labeling_loop_with_a_net(digits_split):
    X, y, X_test, y_test = digits_split
    learner = ActiveLearner(_net(), BALD(n_passes=3), random_state=0).fit(X[:30], y[:30])
    pool = np.arange(30, 400)
    for _ in range(2):
        idx = learner.query(X[pool], n_instances=10)
        assert len(np.unique(idx)) == 10 and idx.max() < len(pool)
        learner.teach(X[pool[idx]], y[pool[idx]])
        pool = np.delete(pool, idx)
    assert len(learner.X_training) == len(learner.y_training) == 50
    assert learner.predict_proba(X_test).shape == (len(X_test), 10)
    assert 0.0 <= learner.score(X_test, y_test) <= 1.0


def test_missing_classes_and_class_first_seen_in_teach(digits_split):
    X, y, X_test, _ = digits_split
    first = np.isin(y, [0, 1, 2])
    net = cnn_classifier("digits", 10, max_epochs=15, random_state=0)
    learner = ActiveLearner(net, UncertaintySampling(), random_state=0)
    learner.fit(X[first][:30], y[first][:30])
    np.testing.assert_array_equal(learner.classes_, [0, 1, 2])
    assert set(learner.predict(X_test)) <= {0, 1, 2}
    sevens = np.flatnonzero(y == 7)[:10]
    learner.teach(X[sevens], y[sevens])
    assert 7 in learner.classes_
    assert learner.predict_proba(X_test).shape[1] == 4
    assert (learner.predict(X[sevens]) == 7).mean() > 0.5


def test_string_labels_and_sklearn_classifier():
    rng = np.random.RandomState(0)
    X = rng.randn(80, 2)
    y = np.where(X[:, 0] > 0, "pos", "neg")
    learner = ActiveLearner(LogisticRegression(), UncertaintySampling(), random_state=0)
    seed = np.r_[np.flatnonzero(y == "pos")[:2], np.flatnonzero(y == "neg")[:2]]
    learner.fit(X[seed], y[seed])
    idx = learner.query(X, 5)
    learner.teach(X[idx], y[idx])
    reference = LogisticRegression().fit(learner.X_training, learner.y_training)
    np.testing.assert_array_equal(learner.predict(X), reference.predict(X))
    np.testing.assert_allclose(learner.predict_proba(X), reference.predict_proba(X))


def test_failed_teach_leaves_learner_unchanged(digits_split):
    X, y, _, _ = digits_split
    learner = ActiveLearner(_net(), UncertaintySampling(), random_state=0).fit(X[:20], y[:20])
    estimator = learner.estimator_
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        learner.teach(X[20:25], y[20:23])
    with pytest.raises(ValueError, match="NaN"):
        learner.teach(np.full((2, 1, 8, 8), np.nan, dtype=np.float32), y[:2])
    with pytest.raises(ValueError, match="shape"):
        learner.teach(np.zeros((2, 64), dtype=np.float32), y[:2])
    assert learner.estimator_ is estimator and len(learner.X_training) == 20


def test_failed_training_leaves_learner_unchanged():
    class Flaky(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            if len(X) > 10:
                raise RuntimeError("out of memory")
            return super().fit(X, y)

    rng = np.random.RandomState(0)
    X, y = rng.randn(30, 2), np.arange(30) % 2
    learner = ActiveLearner(Flaky(), RandomSampling(), random_state=0).fit(X[:10], y[:10])
    before = learner.estimator_
    with pytest.raises(RuntimeError):
        learner.teach(X[10:12], y[10:12])
    assert learner.estimator_ is before and len(learner.X_training) == 10


def test_query_errors(digits_split):
    X, y, _, _ = digits_split
    with pytest.raises(NotFittedError):
        ActiveLearner(_net(), UncertaintySampling()).query(X[:10], 1)
    learner = ActiveLearner(_net(), UncertaintySampling(), random_state=0).fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="larger than the pool"):
        learner.query(X[:5], 6)
    with pytest.raises(ValueError, match="empty"):
        learner.query(X[:0], 1)
    with pytest.raises(ValueError, match="inconsistent numbers of samples: \\[20, 19\\]"):
        ActiveLearner(_net(), UncertaintySampling()).fit(X[:20], y[:19])


def test_pickled_learner_gives_same_next_queries(digits_split):
    X, y, _, _ = digits_split
    learner = ActiveLearner(_net(), BALD(n_passes=3, n_candidates=100), random_state=0)
    learner.fit(X[:30], y[:30])
    idx = learner.query(X[30:300], 5)
    learner.teach(X[30:300][idx], y[30:300][idx])
    restored = pickle.loads(pickle.dumps(learner))
    np.testing.assert_array_equal(learner.query(X[300:600], 5), restored.query(X[300:600], 5))


def test_same_seed_same_queries(digits_split):
    X, y, _, _ = digits_split
    runs = []
    for _ in range(2):
        learner = ActiveLearner(_net(), RandomSampling(), random_state=3).fit(X[:20], y[:20])
        runs.append(learner.query(X[20:300], 5))
    np.testing.assert_array_equal(*runs)


def test_pipeline_of_transform_and_net(digits_split):
    X, y, _, _ = digits_split
    pipe = make_pipeline(FunctionTransformer(lambda Z: Z * 2.0 - 1.0), _net())
    learner = ActiveLearner(pipe, CoreSet(), random_state=0).fit(X[:30], y[:30])
    idx = learner.query(X[30:200], 5)
    learner.teach(X[30:200][idx], y[30:200][idx])
    assert len(learner.y_training) == 35


def test_pipeline_of_sklearn_steps(digits_split):
    X, y, _, _ = digits_split
    X = _flatten(X)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    learner = ActiveLearner(pipe, UncertaintySampling("margin"), random_state=0).fit(X[:40], y[:40])
    idx = learner.query(X[40:], 10)
    learner.teach(X[40:][idx], y[40:][idx])
    assert learner.score(X, y) > 0.6


def test_warm_start_continues_training(digits_split):
    X, y, _, _ = digits_split
    learner = ActiveLearner(_net(), RandomSampling(), warm_start=True, random_state=0)
    learner.fit(X[:30], y[:30])
    learner.teach(X[30:40], y[30:40])
    assert len(learner.estimator_.history) == 4  # 2 epochs, then 2 more
    cold = ActiveLearner(_net(), RandomSampling(), random_state=0).fit(X[:30], y[:30])
    cold.teach(X[30:40], y[30:40])
    assert len(cold.estimator_.history) == 2


class _AddsCopies(QueryStrategy):
    def _query(self, estimator, X_pool, n_instances, **kwargs):
        return np.arange(n_instances)

    def augment(self, X_queried, y_queried):
        return X_queried + 0.01, y_queried


def test_teach_trains_on_augmented_data():
    rng = np.random.RandomState(0)
    X, y = rng.randn(40, 2), np.arange(40) % 2
    learner = ActiveLearner(LogisticRegression(), _AddsCopies(), random_state=0).fit(X[:4], y[:4])
    learner.teach(X[4:10], y[4:10])
    assert len(learner.X_training) == 10 and len(learner.X_extra_) == 6
    np.testing.assert_allclose(learner.X_extra_, X[4:10] + 0.01)


class _PseudoLabels(_AddsCopies):
    transient_augment = True


def test_transient_augmented_data_is_replaced_each_round():
    rng = np.random.RandomState(0)
    X, y = rng.randn(40, 2), np.arange(40) % 2
    learner = ActiveLearner(LogisticRegression(), _PseudoLabels(), random_state=0).fit(X[:4], y[:4])
    learner.teach(X[4:10], y[4:10])
    learner.teach(X[10:13], y[10:13])
    assert len(learner.X_training) == 13 and len(learner.X_extra_) == 3
    np.testing.assert_allclose(learner.X_extra_, X[10:13] + 0.01)


class _SemiSupervised(LogisticRegression):
    def fit(self, X, y, sample_weight=None):
        self.seen_unlabeled_ = int((y == -1).sum())
        return super().fit(X[y != -1], y[y != -1])

    def __sklearn_tags__(self):
        return with_unlabeled_tag(super().__sklearn_tags__())


def test_pool_is_passed_to_estimators_accepting_unlabeled_rows():
    rng = np.random.RandomState(0)
    X, y = rng.randn(50, 2), np.arange(50) % 2
    learner = ActiveLearner(_SemiSupervised(), RandomSampling(), random_state=0)
    learner.fit(X[:6], y[:6])
    assert learner.estimator_.seen_unlabeled_ == 0
    learner.fit(X[:6], y[:6], X_unlabeled=X[6:])
    assert learner.estimator_.seen_unlabeled_ == 44
    idx = learner.query(X[6:], 4)
    learner.teach(X[6:][idx], y[6:][idx])
    assert learner.estimator_.seen_unlabeled_ == 44 - 4


def test_unlabeled_rows_are_ignored_by_ordinary_estimators():
    rng = np.random.RandomState(0)
    X, y = rng.randn(50, 2), np.arange(50) % 2
    learner = ActiveLearner(LogisticRegression(), RandomSampling(), random_state=0)
    learner.fit(X[:6], y[:6], X_unlabeled=X[6:])
    reference = LogisticRegression().fit(X[:6], y[:6])
    np.testing.assert_allclose(learner.estimator_.coef_, reference.coef_)


def test_clone_get_params_of_learners():
    for est in [ActiveLearner(_net(), BALD(n_passes=2), random_state=1),
                ActiveLearningClassifier(_net(), CoreSet(), n_initial=5, random_state=1)]:
        c = clone(est)
        assert c.get_params()["query_strategy"].get_params() == \
            est.get_params()["query_strategy"].get_params()
        assert c.get_params(deep=False).keys() == est.get_params(deep=False).keys()


def test_active_learning_classifier_records_curve(digits_split):
    X, y, _, _ = digits_split
    clf = ActiveLearningClassifier(_net(), UncertaintySampling(), n_initial=20, batch_size=10,
                                   n_queries=2, random_state=0).fit(X[:300], y[:300])
    np.testing.assert_array_equal(clf.learning_curve_["n_labels"], [20, 30, 40])
    assert len(clf.learner_.y_training) == 40
    assert len(np.unique(clf.learner_.X_training.reshape(40, -1), axis=0)) == 40
    # Too little data for the budget: the loop runs on what there is, with a warning.
    with pytest.warns(UserWarning, match="n_initial") as record:
        small = ActiveLearningClassifier(_net(), RandomSampling(), n_initial=500,
                                         random_state=0).fit(X[:30], y[:30])
    # Fitted as a pipeline's last step, the warning still names this file.
    pipe = make_pipeline(FunctionTransformer(), ActiveLearningClassifier(
        _net(), RandomSampling(), n_initial=500, random_state=0))
    with pytest.warns(UserWarning, match="n_initial") as in_pipeline:
        pipe.fit(X[:30], y[:30])
    assert {w.filename for w in [*record, *in_pipeline]} == {__file__}
    np.testing.assert_array_equal(small.learning_curve_["n_labels"], [30])


def test_grid_search_over_three_strategies_in_parallel(digits_split):
    X, y, _, _ = digits_split
    X = _flatten(X[:400])
    clf = ActiveLearningClassifier(LogisticRegression(max_iter=200), RandomSampling(),
                                   n_initial=20, batch_size=10, n_queries=2, random_state=0)
    grid = {"query_strategy": [RandomSampling(), UncertaintySampling(), CoreSet()],
            "query_strategy__random_state": [0]}
    search = GridSearchCV(clf, grid, cv=2, n_jobs=2).fit(X, y[:400])
    assert len(search.cv_results_["params"]) == 3
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_grid_search_with_a_net(digits_split):
    X, y, _, _ = digits_split
    clf = ActiveLearningClassifier(_net(), RandomSampling(), n_initial=20, batch_size=10,
                                   n_queries=1, random_state=0)
    grid = {"query_strategy": [RandomSampling(), UncertaintySampling(), BALD(n_passes=2)]}
    search = GridSearchCV(clf, grid, cv=2).fit(X[:200], y[:200])
    assert search.best_score_ > 0.1
