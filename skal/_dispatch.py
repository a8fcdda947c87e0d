"""Independent runs (simulate's (strategy, seed) pairs) dispatched to a Dask cluster.

:func:`skal.simulate` (``scheduler=``) and the label-efficiency benchmark runner
(``--scheduler`` / ``--dask-workers``) use it. The shared inputs (data, estimator)
are scattered to the cluster once; each run is one task; results come back in run
order, so a cluster run returns what a local run returns. A run's outcome depends
only on its arguments (every seed is drawn before dispatch), not on the worker.
dask is imported only here, inside the functions.
"""

import contextlib

__all__ = [
    "check_scheduler",
    "connect",
    "iter_on_cluster",
    "map_on_cluster",
    "run_simulation_jobs",
]


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Running on a Dask cluster needs distributed: install the extra with "
            "`pip install skal[dask]`."
        ) from exc
    return distributed


def check_scheduler(scheduler):
    """Raise a TypeError unless ``scheduler`` is something :func:`connect` takes.

    Accepted: a scheduler address (``"tcp://host:8786"``), a ``distributed.Client``,
    or a cluster object with a ``scheduler_address`` (``LocalCluster``,
    dask-jobqueue's clusters, ...). Checked without importing dask.
    """
    if isinstance(scheduler, str):
        if not scheduler.strip():
            raise TypeError("scheduler is an empty string; give an address like 'tcp://host:8786'.")
        return
    module = type(scheduler).__module__.split(".")[0]
    if module in ("distributed", "dask_jobqueue", "dask_kubernetes", "dask_cloudprovider") or (
        hasattr(scheduler, "scheduler_address")
    ):
        return
    raise TypeError(
        "scheduler must be a scheduler address (str), a distributed.Client or a Dask "
        f"cluster object, got {type(scheduler).__name__}: {scheduler!r}."
    )


@contextlib.contextmanager
def connect(scheduler):
    """A ``distributed.Client`` for ``scheduler``; one made here is closed on exit."""
    check_scheduler(scheduler)
    distributed = _import_distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    client = distributed.Client(scheduler, set_as_default=False)
    try:
        yield client
    finally:
        client.close()


def _call(fn, job, shared):
    return fn(*job, **shared)


def iter_on_cluster(fn, jobs, *, shared=None, scheduler):
    """Submit ``fn(*job, **shared)`` for every job; yield ``(i, future)`` as runs finish.

    ``shared`` (a dict of keyword arguments common to all runs, e.g. the data) is
    scattered once instead of being sent with every task. ``future.result()``
    gives the run's return value or raises its exception. Runs still pending when
    the generator is closed are cancelled.

    Parameters
    ----------
    fn : callable
        Importable by the workers (a module-level function).
    jobs : list of tuple
        Positional arguments of each run.
    shared : dict or None
        Keyword arguments of every run.
    scheduler : str, distributed.Client or cluster
        See :func:`check_scheduler`.
    """
    distributed = _import_distributed()
    with connect(scheduler) as client:
        [shared_future] = client.scatter([dict(shared or {})])
        futures = [
            client.submit(_call, fn, tuple(job), shared_future, pure=False) for job in jobs
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in distributed.as_completed(futures, loop=client.loop):
                yield index[future.key], future
        finally:
            client.cancel(futures + [shared_future])


def map_on_cluster(fn, jobs, *, shared=None, scheduler, on_result=None):
    """Results of ``fn(*job, **shared)`` for every job, in job order.

    The first run that fails raises its exception here (the others are
    cancelled). ``on_result(result)`` is called as each run finishes (a
    progress bar).

    Examples
    --------
    >>> from distributed import LocalCluster
    >>> def scaled(x, *, factor):
    ...     return x * factor
    >>> with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
    ...     map_on_cluster(scaled, [(1,), (2,)], shared={"factor": 10}, scheduler=cluster)
    [10, 20]
    """
    results = [None] * len(jobs)
    for i, future in iter_on_cluster(fn, jobs, shared=shared, scheduler=scheduler):
        results[i] = future.result()
        if on_result is not None:
            on_result(results[i])
    return results


def run_simulation_jobs(run_one, jobs, common, scheduler, progress):
    """:func:`skal.simulate`'s runs on a cluster, with a progress bar of finished runs."""
    from .simulation import _jsonable, _progress_bar

    bar = _progress_bar(len(jobs), progress, unit="run")

    def tick(result):
        bar.set_postfix_str(f"{result.strategy} seed={_jsonable(result.random_state)}",
                            refresh=False)
        bar.update(1)

    try:
        return map_on_cluster(run_one, jobs, shared={**common, "bar": None}, scheduler=scheduler,
                              on_result=None if bar is None else tick)
    finally:
        if bar is not None:
            bar.close()
