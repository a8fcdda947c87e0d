"""Stopping criteria: hand-computed cases, kappa against sklearn, simulate records."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score

from skal import simulate
from skal.learner import ActiveLearner
from skal.simulation import SimulationResult, SimulationResults
from skal.stopping import (
    BudgetStop,
    StabilizingPredictions,
    UncertaintyStop,
    ValidationPlateau,
    check_criteria,
    cohen_kappa,
    stop_summary,
    stop_table,
)
from skal.strategies import RandomSampling, UncertaintySampling


def _predicting(pred):
    return SimpleNamespace(predict=lambda X: np.asarray(pred))


def test_kappa_matches_sklearn():
    rng = np.random.RandomState(0)
    for _ in range(50):
        k = rng.randint(2, 6)
        a = rng.randint(k, size=40)
        b = np.where(rng.rand(40) < 0.6, a, rng.randint(k, size=40))
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    # string labels, and labels one side never uses
    assert cohen_kappa(["a", "b", "b"], ["a", "b", "c"]) == pytest.approx(
        cohen_kappa_score(["a", "b", "b"], ["a", "b", "c"]))


def test_kappa_hand_computed_and_constant():
    # po = 3/4, pa = pb = (1/2, 1/2) for the first... hand: a=[0,1,1,0], b=[0,1,0,0]
    # po = 0.75, pe = 0.5*0.75 + 0.5*0.25 = 0.5, kappa = 0.25/0.5 = 0.5
    assert cohen_kappa([0, 1, 1, 0], [0, 1, 0, 0]) == pytest.approx(0.5)
    assert cohen_kappa([2, 2, 2], [2, 2, 2]) == 1.0
    assert cohen_kappa([2, 2, 2], [1, 1, 1]) == 0.0
    with pytest.raises(ValueError, match="equal length"):
        cohen_kappa([0, 1], [0])


def test_budget_stop():
    stop = BudgetStop(5)
    assert not stop.should_stop
    assert stop.update(SimpleNamespace(y_training=np.zeros(4))) is False
    assert stop.update(SimpleNamespace(y_training=np.zeros(5))) is True
    assert stop.stopped_at_ == 1 and stop.state()["n_labels"] == 5
    stop.reset()
    assert not stop.should_stop and stop.n_updates_ == 0
    with pytest.raises(ValueError, match="max_labels"):
        BudgetStop(0).reset()


def test_stabilizing_predictions_window_mean():
    X = np.zeros((6, 1))
    preds = [
        [0, 0, 1, 1, 2, 2],
        [0, 0, 1, 1, 2, 0],  # kappa k1
        [0, 0, 1, 1, 2, 0],  # 1
        [0, 0, 1, 1, 2, 0],  # 1
    ]
    k1 = cohen_kappa_score(preds[0], preds[1])
    stop = StabilizingPredictions(X, window=2, threshold=0.99)
    flags = [stop.update(_predicting(p)) for p in preds]
    assert stop.kappas_ == pytest.approx([k1, 1.0, 1.0])
    # mean of the last 2: (k1 + 1) / 2 < 0.99 after round 2, 1.0 after round 3
    assert flags == [False, False, False, True]
    assert stop.stopped_at_ == 3
    assert stop.state()["mean_kappa"] == pytest.approx(1.0)
    # with window 3 the mean includes k1: never reaches 0.99
    stop3 = StabilizingPredictions(X, window=3, threshold=0.99)
    assert not any(stop3.update(_predicting(p)) for p in preds)
    assert stop3.mean_kappa == pytest.approx((k1 + 2) / 3)


def test_stop_stays_stopped():
    stop = StabilizingPredictions(np.zeros((3, 1)), window=1, threshold=0.9)
    for p in ([0, 1, 1], [0, 1, 1], [1, 0, 0]):
        stop.update(_predicting(p))
    assert stop.should_stop and stop.stopped_at_ == 1


def test_uncertainty_stop_max_and_mean():
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [1.0, 0.0]])
    model = SimpleNamespace(predict_proba=lambda X: proba)
    pool = np.zeros((3, 1))
    # least confident: 0.1, 0.4, 0.0 -> max 0.4, mean 0.1667
    s_max = UncertaintyStop(threshold=0.3, aggregate="max")
    s_mean = UncertaintyStop(threshold=0.3, aggregate="mean")
    assert s_max.update(model, pool) is False and s_max.values_ == pytest.approx([0.4])
    assert s_mean.update(model, pool) is True and s_mean.values_ == pytest.approx([0.5 / 3])
    ent = UncertaintyStop(threshold=1.0, measure="entropy", aggregate="max")
    ent.update(model, pool)
    assert ent.values_[0] == pytest.approx(-(0.6 * np.log(0.6) + 0.4 * np.log(0.4)))
    margin = UncertaintyStop(threshold=1.0, measure="margin", aggregate="max")
    margin.update(model, pool)
    assert margin.values_[0] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="X_pool"):
        UncertaintyStop().update(model)
    with pytest.raises(ValueError, match="aggregate"):
        UncertaintyStop(aggregate="median").reset()


def test_validation_plateau():
    scores = iter([0.5, 0.7, 0.705, 0.69, 0.71, 0.70])
    stop = ValidationPlateau(np.zeros((2, 1)), np.zeros(2), patience=3, min_delta=0.01)
    model = SimpleNamespace(score=lambda X, y: next(scores))
    flags = [stop.update(model) for _ in range(6)]
    # best 0.7 at round 1; 0.705 and 0.71 are within min_delta: stop at round 4
    assert flags == [False, False, False, False, True, True]
    assert stop.best_round_ == 1 and stop.stopped_at_ == 4
    with pytest.raises(ValueError, match="different lengths"):
        ValidationPlateau(np.zeros((3, 1)), np.zeros(2)).reset()


def test_criteria_clone_and_names():
    crit = StabilizingPredictions(np.ones((5, 2)), window=4, threshold=0.95)
    assert clone(crit).get_params()["window"] == 4
    names = check_criteria([BudgetStop(3), BudgetStop(4), UncertaintyStop()])
    assert list(names) == ["BudgetStop", "BudgetStop_2", "UncertaintyStop"]
    with pytest.raises(TypeError, match="skal.stopping criteria"):
        check_criteria([object()])
    with pytest.raises(ValueError, match="window"):
        check_criteria([StabilizingPredictions(np.ones((2, 1)), window=0)])


def test_in_an_active_learner_loop():
    rng = np.random.RandomState(0)
    X = rng.randn(200, 2)
    y = (X[:, 0] > 0).astype(int)
    learner = ActiveLearner(LogisticRegression(), UncertaintySampling(), random_state=0)
    learner.fit(X[:10], y[:10])
    pool = np.arange(10, 200)
    stop = BudgetStop(40)
    rounds = 0
    while not stop.update(learner, X[pool]):
        idx = learner.query(X[pool], 10)
        learner.teach(X[pool[idx]], y[pool[idx]])
        pool = np.delete(pool, idx)
        rounds += 1
    assert rounds == 3 and len(learner.y_training) == 40


def _data():
    from skal.datasets import load_dataset

    X, y, X_test, y_test = load_dataset("digits")
    return X.reshape(len(X), -1)[:400], y[:400], X_test.reshape(len(X_test), -1), y_test


def test_simulate_records_stop_rounds():
    X, y, X_test, y_test = _data()
    stop = {
        "budget": BudgetStop(40),
        "stable": StabilizingPredictions(X_test[:100], window=1, threshold=0.0),
        "never": UncertaintyStop(threshold=0.0),
        "val": ValidationPlateau(X_test, y_test, patience=2),
    }
    runs = simulate(
        LogisticRegression(max_iter=100), {"random": RandomSampling(),
                                           "margin": UncertaintySampling("margin")},
        X, y, X_test, y_test, n_initial=20, batch_size=10, n_queries=4,
        random_state=[0, 1], progress=False, stop=stop,
    )
    for run in runs:
        rec = run.stopping
        # budget 40 = 20 + 2 * 10: round 2; the simulation still ran all 4 rounds
        assert rec["budget"]["stop"]["round"] == 2
        assert rec["budget"]["stop"]["n_labeled"] == 40
        assert rec["budget"]["stop"]["accuracy"] == run.accuracy[2]
        assert len(run.accuracy) == 5
        # kappa >= 0 with a window of 1: the first pair, round 1
        assert rec["stable"]["stop"]["round"] == 1
        assert rec["never"]["stop"] is None
        acc = run.accuracy
        # reference for the plateau: first round 2 rounds after the running best
        best, best_i, expect = -1, None, None
        for i, a in enumerate(acc):
            if a > best:
                best, best_i = a, i
            if i - best_i >= 2:
                expect = i
                break
        got = rec["val"]["stop"]
        assert (got["round"] if got else None) == expect
    # stored in to_dict / from_dict, JSON round trip
    back = SimulationResults.from_json(runs.to_json())
    assert back[0].stopping["budget"]["stop"] == runs[0].stopping["budget"]["stop"]
    one = SimulationResult.from_dict(json.loads(json.dumps(runs[1].to_dict())))
    assert one.stopping["never"]["stop"] is None
    rows = {(r["strategy"], r["criterion"]): r for r in stop_summary(runs)}
    assert rows[("random", "budget")]["stop_labels_mean"] == 40
    assert rows[("random", "never")]["n_stopped"] == 0
    assert rows[("random", "never")]["stop_labels_mean"] == 60  # counts as the last point
    assert "| random | budget | 2/2 | 40 ± 0 |" in stop_table(runs)


def test_simulate_rejects_bad_stop_before_running():
    X, y, X_test, y_test = _data()
    with pytest.raises(TypeError, match="skal.stopping"):
        simulate(LogisticRegression(), RandomSampling(), X, y, X_test, y_test,
                 n_initial=20, batch_size=10, n_queries=1, progress=False, stop=["budget"])
