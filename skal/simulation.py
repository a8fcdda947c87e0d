"""Simulated active learning: the labels are known, the oracle is ``y``.

:func:`simulate` runs the pool-based loop (fit on a random seed set, query a batch,
reveal its labels, refit, score on a test set) for one or several strategies and
seeds, and returns learning curves with their AUBC (area under the budget curve),
query and fit times. :class:`SimulationResults` turns many runs into a table, a
plot of mean learning curves, and JSON.
"""

import json
import math
import numbers
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone

from .base import check_int

__all__ = [
    "SimulationResult",
    "SimulationResults",
    "aubc",
    "simulate",
]

_MAX_SEED = 2**31 - 1
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def aubc(n_labeled, accuracy):
    """Area under the budget curve, normalised to [0, 1].

    The trapezoid area under accuracy vs number of labels, divided by the label
    range, so a constant accuracy ``a`` gives ``a`` (as DeepAL+'s ``get_aubc``
    when the curve starts at zero labels). A single point gives its accuracy.

    Parameters
    ----------
    n_labeled : array-like of shape (n_points,)
        Number of labels at each point, strictly increasing.
    accuracy : array-like of shape (n_points,)
        Test accuracy at each point.

    Returns
    -------
    float

    Examples
    --------
    >>> aubc([10, 20, 30], [0.5, 0.7, 0.9])
    0.7
    """
    x = np.asarray(n_labeled, dtype=float)
    y = np.asarray(accuracy, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(
            "n_labeled and accuracy must be non-empty 1-D arrays of the same length, "
            f"got shapes {x.shape} and {y.shape}."
        )
    if x.size == 1:
        return float(y[0])
    if np.any(np.diff(x) <= 0):
        raise ValueError("n_labeled must be strictly increasing.")
    return float(_trapezoid(y, x) / (x[-1] - x[0]))


@dataclass
class SimulationResult:
    """One simulated active-learning run (one strategy, one seed).

    Attributes
    ----------
    strategy : str
        Strategy name.
    random_state : int or None
        The run's seed.
    n_labeled : ndarray of shape (n_rounds + 1,)
        Labels bought from the oracle at each point of the curve (seed set first).
    accuracy : ndarray of shape (n_rounds + 1,)
        Test accuracy after each fit.
    n_training : ndarray of shape (n_rounds + 1,)
        Samples the model was trained on, including data the strategy added
        (DFAL's adversarial copies, CEAL's pseudo-labels).
    fit_time : ndarray of shape (n_rounds + 1,)
        Seconds spent in ``fit`` (first point) and ``teach`` (then).
    query_time : ndarray of shape (n_rounds,)
        Seconds spent in ``query`` each round.
    initial_indices : ndarray
        Indices into ``X`` of the seed set.
    queried_indices : list of ndarray
        Indices into ``X`` queried each round, best first.
    diagnostics : list of dict or None
        Per-point diagnostics when ``simulate(..., diagnostics=True)``.
    stopping : dict or None
        With ``simulate(..., stop=...)``: per criterion name, ``"stop"`` (the
        point where it would have stopped: ``round``, ``n_labeled``,
        ``accuracy``; None if it never did) and its final ``"state"``; see
        :func:`skal.stopping.stop_table`.
    params : dict
        The loop's settings and the strategy's repr.
    """

    strategy: str
    random_state: object
    n_labeled: np.ndarray
    accuracy: np.ndarray
    n_training: np.ndarray
    fit_time: np.ndarray
    query_time: np.ndarray
    initial_indices: np.ndarray
    queried_indices: list
    diagnostics: list = None
    params: dict = field(default_factory=dict)
    stopping: dict = None

    @property
    def aubc(self):
        """Area under the budget curve, see :func:`aubc`."""
        return aubc(self.n_labeled, self.accuracy)

    @property
    def final_accuracy(self):
        """Test accuracy at the end of the run."""
        return float(self.accuracy[-1])

    @property
    def total_time(self):
        """Seconds spent fitting and querying."""
        return float(np.sum(self.fit_time) + np.sum(self.query_time))

    def labels_to_reach(self, target):
        """Fewest labels at which the test accuracy reached ``target`` (None if never).

        Examples
        --------
        >>> r = SimulationResult("x", 0, np.array([10, 20]), np.array([0.5, 0.8]),
        ...     np.array([10, 20]), np.zeros(2), np.zeros(1), np.arange(10), [])
        >>> r.labels_to_reach(0.7)
        20
        """
        hit = np.flatnonzero(np.asarray(self.accuracy) >= target)
        return int(self.n_labeled[hit[0]]) if hit.size else None

    def to_dict(self):
        """JSON-ready dict."""
        return {
            "strategy": self.strategy,
            "random_state": _jsonable(self.random_state),
            "aubc": self.aubc,
            "final_accuracy": self.final_accuracy,
            "n_labeled": [int(v) for v in self.n_labeled],
            "accuracy": [float(v) for v in self.accuracy],
            "n_training": [int(v) for v in self.n_training],
            "fit_time": [float(v) for v in self.fit_time],
            "query_time": [float(v) for v in self.query_time],
            "initial_indices": [int(v) for v in self.initial_indices],
            "queried_indices": [[int(v) for v in q] for q in self.queried_indices],
            "diagnostics": _jsonable(self.diagnostics),
            "params": _jsonable(self.params),
            "stopping": _jsonable(self.stopping),
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        return cls(
            strategy=d["strategy"],
            random_state=d.get("random_state"),
            n_labeled=np.asarray(d["n_labeled"], dtype=np.int64),
            accuracy=np.asarray(d["accuracy"], dtype=float),
            n_training=np.asarray(d.get("n_training", d["n_labeled"]), dtype=np.int64),
            fit_time=np.asarray(d.get("fit_time", []), dtype=float),
            query_time=np.asarray(d.get("query_time", []), dtype=float),
            initial_indices=np.asarray(d.get("initial_indices", []), dtype=np.int64),
            queried_indices=[np.asarray(q, dtype=np.int64) for q in d.get("queried_indices", [])],
            diagnostics=d.get("diagnostics"),
            params=d.get("params", {}),
            stopping=d.get("stopping"),
        )

    def to_json(self, path=None, **kwargs):
        """Serialise to JSON; also write it to ``path`` when given."""
        return _dump_json(self.to_dict(), path, **kwargs)

    # A single run is a collection of one for tables and plots.
    def table(self, target_accuracy=None):
        """Text table, see :meth:`SimulationResults.table`."""
        return SimulationResults([self]).table(target_accuracy)

    def plot(self, path=None, **kwargs):
        """Plot the learning curve, see :meth:`SimulationResults.plot`."""
        return SimulationResults([self]).plot(path, **kwargs)


class SimulationResults:
    """Runs of several strategies and seeds.

    Iterating gives the :class:`SimulationResult` objects in run order.

    Parameters
    ----------
    results : list of SimulationResult
    target_accuracy : float or None, default=None
        Accuracy used for "labels to reach"; ``None`` means 95 % of the best
        mean final accuracy among the strategies.

    Examples
    --------
    >>> runs = SimulationResults([...])  # doctest: +SKIP
    >>> print(runs.table())  # doctest: +SKIP
    >>> runs.plot("curves.png")  # doctest: +SKIP
    """

    def __init__(self, results, target_accuracy=None):
        self.results = list(results)
        self.target_accuracy = target_accuracy

    def __iter__(self):
        return iter(self.results)

    def __len__(self):
        return len(self.results)

    def __getitem__(self, i):
        return self.results[i]

    def __repr__(self):
        return (
            f"SimulationResults({len(self.results)} runs, strategies={self.strategies}, "
            f"seeds={self.seeds})"
        )

    def __str__(self):
        return self.table()

    @property
    def strategies(self):
        """Strategy names in first-seen order."""
        return list(dict.fromkeys(r.strategy for r in self.results))

    @property
    def seeds(self):
        """Seeds in first-seen order."""
        return list(dict.fromkeys(_jsonable(r.random_state) for r in self.results))

    def by_strategy(self, name):
        """The runs of one strategy."""
        runs = [r for r in self.results if r.strategy == name]
        if not runs:
            raise KeyError(f"No runs for strategy {name!r}; have {self.strategies}.")
        return runs

    def mean_curve(self, name):
        """``(n_labeled, mean accuracy, std accuracy)`` of one strategy over its seeds.

        Curves of unequal label grids are interpolated on the first run's grid.
        """
        runs = self.by_strategy(name)
        grid = np.asarray(runs[0].n_labeled, dtype=float)
        curves = np.stack(
            [np.interp(grid, np.asarray(r.n_labeled, float), r.accuracy) for r in runs]
        )
        return grid.astype(np.int64), curves.mean(axis=0), curves.std(axis=0)

    def resolve_target(self, target_accuracy=None):
        """The accuracy used for "labels to reach" (see the class docstring)."""
        if target_accuracy is None:
            target_accuracy = self.target_accuracy
        if target_accuracy is None:
            if not self.results:
                return None
            best = max(
                np.mean([r.final_accuracy for r in self.by_strategy(s)])
                for s in self.strategies
            )
            # Rounded so the table header reads as a plain percentage.
            target_accuracy = math.floor(0.95 * best * 1000) / 1000
        return float(target_accuracy)

    def labels_to_match(self, name, reference="random"):
        """Labels ``name``'s mean curve needs to reach ``reference``'s mean final accuracy.

        Returns ``(labels, reference_labels)``: the first point of each mean
        curve at or above the reference's mean final accuracy (``labels`` is
        None if ``name`` never gets there). Their difference is the number of
        labels the strategy saves against the reference.
        """
        x_ref, acc_ref, _ = self.mean_curve(reference)
        goal = acc_ref[-1]
        ref_hit = int(x_ref[np.flatnonzero(acc_ref >= goal)[0]])
        x, acc, _ = self.mean_curve(name)
        hit = np.flatnonzero(acc >= goal)
        return (int(x[hit[0]]) if hit.size else None), ref_hit

    def paired_aubc_difference(self, name, reference="random"):
        """Per-seed AUBC differences ``name - reference`` over the seeds both ran.

        Both runs of a seed share the seed set and initial weights, so the
        paired difference is far less noisy than the difference of the means.
        """
        ref = {_seed_key(r.random_state): r.aubc for r in self.by_strategy(reference)}
        return np.array([
            r.aubc - ref[_seed_key(r.random_state)] for r in self.by_strategy(name)
            if _seed_key(r.random_state) in ref
        ])

    def summary(self, target_accuracy=None):
        """One dict per strategy: mean and std of AUBC and final accuracy, labels
        to reach the target, mean query / fit seconds per round; with a
        ``"random"`` run, also the paired AUBC difference to it and the labels
        saved to reach its final accuracy."""
        target = self.resolve_target(target_accuracy)
        has_random = "random" in self.strategies
        rows = []
        for name in self.strategies:
            runs = self.by_strategy(name)
            aubcs = np.array([r.aubc for r in runs])
            finals = np.array([r.final_accuracy for r in runs])
            reach = [r.labels_to_reach(target) for r in runs] if target is not None else []
            reached = [v for v in reach if v is not None]
            qt = np.concatenate([np.asarray(r.query_time, float) for r in runs])
            ft = np.concatenate([np.asarray(r.fit_time, float) for r in runs])
            rows.append(
                {
                    "strategy": name,
                    "n_runs": len(runs),
                    "aubc_mean": float(aubcs.mean()),
                    "aubc_std": float(aubcs.std()),
                    "final_accuracy_mean": float(finals.mean()),
                    "final_accuracy_std": float(finals.std()),
                    "final_n_labeled": int(runs[0].n_labeled[-1]),
                    "target_accuracy": target,
                    "labels_to_target_mean": float(np.mean(reached)) if reached else None,
                    "labels_to_target_std": float(np.std(reached)) if reached else None,
                    "n_reached_target": len(reached),
                    "query_time_mean": float(qt.mean()) if qt.size else 0.0,
                    "fit_time_mean": float(ft.mean()) if ft.size else 0.0,
                    "total_time_mean": float(np.mean([r.total_time for r in runs])),
                }
            )
            if has_random:
                rows[-1].update(self._against_random(name))
        return rows

    def _against_random(self, name):
        diff = self.paired_aubc_difference(name) if name != "random" else np.zeros(0)
        labels, random_labels = self.labels_to_match(name)
        return {
            "aubc_vs_random_mean": float(diff.mean()) if diff.size else None,
            "aubc_vs_random_std": float(diff.std()) if diff.size else None,
            "n_paired_seeds": int(diff.size),
            "labels_to_random_final": labels,
            "labels_saved_vs_random": None if labels is None else random_labels - labels,
        }

    def table(self, target_accuracy=None):
        """Plain-text table: AUBC and final accuracy (mean ± std over seeds),
        labels to reach the target accuracy, mean seconds per query and per fit.

        Labels-to-target shows ``mean (k/n)`` when only ``k`` of ``n`` seeds got
        there, and ``-`` when none did.
        """
        rows = self.summary(target_accuracy)
        if not rows:
            return "(no runs)"
        target = rows[0]["target_accuracy"]
        paired = "aubc_vs_random_mean" in rows[0]
        header = [
            "strategy",
            "AUBC",
            *(["AUBC - random", "labels saved"] if paired else []),
            "final acc",
            f"labels to {100 * target:.1f}%" if target is not None else "labels to target",
            "query s",
            "fit s",
        ]
        lines = []
        for row in rows:
            n = row["n_runs"]
            if row["n_reached_target"] == 0:
                reach = "-"
            else:
                reach = f"{row['labels_to_target_mean']:.0f}"
                if n > 1 and row["n_reached_target"] == n:
                    reach += f" ± {row['labels_to_target_std']:.0f}"
                elif row["n_reached_target"] < n:
                    reach += f" ({row['n_reached_target']}/{n})"
            lines.append(
                [
                    row["strategy"],
                    _pm(row["aubc_mean"], row["aubc_std"], n),
                    *(_vs_random_cells(row) if paired else []),
                    _pm(row["final_accuracy_mean"], row["final_accuracy_std"], n),
                    reach,
                    f"{row['query_time_mean']:.3f}",
                    f"{row['fit_time_mean']:.3f}",
                ]
            )
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

        def fmt(cells):
            first = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
            return "  ".join([first, *rest])

        seeds = len(self.seeds)
        out = [fmt(header), "  ".join("-" * w for w in widths)]
        out += [fmt(line) for line in lines]
        out.append(f"({seeds} seed{'s' if seeds != 1 else ''}; mean ± std over seeds; "
                   "query s / fit s: mean seconds per round)")
        if paired:
            out.append("(AUBC - random: mean ± std of the per-seed differences, same seed sets "
                       "and initial weights; labels saved: fewer labels than random needs to "
                       "reach random's final mean accuracy, on the mean curves, '-' if never "
                       "reached)")
        return "\n".join(out)

    def plot(self, path=None, *, ax=None, title=None, std=True, dpi=120, groups=None):
        """Mean learning curves (test accuracy vs labels), one line per strategy,
        with a ±1 std band over seeds.

        Every strategy gets its own colour and marker. With more than six
        strategies the legend goes outside the axes, and with ``groups`` the
        figure has one panel per group (small multiples), ``"random"`` drawn in
        every panel as a dashed grey reference. Uses matplotlib's Agg canvas
        directly, so no display is needed and the global pyplot backend is left
        alone.

        Parameters
        ----------
        path : str, path-like or None
            Write the figure there (PNG by default, format from the suffix).
        ax : matplotlib Axes or None
            Draw into these axes instead of a new figure (``groups`` is then ignored).
        title : str or None
        std : bool, default=True
            Draw the std band.
        dpi : int, default=120
        groups : dict of str -> str or None, default=None
            Strategy name -> group (e.g. :func:`skal.registry.strategy_family`).
            Used when more than six strategies fall into at least two groups.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = self.strategies
        palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
        markers = "osD^v<>pPX*h"
        style = {
            name: {"color": palette(i % palette.N), "marker": markers[i % len(markers)]}
            for i, name in enumerate(names)
        }
        seeds = len(self.seeds)
        title = title or f"Learning curves (mean over {seeds} seed{'s' if seeds != 1 else ''})"
        panels = None
        if ax is None and groups and len(names) > 6:
            panels = {}
            for name in names:
                panels.setdefault(groups.get(name, "other"), []).append(name)
            if len(panels) < 2:
                panels = None
        if ax is not None:
            fig, axes = ax.figure, {None: (ax, names)}
        elif panels is None:
            fig = Figure(figsize=(9 if len(names) > 6 else 7, 4.5), layout="constrained")
            axes = {None: (fig.add_subplot(1, 1, 1), names)}
        else:
            cols = min(3, len(panels))
            rows = -(-len(panels) // cols)
            fig = Figure(figsize=(4.6 * cols, 3.6 * rows), layout="constrained")
            grid = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
            for extra in grid[len(panels):]:
                extra.set_visible(False)
            axes = {group: (a, members) for a, (group, members) in zip(grid, panels.items())}
        FigureCanvasAgg(fig)
        for group, (a, members) in axes.items():
            if group is not None and "random" in names and "random" not in members:
                x, mean, _ = self.mean_curve("random")
                a.plot(x, mean, color="0.5", linestyle="--", label="random (reference)")
            for name in members:
                x, mean, sd = self.mean_curve(name)
                area = np.mean([r.aubc for r in self.by_strategy(name)])
                a.plot(x, mean, markersize=4, label=f"{name} (AUBC {area:.3f})", **style[name])
                if std and len(self.by_strategy(name)) > 1:
                    a.fill_between(x, mean - sd, mean + sd, color=style[name]["color"],
                                   alpha=0.12)
            a.grid(True, alpha=0.3)
            if group is not None:
                a.set_title(group, fontsize="medium")
                a.legend(loc="lower right", fontsize="x-small")
            elif len(members) > 6:
                a.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
                         borderaxespad=0.0)
            else:
                a.legend(loc="lower right", fontsize="small")
        if group is None:
            a.set_xlabel("labeled samples")
            a.set_ylabel("test accuracy")
            a.set_title(title)
        else:
            fig.supxlabel("labeled samples")
            fig.supylabel("test accuracy")
            fig.suptitle(title)
        if path is not None:
            fig.savefig(path, dpi=dpi)
        return fig

    def to_dict(self, target_accuracy=None):
        """JSON-ready dict: summary rows and every run."""
        from . import __version__

        return {
            "skal_version": __version__,
            "target_accuracy": self.resolve_target(target_accuracy),
            "summary": self.summary(target_accuracy),
            "runs": [r.to_dict() for r in self.results],
        }

    def to_json(self, path=None, target_accuracy=None, **kwargs):
        """Serialise to JSON; also write it to ``path`` when given."""
        return _dump_json(self.to_dict(target_accuracy), path, **kwargs)

    @classmethod
    def from_json(cls, source):
        """Load from a JSON string or file written by :meth:`to_json`."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
        d = json.loads(text)
        runs = d.get("runs", [d])
        return cls([SimulationResult.from_dict(r) for r in runs])


def simulate(
    estimator,
    strategy,
    X,
    y,
    X_test,
    y_test,
    *,
    n_initial,
    batch_size,
    n_queries,
    random_state=None,
    classes=None,
    diagnostics=False,
    diagnostics_max_samples=1000,
    progress=True,
    n_jobs=None,
    learner_params=None,
    stop=None,
    scheduler=None,
):
    """Simulate pool-based active learning with ``y`` as the oracle.

    For every strategy and seed: draw ``n_initial`` random samples of ``X`` as the
    labeled seed set (the rest is the pool), fit a :class:`skal.ActiveLearner`,
    then ``n_queries`` times query ``batch_size`` samples from the pool, reveal
    their labels from ``y``, refit (``teach``) and score on ``(X_test, y_test)``.

    The same seed gives every strategy the same seed set and the same initial
    weights, so strategies are compared on equal terms; within a seed, a
    ``random_state`` left as ``None`` in the estimator or the strategy (nested
    parameters too) is set from the seed, which makes runs reproducible.

    Parameters
    ----------
    estimator : estimator or str
        Unfitted classifier: a skorch net (``skal.nets.cnn_classifier``), a
        Pipeline, or any classifier with ``predict_proba``. Cloned for each run.
        A string names one of skal's training recipes (``"digits"``,
        ``"fashion-mnist"``, see :func:`skal.recipes.training_recipe`), the
        learner the ``skal`` command and the benchmarks use.
    strategy : QueryStrategy or dict of str -> QueryStrategy
        One strategy, or several by name. Cloned for each run.
    X, y : array-like
        The pool with its hidden labels.
    X_test, y_test : array-like
        Held-out data for the learning curve.
    n_initial : int
        Size of the random labeled seed set.
    batch_size : int
        Samples queried per round.
    n_queries : int
        Number of rounds; the final labeled set has
        ``n_initial + batch_size * n_queries`` samples.
    random_state : int, RandomState instance, None, or list of those, default=None
        Seed of a run; a list runs every strategy once per seed.
    classes : array-like or None, default=None
        All class labels; defaults to ``np.unique(y)`` so a seed set that misses
        classes still gives the model every output.
    diagnostics : bool, default=False
        After every fit, compare the embeddings of the labeled set and of the
        pool with :func:`skal.diagnostics.two_sample_test` and
        :func:`skal.diagnostics.labeled_pool_distance` and record them in
        ``result.diagnostics`` (needs a torch model).
    diagnostics_max_samples : int, default=1000
        Random subsample size of the pool (and labeled set) for the diagnostics.
    progress : bool, default=True
        Show a tqdm progress bar.
    n_jobs : int or None, default=None
        Run the (strategy, seed) runs in parallel with joblib (``None`` or 1: in
        this process). Parallel runs give the same results as serial ones.
        Under ``joblib.parallel_backend("dask")`` the runs go to that cluster.
    learner_params : dict or None, default=None
        Extra keyword arguments of :class:`skal.ActiveLearner` (e.g.
        ``{"warm_start": True}``).
    stop : StoppingCriterion, list or dict of them, or None, default=None
        Criteria of :mod:`skal.stopping` updated after every fit (cloned per
        run); each run records in ``result.stopping`` the point where each
        would have stopped. The simulation itself runs to the end, so the stop
        point can be compared with the curve's best
        (:func:`skal.stopping.stop_table`).
    scheduler : str, distributed.Client, Dask cluster or None, default=None
        Run the (strategy, seed) runs as tasks on a Dask cluster (``n_jobs`` is
        then ignored): a scheduler address (``"tcp://host:8786"``), a
        ``distributed.Client`` or a cluster object (``LocalCluster``,
        dask-jobqueue). The data are scattered once; results are identical to a
        local run (at the same torch thread count; Dask workers default to one
        thread). Needs ``pip install skal[dask]``. See :doc:`/dask_grids`.

    Returns
    -------
    SimulationResult or SimulationResults
        One result for one strategy (not a dict) and one seed (not a list);
        otherwise a :class:`SimulationResults` collection with ``table()``,
        ``plot(path)`` and ``to_json()``.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skal.datasets import load_dataset
    >>> from skal.strategies import RandomSampling, UncertaintySampling
    >>> X, y, X_test, y_test = load_dataset("digits")
    >>> X, X_test = X.reshape(len(X), -1), X_test.reshape(len(X_test), -1)
    >>> runs = simulate(
    ...     LogisticRegression(max_iter=200),
    ...     {"random": RandomSampling(), "margin": UncertaintySampling("margin")},
    ...     X, y, X_test, y_test, n_initial=20, batch_size=10, n_queries=5,
    ...     random_state=[0, 1], progress=False)
    >>> print(runs.table())  # doctest: +SKIP
    """
    X, y, X_test, y_test = _check_data(X, y, X_test, y_test)
    n_initial = check_int(n_initial, "n_initial", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    n_queries = check_int(n_queries, "n_queries", 0)
    budget = n_initial + batch_size * n_queries
    if n_initial >= len(X) and n_queries > 0:
        raise ValueError(f"n_initial={n_initial} leaves no pool: X has {len(X)} samples.")
    if budget > len(X):
        raise ValueError(
            f"n_initial + batch_size * n_queries = {n_initial} + {batch_size} * {n_queries} "
            f"= {budget} labels, more than the {len(X)} samples in X."
        )
    single_strategy = not isinstance(strategy, dict)
    strategies = _check_strategies(strategy)
    single_seed = not isinstance(random_state, (list, tuple, np.ndarray))
    seeds = [random_state] if single_seed else list(random_state)
    if not seeds:
        raise ValueError("random_state is an empty list; give at least one seed.")
    classes = np.unique(y) if classes is None else np.unique(np.asarray(classes))
    if isinstance(estimator, str):
        from .recipes import training_recipe

        estimator = training_recipe(estimator, n_classes=int(classes.max()) + 1)
    missing = np.setdiff1d(np.unique(y_test), classes)
    if missing.size:
        raise ValueError(f"y_test has labels {missing.tolist()} that are not in classes.")
    if diagnostics:
        check_int(diagnostics_max_samples, "diagnostics_max_samples", 2)
    from .stopping import check_criteria

    stop = check_criteria(stop)
    if scheduler is not None:
        from ._dispatch import check_scheduler

        check_scheduler(scheduler)
    config = {
        "n_initial": n_initial,
        "batch_size": batch_size,
        "n_queries": n_queries,
        "n_pool": len(X),
        "n_test": len(X_test),
        "estimator": _short_repr(estimator),
    }

    # Seeds are resolved once so that every strategy sees the same seed set and
    # the same derived sub-seeds.
    plans = [_plan_seed(seed, len(X), n_initial) for seed in seeds]
    jobs = [(name, strat, plan) for plan in plans for name, strat in strategies.items()]
    common = {
        "estimator": estimator,
        "X": X,
        "y": y,
        "X_test": X_test,
        "y_test": y_test,
        "batch_size": batch_size,
        "n_queries": n_queries,
        "classes": classes,
        "diagnostics": diagnostics,
        "diagnostics_max_samples": diagnostics_max_samples,
        "learner_params": dict(learner_params or {}),
        "config": config,
        "stop": stop,
    }

    if scheduler is not None:
        from ._dispatch import run_simulation_jobs

        results = run_simulation_jobs(_run_one, jobs, common, scheduler, progress)
    elif n_jobs is None or n_jobs == 1:
        bar = _progress_bar(len(jobs) * (n_queries + 1), progress)
        try:
            results = [
                _run_one(name, strat, plan, bar=bar, **common) for name, strat, plan in jobs
            ]
        finally:
            if bar is not None:
                bar.close()
    else:
        from joblib import Parallel, delayed

        bar = _progress_bar(len(jobs), progress, unit="run")
        results = []
        try:
            for res in Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(_run_one)(name, strat, plan, bar=None, **common)
                for name, strat, plan in jobs
            ):
                results.append(res)
                if bar is not None:
                    bar.set_postfix_str(f"{res.strategy} seed={res.random_state}", refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    if single_strategy and single_seed:
        return results[0]
    return SimulationResults(results)


# ---------------------------------------------------------------------------
# The loop


def _run_one(
    name,
    strategy,
    plan,
    *,
    estimator,
    X,
    y,
    X_test,
    y_test,
    batch_size,
    n_queries,
    classes,
    diagnostics,
    diagnostics_max_samples,
    learner_params,
    config,
    bar,
    stop=None,
):
    from .learner import ActiveLearner
    from .stopping import _Recorder

    seed, initial, sub_seeds = plan
    est = _seed_unset(clone(estimator), sub_seeds["estimator"])
    # Strategies get RandomState instances, not ints, so that successive
    # queries of one run draw different numbers.
    strat = _seed_unset(clone(strategy), sub_seeds["strategy"], as_generator=True)
    learner = ActiveLearner(
        est, strat, classes=classes, random_state=sub_seeds["learner"], **learner_params
    )
    diag_rng = np.random.RandomState(sub_seeds["diagnostics"])
    recorder = _Recorder(stop) if stop else None

    pool = np.setdiff1d(np.arange(len(X)), initial)  # indices into X, kept sorted
    X_pool = X[pool]
    n_labeled = [len(initial)]
    n_training = []
    accuracy = []
    fit_time = []
    query_time = []
    queried = []
    diag = [] if diagnostics else None

    if bar is not None:
        bar.set_postfix_str(f"{name} seed={_jsonable(seed)}", refresh=False)

    t0 = time.perf_counter()
    learner.fit(X[initial], y[initial], X_unlabeled=X_pool)
    fit_time.append(time.perf_counter() - t0)
    accuracy.append(float(learner.score(X_test, y_test)))
    n_training.append(_n_training(learner))
    if recorder is not None:
        recorder.update(learner, X_pool, 0, n_labeled[-1], accuracy[-1])
    if diagnostics:
        diag.append(_diagnostics(learner, X, initial, X_pool, diagnostics_max_samples, diag_rng))
    if bar is not None:
        bar.update(1)

    labeled = np.asarray(initial)
    for _ in range(n_queries):
        t0 = time.perf_counter()
        idx = learner.query(X_pool, n_instances=batch_size)
        query_time.append(time.perf_counter() - t0)
        idx = _check_query(idx, len(X_pool), batch_size, name)
        chosen = pool[idx]

        t0 = time.perf_counter()
        learner.teach(X[chosen], y[chosen])
        fit_time.append(time.perf_counter() - t0)

        queried.append(chosen.astype(np.int64))
        labeled = np.concatenate([labeled, chosen])
        keep = np.ones(len(pool), dtype=bool)
        keep[idx] = False
        pool = pool[keep]
        X_pool = X_pool[keep]
        n_labeled.append(len(labeled))
        accuracy.append(float(learner.score(X_test, y_test)))
        n_training.append(_n_training(learner))
        if recorder is not None:
            recorder.update(learner, X_pool, len(accuracy) - 1, n_labeled[-1], accuracy[-1])
        if diagnostics:
            diag.append(_diagnostics(learner, X, labeled, X_pool, diagnostics_max_samples, diag_rng))
        if bar is not None:
            bar.set_postfix_str(f"{name} seed={_jsonable(seed)} acc={accuracy[-1]:.3f}", refresh=False)
            bar.update(1)

    return SimulationResult(
        strategy=name,
        random_state=seed,
        n_labeled=np.asarray(n_labeled, dtype=np.int64),
        accuracy=np.asarray(accuracy, dtype=float),
        n_training=np.asarray(n_training, dtype=np.int64),
        fit_time=np.asarray(fit_time, dtype=float),
        query_time=np.asarray(query_time, dtype=float),
        initial_indices=np.asarray(initial, dtype=np.int64),
        queried_indices=queried,
        diagnostics=diag,
        params={**config, "strategy": _short_repr(strategy)},
        stopping=recorder.result() if recorder is not None else None,
    )


def _plan_seed(seed, n, n_initial):
    """Seed set and sub-seeds of one run, drawn from the run's seed."""
    if seed is None or isinstance(seed, numbers.Integral):
        if seed is not None and not 0 <= int(seed) <= 2**32 - 1:
            raise ValueError(f"random_state must be in [0, 2**32 - 1], got {seed}.")
        # A fresh generator for None: never the global numpy RNG.
        rng = np.random.RandomState(None if seed is None else int(seed))
        label = None if seed is None else int(seed)
    elif isinstance(seed, np.random.RandomState):
        rng = seed
        label = None
    else:
        raise ValueError(
            f"random_state must be an int, a RandomState, None or a list of those, got {seed!r}."
        )
    initial = np.sort(rng.choice(n, size=n_initial, replace=False)).astype(np.int64)
    sub_seeds = {k: int(rng.randint(_MAX_SEED)) for k in ("estimator", "strategy", "learner", "diagnostics")}
    return label, initial, sub_seeds


def _seed_unset(obj, seed, as_generator=False):
    """Set every ``random_state`` parameter left as None (nested ones too)."""
    if not hasattr(obj, "get_params"):
        return obj
    try:
        params = obj.get_params(deep=True)
    except Exception:  # not every third-party estimator supports deep params
        return obj
    keys = [
        key
        for key, value in params.items()
        if (key == "random_state" or key.endswith("__random_state")) and value is None
    ]
    unset = {
        key: np.random.RandomState((seed + i) % _MAX_SEED) if as_generator else (seed + i) % _MAX_SEED
        for i, key in enumerate(sorted(keys))
    }
    if unset:
        obj.set_params(**unset)
    return obj


def _n_training(learner):
    """Samples the model was trained on: the labeled set plus what the
    strategy's ``augment`` added (``ActiveLearner.X_extra_``)."""
    n = len(learner.X_training)
    extra = getattr(learner, "X_extra_", None)
    return int(n + (len(extra) if extra is not None else 0))


def _check_query(idx, n_pool, batch_size, name):
    idx = np.asarray(idx)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise RuntimeError(f"Strategy {name!r} returned {idx!r}, not a 1-D int array.")
    if idx.size == 0 or idx.size > batch_size:
        raise RuntimeError(
            f"Strategy {name!r} returned {idx.size} indices for a batch of {batch_size}."
        )
    if idx.min() < 0 or idx.max() >= n_pool:
        raise RuntimeError(f"Strategy {name!r} returned indices outside the pool of {n_pool}.")
    if np.unique(idx).size != idx.size:
        raise RuntimeError(f"Strategy {name!r} returned duplicate indices.")
    return idx.astype(np.int64)


def _diagnostics(learner, X, labeled, X_pool, max_samples, rng):
    """Two-sample test and W2 between labeled-set and pool embeddings."""
    from . import diagnostics as diag_mod
    from .nets import embed

    def sample(A):
        if len(A) > max_samples:
            A = A[np.sort(rng.choice(len(A), max_samples, replace=False))]
        return A

    X_lab = sample(X[labeled])
    X_rest = sample(X_pool)
    record = {"n_labeled": len(labeled)}
    if len(X_rest) < 2 or len(X_lab) < 2:
        return record
    E_lab = embed(learner, X_lab)
    E_pool = embed(learner, X_rest)
    seed = int(rng.randint(_MAX_SEED))
    record["two_sample_test"] = _to_record(
        _call_with_seed(diag_mod.two_sample_test, E_lab, E_pool, seed)
    )
    record["labeled_pool_distance"] = _to_record(
        _call_with_seed(diag_mod.labeled_pool_distance, E_lab, E_pool, seed)
    )
    return record


def _call_with_seed(fn, A, B, seed):
    import inspect

    try:
        takes_seed = "random_state" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_seed = False
    return fn(A, B, random_state=seed) if takes_seed else fn(A, B)


def _to_record(value):
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif hasattr(value, "_asdict"):
        value = value._asdict()
    elif hasattr(value, "items"):
        value = dict(value.items())
    return _jsonable(value)


# ---------------------------------------------------------------------------
# Validation and small helpers


def _as_array(A, name):
    if hasattr(A, "detach"):  # torch tensor
        A = A.detach().cpu().numpy()
    A = np.asarray(A)
    if A.ndim == 0 or A.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    return A


def _check_data(X, y, X_test, y_test):
    X = _as_array(X, "X")
    y = _as_array(y, "y")
    X_test = _as_array(X_test, "X_test")
    y_test = _as_array(y_test, "y_test")
    if y.ndim != 1 or y_test.ndim != 1:
        raise ValueError("y and y_test must be 1-D label arrays.")
    if len(X) != len(y):
        raise ValueError(f"X and y have different lengths: {len(X)} != {len(y)}.")
    if len(X_test) != len(y_test):
        raise ValueError(
            f"X_test and y_test have different lengths: {len(X_test)} != {len(y_test)}."
        )
    if X.shape[1:] != X_test.shape[1:]:
        raise ValueError(
            f"X and X_test have different sample shapes: {X.shape[1:]} != {X_test.shape[1:]}."
        )
    for A, name in ((X, "X"), (X_test, "X_test")):
        if A.dtype.kind in "fc" and not np.isfinite(A).all():
            raise ValueError(f"{name} contains NaN or infinite values.")
    if np.any(y == -1):
        raise ValueError("y holds -1 (unlabeled) entries; simulate needs every label.")
    return X, y, X_test, y_test


def _check_strategies(strategy):
    if isinstance(strategy, dict):
        if not strategy:
            raise ValueError("strategy is an empty dict; give at least one strategy.")
        items = list(strategy.items())
    else:
        items = [(_strategy_name(strategy), strategy)]
    out = {}
    for name, strat in items:
        if not isinstance(name, str):
            raise ValueError(f"Strategy names must be strings, got {name!r}.")
        if not (hasattr(strat, "query") or callable(strat)):
            raise ValueError(
                f"Strategy {name!r} is {strat!r}, not a query strategy (it has no query method)."
            )
        out[name] = strat
    return out


def _strategy_name(strategy):
    name = type(strategy).__name__
    measure = getattr(strategy, "measure", None)
    if isinstance(measure, str):
        name = f"{name}({measure})"
    return name


def _seed_key(seed):
    return json.dumps(_jsonable(seed), sort_keys=True, default=str)


def _vs_random_cells(row):
    if row["strategy"] == "random":
        return ["-", "-"]
    mean, std, n = row["aubc_vs_random_mean"], row["aubc_vs_random_std"], row["n_paired_seeds"]
    diff = "-" if mean is None else (f"{mean:+.3f}" + (f" ± {std:.3f}" if n > 1 else ""))
    saved = row["labels_saved_vs_random"]
    return [diff, "-" if saved is None else f"{saved:+d}"]


def _pm(mean, std, n):
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def _short_repr(obj, limit=300):
    try:
        text = repr(obj)
    except Exception:
        text = type(obj).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _progress_bar(total, enabled, unit="round"):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but a bar is not worth failing for
        warnings.warn("tqdm is not installed; no progress bar.", stacklevel=3)
        return None
    return tqdm(total=total, unit=unit, desc="simulate", leave=False, dynamic_ncols=True)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return _short_repr(value)


def _dump_json(obj, path, **kwargs):
    kwargs.setdefault("indent", 2)
    text = json.dumps(obj, **kwargs)
    if path is not None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    return text
