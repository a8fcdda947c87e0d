"""Results of simulated active learning: learning curves, AUBC, tables, plots and JSON.

:class:`SimulationResult` is one run (one strategy, one seed) of
:func:`skal.simulate`; :class:`SimulationResults` turns many runs into a table,
a plot of mean learning curves, and JSON. Both are importable from
:mod:`skal.simulation`.
"""

import json
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

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
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=False)]
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
            # the grid may hold more axes than panels (the extras are hidden above)
            axes = {group: (a, members)
                    for a, (group, members) in zip(grid, panels.items(), strict=False)}
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
