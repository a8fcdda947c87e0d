"""Simulated active learning: the labels are known, the oracle is ``y``.

:func:`simulate` runs the pool-based loop (fit on a random seed set, query a batch,
reveal its labels, refit, score on a test set) for one or several strategies and
seeds, and returns learning curves with their AUBC (area under the budget curve),
query and fit times. :class:`SimulationResults` turns many runs into a table, a
plot of mean learning curves, and JSON.
"""

import numbers
import time
import warnings

import numpy as np
from sklearn.base import clone

from ._simulation_results import (
    SimulationResult,
    SimulationResults,
    _jsonable,
    _short_repr,
    aubc,
)
from .base import check_int, user_stacklevel

__all__ = [
    "SimulationResult",
    "SimulationResults",
    "aubc",
    "simulate",
]

_MAX_SEED = 2**31 - 1


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
            diag.append(_diagnostics(learner, X, labeled, X_pool, diagnostics_max_samples,
                                     diag_rng))
        if bar is not None:
            bar.set_postfix_str(f"{name} seed={_jsonable(seed)} acc={accuracy[-1]:.3f}",
                                refresh=False)
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
    sub_seeds = {k: int(rng.randint(_MAX_SEED))
                 for k in ("estimator", "strategy", "learner", "diagnostics")}
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
        key: (np.random.RandomState((seed + i) % _MAX_SEED) if as_generator
              else (seed + i) % _MAX_SEED)
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


def _progress_bar(total, enabled, unit="round"):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but a bar is not worth failing for
        warnings.warn("tqdm is not installed; no progress bar.", stacklevel=user_stacklevel())
        return None
    return tqdm(total=total, unit=unit, desc="simulate", leave=False, dynamic_ncols=True)
