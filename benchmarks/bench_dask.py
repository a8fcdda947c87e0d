"""Dask pools against one process: wall time and memory of entropy and k-center queries.

Two pools are written to ``.npy`` files in a scratch folder:

- ``synthetic``: 1,000,000 x 84 float32 features (a 10-class Gaussian mixture,
  written chunk by chunk) and an MLP head (84-64-10 skorch net) trained on 1,000
  labeled rows;
- ``fashion``: 160,000 Fashion-MNIST images, built by ``bench_scaling.make_pool``
  (the training images less 1,000 labeled ones, then flipped and shifted copies),
  and the runner's LeNet (``training_recipe("fashion-mnist")``) trained on those
  1,000 labels.

For each pool, one child process loads the pool into memory (``np.load``) and runs
every query on the NumPy array; another opens it lazily with
:func:`skal.datasets.open_npy` and runs the same queries with a ``distributed.Client``
on a ``LocalCluster`` of 2 worker processes with 1 thread each, so the workers read
the chunks from the file and the client never holds the pool. Each query records
its wall time, the client's peak RSS during the query (the kernel's high-water mark,
reset before it) and its increase over the RSS before, tracemalloc's peak in a
second, untimed run (numpy and Python allocations), the workers' peak RSS during the
query (dask mode), and the queried indices; the script then checks that the Dask
indices are the NumPy ones.

Results go to ``benchmarks/results/dask.json`` (``--quick``: ``dask_quick.json``)
after each pool; a pool already there with the same settings is skipped
(``--force`` reruns it), so an interrupted run resumes pool by pool. The table is
printed as Markdown.

    python benchmarks/bench_dask.py                    # both pools, full sizes
    python benchmarks/bench_dask.py --pools synthetic  # one pool
    python benchmarks/bench_dask.py --quick            # smoke run: tiny sizes, 1 epoch
    python benchmarks/bench_dask.py table              # the table from the JSON

On a 2-core machine two workers cannot beat one process: the point is the client's
memory and identical queries. Timings need a quiet machine.
"""

import argparse
import hashlib
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

# Workers import it too (client.run): bench_dask's child puts the repository on PYTHONPATH.
from benchmarks._memory import reset_peak_rss as _reset_peak  # noqa: E402
from benchmarks._memory import status_mib as _status_mib  # noqa: E402
from benchmarks.bench_scaling import make_pool  # noqa: E402

__all__ = ["FULL", "QUICK", "main", "make_table", "mlp_classifier", "write_synthetic_pool"]

RESULTS = _ROOT / "benchmarks" / "results" / "dask.json"
QUICK_RESULTS = _ROOT / "benchmarks" / "results" / "dask_quick.json"
POOLS = ("synthetic", "fashion")
STRATEGIES = ("entropy", "kcenter")
MODES = ("numpy", "dask")
N_FEATURES, N_CLASSES = 84, 10
FULL = {
    "synthetic": {"n_pool": 1_000_000, "chunk_rows": 50_000, "n_labeled": 1000, "epochs": 20},
    "fashion": {"n_pool": 160_000, "chunk_rows": 10_000, "n_labeled": 1000, "epochs": 10},
    "batch": 100, "n_workers": 2,
}
QUICK = {
    "synthetic": {"n_pool": 20_000, "chunk_rows": 2_500, "n_labeled": 200, "epochs": 2},
    "fashion": {"n_pool": 3_000, "chunk_rows": 500, "n_labeled": 100, "epochs": 1},
    "batch": 20, "n_workers": 2,
}
_FORMAT = 1


# ---------------------------------------------------------------------------
# Pools and models


def _mixture_rows(n, seed, centers):
    rng = np.random.RandomState(seed)
    y = rng.randint(N_CLASSES, size=n)
    X = centers[y] + rng.normal(size=(n, N_FEATURES))
    return X.astype(np.float32), y.astype(np.int64)


def _centers():
    return 0.3 * np.random.RandomState(0).normal(size=(N_CLASSES, N_FEATURES))


