"""Stopping criteria: when is labeling more data no longer worth it?

A criterion looks at a fitted learner after each round of an active-learning loop
(:meth:`StoppingCriterion.update`) and says whether to stop. The same objects
serve a hand-written :class:`skal.ActiveLearner` loop, ``skal.simulate(...,
stop=[...])`` (which records the round where each criterion would have stopped)
and ``skal label`` (which shows each criterion's state on the page).

- :class:`BudgetStop`: a fixed number of labels.
- :class:`StabilizingPredictions`: successive models agree on a stop set
  (Cohen's kappa, Bloodgood & Vijay-Shanker 2009).
- :class:`UncertaintyStop`: the model is no longer uncertain on the pool
  (maximum or overall uncertainty, Zhu et al. 2008).
- :class:`ValidationPlateau`: validation accuracy stopped improving.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, clone

__all__ = [
    "BudgetStop",
    "StabilizingPredictions",
    "StoppingCriterion",
    "UncertaintyStop",
    "ValidationPlateau",
    "check_criteria",
    "cohen_kappa",
    "stop_summary",
    "stop_table",
]


def cohen_kappa(a, b):
    """Cohen's kappa between two label vectors.

    Unlike :func:`sklearn.metrics.cohen_kappa_score`, two identical constant
    vectors give 1 (perfect agreement) instead of NaN: a model that predicts one
    class everywhere, twice, has stable predictions.

    Examples
    --------
    >>> cohen_kappa([0, 1, 1, 0], [0, 1, 0, 0])
    0.5
    >>> cohen_kappa([1, 1, 1], [1, 1, 1])
    1.0
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"cohen_kappa needs two non-empty 1-D label vectors of equal length, "
            f"got shapes {a.shape} and {b.shape}."
        )
    labels, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    ca, cb = codes[: a.size], codes[a.size:]
    observed = float(np.mean(ca == cb))
    pa = np.bincount(ca, minlength=labels.size) / a.size
    pb = np.bincount(cb, minlength=labels.size) / b.size
    expected = float(pa @ pb)
    if expected >= 1.0:  # both constant: agreement is total or nil
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


class StoppingCriterion(BaseEstimator):
    """Base class: ``update`` after each round, then read ``should_stop``.

    Subclasses implement ``_update(learner, X_pool)`` and return True to stop;
    hyperparameters are ``__init__`` arguments (so criteria clone like sklearn
    estimators) and the running state lives in attributes ending in ``_``.

    Attributes
    ----------
    n_updates_ : int
        Rounds seen since the last :meth:`reset`.
    stopped_at_ : int or None
        The round (0 = the first update) at which the criterion first said stop.
    """

    #: Whether :meth:`update` needs the unlabeled pool.
    needs_pool = False

    def reset(self):
        """Forget every round seen; returns self."""
        self.n_updates_ = 0
        self.stopped_at_ = None
        self._reset()
        return self

    def _reset(self):
        pass

    def update(self, learner, X_pool=None):
        """Look at the learner after a round; return True once it is time to stop.

        Parameters
        ----------
        learner : fitted ActiveLearner or classifier
            Needs ``predict`` (and ``predict_proba`` for :class:`UncertaintyStop`).
        X_pool : array-like or None
            The unlabeled pool (needed by :class:`UncertaintyStop`).

        Returns
        -------
        bool
            :attr:`should_stop` after this round. Once True it stays True.
        """
        if not hasattr(self, "n_updates_"):
            self.reset()
        if self.needs_pool and X_pool is None:
            raise ValueError(f"{type(self).__name__}.update needs X_pool (the unlabeled pool).")
        stop = bool(self._update(learner, X_pool))
        if stop and self.stopped_at_ is None:
            self.stopped_at_ = self.n_updates_
        self.n_updates_ += 1
        return self.should_stop

    @property
    def should_stop(self):
        """True once the criterion has said stop (False before any update)."""
        return getattr(self, "stopped_at_", None) is not None

    def state(self):
        """A JSON-ready dict for display: name, ``should_stop``, rounds seen, details."""
        out = {
            "name": type(self).__name__,
            "should_stop": self.should_stop,
            "n_updates": getattr(self, "n_updates_", 0),
            "stopped_at": getattr(self, "stopped_at_", None),
        }
        out.update(self._state())
        return out

    def _state(self):
        return {}


def _n_labels(learner):
    y = getattr(learner, "y_training", None)
    if y is None:
        raise ValueError(
            "BudgetStop needs a learner with y_training (skal.ActiveLearner or modAL's)."
        )
    return len(y)


