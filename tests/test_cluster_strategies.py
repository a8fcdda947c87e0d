"""TypiClust, ProbCover and Cluster-Margin against straightforward reference code."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.base import clone
from sklearn.cluster import AgglomerativeClustering
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import ParameterGrid
from sklearn.utils import check_random_state

from skal import ActiveLearner, ClusterMargin, ProbCover, TypiClust
from skal.cli import make_strategy
from skal.strategies.cluster_margin import hac_clusters
from skal.strategies.probcover import ball_graph, max_coverage, purity_delta
from skal.strategies.typiclust import typicality


def _blobs(sizes, centers, scale=0.3, seed=0):
    rng = np.random.RandomState(seed)
    X = np.vstack([rng.normal(c, scale, size=(n, 2)) for n, c in zip(sizes, centers, strict=True)])
    return X, np.repeat(np.arange(len(sizes)), sizes)


class _ModalLike:
    """What modAL's ActiveLearner offers a query strategy: the model and the training set."""

    def __init__(self, estimator, X_training=None, y_training=None):
        self.estimator = estimator
        self.query_strategy = None
        self.X_training = X_training
        self.y_training = y_training

    def predict_proba(self, X):
        return self.estimator.predict_proba(X)


# ---------------------------------------------------------------- TypiClust


def _typicality_ref(Z, k):
    D = cdist(Z, Z)
    k = min(k, len(Z) - 1)
    out = np.empty(len(Z))
    for i in range(len(Z)):
        others = np.sort(np.delete(D[i], i))[:k]
        out[i] = 1.0 / others.mean()
    return out


def _typiclust_ref(labels, n_pool, n, Z, k, min_size):
    """The pick loop written out: cluster by cluster, dense distances."""
    labels = labels.copy()
    chosen = []
    for _ in range(n):
        best_key, best_c = None, None
        for c in np.unique(labels):
            pool_left = [i for i in np.flatnonzero(labels == c) if i < n_pool and i not in chosen]
            if not pool_left:
                continue
            size = np.sum(labels == c)
            n_cov = np.sum(labels[n_pool:] == c) + sum(labels[i] == c for i in chosen)
            key = (0 if size >= min_size else 1, n_cov, -size, c)
            if best_key is None or key < best_key:
                best_key, best_c = key, c
        rows = np.flatnonzero(labels == best_c)
        typ = _typicality_ref(Z[rows], k) if len(rows) > 1 else np.ones(1)
        cand = [(-t, r) for t, r in zip(typ, rows, strict=True) if r < n_pool and r not in chosen]
        chosen.append(int(min(cand)[1]))
    return np.array(chosen)


def test_typicality_matches_dense_reference():
    Z = np.random.RandomState(0).normal(size=(30, 2))
    np.testing.assert_allclose(typicality(Z, 5), _typicality_ref(Z, 5))
    np.testing.assert_allclose(typicality(Z, 100), _typicality_ref(Z, 100))


def test_typiclust_matches_reference_and_picks_largest_uncovered_blobs():
    X, blob = _blobs([40, 30, 20, 12], [(0, 0), (6, 0), (0, 6), (6, 6)])
    lab = np.array([0])  # one labeled point, in the largest blob
    pool = np.setdiff1d(np.arange(len(X)), lab)
    strat = TypiClust(embedding="input", n_neighbors=5, random_state=0)
    idx = strat.query(None, X[pool], 3, X_labeled=X[lab])
    labels = strat.cluster_labels_
    Z = np.vstack([X[pool], X[lab]])
    np.testing.assert_array_equal(idx, _typiclust_ref(labels, len(pool), 3, Z, 5, 5))
    # |L| + B = 4 clusters, the 4 far-apart blobs: the unlabeled ones, largest first
    assert len(set(zip(labels, np.r_[blob[pool], blob[lab]], strict=True))) == 4
    np.testing.assert_array_equal(blob[pool][idx], [1, 2, 3])
    # with 6 clusters the reference still agrees (blobs are split, ties are broken alike)
    strat = TypiClust(embedding="input", n_neighbors=5, random_state=1)
    idx = strat.query(None, X[pool], 5, X_labeled=X[lab])
    np.testing.assert_array_equal(
        idx, _typiclust_ref(strat.cluster_labels_, len(pool), 5, Z, 5, 5))


