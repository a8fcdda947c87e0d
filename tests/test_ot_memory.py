"""Memory of the whole-pool optimal-transport paths (#19): peak bounds, errors before allocating.

The bounds are tracemalloc peaks (numpy and Python allocations), so they hold on
any machine and time nothing. Each one sits well below what the dense code it
replaced allocates on the same input, worked out next to it.
"""

import tracemalloc

import numpy as np
import ot
import pytest

from skal.ot import _memory, _prototypes, greedy_prototypes, mip, sqeuclidean_cost, wasserstein2
from skal.strategies.coreset import CoreSet
from skal.strategies.wasserstein_coreset import KMedoidsCoreSet, WassersteinCoreSet

MiB = 2**20


def _pool(n, d=8, seed=0):
    """Two Gaussian blobs of unequal mass."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[: n // 3] += 2.5
    return X


def _peak(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), peak bytes)``: tracemalloc's peak above what was held before."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = fn(*args, **kwargs)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return out, peak


# --------------------------------------------------------------------------- #
# peak bounds on a 20K pool
# --------------------------------------------------------------------------- #

N_BIG = 20_000


@pytest.fixture(scope="module")
def big_pool():
    return _pool(N_BIG)


def test_wasserstein_coreset_peak_is_far_below_a_dense_transport():
    # 400 labeled + 100 new = 500 centers. The dense transport held the N x |S| cost,
    # the plan and their product, 3 x 20,000 x 500 float64 = 229 MiB, plus the cost
    # block's temporaries: 230 MiB tracemalloc peak with mip._DENSE_TRANSPORT = True.
    # The sparse one holds about 20 arcs per row and cost blocks of 8 MB: 51 MiB.
    X = np.random.default_rng(0).uniform(size=(N_BIG, 3))
    labeled = np.sort(np.random.default_rng(1).choice(N_BIG, 400, replace=False))
    # time_limit=0.1 and max_iter=0: setup, the k-center warm start's transport and
    # the ordering of the batch, on any machine (the master problem never runs);
    # 700 candidates keep D[:, candidates] (capped at 12M entries) out of the cache
    strat = WassersteinCoreSet(time_limit=0.1, max_iter=0, metric="euclidean",
                               max_candidates=700, random_state=0)
    new, peak = _peak(strat.select, X, 100, labeled=labeled)
    assert len(np.unique(new)) == 100 and not set(new.tolist()) & set(labeled.tolist())
    assert peak < 100 * MiB, f"tracemalloc peak {peak / MiB:.0f} MiB"


@pytest.mark.parametrize("kind", ["strategy", "mip"])
def test_kcenter_peak_is_far_below_a_dense_distance_matrix(big_pool, kind):
    # 2,000 labeled points: a dense distance matrix to them is
    # 20,000 x 2,000 float64 = 305 MiB; both k-center codes work in 8 MB blocks.
    X_lab, X_pool = big_pool[:2000], big_pool[2000:]
    if kind == "strategy":
        idx, peak = _peak(CoreSet(embedding="input").query, None, X_pool, 50, X_labeled=X_lab)
        assert len(np.unique(idx)) == 50
        assert np.all((idx >= 0) & (idx < len(X_pool)))
    else:
        idx, peak = _peak(mip.kcenter_greedy, big_pool, 50, labeled=np.arange(2000),
                          metric="euclidean")
        assert len(np.unique(idx)) == 50 and idx.min() >= 2000
    assert peak < 48 * MiB, f"tracemalloc peak {peak / MiB:.0f} MiB"


def test_greedy_prototypes_holds_one_candidate_cost_matrix(big_pool):
    # 20,000 candidates x 500 target points: the cost matrix is 76 MiB. The former code
    # also built it with two temporaries of that size and copied it (and its difference
    # with the dual) at every step: over 3 x 76 = 229 MiB.
    idx, peak = _peak(greedy_prototypes, big_pool, big_pool, 3, n_target=500,
                      quantize=False, max_solves=2, random_state=0)
    assert len(np.unique(idx)) == 3
    assert peak < 76 * MiB + 40 * MiB, f"tracemalloc peak {peak / MiB:.0f} MiB"


# --------------------------------------------------------------------------- #
# too large: a clear error naming the knob, before anything large is allocated
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("call,knobs", [
    (lambda X: WassersteinCoreSet(max_memory=0.01).select(X, 100, labeled=np.arange(400)),
     ("max_candidates", "max_memory")),
    (lambda X: KMedoidsCoreSet(max_memory=0.01).select(X, 100), ("max_memory",)),
    (lambda X: mip.coreset_cost(X, np.arange(500), max_memory=0.01), ("max_memory",)),
    (lambda X: greedy_prototypes(X, X, 5, n_target=None, quantize=False, max_memory=0.5),
     ("n_target", "n_candidates", "max_memory")),
    (lambda X: wasserstein2(X, X, max_memory=0.5), ("reduce_measure", "max_memory")),
])
def test_too_large_raises_naming_the_knob_before_allocating(big_pool, call, knobs):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="needs about") as err:
            call(big_pool)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for knob in knobs:
        assert knob in str(err.value)
    # nothing pool-sized was allocated first (the pool itself is 1.2 MiB)
    assert peak < 1 * MiB, f"tracemalloc peak {peak / MiB:.1f} MiB before the error"


def test_default_limit_is_the_memory_available_now(monkeypatch, big_pool):
    monkeypatch.setattr(_memory, "available_bytes", lambda: 10 * MiB)
    with pytest.raises(ValueError, match=r"available now \(max_memory=None\)"):
        WassersteinCoreSet().select(big_pool, 100, labeled=np.arange(400))
    with pytest.raises(ValueError, match="n_target"):
        greedy_prototypes(big_pool, big_pool, 5, n_target=None, quantize=False)


@pytest.mark.parametrize("bad", [0, -1.0, True, "1GB"])
def test_bad_max_memory(bad):
    X = _pool(50)
    with pytest.raises(ValueError, match="max_memory must be a positive number"):
        mip.coreset_cost(X, [0, 1], max_memory=bad)
    with pytest.raises(ValueError, match="max_memory must be a positive number"):
        greedy_prototypes(X, X, 2, max_memory=bad)
    with pytest.raises(ValueError, match="max_memory must be a positive number"):
        wasserstein2(X, X, max_memory=bad)


# --------------------------------------------------------------------------- #
# the sparse and chunked paths give what the dense ones gave
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "chord"])
def test_sparse_transport_equals_the_dense_one(monkeypatch, metric):
    X = _pool(300, d=5, seed=3)
    rng = np.random.default_rng(4)
    for size in (1, 7, 40, 150):
        S = rng.choice(300, size=size, replace=False)
        sparse = mip.coreset_cost(X, S, metric=metric)
        with monkeypatch.context() as m:
            m.setattr(mip, "_DENSE_TRANSPORT", True)
            dense = mip.coreset_cost(X, S, metric=metric)
        # an independent reference: POT on the full cost matrix
        C = mip._Cost(X, metric).block(None, S)
        ref = ot.emd2(ot.unif(300), ot.unif(size), C, numItermax=10**7)
        assert sparse == pytest.approx(dense, rel=1e-12, abs=1e-15)
        assert sparse == pytest.approx(ref, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("labeled", [[], [0, 5]])
def test_gbd_optimum_is_the_same_with_the_dense_transport(monkeypatch, labeled):
    X = _pool(30, d=3, seed=21)
    kw = dict(labeled=labeled, metric="euclidean", gap=1e-7, time_limit=40, random_state=0)
    sparse = mip.solve_gbd(X, 3, **kw)
    with monkeypatch.context() as m:
        m.setattr(mip, "_DENSE_TRANSPORT", True)
        dense = mip.solve_gbd(X, 3, **kw)
    assert sparse.status == dense.status == "optimal"
    assert sparse.objective == pytest.approx(dense.objective, rel=1e-12)
    np.testing.assert_array_equal(sparse.selection, dense.selection)


def test_chunked_greedy_prototypes_choose_the_same(monkeypatch):
    X = _pool(400, d=4, seed=8)
    kw = dict(X_fixed=X[:5] + 0.3, n_target=None, max_solves=3, return_objective=True,
              random_state=0)
    whole = greedy_prototypes(X, X, 6, **kw)
    monkeypatch.setattr(_prototypes, "_CHUNK_ENTRIES", 7 * 400)  # 7 rows per block
    chunked = greedy_prototypes(X, X, 6, **kw)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])


def test_sqeuclidean_cost_in_place_equals_the_expansion():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(50, 7)), rng.normal(size=(30, 7))
    expected = (X * X).sum(1)[:, None] - 2.0 * (X @ Y.T) + (Y * Y).sum(1)[None, :]
    np.testing.assert_array_equal(sqeuclidean_cost(X, Y), np.maximum(expected, 0.0))