class BudgetStop(StoppingCriterion):
    """Stop once the learner holds ``max_labels`` labels.

    Parameters
    ----------
    max_labels : int
        Label budget (counts ``learner.y_training``).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> stop = BudgetStop(3)
    >>> stop.update(SimpleNamespace(y_training=[0, 1]))
    False
    >>> stop.update(SimpleNamespace(y_training=[0, 1, 1]))
    True
    """

    def __init__(self, max_labels):
        self.max_labels = max_labels

    def _reset(self):
        if isinstance(self.max_labels, bool) or not isinstance(self.max_labels, numbers.Integral) \
                or self.max_labels < 1:
            raise ValueError(f"max_labels must be a positive int, got {self.max_labels!r}.")
        self.n_labels_ = 0

    def _update(self, learner, X_pool):
        self.n_labels_ = _n_labels(learner)
        return self.n_labels_ >= self.max_labels

    def _state(self):
        return {"n_labels": getattr(self, "n_labels_", 0), "max_labels": self.max_labels}


class StabilizingPredictions(StoppingCriterion):
    """Stop when successive models agree on a stop set (Bloodgood & Vijay-Shanker 2009).

    After each round the model predicts the (unlabeled) stop set; Cohen's kappa
    between these predictions and the previous round's is recorded, and the
    criterion stops once the mean of the last ``window`` kappas reaches
    ``threshold``. The paper uses a window of 3 and a threshold of 0.99.

    Parameters
    ----------
    stop_set : array-like of shape (n_samples, ...)
        Samples the models predict; need not be labeled (the paper draws a few
        thousand from the pool).
    window : int, default=3
    threshold : float, default=0.99

    Attributes
    ----------
    kappas_ : list of float
        Kappa between round ``i`` and round ``i + 1``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> stop = StabilizingPredictions(np.zeros((4, 1)), window=2, threshold=0.9)
    >>> for pred in ([0, 1, 1, 0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]):
    ...     done = stop.update(SimpleNamespace(predict=lambda X, p=pred: np.array(p)))
    >>> [round(k, 2) for k in stop.kappas_], done
    ([0.5, 1.0, 1.0], True)
    """

    def __init__(self, stop_set, window=3, threshold=0.99):
        self.stop_set = stop_set
        self.window = window
        self.threshold = threshold

    def _reset(self):
        if isinstance(self.window, bool) or not isinstance(self.window, numbers.Integral) \
                or self.window < 1:
            raise ValueError(f"window must be a positive int, got {self.window!r}.")
        if not isinstance(self.threshold, numbers.Real) or not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be a kappa in [-1, 1], got {self.threshold!r}.")
        if self.stop_set is None or len(self.stop_set) == 0:
            raise ValueError("stop_set is empty: give the samples the models should agree on.")
        self.kappas_ = []
        self._previous = None

    def _update(self, learner, X_pool):
        pred = np.asarray(learner.predict(self.stop_set))
        if self._previous is not None:
            self.kappas_.append(float(cohen_kappa(self._previous, pred)))
        self._previous = pred
        return len(self.kappas_) >= self.window and self.mean_kappa >= self.threshold

    @property
    def mean_kappa(self):
        """Mean of the last ``window`` kappas (None before the first pair)."""
        kappas = getattr(self, "kappas_", [])
        return float(np.mean(kappas[-self.window:])) if kappas else None

    def _state(self):
        kappas = getattr(self, "kappas_", [])
        return {
            "kappa": kappas[-1] if kappas else None,
            "mean_kappa": self.mean_kappa,
            "window": self.window,
            "threshold": self.threshold,
        }


_MEASURES = ("least_confident", "entropy", "margin")


def _uncertainty(proba, measure):
    proba = np.clip(np.asarray(proba, dtype=float), 0.0, 1.0)
    if measure == "least_confident":
        return 1.0 - proba.max(axis=1)
    if measure == "margin":  # 1 - (p1 - p2): high when the top two are close
        part = np.sort(proba, axis=1)
        second = part[:, -2] if proba.shape[1] > 1 else 0.0
        return 1.0 - (part[:, -1] - second)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(proba > 0, np.log(proba), 0.0)
    return -(proba * logp).sum(axis=1)


