"""Dask pools (skal.distributed): NumPy and Dask pools give the same queries, on a
2-worker LocalCluster and without a client; bad pools and whole-pool strategies fail clearly."""

import os
import pathlib
import signal
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import skal  # noqa: E402
from skal.distributed import active_client, merge_top_k  # noqa: E402

ROOT = str(pathlib.Path(skal.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def cluster():
    # Spawned workers (and the ones a nanny restarts) must import this checkout's skal.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = ROOT if not old else ROOT + os.pathsep + old
    try:
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = distributed.Client(cluster, set_as_default=False)
        try:
            files = client.run(lambda: __import__("skal").__file__)
            assert set(files.values()) == {skal.__file__}, files
            yield client
        finally:
            client.close()
            cluster.close()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture
def client(cluster):
    with cluster.as_current():
        assert active_client() is cluster
        yield cluster


@pytest.fixture(scope="module")
def pool(digits_split):
    return digits_split[2][:300]


def _no_client_side_chunks(X, client_pid, rows=40):
    """The pool, as a graph whose chunks fail when computed in the client process."""

    def guard(block):
        if os.getpid() == client_pid:
            raise AssertionError("a pool chunk was computed in the client process")
        return block

    return da.from_array(X, chunks=(rows,) + X.shape[1:]).map_blocks(guard, dtype=X.dtype)


def test_merge_top_k_equals_top_k_on_the_concatenation():
    rng = np.random.RandomState(0)
    scores = rng.randint(0, 5, size=97).astype(float)  # many ties
    bounds = [0, 10, 11, 50, 97]
    idx, s = [], []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        local = skal.base.top_k(scores[a:b], 7)
        idx.append(a + local)
        s.append(scores[a:b][local])
    merged, merged_scores = merge_top_k(idx, s, 7)
    np.testing.assert_array_equal(merged, skal.base.top_k(scores, 7))
    np.testing.assert_array_equal(merged_scores, scores[merged])


def test_import_skal_does_not_import_dask():
    code = ("import sys, skal; "
            "sys.exit(any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# -- without a client: chunk by chunk in this process ---------------------------------


def test_no_client_same_queries_and_one_chunk_at_a_time():
    from sklearn.linear_model import LogisticRegression

    assert active_client() is None
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20000, 84))
    clf = LogisticRegression(max_iter=200).fit(X[:200], (X[:200, 0] > 0).astype(int))
    strategy = skal.UncertaintySampling(measure="margin")
    expected = strategy.query(clf, X, 15)
    # A chunk of 40 rows that is recomputed (not a view of X): whole-pool materialisation
    # would show up as an allocation of X's size.
    X_dask = da.from_array(X, chunks=(500, 84)).map_blocks(np.copy)
    strategy.query(clf, X_dask[:1000], 15)  # first-call imports and caches
    tracemalloc.start()
    try:
        got = strategy.query(clf, X_dask, 15)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, expected)
    assert peak < X.nbytes / 8, (peak, X.nbytes)  # a chunk is X.nbytes / 40
    assert strategy.last_utilities_[got].tolist() == sorted(
        strategy.last_utilities_[got].tolist(), reverse=True
    )


def test_no_client_bald_coreset_dfal(trained_net, pool, digits_split):
    assert active_client() is None
    X_pool = da.from_array(pool, chunks=(70, 1, 8, 8))
    X_lab = digits_split[0][:300]
    for strategy, kwargs in [
        (skal.BALD(n_passes=3, batch_size=8, random_state=0), {}),
        (skal.CoreSet(random_state=0), {}),
        (skal.CoreSet(), {"X_labeled": X_lab}),
        (skal.CoreSet(normalize=True), {"X_labeled": X_lab}),
        (skal.DFAL(max_iter=5, preselect="random", n_candidates=60, random_state=1), {}),
    ]:
        expected = strategy.query(trained_net, pool, 8, **kwargs)
        np.testing.assert_array_equal(strategy.query(trained_net, X_pool, 8, **kwargs), expected)


def test_no_client_committee_waal_egl_and_stochastic_batches(trained_net, pool, digits_split):
    X_lab, y_lab = digits_split[0][:300], digits_split[1][:300]
    X_pool = da.from_array(pool, chunks=(70, 1, 8, 8))
    for strategy in [
        skal.DQBC(n_members=3, finetune_epochs=1, random_state=0),
        skal.QueryByCommittee(random_state=0),
        skal.EGL(random_state=0),
        skal.PowerBALD(n_passes=3, random_state=0),
        skal.StochasticBatch(skal.UncertaintySampling(), mode="softmax", random_state=0),
    ]:
        expected = strategy.query(trained_net, pool, 8, X_labeled=X_lab, y_labeled=y_lab)
        got = strategy.query(trained_net, X_pool, 8, X_labeled=X_lab, y_labeled=y_lab)
        np.testing.assert_array_equal(got, expected, err_msg=type(strategy).__name__)
    from skal.recipes import training_recipe

    waal_net = training_recipe("digits", semi_supervised=True, max_epochs=1, random_state=0)
    waal_net.fit(np.r_[X_lab[:100], pool], np.r_[y_lab[:100], -np.ones(len(pool), dtype=int)])
    waal = skal.WAAL(random_state=0)
    np.testing.assert_array_equal(waal.query(waal_net, X_pool, 8, X_labeled=X_lab[:100]),
                                  waal.query(waal_net, pool, 8, X_labeled=X_lab[:100]))