def test_typiclust_cold_start_one_point_per_blob_at_its_centre():
    X, blob = _blobs([30, 30, 30], [(0, 0), (8, 0), (0, 8)])
    idx = TypiClust(embedding="input", random_state=0).query(None, X, 3)
    assert sorted(blob[idx]) == [0, 1, 2]
    for i in idx:  # the most typical point is close to its blob's mean
        members = X[blob == blob[i]]
        d = np.linalg.norm(members - members.mean(0), axis=1)
        assert np.linalg.norm(X[i] - members.mean(0)) <= np.quantile(d, 0.25)


# ---------------------------------------------------------------- ProbCover


def _max_coverage_ref(Z, delta, n_pool, n):
    D = cdist(Z, Z)
    A = D < delta
    covered = A[n_pool:].any(axis=0)
    chosen = []
    for _ in range(n):
        gains = [(-(A[i] & ~covered).sum(), i) for i in range(n_pool) if i not in chosen]
        gain, i = min(gains)
        assert gain < 0, "the reference covers everything before the batch is full"
        chosen.append(i)
        covered |= A[i]
    return np.array(chosen), covered.mean()


def test_ball_graph_is_the_dense_ball_relation():
    Z = np.random.RandomState(1).normal(size=(50, 2))
    np.testing.assert_array_equal(ball_graph(Z, 0.7).toarray(), cdist(Z, Z) < 0.7)


def test_probcover_matches_dense_greedy_max_coverage():
    Z = np.random.RandomState(2).uniform(size=(50, 2))
    pool, lab = Z[:45], Z[45:]
    strat = ProbCover(delta=0.2, embedding="input", normalize=False, random_state=0)
    idx = strat.query(None, pool, 6, X_labeled=lab)
    ref, coverage = _max_coverage_ref(Z, 0.2, 45, 6)
    np.testing.assert_array_equal(idx, ref)
    assert strat.coverage_ == pytest.approx(coverage)
    # cold start: no covered points at the start
    ref_cold, _ = _max_coverage_ref(pool, 0.2, 45, 6)
    cold = ProbCover(delta=0.2, embedding="input", normalize=False).query(None, pool, 6)
    np.testing.assert_array_equal(cold, ref_cold)


def test_max_coverage_fills_the_batch_randomly_once_all_is_covered():
    Z = np.array([[0.0], [0.1], [5.0], [5.1], [9.0]])
    g = ball_graph(Z, 1.0)
    a = max_coverage(g, np.arange(5), 5, random_state=0)
    np.testing.assert_array_equal(a[:3], [0, 2, 4])  # then only 1 and 3 are left
    assert sorted(a) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(a, max_coverage(g, np.arange(5), 5, random_state=0))


def test_purity_delta_is_the_largest_radius_with_enough_pure_balls():
    rng = np.random.RandomState(3)
    Z = rng.normal(size=(60, 2))
    pseudo = (Z[:, 0] > 0).astype(int) + 2 * (Z[:, 1] > 0.5)
    D = cdist(Z, Z)

    def purity(delta):
        return np.mean([np.all(pseudo[D[i] < delta] == pseudo[i]) for i in range(len(Z))])

    delta = purity_delta(Z, pseudo, 0.8)
    assert purity(delta) >= 0.8
    assert purity(delta * 1.0001) < 0.8