class UncertaintyStop(StoppingCriterion):
    """Stop when the model is no longer uncertain on the pool (Zhu et al. 2008).

    ``aggregate="max"`` is the maximum-uncertainty criterion (every pool sample
    is below ``threshold``); ``aggregate="mean"`` the overall-uncertainty one
    (their mean is).

    Parameters
    ----------
    threshold : float, default=0.1
    aggregate : {"max", "mean"}, default="max"
    measure : {"least_confident", "entropy", "margin"}, default="least_confident"
        Per-sample uncertainty from ``predict_proba`` (entropy in nats; margin as
        ``1 - (p_first - p_second)``).

    Attributes
    ----------
    values_ : list of float
        The aggregated uncertainty after each round.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> model = SimpleNamespace(predict_proba=lambda X: np.array([[0.95, 0.05], [0.8, 0.2]]))
    >>> stop = UncertaintyStop(threshold=0.15, aggregate="mean")
    >>> stop.update(model, X_pool=np.zeros((2, 1))), round(stop.values_[-1], 3)
    (True, 0.125)
    """

    needs_pool = True

    def __init__(self, threshold=0.1, aggregate="max", measure="least_confident"):
        self.threshold = threshold
        self.aggregate = aggregate
        self.measure = measure

    def _reset(self):
        if self.aggregate not in ("max", "mean"):
            raise ValueError(f"aggregate must be 'max' or 'mean', got {self.aggregate!r}.")
        if self.measure not in _MEASURES:
            raise ValueError(f"measure must be one of {_MEASURES}, got {self.measure!r}.")
        if not isinstance(self.threshold, numbers.Real) or self.threshold < 0:
            raise ValueError(f"threshold must be a non-negative number, got {self.threshold!r}.")
        self.values_ = []

    def _update(self, learner, X_pool):
        if len(X_pool) == 0:  # nothing left to be uncertain about
            self.values_.append(0.0)
            return True
        u = _uncertainty(learner.predict_proba(X_pool), self.measure)
        value = float(u.max() if self.aggregate == "max" else u.mean())
        self.values_.append(value)
        return value < self.threshold

    def _state(self):
        values = getattr(self, "values_", [])
        return {
            "uncertainty": values[-1] if values else None,
            "threshold": self.threshold,
            "aggregate": self.aggregate,
            "measure": self.measure,
        }


class ValidationPlateau(StoppingCriterion):
    """Stop when validation accuracy has not improved for ``patience`` rounds.

    An improvement is a score above the best so far by more than ``min_delta``.

    Parameters
    ----------
    X_val, y_val : array-like
        A labeled validation set (``learner.score(X_val, y_val)``).
    patience : int, default=3
    min_delta : float, default=0.0

    Attributes
    ----------
    scores_ : list of float
    best_score_ : float or None
    best_round_ : int or None

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> stop = ValidationPlateau(None, None, patience=2)
    >>> for s in (0.5, 0.7, 0.69, 0.7):
    ...     done = stop.update(SimpleNamespace(score=lambda X, y, s=s: s))
    >>> done, stop.best_round_
    (True, 1)
    """

    def __init__(self, X_val, y_val, patience=3, min_delta=0.0):
        self.X_val = X_val
        self.y_val = y_val
        self.patience = patience
        self.min_delta = min_delta

    def _reset(self):
        if isinstance(self.patience, bool) or not isinstance(self.patience, numbers.Integral) \
                or self.patience < 1:
            raise ValueError(f"patience must be a positive int, got {self.patience!r}.")
        if not isinstance(self.min_delta, numbers.Real) or self.min_delta < 0:
            raise ValueError(f"min_delta must be a non-negative number, got {self.min_delta!r}.")
        if self.X_val is not None and self.y_val is not None and len(self.X_val) != len(self.y_val):
            raise ValueError(
                f"X_val and y_val have different lengths: {len(self.X_val)} != {len(self.y_val)}."
            )
        self.scores_ = []
        self.best_score_ = None
        self.best_round_ = None

    def _update(self, learner, X_pool):
        score = float(learner.score(self.X_val, self.y_val))
        self.scores_.append(score)
        if self.best_score_ is None or score > self.best_score_ + self.min_delta:
            self.best_score_, self.best_round_ = score, len(self.scores_) - 1
        return len(self.scores_) - 1 - self.best_round_ >= self.patience

    def _state(self):
        scores = getattr(self, "scores_", [])
        return {
            "score": scores[-1] if scores else None,
            "best_score": getattr(self, "best_score_", None),
            "rounds_without_improvement": (
                len(scores) - 1 - self.best_round_ if scores else 0
            ),
            "patience": self.patience,
        }