def test_bad_pools_are_rejected(trained_net, pool):
    strategy = skal.UncertaintySampling()
    flat = pool.reshape(len(pool), -1)
    with pytest.raises(ValueError, match="chunked along axis 1"):
        strategy.query(trained_net, da.from_array(flat, chunks=(100, 16)), 2)
    unknown = da.from_array(flat, chunks=(100, 64))
    unknown = unknown[unknown[:, 0] >= 0]
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        strategy.query(trained_net, unknown, 2)
    bad = pool.copy()
    bad[250, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        strategy.query(trained_net, da.from_array(bad, chunks=(100, 1, 8, 8)), 2)
    import dask

    lying = da.from_delayed(dask.delayed(np.zeros)((5, 1, 8, 8), np.float32),
                            shape=(4, 1, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="disagree"):
        strategy.query(trained_net, lying, 2)
    with pytest.raises(ValueError, match="larger than the pool"):
        strategy.query(trained_net, da.from_array(pool, chunks=100), 301)


@pytest.mark.parametrize("strategy", [
    skal.WassersteinPrototypes(), skal.WassersteinDiversity(skal.UncertaintySampling()),
    skal.KMedoidsCoreSet(), skal.WassersteinCoreSet(), skal.BALNet(), skal.CEAL(),
], ids=lambda s: type(s).__name__)
def test_whole_pool_strategies_raise(strategy, trained_net, pool):
    with pytest.raises(ValueError, match="cannot query a Dask pool.*[Pp]re-select"):
        strategy.query(trained_net, da.from_array(pool, chunks=100), 3)


@pytest.mark.parametrize("strategy", [skal.BADGE(), skal.BatchBALD(), skal.TypiClust(),
                                      skal.ProbCover(), skal.ClusterMargin()],
                         ids=lambda s: type(s).__name__)
def test_batch_building_strategies_name_the_pre_selection(strategy, trained_net, pool):
    with pytest.raises(ValueError, match="no Dask-pool support.*[Pp]re-select"):
        strategy.query(trained_net, da.from_array(pool, chunks=100), 3)


# -- on a 2-worker LocalCluster -------------------------------------------------------


@pytest.mark.parametrize("measure", ["entropy", "margin", "least_confident"])
def test_cluster_uncertainty_matches_numpy(client, trained_net, pool, measure):
    strategy = skal.UncertaintySampling(measure=measure)
    expected = strategy.query(trained_net, pool, 10)
    got = strategy.query(trained_net, _no_client_side_chunks(pool, os.getpid()), 10)
    np.testing.assert_array_equal(got, expected)


def test_cluster_score_strategies_match_numpy(client, trained_net, pool):
    X_pool = _no_client_side_chunks(pool, os.getpid())
    for strategy in [
        skal.BALD(n_passes=3, batch_size=8, random_state=0),  # blocks of 128 != chunks of 40
        skal.UncertaintySampling(n_candidates=90, random_state=3),
        skal.RandomSampling(random_state=5),
    ]:
        expected = strategy.query(trained_net, pool, 7)
        np.testing.assert_array_equal(strategy.query(trained_net, X_pool, 7), expected)
    bald = skal.BALD(n_passes=3, batch_size=8, random_state=0)
    np.testing.assert_array_equal(bald.utilities(trained_net, X_pool),
                                  bald.utilities(trained_net, pool))


def test_cluster_committee_and_power_bald_match_numpy(client, trained_net, pool, digits_split):
    X_lab, y_lab = digits_split[0][:300], digits_split[1][:300]
    X_pool = _no_client_side_chunks(pool, os.getpid())
    for strategy in [skal.DQBC(n_members=3, finetune_epochs=1, random_state=0),
                     skal.PowerBALD(n_passes=3, random_state=0)]:
        expected = strategy.query(trained_net, pool, 6, X_labeled=X_lab, y_labeled=y_lab)
        got = strategy.query(trained_net, X_pool, 6, X_labeled=X_lab, y_labeled=y_lab)
        np.testing.assert_array_equal(got, expected, err_msg=type(strategy).__name__)


def test_cluster_dfal_keeps_its_adversarial_copies(client, trained_net, pool):
    dfal = skal.DFAL(max_iter=5, preselect="random", n_candidates=40, random_state=1)
    expected = dfal.query(trained_net, pool, 4)
    adv = dfal.adversarial_
    got = dfal.query(trained_net, _no_client_side_chunks(pool, os.getpid()), 4)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(dfal.adversarial_, adv, rtol=1e-5, atol=1e-6)


def test_cluster_k_center_matches_numpy(client, trained_net, pool, digits_split):
    X_pool = _no_client_side_chunks(pool, os.getpid(), rows=110)
    for kwargs in [{}, {"X_labeled": digits_split[0][:300]}]:
        strategy = skal.CoreSet(random_state=2)
        expected = strategy.query(trained_net, pool, 12, **kwargs)
        np.testing.assert_array_equal(strategy.query(trained_net, X_pool, 12, **kwargs),
                                      expected)


def test_cluster_active_learner_query(client, digits_split):
    X, y = digits_split[0], digits_split[1]
    net = skal.nets.cnn_classifier("digits", 10, max_epochs=1, random_state=0)
    learner = skal.ActiveLearner(net, skal.UncertaintySampling(), random_state=0).fit(
        X[:100], y[:100])
    pool = X[100:400]
    expected = learner.query(pool, 5)
    got = learner.query(da.from_array(pool, chunks=(60, 1, 8, 8)), 5)
    np.testing.assert_array_equal(got, expected)
    learner.teach(pool[got], y[100:400][got])
    assert len(learner.X_training) == 105


def _killer_pool(X, marker, chunk, rows):
    """The pool, whose ``chunk``-th chunk kills its worker the first time it is computed."""

    def maybe_die(block, block_info=None):
        if block_info[0]["chunk-location"][0] == chunk and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return block

    return da.from_array(X, chunks=(rows,) + X.shape[1:]).map_blocks(maybe_die, dtype=X.dtype)


@pytest.mark.parametrize("strategy", [skal.UncertaintySampling(), skal.CoreSet(random_state=0)],
                         ids=["uncertainty", "k-center"])
def test_cluster_worker_killed_mid_query(client, trained_net, pool, tmp_path, strategy):
    expected = strategy.query(trained_net, pool, 6)
    marker = tmp_path / "killed"
    got = strategy.query(trained_net, _killer_pool(pool, str(marker), 1, rows=100), 6)
    assert marker.exists()  # a worker did die during the query
    np.testing.assert_array_equal(got, expected)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def _preselecting_strategies():
    return [
        skal.DFAL(max_iter=5, random_state=0),  # margin pre-selection, 5 * n candidates
        skal.DFAL(max_iter=5, preselect="random", random_state=1),  # candidate_factor * n
        skal.EGL(preselect="margin", n_candidates=30),
        skal.EGL(random_state=np.random.RandomState(2)),  # random, drawn from an instance
    ]


def _assert_same_preselected_query(strategy, net, pool, X_pool):
    rs = strategy.random_state
    if isinstance(rs, np.random.RandomState):
        state = rs.get_state()
    expected = strategy.query(net, pool, 4)
    candidates = strategy.candidates_
    adv = getattr(strategy, "adversarial_", None)
    if isinstance(rs, np.random.RandomState):
        rs.set_state(state)
    got = strategy.query(net, X_pool, 4)
    np.testing.assert_array_equal(got, expected)
    assert candidates is not None and len(candidates) < len(pool)
    np.testing.assert_array_equal(strategy.candidates_, candidates)
    if adv is not None:
        np.testing.assert_allclose(strategy.adversarial_, adv, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(strategy.last_utilities_[got], np.sort(
        strategy.last_utilities_[got])[::-1])


@pytest.mark.parametrize("strategy", _preselecting_strategies(), ids=lambda s: (
    f"{type(s).__name__}-{s.preselect}"))
def test_no_client_dfal_egl_preselection_matches_numpy(strategy, trained_net, pool):
    assert active_client() is None
    X_pool = da.from_array(pool, chunks=(70, 1, 8, 8))
    _assert_same_preselected_query(strategy, trained_net, pool, X_pool)


def test_cluster_margin_preselection_matches_numpy(client, trained_net, pool):
    # Margins and DeepFool / EGL scores are computed on the workers (the guard fails
    # any chunk computed here); only the candidates' top-k and the n queried rows return.
    X_pool = _no_client_side_chunks(pool, os.getpid())
    for strategy in _preselecting_strategies()[::2]:
        _assert_same_preselected_query(strategy, trained_net, pool, X_pool)


def test_bad_preselection_on_a_dask_pool_fails_before_scoring(trained_net, pool):
    def fail(block):
        raise AssertionError("a chunk was scored")

    X_pool = da.from_array(pool, chunks=(100, 1, 8, 8)).map_blocks(fail, dtype=pool.dtype)
    for strategy, match in [(skal.DFAL(preselect="largest"), "preselect must be"),
                            (skal.DFAL(norm=3), "norm"),
                            (skal.EGL(preselect=None, n_candidates=10), "needs a pre-selection")]:
        with pytest.raises(ValueError, match=match):
            strategy.query(trained_net, X_pool, 4)