def test_probcover_auto_delta_uses_the_labels_classes_or_n_classes():
    X, blob = _blobs([25, 25], [(0, 0), (5, 5)])
    strat = ProbCover(embedding="input", normalize=False, random_state=0)
    with pytest.raises(ValueError, match="n_classes"):
        strat.query(None, X, 2)  # cold start: no labels to count classes from
    idx = clone(strat).set_params(n_classes=2).query(None, X, 2)
    assert len(set(idx // 25)) == 2
    lab = np.array([0, 30])
    pool = np.setdiff1d(np.arange(50), lab)
    strat.query(None, X[pool], 2, X_labeled=X[lab], y_labeled=blob[lab])  # 2 classes seen
    # k-means with 2 clusters finds the blobs, so delta is the rule on the blob labels
    expected = purity_delta(np.vstack([X[pool], X[lab]]), np.r_[blob[pool], blob[lab]], 0.95)
    assert strat.delta_ == pytest.approx(expected)


def test_probcover_coverage_subset_matches_the_reference_on_the_subset():
    """With more points than max_samples, the greedy counts coverage on a random
    subset of them: exactly the reference greedy on the subset's columns, with
    every pool point a candidate."""
    Z = np.random.RandomState(4).uniform(size=(120, 2))
    pool, lab = Z[:110], Z[110:]
    strat = ProbCover(delta=0.15, embedding="input", normalize=False, max_samples=60,
                      random_state=0)
    idx = strat.query(None, pool, 5, X_labeled=lab)
    targets = np.sort(np.random.RandomState(0).choice(120, 60, replace=False))
    A = cdist(Z, Z[targets]) < 0.15
    covered = A[110:].any(axis=0)
    ref = []
    for _ in range(5):
        gains = [((A[i] & ~covered).sum(), -i) for i in range(110) if i not in ref]
        i = -max(gains)[1]
        ref.append(i)
        covered |= A[i]
    np.testing.assert_array_equal(idx, ref)
    assert strat.coverage_ == pytest.approx(covered.mean())
    # Pools within max_samples run the exact algorithm.
    exact = ProbCover(delta=0.15, embedding="input", normalize=False, max_samples=None)
    within = clone(exact).set_params(max_samples=120)
    np.testing.assert_array_equal(within.query(None, pool, 5, X_labeled=lab),
                                  exact.query(None, pool, 5, X_labeled=lab))
    with pytest.raises(ValueError, match="max_samples"):
        clone(exact).set_params(max_samples=0).query(None, pool, 2)


def test_purity_delta_on_a_row_subset_estimates_the_full_rule():
    rng = np.random.RandomState(5)
    Z = rng.normal(size=(2000, 2))
    pseudo = (Z[:, 0] > 0).astype(int) + 2 * (Z[:, 1] > 0.5)
    full = purity_delta(Z, pseudo, 0.9)
    assert purity_delta(Z, pseudo, 0.9, rows=np.arange(2000)) == full
    rows = np.sort(rng.choice(2000, 500, replace=False))
    # Each subset point is measured against every other-label point: same distances
    # as the full rule's, only fewer of them, so the quantile moves a little.
    assert purity_delta(Z, pseudo, 0.9, rows=rows) == pytest.approx(full, rel=0.25)


# ------------------------------------------------------------- Cluster-Margin


def _cluster_margin_ref(clf, X, n, factor, n_clusters, seed):
    P = clf.predict_proba(X)
    top2 = np.sort(P, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    k_m = math.ceil(factor * n)
    M = np.lexsort((np.arange(len(X)), margin))[:k_m]  # smallest margins, lower index first
    hac = AgglomerativeClustering(n_clusters=n_clusters, linkage="average").fit(X).labels_
    groups = {}
    for pos, i in enumerate(M):
        groups.setdefault(hac[i], []).append(pos)
    order = sorted(groups, key=lambda c: (len(groups[c]), groups[c][0]))
    rng = check_random_state(seed)
    queues = [list(rng.permutation(groups[c])) for c in order]
    picks = []
    while len(picks) < n:
        for q in queues:
            if q and len(picks) < n:
                picks.append(q.pop(0))
    return M[picks], hac[M[picks]]


def test_hac_clusters_match_sklearn_average_linkage():
    X, _ = _blobs([15, 10, 8], [(0, 0), (3, 0), (0, 3)], scale=0.8, seed=4)
    ours = hac_clusters(X, n_clusters=5)
    ref = AgglomerativeClustering(n_clusters=5, linkage="average").fit(X).labels_
    pairs = set(zip(ours, ref, strict=True))  # the same partition up to renaming
    assert len(pairs) == len(set(ours)) == len(set(ref)) == 5


def test_cluster_margin_matches_round_robin_reference():
    X, y = _blobs([30, 30, 30], [(0, 0), (2, 0), (1, 1.5)], scale=0.6, seed=5)
    clf = LogisticRegression().fit(X, y)
    strat = ClusterMargin(margin_factor=3, n_clusters=12, embedding="input", random_state=7)
    idx = strat.query(clf, X, 8)
    ref, clusters = _cluster_margin_ref(clf, X, 8, 3, 12, 7)
    np.testing.assert_array_equal(idx, ref)
    # round robin: no cluster gets a second pick before every cluster of M has one
    counts = np.bincount(clusters)
    assert counts.max() - counts[counts > 0].min() <= 1


def test_cluster_margin_clusters_once_for_a_fixed_embedding():
    X, y = _blobs([40, 40], [(0, 0), (2, 0)], scale=0.7, seed=6)
    clf = LogisticRegression().fit(X, y)
    strat = ClusterMargin(margin_factor=2, embedding="input", random_state=0)
    strat.query(clf, X, 4)
    first = strat.hac_embedding_
    strat.query(clf, X[10:], 4)
    assert strat.hac_embedding_ is first  # kept across queries (the paper's "once")
    strat.set_params(recluster=True).query(clf, X[10:], 4)
    assert strat.hac_embedding_ is not first and len(strat.hac_embedding_) == 70


def test_cluster_margin_subsamples_large_pools():
    X, y = _blobs([150, 150], [(0, 0), (2, 0)], scale=0.7, seed=8)
    clf = LogisticRegression().fit(X, y)
    strat = ClusterMargin(max_hac_points=50, embedding="input", random_state=0)
    idx = strat.query(clf, X, 10)
    assert len(strat.hac_embedding_) == 50 and len(np.unique(idx)) == 10


# ------------------------------------------------------------ shared behaviour


def _strategies():
    return [
        TypiClust(random_state=0),
        ProbCover(n_classes=10, random_state=0),
        ClusterMargin(margin_factor=4, random_state=0),
    ]


@pytest.mark.parametrize("strategy", _strategies(), ids=lambda s: type(s).__name__)
def test_model_embedding_same_seed_same_queries_and_modal_protocol(strategy, trained_net,
                                                                    digits_split):
    X, y, _, _ = digits_split
    pool, X_lab, y_lab = X[300:600], X[:30], y[:30]
    a = clone(strategy).query(trained_net, pool, 12, X_labeled=X_lab, y_labeled=y_lab)
    b = clone(strategy).query(trained_net, pool, 12, X_labeled=X_lab, y_labeled=y_lab)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 12 and a.min() >= 0 and a.max() < len(pool)
    # modAL's ActiveLearner calls strategy(learner, X_pool, n_instances)
    idx, _ = clone(strategy)(_ModalLike(trained_net, X_lab, y_lab), pool, 12)
    np.testing.assert_array_equal(idx, a)


@pytest.mark.parametrize("strategy", _strategies()[:2], ids=lambda s: type(s).__name__)
def test_cold_start_without_labels(strategy):
    X, blob = _blobs([30, 30, 30], [(0, 0), (8, 0), (0, 8)])
    strategy = clone(strategy).set_params(embedding="input", n_classes=3) \
        if isinstance(strategy, ProbCover) else clone(strategy).set_params(embedding="input")
    idx, _ = strategy(_ModalLike(None), X, 3)  # modAL before any training: X_training None
    assert sorted(blob[idx]) == [0, 1, 2]


def test_unfitted_transformer_is_fitted_once_and_kept():
    X, _ = _blobs([30, 30], [(0, 0), (5, 5)])
    X = np.hstack([X, np.random.RandomState(0).normal(size=(60, 3))])
    strat = TypiClust(embedding=PCA(n_components=2), random_state=0)
    strat.query(None, X, 2)
    fitted = strat.embedding_
    strat.query(None, X[5:], 2)
    assert strat.embedding_ is fitted and fitted.n_components_ == 2
    # Cluster-Margin fits it on the pool, not on its few low-margin candidates
    clf = LogisticRegression().fit(X, np.repeat([0, 1], 30))
    cm = ClusterMargin(margin_factor=2, embedding=PCA(n_components=2), random_state=0)
    cm.query(clf, X, 3)
    assert cm.embedding_.n_samples_ == 60 and cm.hac_embedding_.shape == (60, 2)


def test_skal_learner_loop_and_grid_search_params(trained_net, digits_split):
    X, y, _, _ = digits_split
    for name in ("typiclust", "probcover", "cluster-margin"):
        strat = make_strategy(name, random_state=0)
        assert type(strat).__name__ in ("TypiClust", "ProbCover", "ClusterMargin")
    learner = ActiveLearner(trained_net, ClusterMargin(margin_factor=2), random_state=0)
    learner.fit(X[:40], y[:40])
    idx = learner.query(X[40:200], n_instances=5)
    assert len(np.unique(idx)) == 5
    grid = ParameterGrid({"n_neighbors": [5, 20], "min_cluster_size": [1, 5]})
    for params in grid:
        assert clone(TypiClust()).set_params(**params).get_params()["n_neighbors"] in (5, 20)


@pytest.mark.parametrize("strategy, match", [
    (TypiClust(n_neighbors=0), "n_neighbors"),
    (TypiClust(min_cluster_size=1.5), "min_cluster_size"),
    (TypiClust(embedding="pixels"), "embedding"),
    (ProbCover(delta=-1.0), "delta"),
    (ProbCover(delta="big"), "delta"),
    (ProbCover(alpha=1.5), "alpha"),
    (ProbCover(n_classes=1), "n_classes"),
    (ClusterMargin(margin_factor=0.5), "margin_factor"),
    (ClusterMargin(n_clusters=3, distance_threshold=1.0), "not both"),
    (ClusterMargin(recluster="sometimes"), "recluster"),
    (ClusterMargin(max_hac_points=1), "max_hac_points"),
], ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_bad_parameters_raise_clear_errors(strategy, match):
    X, y = _blobs([20, 20], [(0, 0), (3, 3)])
    clf = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match=match):
        strategy.set_params(embedding=strategy.embedding if match == "embedding" else "input")
        strategy.query(clf, X, 2)
    assert not hasattr(strategy, "hac_embedding_") and not hasattr(strategy, "delta_")


@pytest.mark.parametrize("strategy", [TypiClust(normalize="yes"),
                                      ProbCover(normalize="yes", delta=0.5)],
                         ids=lambda s: type(s).__name__)
def test_normalize_must_be_a_bool(strategy):
    with pytest.raises(TypeError, match="normalize"):
        strategy.set_params(embedding="input").query(None, np.zeros((5, 2)), 1)


def test_pixel_pca_variants_cluster_the_pools_principal_components():
    from sklearn.pipeline import make_pipeline

    from skal.nets import Flatten, pixel_pca

    rng = np.random.RandomState(0)
    centers = rng.normal(scale=3.0, size=(3, 1, 6, 6))
    images = np.concatenate([c + rng.normal(scale=0.5, size=(40, 1, 6, 6)) for c in centers])
    blob = np.repeat(np.arange(3), 40)
    # Reference: the same PCA fitted by hand on the flat pixels, given already fitted.
    by_hand = make_pipeline(Flatten(), PCA(n_components=5, random_state=0)).fit(images)
    ref = TypiClust(embedding=by_hand, random_state=0).query(None, images, 3)
    strat = TypiClust(embedding=pixel_pca(5), random_state=0)
    assert np.array_equal(strat.query(None, images, 3), ref)
    assert sorted(blob[ref]) == [0, 1, 2]
    assert np.allclose(strat.embedding_[-1].components_, by_hand[-1].components_)
    # Registry variants: each strategy its own unfitted transformer, stable repr.
    a, b = make_strategy("typiclust-pca"), make_strategy("typiclust-pca")
    assert a.embedding is not b.embedding and repr(a) == repr(b) and "0x" not in repr(a)
    assert make_strategy("probcover-pca").embedding[-1].n_components == 50


def test_flatten_is_stateless_and_fitted():
    from sklearn.utils.validation import check_is_fitted

    from skal.nets import Flatten

    check_is_fitted(Flatten())
    X = np.arange(24.0).reshape(2, 3, 4)
    assert np.array_equal(Flatten().fit_transform(X), X.reshape(2, 12))
    assert np.array_equal(clone(Flatten()).transform(X[:1]), X[:1].reshape(1, 12))