def write_synthetic_pool(path, n):
    """Write ``n`` x 84 float32 mixture rows to the ``.npy`` file ``path``, block by block.

    Rows ``[100_000 * b, 100_000 * (b + 1))`` are drawn from seed ``1000 + b``, so at
    most one block is in memory and a smaller pool is the start of a larger one.
    """
    block = 100_000
    centers = _centers()
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, N_FEATURES))
    for b, start in enumerate(range(0, n, block)):
        stop = min(n, start + block)
        # A whole block is drawn even when fewer rows are kept: same rows, any n.
        out[start:stop] = _mixture_rows(block, 1000 + b, centers)[0][:stop - start]
    out.flush()
    del out
    return Path(path)


def _synthetic_labeled(n):
    return _mixture_rows(n, 1, _centers())


def mlp_classifier(*, epochs, random_state=0):
    """The synthetic pool's MLP head: a skorch net 84 -> 64 (ReLU) -> 10 logits.

    The module is built from torch's own layers (so it unpickles on any worker)
    with seeded weights.
    """
    import torch
    from torch import nn

    from skal.nets import NeuralNetClassifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        module = nn.Sequential(nn.Linear(N_FEATURES, 64), nn.ReLU(), nn.Linear(64, N_CLASSES))
    return NeuralNetClassifier(module, max_epochs=epochs, lr=1e-3, batch_size=64,
                               optimizer=torch.optim.Adam, device="cpu",
                               random_state=random_state, verbose=0)


def _prepare_pool(name, settings, folder, data_path, quick):
    """Write the pool to ``folder`` and train its model; returns the model file and facts."""
    pool_path = Path(folder) / f"{name}.npy"
    start = time.perf_counter()
    if name == "synthetic":
        write_synthetic_pool(pool_path, settings["n_pool"])
        X_lab, y_lab = _synthetic_labeled(settings["n_labeled"])
        net = mlp_classifier(epochs=settings["epochs"])
        source = "synthetic"
    else:
        from skal.recipes import training_recipe

        X_pool, X_lab, y_lab, source = make_pool(settings["n_pool"],
                                                 n_labeled=settings["n_labeled"],
                                                 data_path=data_path, quick=quick)
        np.save(pool_path, X_pool)
        del X_pool
        net = training_recipe("fashion-mnist", max_epochs=settings["epochs"], device="cpu",
                              random_state=0)
    prep_seconds = time.perf_counter() - start
    start = time.perf_counter()
    net.fit(X_lab, y_lab)
    train_seconds = time.perf_counter() - start
    model_path = Path(folder) / f"{name}_model.pkl"
    with open(model_path, "wb") as fh:
        pickle.dump({"net": net, "X_labeled": X_lab, "y_labeled": y_lab}, fh)
    return model_path, pool_path, {"data": source, "prep_seconds": prep_seconds,
                                   "train_seconds": train_seconds,
                                   "pool_mib": pool_path.stat().st_size / 2**20}


def _strategy(name):
    import skal

    if name == "entropy":
        return skal.UncertaintySampling(measure="entropy")
    if name == "kcenter":
        return skal.CoreSet(random_state=0)
    raise ValueError(f"unknown strategy {name!r}; choose from {STRATEGIES}.")


# ---------------------------------------------------------------------------
# One child: every query of one pool in one mode




def _worker_memory():
    return {"rss_mib": _status_mib("VmRSS"), "peak_rss_mib": _status_mib("VmHWM")}


def _warm_worker():
    # Imports and torch's thread setup happen once per worker, not in a timed query.
    import torch  # noqa: F401

    import skal.distributed  # noqa: F401
    import skal.strategies  # noqa: F401

    return os.getpid()


