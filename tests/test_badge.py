import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

from skal import BADGE, ActiveLearner, ActiveLearningClassifier, RandomSampling
from skal.nets import NeuralNetClassifier, cnn_classifier
from skal.strategies.badge import gradient_embeddings, kmeans_plusplus_seeding


class _Tiny(nn.Module):
    def __init__(self, softmax=False):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 5), nn.Tanh())
        self.head = nn.Linear(5, 3)
        self.softmax = softmax

    def forward(self, X):
        out = self.head(self.body(X))
        return torch.softmax(out, dim=1) if self.softmax else out


def _tiny_net(softmax=False, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    criterion = nn.NLLLoss if softmax else nn.CrossEntropyLoss
    net = NeuralNetClassifier(_Tiny, module__softmax=softmax, criterion=criterion, max_epochs=3,
                              lr=0.1, train_split=None, verbose=0, device="cpu")
    torch.manual_seed(seed)
    return net.fit(X, y), X


def _autograd_embeddings(net, X):
    module = net.module_
    rows = []
    for x in torch.from_numpy(X):
        module.zero_grad()
        out = module(x[None])
        log_p = torch.log(out) if module.softmax else torch.log_softmax(out, dim=1)
        target = log_p.argmax(dim=1)
        nn.functional.nll_loss(log_p, target).backward()
        rows.append(module.head.weight.grad.flatten().numpy().copy())
    return np.array(rows)


@pytest.mark.parametrize("softmax", [False, True], ids=["logits", "softmax+nll"])
def test_gradient_embedding_is_the_last_layer_gradient(softmax):
    net, X = _tiny_net(softmax)
    G = gradient_embeddings(net, X[:12], batch_size=5)
    assert G.shape == (12, 15)
    np.testing.assert_allclose(G, _autograd_embeddings(net, X[:12]), rtol=1e-4, atol=1e-6)
    assert np.linalg.norm(G, axis=1).min() > 0


def test_gradient_embedding_applies_the_pipeline():
    net, X = _tiny_net()
    pipe = make_pipeline(FunctionTransformer(lambda Z: Z * 2.0), net)
    np.testing.assert_allclose(gradient_embeddings(pipe, X[:6]),
                               gradient_embeddings(net, X[:6] * 2.0), rtol=1e-6)


def _reference_seeding(X, k, first, rng):
    """D² sampling written out: full distance matrix, normalised probabilities."""
    D2 = cdist(X, X, "sqeuclidean")
    if first == "norm":
        chosen = [int(np.argmax((X ** 2).sum(axis=1)))]
    else:
        chosen = [int(rng.randint(len(X)))]
    while len(chosen) < k:
        d = D2[:, chosen].min(axis=1)
        p = d / d.sum()
        u = rng.random_sample()
        chosen.append(int(np.flatnonzero(np.cumsum(p) > u)[0]))
    return chosen


@pytest.mark.parametrize("first", ["norm", "random"])
def test_kmeans_plusplus_matches_reference(first):
    X = np.random.RandomState(3).normal(size=(60, 2))
    for seed in range(5):
        ours = kmeans_plusplus_seeding(X, 10, first=first, random_state=seed)
        ref = _reference_seeding(X, 10, first, np.random.RandomState(seed))
        np.testing.assert_array_equal(ours, ref)
        assert len(np.unique(ours)) == 10


def test_kmeans_plusplus_second_pick_follows_d2():
    # Row 2 has the largest norm; the second pick has probability d²(x, row 2) / sum.
    X = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [2.0, 1.0]])
    d2 = ((X - X[2]) ** 2).sum(axis=1)
    expected = d2 / d2.sum()
    picks = [kmeans_plusplus_seeding(X, 2, random_state=s)[1] for s in range(2000)]
    freq = np.bincount(picks, minlength=4) / 2000
    assert freq[2] == 0
    np.testing.assert_allclose(freq, expected, atol=0.035)


def test_kmeans_plusplus_with_duplicates_stays_distinct():
    X = np.zeros((6, 3))
    X[0] = 1.0
    idx = kmeans_plusplus_seeding(X, 5, random_state=0)
    assert idx[0] == 0 and len(np.unique(idx)) == 5


def test_badge_queries_distinct_seeded_and_diverse(trained_net, digits_split):
    X = digits_split[0][300:700]
    a = BADGE(random_state=0).query(trained_net, X, 20)
    assert len(np.unique(a)) == 20 and a.min() >= 0 and a.max() < len(X)
    np.testing.assert_array_equal(a, BADGE(random_state=0).query(trained_net, X, 20))
    assert not np.array_equal(a, BADGE(random_state=1).query(trained_net, X, 20))
    # The first pick is the longest gradient, and the batch is longer than average.
    G = gradient_embeddings(trained_net, X)
    norms = np.linalg.norm(G, axis=1)
    assert a[0] == np.argmax(norms)
    assert norms[a].mean() > norms.mean()


def test_badge_candidate_subset_and_utilities(trained_net, digits_split):
    X = digits_split[0][300:500]
    strategy = BADGE(n_candidates=50, random_state=0)
    idx = strategy.query(trained_net, X, 5)
    scored = np.isfinite(strategy.last_utilities_)
    assert scored.sum() == 50 and scored[idx].all()


def test_badge_in_skal_learner_and_grid_search(digits_split):
    X, y, _, _ = digits_split
    learner = ActiveLearner(cnn_classifier("digits", 10, max_epochs=1, random_state=0),
                            BADGE(random_state=0), random_state=0).fit(X[:30], y[:30])
    idx = learner.query(X[30:200], n_instances=5)
    assert len(np.unique(idx)) == 5
    clf = ActiveLearningClassifier(cnn_classifier("digits", 10, max_epochs=1), RandomSampling(),
                                   n_initial=20, batch_size=10, n_queries=1, random_state=0)
    grid = {"query_strategy": [BADGE(first="norm"), BADGE(first="random")]}
    search = GridSearchCV(clf, grid, cv=2).fit(X[:200], y[:200])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    copy = clone(BADGE(first="random", random_state=3))
    assert copy.get_params() == BADGE(first="random", random_state=3).get_params()


def test_badge_clear_errors(trained_net, digits_split):
    X = digits_split[0][:40]
    clf = LogisticRegression().fit(X.reshape(40, -1), digits_split[1][:40])
    with pytest.raises(TypeError, match="skorch neural net"):
        BADGE().query(clf, X.reshape(40, -1), 2)
    with pytest.raises(NotFittedError):
        BADGE().query(cnn_classifier("digits", 10), X, 2)
    with pytest.raises(ValueError, match="first"):
        BADGE(first="max").query(trained_net, X, 2)
    with pytest.raises(ValueError, match="batch_size"):
        BADGE(batch_size=0).query(trained_net, X, 2)
    with pytest.raises(ValueError, match="n_instances"):
        BADGE().query(trained_net, X, 41)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans_plusplus_seeding(np.zeros((3, 2)), 4)


def test_badge_modal_protocol(trained_net, digits_split):
    class ModalLike:  # what modAL's ActiveLearner hands a query strategy
        query_strategy = None

        def __init__(self):
            self.estimator = trained_net
            self.X_training, self.y_training = digits_split[0][:30], digits_split[1][:30]

    strategy = BADGE(random_state=0)
    idx, utilities = strategy(ModalLike(), digits_split[0][300:450], 5)
    assert len(np.unique(idx)) == 5 and idx.max() < 150
    norms = np.linalg.norm(gradient_embeddings(trained_net, digits_split[0][300:450]), axis=1)
    np.testing.assert_allclose(utilities, norms[idx], rtol=1e-5)
