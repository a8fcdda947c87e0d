import json
import sys
import types

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils import check_random_state

from skal.base import QueryStrategy
from skal.datasets import load_dataset
from skal.simulation import SimulationResult, SimulationResults, aubc, simulate


# Minimal strategies, so these tests exercise the loop and not the baselines.
class _Random(QueryStrategy):
    def __init__(self, random_state=None):
        self.random_state = random_state

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        rng = check_random_state(self.random_state)
        return rng.choice(len(X_pool), n_instances, replace=False)


class _Margin(QueryStrategy):
    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        proba = np.sort(estimator.predict_proba(X_pool), axis=1)
        margin = proba[:, -1] - proba[:, -2]
        return np.argsort(margin, kind="stable")[:n_instances]


class _Doubling(_Random):
    """Adds one noisy copy of every queried sample (as DFAL does)."""

    def augment(self, X_queried, y_queried):
        return X_queried + 0.01, y_queried


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Multi-threaded BLAS / torch on a busy 2-core machine makes each tiny fit
    # 20-50x slower (a LogisticRegression fit: ~1 s instead of ~30 ms).
    import torch
    from threadpoolctl import threadpool_limits

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(n_threads)


@pytest.fixture(scope="module")
def digits_flat():
    X, y, X_test, y_test = load_dataset("digits", n_train=600, n_test=300, random_state=0)
    return X.reshape(len(X), -1), y, X_test.reshape(len(X_test), -1), y_test


def _lr():
    return LogisticRegression(max_iter=300)


