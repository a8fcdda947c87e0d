"""The label-efficiency runner's (strategy, seed) runs on a Dask cluster.

``python -m benchmarks.label_efficiency --scheduler tcp://host:8786`` (any
``distributed`` scheduler) or ``--dask-workers N`` (a local cluster of N
one-thread worker processes) sends every unfinished run to the cluster as one
task. The client writes each run's JSON as soon as it comes back, exactly as a
local run does, so an interrupted cluster run resumes the same way (finished
JSONs are skipped), and a run's payload is the one a local run at the same
torch thread count writes. Workers import this module, so they need this
checkout on their ``sys.path`` (a LocalCluster inherits it).
"""

import sys
import traceback

__all__ = ["check_cluster_args", "run_on_cluster"]


def check_cluster_args(args):
    """The error message for bad ``--scheduler`` / ``--dask-workers``, or None."""
    if args.scheduler and args.dask_workers:
        return "give --scheduler or --dask-workers, not both"
    if args.dask_workers is not None and args.dask_workers < 1:
        return f"--dask-workers must be at least 1, got {args.dask_workers}"
    return None


def _run_job(dataset, name, seed, kwargs, threads):
    from benchmarks import label_efficiency as le

    with le._torch_threads(threads):
        return le.run_one(dataset, name, seed, **kwargs)


def _local_cluster(n_workers):
    from distributed import LocalCluster

    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                        dashboard_address=None)


def run_on_cluster(args, jobs, device, results_dir):
    """Run the unfinished ``(strategy, seed)`` jobs on the cluster; return the failures."""
    from benchmarks import label_efficiency as le
    from skal._dispatch import iter_on_cluster

    dataset = args.dataset
    pending = []
    for name, seed in jobs:
        path = le.result_path(results_dir, dataset, name, seed, args.quick)
        config = le._config(dataset, name, le.make_strategy(name), args.quick, args.epochs,
                            args.waal_epochs)
        if not args.force and le._finished(path, le._config_key(config)):
            print(f"  {name} seed {seed}: done already ({path.name})", flush=True)
        else:
            pending.append((name, seed, path))
    if not pending:
        return 0
    kwargs = {"quick": args.quick, "data_path": args.data_path, "device": device,
              "epochs": args.epochs, "waal_epochs": args.waal_epochs, "progress": False}
    cluster = _local_cluster(args.dask_workers) if args.dask_workers else None
    scheduler = cluster.scheduler_address if cluster is not None else args.scheduler
    where = f"{args.dask_workers} local workers" if cluster is not None else args.scheduler
    print(f"  {len(pending)} runs on a Dask cluster ({where})", flush=True)
    failures = 0
    try:
        tasks = [(dataset, name, int(seed), kwargs, args.threads) for name, seed, _ in pending]
        for i, future in iter_on_cluster(_run_job, tasks, scheduler=scheduler):
            name, seed, path = pending[i]
            try:
                payload = future.result()
            except Exception:  # one broken run must not lose the others
                failures += 1
                print(f"  {name} seed {seed}: FAILED\n{traceback.format_exc()}",
                      file=sys.stderr, flush=True)
                continue
            le._write_json(path, payload)
            print(f"  {name} seed {seed}: AUBC {payload['aubc']:.3f}, final accuracy "
                  f"{payload['final_accuracy']:.3f} ({path.name})", flush=True)
    finally:
        if cluster is not None:
            cluster.close()
    return failures