def check_criteria(stop):
    """Validate ``stop`` (a criterion, a list of them or a dict name -> criterion)
    and return a dict name -> unfitted clone; names default to the class name.

    Examples
    --------
    >>> sorted(check_criteria([BudgetStop(10), BudgetStop(20)]))
    ['BudgetStop', 'BudgetStop_2']
    """
    if stop is None:
        return {}
    if isinstance(stop, StoppingCriterion):
        stop = [stop]
    items = list(stop.items()) if isinstance(stop, dict) else [(None, s) for s in stop]
    out = {}
    for name, criterion in items:
        if not isinstance(criterion, StoppingCriterion):
            raise TypeError(
                f"stop must hold skal.stopping criteria (BudgetStop, StabilizingPredictions, "
                f"UncertaintyStop, ValidationPlateau), got {criterion!r}."
            )
        if name is None:
            base, name, i = type(criterion).__name__, type(criterion).__name__, 1
            while name in out:
                i += 1
                name = f"{base}_{i}"
        if not isinstance(name, str):
            raise TypeError(f"Criterion names must be strings, got {name!r}.")
        out[name] = clone(criterion).reset()  # reset validates the parameters now
    return out


class _Recorder:
    """Runs clones of criteria alongside a simulated loop; ``simulate`` uses it."""

    def __init__(self, criteria):
        self.criteria = {name: clone(c).reset() for name, c in criteria.items()}
        self.stops = {name: None for name in self.criteria}

    def update(self, learner, X_pool, round_, n_labeled, accuracy):
        for name, criterion in self.criteria.items():
            if self.stops[name] is None and criterion.update(learner, X_pool):
                self.stops[name] = {
                    "round": int(round_),
                    "n_labeled": int(n_labeled),
                    "accuracy": float(accuracy),
                }

    def result(self):
        return {
            name: {"stop": self.stops[name], "state": self.criteria[name].state()}
            for name in self.criteria
        }


def stop_summary(results):
    """One dict per (strategy, criterion) of a simulation run with ``stop=...``.

    Compares where each criterion would have stopped with the curve's best:
    mean labels and accuracy at the stop point, the best accuracy of the run
    and the labels it took, over seeds. A run that never stopped counts as
    stopping at its last point (``n_stopped`` says how many did stop).

    Parameters
    ----------
    results : SimulationResult or SimulationResults

    Returns
    -------
    list of dict
    """
    runs = [results] if hasattr(results, "stopping") else list(results)
    rows = {}
    for run in runs:
        for name, rec in (run.stopping or {}).items():
            stop = rec.get("stop")
            acc = np.asarray(run.accuracy, float)
            best = int(np.argmax(acc))
            at = stop["round"] if stop else len(acc) - 1
            row = rows.setdefault((run.strategy, name), {
                "strategy": run.strategy, "criterion": name, "n_runs": 0, "n_stopped": 0,
                "_stop_labels": [], "_stop_acc": [], "_best_labels": [], "_best_acc": [],
            })
            row["n_runs"] += 1
            row["n_stopped"] += stop is not None
            row["_stop_labels"].append(int(run.n_labeled[at]))
            row["_stop_acc"].append(float(acc[at]))
            row["_best_labels"].append(int(run.n_labeled[best]))
            row["_best_acc"].append(float(acc[best]))
    out = []
    for row in rows.values():
        for key in ("stop_labels", "stop_acc", "best_labels", "best_acc"):
            values = row.pop("_" + key)
            row[key + "_mean"] = float(np.mean(values))
            row[key + "_std"] = float(np.std(values))
        row["acc_gap_mean"] = row["best_acc_mean"] - row["stop_acc_mean"]
        out.append(row)
    return out


def stop_table(results):
    """Markdown table of :func:`stop_summary`: where each criterion would have
    stopped against the curve's best (mean ± std over seeds)."""
    rows = stop_summary(results)
    if not rows:
        return "(no stopping criteria recorded: run simulate(..., stop=[...]))"
    lines = [
        ("| strategy | criterion | stopped | labels at stop | acc at stop "
         "| best acc | labels at best | acc lost |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['strategy']} | {r['criterion']} | {r['n_stopped']}/{r['n_runs']} "
            f"| {r['stop_labels_mean']:.0f} ± {r['stop_labels_std']:.0f} "
            f"| {r['stop_acc_mean']:.3f} ± {r['stop_acc_std']:.3f} "
            f"| {r['best_acc_mean']:.3f} ± {r['best_acc_std']:.3f} "
            f"| {r['best_labels_mean']:.0f} ± {r['best_labels_std']:.0f} "
            f"| {r['acc_gap_mean']:.3f} |"
        )
    return "\n".join(lines)
