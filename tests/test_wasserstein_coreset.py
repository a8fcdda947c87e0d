"""Wasserstein core-set by MIP / GBD (skal.ot.mip, skal.strategies.wasserstein_coreset)."""

import itertools
import time
from unittest import mock

import numpy as np
import pytest

from skal.ot import mip
from skal.strategies.wasserstein_coreset import KMedoidsCoreSet, WassersteinCoreSet


def _data(n, d=3, seed=0):
    """Gaussian blob plus a shifted third: unequal masses, so balance matters."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[: n // 3] += 2.5
    return X


def _brute_force(X, B, metric, labeled=()):
    best, best_S = np.inf, None
    free = [i for i in range(len(X)) if i not in labeled]
    for T in itertools.combinations(free, B - len(labeled)):
        S = list(labeled) + list(T)
        w = mip.coreset_cost(X, S, metric)
        if w < best:
            best, best_S = w, sorted(S)
    return best, best_S


# --------------------------------------------------------------------------- #
# the transport sub-problem and its cuts
# --------------------------------------------------------------------------- #


def test_coreset_cost_small_cases():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    # two centers, each takes half the mass: 0 and 3 move by 1, so W = (1 + 1) / 4
    assert mip.coreset_cost(X, [1, 2], "euclidean") == pytest.approx(0.5)
    assert mip.coreset_cost(X, [0, 1, 2, 3], "euclidean") == pytest.approx(0.0, abs=1e-12)
    # balanced, not nearest-center: k-medoids objective is a lower bound
    X2 = np.array([[0.0], [0.1], [0.2], [10.0]])
    assert mip.kmedoids_objective(X2, [1, 3], "euclidean") <= mip.coreset_cost(
        X2, [1, 3], "euclidean"
    )
    # precomputed equals features
    D = np.abs(X - X.T)
    assert mip.coreset_cost(D, [0, 3], "precomputed") == pytest.approx(
        mip.coreset_cost(X, [0, 3], "euclidean")
    )


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("kind", ["classic", "capacity"])
def test_benders_cut_valid_and_tight(metric, kind):
    X = _data(11, seed=3)
    B = 3
    allW = {S: mip.coreset_cost(X, list(S), metric) for S in itertools.combinations(range(11), B)}
    rng = np.random.default_rng(0)
    for _ in range(4):
        S = rng.choice(11, B, replace=False)
        const, coef, w = mip.benders_cut(X, S, metric, kind=kind)
        assert const + coef[S].sum() == pytest.approx(w, abs=1e-9)  # tight
        assert w == pytest.approx(allW[tuple(sorted(S))], abs=1e-12)
        worst = max(const + coef[list(T)].sum() - wt for T, wt in allW.items())
        assert worst <= 1e-9  # valid for every selection


def test_capacity_cut_dominates_classic():
    X = _data(25, seed=4)
    S = [0, 5, 9, 20]
    c1, classic, _ = mip.benders_cut(X, S, "cosine", kind="classic")
    c2, capacity, _ = mip.benders_cut(X, S, "cosine", kind="capacity")
    assert c1 == pytest.approx(c2)
    assert np.all(capacity >= classic - 1e-12)
    assert capacity.sum() > classic.sum()


# --------------------------------------------------------------------------- #
# GBD against the full MILP
# --------------------------------------------------------------------------- #


def test_full_milp_matches_brute_force():
    X = _data(12, seed=5)
    for labeled, metric in [((), "euclidean"), ((4,), "cosine")]:
        w_bf, _ = _brute_force(X, 3, metric, labeled)
        S, w, proven = mip.solve_full_milp(X, 3 - len(labeled), labeled=list(labeled),
                                           metric=metric)
        assert proven
        assert set(labeled) <= set(S.tolist())
        assert w == pytest.approx(w_bf, abs=1e-9)


GBD_CASES = [
    # n, n_select, labeled, metric, seed, solver options
    (60, 6, [], "cosine", 21, dict(solver="cbc")),
    (50, 5, [], "euclidean", 22, dict(solver="scipy")),
    (60, 4, [0, 1], "chord", 23, dict(solver="cbc")),
    # plain GBD: no LP-phase cuts
    (30, 3, [], "cosine", 0, dict(solver="cbc", lp_rounds=0)),
    # the paper's c-transform cuts (plus the static capacity cut)
    (24, 2, [], "euclidean", 1, dict(solver="cbc", lp_rounds=0, cut="classic")),
]


@pytest.mark.parametrize("n,k,labeled,metric,seed,opts", GBD_CASES)
def test_gbd_equals_full_milp(n, k, labeled, metric, seed, opts):
    X = _data(n, seed=seed)
    _, w_opt, proven = mip.solve_full_milp(X, k, labeled=labeled, metric=metric)
    assert proven
    res = mip.solve_gbd(X, k, labeled=labeled, metric=metric, gap=1e-7, time_limit=40,
                        random_state=0, keep_cuts=True, **opts)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(w_opt, abs=1e-8)
    assert res.lower_bound == pytest.approx(w_opt, abs=1e-6)
    assert set(labeled) <= set(res.selection.tolist())
    assert len(res.selected) == k and not set(res.selected) & set(labeled)
    assert res.objective == pytest.approx(mip.coreset_cost(X, res.selection, metric), abs=1e-12)
    # lower <= optimum <= upper at every step
    for row in res.history:
        assert row["lower"] <= w_opt + 1e-7
        assert row["upper"] >= w_opt - 1e-9
    # the upper bound never increases and the lower bound never decreases
    ups = [r["upper"] for r in res.history]
    lows = [r["lower"] for r in res.history]
    assert all(a >= b for a, b in itertools.pairwise(ups))
    assert all(a <= b for a, b in itertools.pairwise(lows))
    # no cut excludes any optimal selection
    const, coef = res.cuts
    zopt = np.zeros(len(res.candidates))
    zopt[np.searchsorted(res.candidates, res.selection)] = 1.0
    assert np.all(const + coef @ zopt <= w_opt + 1e-9)


def test_eoc_cuts_valid_under_a_metric():
    """Triangle and dual EOC (metric costs only) never cut off the optimum."""
    X = _data(14, seed=7)
    w_opt, S_opt = _brute_force(X, 3, "euclidean")
    res = mip.solve_gbd(X, 3, metric="euclidean", eoc=True, max_iter=6, time_limit=30,
                        random_state=0, keep_cuts=True)
    const, coef = res.cuts
    # Benders + triangle + dual per evaluated set, plus the static ones
    assert len(const) > 3 * 2
    z = np.zeros(len(res.candidates))
    z[np.searchsorted(res.candidates, S_opt)] = 1.0
    assert np.all(const + coef @ z <= w_opt + 1e-9)
    assert res.lower_bound <= w_opt + 1e-9 <= res.objective + 2e-9


def test_time_limit_gives_feasible_selection_with_gap():
    X = _data(300, d=8, seed=8)
    t0 = time.perf_counter()
    res = mip.solve_gbd(X, 12, labeled=[1, 2], metric="cosine", time_limit=1.5, gap=0.0,
                        random_state=0)
    elapsed = time.perf_counter() - t0
    # warm start and the last sub-problem are not interruptible: allow a little slack
    assert elapsed < 1.5 + 4.0
    assert res.status in ("time_limit", "optimal")
    assert len(res.selection) == 14 and len(np.unique(res.selection)) == 14
    assert {1, 2} <= set(res.selection.tolist())
    assert res.objective == pytest.approx(mip.coreset_cost(X, res.selection, "cosine"))
    assert 0.0 <= res.lower_bound <= res.objective
    assert 0.0 <= res.gap <= 1.0
    assert res.objective <= min(res.heuristics.values()) + 1e-12


def test_candidate_restriction_keeps_objective_exact():
    X = _data(200, d=5, seed=9)
    res = mip.solve_gbd(X, 5, metric="euclidean", max_candidates=60, max_iter=2,
                        time_limit=30, milp_time_limit=1, lp_rounds=5, random_state=0)
    assert res.restricted
    assert len(res.candidates) <= 60
    assert set(res.selection.tolist()) <= set(res.candidates.tolist())
    assert res.objective == pytest.approx(mip.coreset_cost(X, res.selection, "euclidean"))
    assert res.lower_bound <= res.objective


def test_gbd_beats_kmedoids_and_kcenter():
    X = _data(150, d=4, seed=10)
    k = 8
    res = mip.solve_gbd(X, k, metric="cosine", warm_start="all", max_iter=3, time_limit=30,
                        milp_time_limit=1, lp_rounds=10, random_state=0)
    w_km = mip.coreset_cost(X, mip.kmedoids(X, k, metric="cosine"), "cosine")
    w_kc = mip.coreset_cost(X, mip.kcenter_greedy(X, k, metric="cosine"), "cosine")
    assert res.objective <= w_km + 1e-12
    assert res.objective <= w_kc + 1e-12
    # Lloyd-OT alone never ends above its k-medoids start
    w_lo = mip.coreset_cost(X, mip.lloyd_ot(X, k, metric="cosine"), "cosine")
    assert w_lo <= w_km + 1e-12


def test_pruning_runs_and_reports_a_valid_bound():
    X = _data(60, seed=11)
    _, w_opt, _ = mip.solve_full_milp(X, 2, labeled=[0], metric="cosine")
    res = mip.solve_gbd(X, 2, labeled=[0], metric="cosine", pruning=True, max_iter=4,
                        time_limit=30, random_state=0)
    assert 0 in res.selection
    assert res.lower_bound <= w_opt + 1e-9 <= res.objective + 2e-9


def test_gbd_reproducible():
    X = _data(80, d=4, seed=12)
    # stopped by max_iter (never by time) and masters solved to optimality
    kw = dict(metric="cosine", max_iter=2, time_limit=60, max_candidates=40, milp_gap=0.0,
              lp_rounds=5)
    a = mip.solve_gbd(X, 4, random_state=3, **kw)
    b = mip.solve_gbd(X, 4, random_state=3, **kw)
    np.testing.assert_array_equal(a.selection, b.selection)
    np.testing.assert_array_equal(a.candidates, b.candidates)


def test_trivial_instances():
    X = _data(10, seed=13)
    res = mip.solve_gbd(X, 0, labeled=[1, 2], metric="euclidean")
    assert res.selected.size == 0 and res.gap == 0.0
    res = mip.solve_gbd(X, 8, labeled=[1, 2], metric="euclidean")
    assert sorted(res.selection.tolist()) == list(range(10))
    assert res.objective == pytest.approx(0.0, abs=1e-12)


def test_printed_bound_is_rounded_down():
    assert mip._printed_lower("6.545") < 6.545 - 4e-4
    assert mip._printed_lower("0.03123") <= 0.031225


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(metric="manhattan"), "metric"),
        (dict(solver="gurobi"), "solver"),
        (dict(n_select=100), "exceeds the pool"),
        (dict(labeled=[0, 0]), "distinct"),
        (dict(labeled=[99]), r"\[0, 30\)"),
        (dict(time_limit=0), "time_limit"),
        (dict(gap=1.0), "gap"),
        (dict(warm_start="random"), "warm_start"),
        (dict(max_candidates=0), "max_candidates"),
    ],
)
def test_bad_input(kwargs, match):
    X = _data(30)
    args = dict(n_select=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mip.solve_gbd(X, args.pop("n_select"), **args)


def test_bad_features():
    X = _data(10)
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mip.coreset_cost(X, [1, 2], "cosine")
    with pytest.raises(ValueError, match="square"):
        mip.coreset_cost(np.ones((3, 4)), [0], "precomputed")


def test_highspy_backend_if_installed():
    pytest.importorskip("highspy")
    X = _data(30, seed=0)
    _, w_opt, _ = mip.solve_full_milp(X, 3, metric="cosine")
    res = mip.solve_gbd(X, 3, metric="cosine", solver="highs", gap=1e-7, time_limit=40,
                        random_state=0)
    assert res.objective == pytest.approx(w_opt, abs=1e-8)


# --------------------------------------------------------------------------- #
# query strategies
# --------------------------------------------------------------------------- #


def test_select_sets_attributes_and_forces_labeled():
    X = _data(50, d=4, seed=14)
    strat = WassersteinCoreSet(time_limit=20, metric="euclidean", random_state=0, gap=1e-6)
    idx = strat.select(X, 3, labeled=[0, 7])
    assert idx.shape == (3,) and not {0, 7} & set(idx.tolist())
    assert {0, 7} <= set(strat.selection_.tolist())
    assert strat.objective_ == pytest.approx(
        mip.coreset_cost(X, np.r_[[0, 7], idx], "euclidean")
    )
    assert strat.lower_bound_ <= strat.objective_ + 1e-12
    assert strat.gap_ == pytest.approx(
        (strat.objective_ - strat.lower_bound_) / strat.objective_
    )
    assert strat.history_ and strat.n_iter_ >= 0


def test_query_uses_labeled_set_in_the_objective():
    X = _data(70, d=4, seed=15)
    X_lab, X_pool = X[:5], X[5:]
    strat = WassersteinCoreSet(time_limit=3, metric="cosine", random_state=0, max_iter=5)
    idx = strat.query(None, X_pool, 4, X_labeled=X_lab, y_labeled=np.zeros(5))
    assert idx.shape == (4,) and len(np.unique(idx)) == 4
    assert idx.min() >= 0 and idx.max() < len(X_pool)
    # the objective is that of labeled + picked against labeled + pool
    assert strat.objective_ == pytest.approx(
        mip.coreset_cost(X, np.r_[np.arange(5), idx + 5], "cosine")
    )
    # modAL protocol
    class Learner:
        X_training, y_training = X_lab, np.zeros(5)

    idx2, util = strat(Learner(), X_pool, 4)
    assert idx2.shape == (4,) and util is None


def test_max_samples_solves_on_a_sample_that_keeps_every_labeled_point():
    X = _data(120, d=4, seed=17)
    labeled = [3, 50, 99]
    kw = dict(time_limit=10, metric="euclidean", random_state=0, max_iter=5)
    strat = WassersteinCoreSet(max_samples=40, **kw)
    idx = strat.select(X, 5, labeled=labeled)
    sample = strat.sample_
    assert sample.size == 40 and set(labeled) <= set(sample.tolist())
    assert np.all(np.diff(sample) > 0)
    assert idx.shape == (5,) and len(set(idx.tolist())) == 5
    assert set(idx.tolist()) <= set(sample.tolist()) and not set(idx.tolist()) & set(labeled)
    assert set(strat.selection_.tolist()) == set(labeled) | set(idx.tolist())
    # the objective is the sample's problem: labeled + picked against the sample
    assert strat.objective_ == pytest.approx(
        mip.coreset_cost(X[sample], np.searchsorted(sample, strat.selection_), "euclidean")
    )
    again = WassersteinCoreSet(max_samples=40, **kw)
    assert np.array_equal(again.select(X, 5, labeled=labeled), idx)
    assert np.array_equal(again.sample_, sample)
    # a boolean mask of labeled rows gives the same sample and selection
    mask = np.zeros(len(X), dtype=bool)
    mask[labeled] = True
    masked = WassersteinCoreSet(max_samples=40, **kw)
    assert np.array_equal(masked.select(X, 5, labeled=mask), idx)


def test_max_samples_at_or_above_the_pool_size_changes_nothing():
    X = _data(80, d=4, seed=18)
    kw = dict(time_limit=10, metric="euclidean", random_state=0, max_iter=5)
    whole = WassersteinCoreSet(max_samples=None, **kw).select(X, 4, labeled=[1, 2])
    capped = WassersteinCoreSet(max_samples=80, **kw)
    assert np.array_equal(capped.select(X, 4, labeled=[1, 2]), whole)
    assert capped.sample_ is None
    # too small a cap still leaves k free points to choose from
    tiny = WassersteinCoreSet(max_samples=3, **kw)
    idx = tiny.select(X, 4, labeled=[1, 2])
    assert tiny.sample_.size == 6 and set(idx.tolist()) <= set(tiny.sample_.tolist())
    with pytest.raises(ValueError, match="max_samples"):
        WassersteinCoreSet(max_samples=0).select(X, 2)
    # bad labeled rows or batch sizes are named, not hidden by the sample
    with pytest.raises(ValueError, match=r"labeled indices must lie in \[0, 80\)"):
        WassersteinCoreSet(max_samples=10, **kw).select(X, 4, labeled=[1, 500])
    with pytest.raises(ValueError, match="exceeds the pool size 80"):
        WassersteinCoreSet(max_samples=10, **kw).select(X, 79, labeled=[1, 2])


def test_max_samples_query_returns_pool_indices():
    X = _data(150, d=4, seed=19)
    X_lab, X_pool = X[:4], X[4:]
    strat = WassersteinCoreSet(time_limit=5, metric="cosine", random_state=1, max_iter=3,
                               max_samples=60)
    idx = strat.query(None, X_pool, 6, X_labeled=X_lab)
    assert idx.shape == (6,) and len(np.unique(idx)) == 6
    assert idx.min() >= 0 and idx.max() < len(X_pool)
    # labeled rows come first in the stacked problem, and all are in the sample
    assert set(range(4)) <= set(strat.sample_.tolist())
    assert set((idx + 4).tolist()) <= set(strat.sample_.tolist())


def test_transformer_and_params():
    from sklearn.decomposition import PCA

    X = _data(60, d=6, seed=16)
    pca = PCA(3, random_state=0).fit(X)
    strat = WassersteinCoreSet(time_limit=10, max_iter=2, transformer=pca, random_state=0)
    idx = strat.query(None, X, 3)
    assert idx.shape == (3,)
    assert strat.objective_ == pytest.approx(
        mip.coreset_cost(pca.transform(X), idx, "cosine")
    )
    assert WassersteinCoreSet(gap=0.5).get_params()["gap"] == 0.5
    with pytest.raises(ValueError, match="metric"):
        WassersteinCoreSet(metric="precomputed").select(X, 2)


def test_kmedoids_baseline():
    X = _data(80, d=4, seed=17)
    km = KMedoidsCoreSet(metric="euclidean")
    idx = km.select(X, 4, labeled=[3])
    assert idx.shape == (4,) and 3 not in idx
    assert km.kmedoids_objective_ <= km.objective_ + 1e-12
    wc = WassersteinCoreSet(metric="euclidean", time_limit=3, max_iter=5,
                            warm_start="kmedoids", random_state=0)
    wc.select(X, 4, labeled=[3])
    assert wc.objective_ <= km.objective_ + 1e-12


@pytest.mark.parametrize("labeled", [[], [3, 40]])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kmedoids_orders_its_selection_by_greedy_cover(labeled, metric):
    from scipy.spatial.distance import cdist

    X = _data(120, d=4, seed=5)
    # one cost matrix for both, so that near-ties cannot round differently
    D = cdist(X, X, metric)
    new = mip.kmedoids(D, 12, labeled=labeled, metric="precomputed")
    assert len(set(new.tolist())) == 12 and not set(new.tolist()) & set(labeled)
    # slow reference: each next point lowers sum_i min_j D_ij the most (ties either way)
    cur = D[:, labeled].min(axis=1) if labeled else np.full(len(D), np.inf)
    left = set(new.tolist())
    for j in new:
        best = min(np.minimum(cur, D[:, m]).sum() for m in left)
        assert np.minimum(cur, D[:, j]).sum() <= best * (1 + 1e-12)
        left.remove(j)
        cur = np.minimum(cur, D[:, j])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_move_centers_matches_a_dense_reference_with_labeled_centers(metric):
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    X = _data(60, d=3, seed=11)
    labeled = np.array([0, 7, 21, 33])
    S = np.r_[labeled, [2, 15, 40, 51]]
    prob = mip._Problem(mip._Cost(X, metric), S.size, labeled, np.arange(len(X)))
    arg, _ = prob.nearest(S)
    T = np.zeros((len(X), S.size))
    T[np.arange(len(X)), arg] = 1.0 / len(X)
    moved = prob.move_centers(S, T)
    # slow reference: each free center moves to the unlabeled point that minimises
    # its plan-weighted cost, kept distinct by one assignment over the free centers
    D = cdist(X, X, metric)
    free = np.arange(labeled.size, S.size)
    allowed = np.setdiff1d(np.arange(len(X)), labeled)
    r, c = linear_sum_assignment(T[:, free].T @ D[:, allowed])
    expected = S.copy()
    expected[free[r]] = allowed[c]
    np.testing.assert_array_equal(moved[: labeled.size], labeled)
    np.testing.assert_array_equal(moved, expected)


def test_kmedoids_objective_is_exact_and_computed_on_first_read(monkeypatch):
    X = _data(90, d=3, seed=2)
    km = KMedoidsCoreSet(metric="euclidean")
    assert not hasattr(km, "objective_")
    exact = mip.coreset_cost
    spy = mock.Mock(wraps=exact)
    monkeypatch.setattr(mip, "coreset_cost", spy)
    km.select(X, 5, labeled=[0])
    assert spy.call_count == 0
    expected = exact(X, km.selection_, metric="euclidean")
    X[:] = 0.0  # the caller's array changing later must not change the result
    assert km.objective_ == pytest.approx(expected, rel=1e-12)
    assert km.objective_ == pytest.approx(expected, rel=1e-12)
    assert spy.call_count == 1


def test_with_a_skorch_net():
    torch = pytest.importorskip("torch")  # noqa: F841
    from sklearn.datasets import load_digits

    from skal.nets import cnn_classifier

    digits = load_digits()
    X = digits.images[:160, None].astype("float32") / 16.0
    y = digits.target[:160].astype("int64")
    net = cnn_classifier("digits", 10, max_epochs=1, random_state=0, device="cpu")
    net.fit(X[:60], y[:60])
    strat = WassersteinCoreSet(time_limit=5, max_iter=2, random_state=0)
    idx = strat.query(net, X[60:], 5, X_labeled=X[:60], y_labeled=y[:60])
    assert idx.shape == (5,) and len(np.unique(idx)) == 5
    assert strat.lower_bound_ <= strat.objective_