def test_aubc_on_hand_made_curve():
    # Trapezoids: 10 * (0.2 + 0.4) / 2 + 20 * (0.4 + 1.0) / 2 = 3 + 14 = 17, over 30 labels.
    assert aubc([0, 10, 30], [0.2, 0.4, 1.0]) == pytest.approx(17 / 30)
    assert aubc([20, 40, 60, 80], [0.7] * 4) == pytest.approx(0.7)
    assert aubc([5], [0.42]) == pytest.approx(0.42)
    with pytest.raises(ValueError, match="increasing"):
        aubc([10, 10, 20], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same length"):
        aubc([10, 20], [0.1])


def test_result_metrics_on_hand_made_curve():
    r = SimulationResult(
        strategy="s",
        random_state=0,
        n_labeled=np.array([10, 20, 30]),
        accuracy=np.array([0.5, 0.8, 0.7]),
        n_training=np.array([10, 20, 30]),
        fit_time=np.array([1.0, 1.0, 1.0]),
        query_time=np.array([0.5, 0.5]),
        initial_indices=np.arange(10),
        queried_indices=[np.arange(10, 20), np.arange(20, 30)],
    )
    assert r.aubc == pytest.approx((10 * 0.65 + 10 * 0.75) / 20)
    assert r.final_accuracy == 0.7
    assert r.labels_to_reach(0.75) == 20
    assert r.labels_to_reach(0.9) is None
    assert r.total_time == pytest.approx(4.0)
    back = SimulationResult.from_dict(json.loads(r.to_json()))
    np.testing.assert_array_equal(back.accuracy, r.accuracy)
    assert back.aubc == pytest.approx(r.aubc)


def test_learning_curve_lengths_and_no_repeated_index(digits_flat):
    X, y, X_test, y_test = digits_flat
    r = simulate(
        _lr(), _Random(), X, y, X_test, y_test,
        n_initial=10, batch_size=5, n_queries=3, random_state=0, progress=False,
    )
    assert isinstance(r, SimulationResult)
    np.testing.assert_array_equal(r.n_labeled, [10, 15, 20, 25])
    np.testing.assert_array_equal(r.n_training, r.n_labeled)
    assert r.accuracy.shape == (4,) and r.fit_time.shape == (4,) and r.query_time.shape == (3,)
    assert np.all((0 <= r.accuracy) & (r.accuracy <= 1))
    assert len(r.queried_indices) == 3 and all(len(q) == 5 for q in r.queried_indices)
    everything = np.concatenate([r.initial_indices, *r.queried_indices])
    assert len(np.unique(everything)) == len(everything) == 25
    assert everything.min() >= 0 and everything.max() < len(X)
    assert 0 <= r.aubc <= 1


def test_seeds_reproduce_exactly(digits_flat):
    X, y, X_test, y_test = digits_flat
    kw = {"n_initial": 10, "batch_size": 5, "n_queries": 2, "progress": False}
    a = simulate(_lr(), _Random(), X, y, X_test, y_test, random_state=3, **kw)
    b = simulate(_lr(), _Random(), X, y, X_test, y_test, random_state=3, **kw)
    c = simulate(_lr(), _Random(), X, y, X_test, y_test, random_state=4, **kw)
    np.testing.assert_array_equal(a.initial_indices, b.initial_indices)
    for qa, qb in zip(a.queried_indices, b.queried_indices, strict=True):
        np.testing.assert_array_equal(qa, qb)
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
    assert not np.array_equal(a.initial_indices, c.initial_indices)
    # A strategy's own random_state left None is seeded from the run's seed,
    # and successive rounds still draw different numbers.
    assert not np.array_equal(np.sort(a.queried_indices[0]) - a.queried_indices[0].min(),
                              np.sort(a.queried_indices[1]) - a.queried_indices[1].min())


def test_several_strategies_and_seeds(digits_flat, tmp_path):
    X, y, X_test, y_test = digits_flat
    runs = simulate(
        _lr(), {"random": _Random(), "margin": _Margin()}, X, y, X_test, y_test,
        n_initial=10, batch_size=10, n_queries=2, random_state=[0, 1], progress=False,
    )
    assert isinstance(runs, SimulationResults)
    assert len(runs) == 4 and runs.strategies == ["random", "margin"] and runs.seeds == [0, 1]
    # Same seed -> same seed set for every strategy (a fair comparison).
    by_seed = {}
    for r in runs:
        by_seed.setdefault(r.random_state, []).append(r.initial_indices)
    for initial_sets in by_seed.values():
        np.testing.assert_array_equal(initial_sets[0], initial_sets[1])
    assert not np.array_equal(by_seed[0][0], by_seed[1][0])

    rows = runs.summary()
    assert [row["strategy"] for row in rows] == ["random", "margin"]
    random_aubc = [r.aubc for r in runs.by_strategy("random")]
    assert rows[0]["aubc_mean"] == pytest.approx(np.mean(random_aubc))
    assert rows[0]["aubc_std"] == pytest.approx(np.std(random_aubc))
    text = runs.table(target_accuracy=0.5)
    assert "random" in text and "margin" in text and "±" in text and "labels to 50.0%" in text

    png = tmp_path / "curves.png"
    fig = runs.plot(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes[0].lines) == 2

    path = tmp_path / "runs.json"
    runs.to_json(path)
    loaded = SimulationResults.from_json(path)
    assert len(loaded) == 4
    np.testing.assert_allclose(loaded[3].accuracy, runs[3].accuracy)
    assert json.loads(path.read_text())["summary"][1]["strategy"] == "margin"


def test_margin_beats_random_on_digits(digits_flat):
    X, y, X_test, y_test = digits_flat
    runs = simulate(
        _lr(), {"random": _Random(), "margin": _Margin()}, X, y, X_test, y_test,
        n_initial=20, batch_size=20, n_queries=6, random_state=[0, 1], progress=False,
    )
    rows = {row["strategy"]: row for row in runs.summary()}
    assert rows["margin"]["aubc_mean"] > rows["random"]["aubc_mean"]
    assert rows["margin"]["final_accuracy_mean"] > rows["random"]["final_accuracy_mean"]


def test_augmented_data_is_counted(digits_flat):
    X, y, X_test, y_test = digits_flat
    r = simulate(
        _lr(), _Doubling(), X, y, X_test, y_test,
        n_initial=10, batch_size=5, n_queries=2, random_state=0, progress=False,
    )
    np.testing.assert_array_equal(r.n_labeled, [10, 15, 20])
    np.testing.assert_array_equal(r.n_training, [10, 20, 30])


def test_bad_input(digits_flat):
    X, y, X_test, y_test = digits_flat
    kw = {"n_initial": 10, "batch_size": 5, "n_queries": 2, "progress": False}
    with pytest.raises(ValueError, match="more than"):
        simulate(_lr(), _Random(), X[:20], y[:20], X_test, y_test, n_initial=10,
                 batch_size=5, n_queries=3, progress=False)
    with pytest.raises(ValueError, match="different lengths"):
        simulate(_lr(), _Random(), X, y[:-1], X_test, y_test, **kw)
    with pytest.raises(ValueError, match="empty dict"):
        simulate(_lr(), {}, X, y, X_test, y_test, **kw)
    with pytest.raises(ValueError, match="empty list"):
        simulate(_lr(), _Random(), X, y, X_test, y_test, random_state=[], **kw)
    with pytest.raises(ValueError, match="batch_size"):
        simulate(_lr(), _Random(), X, y, X_test, y_test, n_initial=10, batch_size=0,
                 n_queries=1, progress=False)
    with pytest.raises(ValueError, match="not a query strategy"):
        simulate(_lr(), "entropy", X, y, X_test, y_test, **kw)
    X_nan = X.astype(float).copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        simulate(_lr(), _Random(), X_nan, y, X_test, y_test, **kw)


def test_progress_bar_can_be_shown_and_hidden(digits_flat, capsys):
    X, y, X_test, y_test = digits_flat
    kw = {"n_initial": 10, "batch_size": 5, "n_queries": 1, "random_state": 0}
    simulate(_lr(), _Random(), X, y, X_test, y_test, progress=False, **kw)
    assert "simulate" not in capsys.readouterr().err
    simulate(_lr(), _Random(), X, y, X_test, y_test, progress=True, **kw)
    assert "simulate" in capsys.readouterr().err


def test_cnn_runs_reproduce_and_record_diagnostics(monkeypatch):
    from skal.nets import cnn_classifier

    calls = []
    fake = types.ModuleType("skal.diagnostics")

    def two_sample_test(A, B, random_state=None):
        calls.append((A.shape, B.shape))
        return {"statistic": 1.0, "p_value": 0.5}

    def labeled_pool_distance(A, B):
        return float(np.linalg.norm(A.mean(0) - B.mean(0)))

    fake.two_sample_test = two_sample_test
    fake.labeled_pool_distance = labeled_pool_distance
    import skal

    monkeypatch.setitem(sys.modules, "skal.diagnostics", fake)
    monkeypatch.setattr(skal, "diagnostics", fake, raising=False)

    X, y, X_test, y_test = load_dataset("digits", n_train=150, n_test=60, random_state=0)
    net = cnn_classifier("digits", 10, max_epochs=2, device="cpu")
    kw = {"n_initial": 20, "batch_size": 10, "n_queries": 2, "random_state": 5, "progress": False}
    a = simulate(net, _Random(), X, y, X_test, y_test, diagnostics=True,
                 diagnostics_max_samples=50, **kw)
    b = simulate(net, _Random(), X, y, X_test, y_test, **kw)
    # Same seed -> same weights, same queries, same accuracy, even with a CNN
    # and with the diagnostics drawing numbers of their own.
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
    for qa, qb in zip(a.queried_indices, b.queried_indices, strict=True):
        np.testing.assert_array_equal(qa, qb)
    assert b.diagnostics is None
    assert len(a.diagnostics) == 3
    assert [d["n_labeled"] for d in a.diagnostics] == [20, 30, 40]
    assert a.diagnostics[0]["two_sample_test"] == {"statistic": 1.0, "p_value": 0.5}
    assert isinstance(a.diagnostics[0]["labeled_pool_distance"], float)
    # Embeddings of the labeled set and of a pool subsample (capped at 50 rows).
    assert calls[0][0] == (20, 64) and calls[0][1] == (50, 64)
    json.dumps(a.to_dict())


def _result(name, seed, accuracy, n_labeled=(10, 20, 30)):
    from skal.simulation import SimulationResult

    k = len(accuracy)
    return SimulationResult(name, seed, np.array(n_labeled[:k]), np.array(accuracy, float),
                            np.array(n_labeled[:k]), np.zeros(k), np.zeros(k - 1),
                            np.arange(10), [])


def test_paired_difference_and_labels_saved_against_random():
    from skal.simulation import SimulationResults

    runs = SimulationResults([
        _result("random", 0, [0.5, 0.6, 0.7]), _result("random", 1, [0.5, 0.7, 0.8]),
        _result("margin", 0, [0.5, 0.75, 0.8]), _result("margin", 1, [0.5, 0.7, 0.9]),
        _result("bad", 0, [0.5, 0.5, 0.5]), _result("bad", 1, [0.5, 0.5, 0.6]),
    ])
    diff = runs.paired_aubc_difference("margin")
    expected = [runs.by_strategy("margin")[i].aubc - runs.by_strategy("random")[i].aubc
                for i in range(2)]
    np.testing.assert_allclose(diff, expected)
    # random's mean final accuracy is 0.75: margin's mean curve (0.5, 0.725, 0.85)
    # reaches it at 30 labels, like random; "bad" never does.
    assert runs.labels_to_match("margin") == (30, 30)
    assert runs.labels_to_match("bad") == (None, 30)
    rows = {row["strategy"]: row for row in runs.summary()}
    assert rows["margin"]["labels_saved_vs_random"] == 0
    assert rows["bad"]["labels_saved_vs_random"] is None
    assert rows["random"]["aubc_vs_random_mean"] is None
    assert rows["margin"]["aubc_vs_random_mean"] == pytest.approx(np.mean(expected))
    table = runs.table()
    assert "AUBC - random" in table and "labels saved" in table
    margin_line = next(line for line in table.splitlines() if line.startswith("margin"))
    assert f"{np.mean(expected):+.3f} ± {np.std(expected):.3f}" in margin_line
    # Without a random run the columns are left out.
    assert "AUBC - random" not in SimulationResults(runs.by_strategy("margin")).table()


def test_plot_with_many_strategies_uses_panels_and_distinct_styles(tmp_path):
    from skal.simulation import SimulationResults

    names = [f"s{i}" for i in range(9)] + ["random"]
    runs = SimulationResults([_result(n, 0, [0.5, 0.6 + 0.01 * i, 0.7])
                              for i, n in enumerate(names)])
    groups = {n: ("a" if i < 4 else "b") for i, n in enumerate(names)}
    groups["random"] = "baseline"
    fig = runs.plot(tmp_path / "many.png", groups=groups)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert sorted(ax.get_title() for ax in panels) == ["a", "b", "baseline"]
    styles = {(line.get_label().split()[0], line.get_color(), line.get_marker())
              for ax in panels for line in ax.lines if "reference" not in line.get_label()}
    assert len({s[1:] for s in styles}) == len(names)  # one colour+marker per strategy
    # random is the dashed reference in the panels it is not in.
    assert all(any("reference" in line.get_label() for line in ax.lines)
               for ax in panels if ax.get_title() != "baseline")
    # Without groups, ten lines share one axes with the legend outside it.
    fig = runs.plot(tmp_path / "one.png")
    (ax,) = fig.axes
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > ax.bbox.x1 - 1
    assert (tmp_path / "many.png").read_bytes()[:4] == b"\x89PNG"