def _child(spec):
    import torch

    torch.set_num_threads(spec["threads"])
    with open(spec["model"], "rb") as fh:
        model = pickle.load(fh)
    net, X_lab, y_lab = model["net"], model["X_labeled"], model["y_labeled"]
    client = cluster = None
    rss_start = _status_mib("VmRSS")
    if spec["mode"] == "numpy":
        X_pool = np.load(spec["pool"])
    else:
        from distributed import Client, LocalCluster

        from skal.datasets import open_npy

        cluster = LocalCluster(n_workers=spec["n_workers"], threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
        client.run(_warm_worker)
        X_pool = open_npy(spec["pool"], chunks=spec["chunk_rows"])
    rss_with_pool = _status_mib("VmRSS")
    records = {}
    try:
        for name in spec["strategies"]:
            records[name] = _measure(name, net, X_pool, X_lab, y_lab, spec, client)
            records[name].update(rss_start_mib=rss_start, rss_with_pool_mib=rss_with_pool)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return records


def _measure(name, net, X_pool, X_lab, y_lab, spec, client):
    def query():
        return _strategy(name).query(net, X_pool, spec["batch"], X_labeled=X_lab,
                                     y_labeled=y_lab)

    if client is not None:
        client.run(_reset_peak)
    rss_before = _status_mib("VmRSS")
    scope = "query" if _reset_peak() else "process"
    start = time.perf_counter()
    idx = query()
    wall = time.perf_counter() - start
    peak = _status_mib("VmHWM")
    record = {
        "status": "complete", "query_seconds": wall, "indices": [int(i) for i in idx],
        "client_rss_before_mib": rss_before, "client_peak_rss_mib": peak,
        "client_extra_peak_rss_mib": None if peak is None or rss_before is None
        else peak - rss_before,
        "peak_scope": scope,
    }
    if client is not None:
        workers = client.run(_worker_memory)
        record["workers"] = {str(k): v for k, v in workers.items()}
        peaks = [w["peak_rss_mib"] for w in workers.values() if w["peak_rss_mib"] is not None]
        record["workers_peak_rss_mib_max"] = max(peaks) if peaks else None
        record["workers_peak_rss_mib_sum"] = sum(peaks) if peaks else None
    if spec["tracemalloc"]:
        tracemalloc.start()
        try:
            again = query()
            record["client_tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
        record["repeat_identical"] = bool(np.array_equal(again, idx))
    return record


# ---------------------------------------------------------------------------
# The parent


def load_results(path):
    """The results JSON (an empty one if the file is missing or unreadable)."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(payload.get("pools"), dict):
            return payload
    except (OSError, ValueError, AttributeError):
        pass
    return {"benchmark": "dask", "format": _FORMAT, "pools": {}}


def _config_key(config):
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def _pool_config(name, settings, args):
    return {"format": _FORMAT, "pool": name, **settings[name], "batch": settings["batch"],
            "n_workers": settings["n_workers"], "strategies": list(args.strategies),
            "threads": args.threads, "quick": args.quick, "tracemalloc": not args.no_tracemalloc}


def _run_child(spec, folder, timeout):
    spec_path = Path(folder) / f"spec_{spec['name']}_{spec['mode']}.json"
    out_path = spec_path.with_name(spec_path.stem + "_out.json")
    spec_path.write_text(json.dumps({**spec, "out": str(out_path)}))
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_child",
                               str(spec_path)], cwd=_ROOT, env=env, timeout=timeout,
                              capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"more than {timeout:.0f} s"}
    if proc.returncode != 0 or not out_path.exists():
        return {"status": "failed", "error": proc.stderr[-3000:]}
    return json.loads(out_path.read_text())


def _write(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(tmp, path)  # a killed run never leaves half a JSON


def _machine():
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def run(args):
    """Run the pending pools (both modes each) and return the results payload."""
    settings = QUICK if args.quick else FULL
    results = Path(args.results)
    payload = load_results(results)
    payload.setdefault("pools", {})
    payload["machine"] = _machine()
    for name in args.pools:
        config = _pool_config(name, settings, args)
        key = _config_key(config)
        done = payload["pools"].get(name, {})
        if not args.force and done.get("config_key") == key and done.get("status") == "complete":
            print(f"{name}: done already ({results.name})", flush=True)
            continue
        with tempfile.TemporaryDirectory(prefix=f"skal_bench_dask_{name}_",
                                         dir=args.workdir) as folder:
            print(f"{name}: writing the pool and training the model", flush=True)
            model_path, pool_path, facts = _prepare_pool(name, settings[name], folder,
                                                         args.data, args.quick)
            entry = {"config": config, "config_key": key, **facts}
            for mode in MODES:
                spec = {"name": name, "mode": mode, "model": str(model_path),
                        "pool": str(pool_path), "strategies": list(args.strategies),
                        "batch": settings["batch"], "chunk_rows": settings[name]["chunk_rows"],
                        "n_workers": settings["n_workers"], "threads": args.threads,
                        "tracemalloc": not args.no_tracemalloc}
                print(f"{name}: {mode} queries", flush=True)
                entry[mode] = _run_child(spec, folder, args.timeout)
        entry["identical"] = {
            s: bool(entry["numpy"].get(s, {}).get("indices") is not None
                    and entry["numpy"][s]["indices"] == entry["dask"].get(s, {}).get("indices"))
            for s in args.strategies
        }
        ok = all(entry[m].get("status", "complete") == "complete" for m in MODES)
        entry["status"] = "complete" if ok else "failed"
        payload["pools"][name] = entry
        _write(results, payload)
    return payload


def _fmt(value, spec=".0f"):
    return "–" if value is None else f"{value:{spec}}"


def make_table(payload):
    """The Markdown table of a results payload: one row per (pool, strategy, mode)."""
    lines = [
        "| pool | query | mode | time (s) | client peak RSS (MiB) | client extra peak (MiB) "
        "| client tracemalloc peak (MiB) | workers' peak RSS, max / sum (MiB) | same indices |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in payload.get("pools", {}).items():
        config = entry.get("config", {})
        label = f"{name} {config.get('n_pool', '?'):,} ({_fmt(entry.get('pool_mib'))} MiB)"
        for strategy in config.get("strategies", []):
            for mode in MODES:
                rec = entry.get(mode, {})
                if rec.get("status") in ("failed", "timeout"):
                    lines.append(f"| {label} | {strategy} | {mode} | {rec['status']} "
                                 "| | | | | |")
                    continue
                r = rec.get(strategy, {})
                workers = "–" if mode == "numpy" else (
                    f"{_fmt(r.get('workers_peak_rss_mib_max'))} / "
                    f"{_fmt(r.get('workers_peak_rss_mib_sum'))}")
                same = "yes" if entry.get("identical", {}).get(strategy) else "**no**"
                lines.append(
                    f"| {label} | {strategy} (k={config.get('batch')}) | {mode} "
                    f"| {_fmt(r.get('query_seconds'), '.1f')} "
                    f"| {_fmt(r.get('client_peak_rss_mib'))} "
                    f"| {_fmt(r.get('client_extra_peak_rss_mib'))} "
                    f"| {_fmt(r.get('client_tracemalloc_peak_mib'), '.1f')} "
                    f"| {workers} | {same if mode == 'dask' else ''} |")
    return "\n".join(lines)


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "table", "_child"])
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--pools", nargs="+", default=list(POOLS), choices=POOLS)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--data", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--results", default=None, help="JSON path")
    parser.add_argument("--workdir", default=None, help="scratch folder for the pool files")
    parser.add_argument("--force", action="store_true", help="rerun pools already done")
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per child")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.command == "_child":
        spec = json.loads(Path(args.spec).read_text())
        Path(spec["out"]).write_text(json.dumps(_child(spec)))
        return 0
    if args.threads < 1:
        raise SystemExit(f"--threads must be at least 1, got {args.threads}")
    if args.results is None:
        args.results = str(QUICK_RESULTS if args.quick else RESULTS)
    payload = load_results(args.results) if args.command == "table" else run(args)
    print(make_table(payload))
    bad = [n for n, e in payload.get("pools", {}).items()
           if e.get("status") != "complete" or not all(e.get("identical", {}).values())]
    if bad:
        print(f"not complete or not identical: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad and args.command == "run" else 0


if __name__ == "__main__":
    sys.exit(main())
