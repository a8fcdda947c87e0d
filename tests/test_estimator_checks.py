"""scikit-learn's own estimator checks on skal's learners.

Expected failures are declared in one place, ``EXPECTED_FAILED_CHECKS``, each
with its reason; docs/user_guide.md ("scikit-learn conformance") lists them.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import DataConversionWarning
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from skal import (
    BALD,
    ActiveLearner,
    ActiveLearningClassifier,
    RandomSampling,
    UncertaintySampling,
    WAALClassifier,
)

_OUTPUTS = ("the number of outputs is fixed by the module (module__n_classes) and y holds "
            "class indices 0..K-1, skorch's convention; skal.ActiveLearner encodes labels")
#: Checks that cannot apply, per estimator class, with the reason. Keep it short; each
#: is explained in docs/user_guide.md ("scikit-learn conformance").
EXPECTED_FAILED_CHECKS = {
    "ActiveLearner": {},
    "ActiveLearningClassifier": {},
    "WAALClassifier": {
        "check_no_attributes_set_in_init": "skorch's NeuralNet sets history_, initialized_ "
        "and virtual_params_ and keeps **kwargs defaults in __init__",
        "check_set_params": "skorch applies some parameters at once (callbacks=-inf fails "
        "in set_params, not in fit)",
        "check_classifiers_classes": _OUTPUTS,
        "check_classifiers_train": _OUTPUTS,
        "check_dtype_object": _OUTPUTS + " (the check draws 4 classes)",
    },
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


# Tiny learners keep the suite fast. The classifier's budget (10 + 10 * 3 labels)
# is what logistic regression needs to pass the training-accuracy check on
# scikit-learn's 3-blob problem.
class _TinyTrunkHead(nn.Module):
    """WAAL's module interface (features -> classifier) for any number of features."""

    def __init__(self, n_classes=3, hidden=8):
        super().__init__()
        self.features = nn.Sequential(nn.LazyLinear(hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, n_classes)
        self.embedding_dim = hidden

    def forward(self, x):
        return self.classifier(self.features(x))


ESTIMATORS = [
    ActiveLearner(LogisticRegression(), UncertaintySampling(), random_state=0),
    ActiveLearningClassifier(LogisticRegression(), UncertaintySampling(), n_initial=10,
                             batch_size=10, n_queries=3, random_state=0),
    WAALClassifier(_TinyTrunkHead, max_epochs=1, batch_size=16, lr=0.1, verbose=0,
                   random_state=0),
]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # Small check data sets are below the loop's budget: the warning is the point.
        warnings.filterwarnings("ignore", message="X has .* samples, fewer than n_initial")
        # The checks' data has no unlabeled rows: WAAL then trains supervised, and says so.
        warnings.filterwarnings("ignore", message="WAALClassifier got no unlabeled rows")
        check(estimator)


def _blobs(n=60, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 2
    return rng.randn(n, 3) + 2.0 * y[:, None], y


def test_small_data_warns_and_fits_on_what_there_is():
    X, y = _blobs(12)
    clf = ActiveLearningClassifier(LogisticRegression(), RandomSampling(), n_initial=4,
                                   batch_size=5, n_queries=3, random_state=0)
    with pytest.warns(UserWarning, match=r"fewer than n_initial \+ batch_size \* n_queries = "
                                         r"4 \+ 5 \* 3 = 19"):
        clf.fit(X, y)
    # 4 labels, then 5, then the last 3: the loop stops when X is used up.
    np.testing.assert_array_equal(clf.learning_curve_["n_labels"], [4, 9, 12])
    assert clf.predict(X).shape == (12,)


@pytest.mark.parametrize("bad, message", [
    (np.array([[np.nan, 1.0, 0.0]] * 12), "Input X contains NaN"),
    (np.array([[1 + 1j, 1.0, 0.0]] * 12), "Complex data not supported"),
    (np.array([[1.0]]), "one class|1 class"),
])
def test_input_is_checked_before_the_budget(bad, message):
    # Never "the pool is empty" for a problem that is really about the input.
    clf = ActiveLearningClassifier(LogisticRegression(), RandomSampling(), n_initial=20,
                                   random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match=message):
            clf.fit(bad, np.arange(len(bad)) % 2 if len(bad) > 1 else [0])


def test_column_y_warns_and_is_raveled():
    X, y = _blobs()
    clf = ActiveLearningClassifier(LogisticRegression(), RandomSampling(), n_initial=10,
                                   batch_size=5, n_queries=1, random_state=0)
    with pytest.warns(DataConversionWarning):
        clf.fit(X, y[:, None])
    assert clf.n_features_in_ == 3 and clf.classes_.tolist() == [0, 1]
    assert clf.predict(X).shape == (60,)


TEXTS = [
    "cheap pills online now", "win money fast", "buy cheap watches", "free money offer",
    "meeting moved to monday", "lunch with the team", "project report attached",
    "see you at the meeting", "cheap offer win now", "team lunch on friday",
] * 4
SPAM = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0] * 4)


@pytest.mark.parametrize("strategy", [UncertaintySampling(), RandomSampling(random_state=0)])
def test_text_pipeline_on_sparse_counts(strategy):
    X = CountVectorizer().fit_transform(TEXTS)  # scipy sparse, as text features are
    model = make_pipeline(TfidfTransformer(), LogisticRegression())
    learner = ActiveLearner(model, strategy, random_state=0).fit(X[[0, 4]], SPAM[[0, 4]])
    pool = X[10:]
    idx = learner.query(pool, n_instances=6)
    assert len(set(idx.tolist())) == 6 and idx.max() < pool.shape[0]
    learner.teach(pool[idx], SPAM[10:][idx])
    assert sp.issparse(learner.X_training) and learner.X_training.shape == (8, X.shape[1])
    clf = ActiveLearningClassifier(model, strategy, n_initial=6, batch_size=6, n_queries=3,
                                   random_state=0).fit(X, SPAM)
    assert clf.score(X, SPAM) > 0.9


def test_sparse_rejected_with_sklearns_message_where_dense_is_needed(trained_net):
    X = sp.csr_matrix(np.eye(4))
    with pytest.raises(TypeError, match="Sparse data was passed for X, but dense data is required"):
        ActiveLearner(LogisticRegression(), BALD(), random_state=0).fit(X, [0, 1, 0, 1])
    with pytest.raises(TypeError, match="Sparse data was passed for X_pool"):
        BALD(n_passes=2).query(trained_net, sp.csr_matrix(np.zeros((5, 64))), 1)
