"""Label efficiency of skal's strategies: one reproducible, resumable runner.

Runs the simulated labeling loop of :func:`skal.simulate` for every requested
(strategy, seed) on one data set, writes one JSON per (data set, strategy, seed)
under ``benchmarks/results/label_efficiency/`` as soon as that run finishes, and
skips runs whose JSON is already there (same protocol, recipe and strategy), so an
interrupted benchmark resumes where it stopped. ``summarize`` turns the JSONs into
the Markdown page ``docs/results.md`` and a PNG of the learning curves.

Protocols
---------
* ``fashion-mnist``: the WAAL paper's (Shui et al., AISTATS 2020, Table 2): per seed,
  a random 40,000-image pool from the 60,000 training images; 1,000 random labels,
  then 10 queries of 500 (1K ... 6K labels); the full 10,000-image test set.
* ``fashion-mnist-thesis``: the thesis's BALNet protocol (Ducoffe 2018, ch. 5) on
  the same per-seed pools and test set: 100 random labels, then 9 queries of 100
  (100 ... 1,000 labels).
* ``digits``: a small-budget protocol on scikit-learn's 8x8 digits: 1,347-image pool
  and 450 test images (stratified split), 20 random labels then 10 queries of 20.
* ``--quick`` shrinks either to a smoke run of under a minute on a CPU.

The training recipe (:func:`training_recipe`) is documented in ``docs/results.md``.

Usage::

    python -m benchmarks.label_efficiency --dataset fashion-mnist --seeds 0 1 2
    python -m benchmarks.label_efficiency --dataset digits --strategies random entropy bald
    python -m benchmarks.label_efficiency --dataset digits --quick
    python -m benchmarks.label_efficiency summarize
    python -m benchmarks.label_efficiency check-recipe --dataset fashion-mnist --labels 6000
    python -m benchmarks.label_efficiency --list-strategies
    python -m benchmarks.label_efficiency --dataset digits --dask-workers 2   # or --scheduler tcp://...
"""

import argparse
import collections
import contextlib
import hashlib
import json
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

# A source checkout runs without installing skal.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from skal import registry  # noqa: E402
from skal.nets import FashionLeNet  # noqa: E402
from skal.recipes import (  # noqa: E402
    RECIPES,
    AugmentCollate,
    HoldoutSplit,
    describe_recipe,
    training_recipe,
)
from skal.simulation import SimulationResult, SimulationResults, simulate  # noqa: E402

__all__ = [
    "DATASETS",
    "PROTOCOLS",
    "STRATEGIES",
    "available_strategies",
    "load_protocol_data",
    "main",
    "make_strategy",
    "result_path",
]

DATASETS = ("fashion-mnist", "fashion-mnist-thesis", "digits")
RESULTS_DIR = _ROOT / "benchmarks" / "results" / "label_efficiency"
DOCS_PAGE = _ROOT / "docs" / "results.md"
DOCS_IMG = _ROOT / "docs" / "img"
_FORMAT_VERSION = 1

# ---------------------------------------------------------------------------
# Protocols

# Both Fashion-MNIST benchmarks share their smoke run.
_FASHION_MNIST_QUICK = {"n_pool": 2000, "n_test": 1000, "n_initial": 100, "batch_size": 50,
                        "n_queries": 2, "max_epochs": 5}
PROTOCOLS = {
    "fashion-mnist": {
        "full": {"n_pool": 40000, "n_test": None, "n_initial": 1000, "batch_size": 500,
                 "n_queries": 10, "max_epochs": None},
        "quick": _FASHION_MNIST_QUICK,
        # Accuracies for "labels to reach": the paper's random baseline at 6K
        # (about 81 %) and the recipe's goal with 6K random labels.
        "targets": (0.80, 0.84),
    },
    "fashion-mnist-thesis": {
        "full": {"n_pool": 40000, "n_test": None, "n_initial": 100, "batch_size": 100,
                 "n_queries": 9, "max_epochs": None},
        "quick": _FASHION_MNIST_QUICK,
        "targets": (0.75, 0.80),
    },
    "digits": {
        "full": {"n_pool": None, "n_test": None, "n_initial": 20, "batch_size": 20,
                 "n_queries": 10, "max_epochs": None},
        "quick": {"n_pool": 300, "n_test": 200, "n_initial": 20, "batch_size": 20,
                  "n_queries": 2, "max_epochs": 10},
        "targets": (0.85, 0.90),
    },
}

# WAAL paper, Table 4 (Fashion-MNIST, 5 runs): accuracy % at 1K, 1.5K, ..., 6K labels.
PAPER_SIZES = [1000 + 500 * i for i in range(11)]
PAPER_TABLE4 = {
    "Random": [58.03, 66.81, 71.21, 73.12, 75.80, 77.34, 78.68, 79.58, 80.02, 80.93, 81.30],
    "LeastCon": [57.93, 64.24, 68.36, 71.68, 75.03, 77.73, 79.26, 80.08, 81.32, 83.21, 84.50],
    "Margin": [57.81, 65.61, 70.05, 72.74, 76.55, 78.99, 81.77, 82.32, 83.89, 84.87, 85.52],
    "Entropy": [57.40, 66.37, 69.70, 71.60, 74.84, 76.66, 79.00, 79.89, 80.85, 82.26, 83.66],
    "KMedian": [57.62, 67.13, 71.57, 73.84, 75.79, 77.44, 77.97, 79.49, 79.97, 81.11, 81.86],
    "DBAL": [58.01, 66.53, 69.77, 72.60, 74.75, 75.86, 77.02, 77.90, 78.87, 79.47, 80.43],
    "Core-set": [58.14, 68.79, 71.22, 72.61, 73.77, 75.10, 76.28, 77.30, 78.34, 78.42, 79.66],
    "DeepFool": [58.19, 66.21, 70.14, 71.77, 73.69, 74.00, 74.93, 76.64, 77.24, 77.72, 78.99],
    "WAAL": [72.29, 76.99, 79.85, 81.08, 82.04, 82.74, 83.25, 83.96, 84.45, 85.20, 85.99],
}
# skal strategy name -> WAAL Table 4 column (DBAL is MC-dropout BALD with 10 passes).
PAPER_COLUMN = {
    "random": "Random", "least-confident": "LeastCon", "margin": "Margin",
    "entropy": "Entropy", "kmedoids-coreset": "KMedian", "bald": "DBAL",
    "coreset": "Core-set", "dfal-noadv": "DeepFool", "waal": "WAAL",
}

# ---------------------------------------------------------------------------
# Strategies: skal.registry's table (shared with the ``skal`` command).

STRATEGIES = registry.STRATEGIES
_SEMI_SUPERVISED = registry.SEMI_SUPERVISED
make_strategy = registry.make_strategy
available_strategies = registry.strategy_status
# Why a strategy may be missing from a data set's page, or short of seeds there
# (measured, see the #9 notes).
_RUN_COST_NOTES = {("fashion-mnist", "waal"): (
    "Each `waal` round trains up to 20 passes over the whole 40K pool (labeled and "
    "unlabeled rows in pairs, plus the critic). With two CPU threads and nothing else "
    "running, a pass took about 21 s and early stopping ended the rounds after about 6-16 "
    "passes: about 50 minutes per seed on this 2-core machine (the other rows: 8-52 "
    "minutes per seed with one thread each, two runs side by side). "
    "[WAAL on the paper's LeNet](#waal-on-the-papers-lenet) below runs it under the paper's "
    "protocol with 10 passes per round."
)}
DEFAULT_STRATEGIES = {
    "fashion-mnist": tuple(STRATEGIES),
    # Issue 5's comparison under the thesis's BALNet protocol.
    "fashion-mnist-thesis": ("random", "entropy", "bald", "coreset", "balnet",
                             "balnet+wasserstein"),
    "digits": ("random", "entropy", "margin", "bald", "coreset", "dfal", "dqbc", "waal"),
}
# --quick without --strategies: a smoke run of under a minute on a CPU.
QUICK_STRATEGIES = ("random", "entropy", "bald", "coreset")


# ---------------------------------------------------------------------------
# The training recipe


# AugmentCollate, HoldoutSplit, RECIPES and training_recipe live in skal.recipes (one
# recipe for the CLI, skal.simulate, this runner and the docs); FashionLeNet in skal.nets.


# ---------------------------------------------------------------------------
# Data

_DATA_CACHE = {}


def _source(dataset):
    """The data set a benchmark draws its images from."""
    return "fashion-mnist" if dataset.startswith("fashion-mnist") else dataset


def _load_raw(dataset, data_path):
    key = (_source(dataset), data_path)
    if key not in _DATA_CACHE:
        from skal.datasets import load_dataset, load_fashion_mnist

        if key[0] == "fashion-mnist":
            X, y = load_fashion_mnist(data_path, subset="train")
            X_test, y_test = load_fashion_mnist(data_path, subset="test")
        else:
            X, y, X_test, y_test = load_dataset("digits", random_state=0)
        _DATA_CACHE[key] = (X, y, X_test, y_test)
    return _DATA_CACHE[key]


def load_protocol_data(dataset, seed, *, quick=False, data_path=None):
    """``(X_pool, y_pool, X_test, y_test)`` of one seed under the protocol.

    The pool is the first ``n_pool`` images of a seeded permutation of the
    training set (the WAAL paper's per-seed pool); the test set is fixed (a fixed
    random subset in quick runs).
    """
    settings = PROTOCOLS[dataset]["quick" if quick else "full"]
    X, y, X_test, y_test = _load_raw(dataset, data_path)
    n_pool = settings["n_pool"] or len(y)
    order = np.random.RandomState(seed).permutation(len(y))[:n_pool]
    if settings["n_test"] and settings["n_test"] < len(y_test):
        keep = np.sort(np.random.RandomState(12345).permutation(len(y_test))[: settings["n_test"]])
        X_test, y_test = X_test[keep], y_test[keep]
    return X[order], y[order], X_test, y_test


# ---------------------------------------------------------------------------
# Measuring


class PeakMemory:
    """Peak resident memory (and CUDA memory) of this process inside a block.

    On Linux the kernel's high-water mark is reset on entry (``/proc/self/clear_refs``),
    so the peak is that of the block; elsewhere it is the process's peak so far.
    """

    def __enter__(self):
        self.scope = "block" if _reset_peak_rss() else "process"
        self.start_mib = _status_mib("VmRSS")
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc):
        peak = _status_mib("VmHWM")
        if peak is None:
            scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
            self.scope = "process"
        self.peak_mib = peak
        self.increase_mib = None if self.start_mib is None else peak - self.start_mib
        self.cuda_peak_mib = (
            torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        )
        return False


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _status_mib(key):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _machine(device):
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


# ---------------------------------------------------------------------------
# Running


def result_path(results_dir, dataset, strategy, seed, quick=False):
    """Where the JSON of one (data set, strategy, seed) run goes."""
    folder = Path(results_dir) / ("quick" if quick else "")
    safe = strategy.replace("+", "_plus_")
    return folder / f"{dataset}__{safe}__seed{seed}.json"


def _config(dataset, name, strategy, quick, args_epochs, waal_epochs):
    settings = PROTOCOLS[dataset]["quick" if quick else "full"]
    recipe = dict(RECIPES[dataset])
    if args_epochs or settings["max_epochs"]:
        recipe["max_epochs"] = args_epochs or settings["max_epochs"]
    if name in _SEMI_SUPERVISED:
        recipe["waal_max_epochs"] = (
            waal_epochs or settings["max_epochs"] or recipe["waal_max_epochs"]
        )
    return {
        "format": _FORMAT_VERSION,
        "dataset": dataset,
        "quick": bool(quick),
        "protocol": {k: v for k, v in settings.items() if k != "max_epochs"},
        "recipe": recipe,
        "learner": "WAALClassifier" if name in _SEMI_SUPERVISED else "NeuralNetClassifier",
        "strategy": name,
        "strategy_repr": " ".join(repr(strategy).split()),
    }


def _config_key(config):
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _finished(path, key):
    try:
        with open(path, encoding="utf-8") as fh:
            payload = json.load(fh)
    except (OSError, ValueError):
        return False
    return payload.get("status") == "complete" and payload.get("config_key") == key


def _write_json(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a killed run never leaves half a JSON


def run_one(dataset, name, seed, *, quick=False, data_path=None, device="auto", epochs=None,
            waal_epochs=None, progress=True):
    """Run one (strategy, seed) and return the JSON payload (not written)."""
    strategy = make_strategy(name)
    settings = PROTOCOLS[dataset]["quick" if quick else "full"]
    config = _config(dataset, name, strategy, quick, epochs, waal_epochs)
    semi = name in _SEMI_SUPERVISED
    estimator = training_recipe(
        dataset,
        semi_supervised=semi,
        max_epochs=config["recipe"]["waal_max_epochs" if semi else "max_epochs"],
        device=device,
    )
    X, y, X_test, y_test = load_protocol_data(dataset, seed, quick=quick, data_path=data_path)
    start = time.perf_counter()
    with PeakMemory() as memory:
        runs = simulate(
            estimator, {name: strategy}, X, y, X_test, y_test,
            n_initial=settings["n_initial"], batch_size=settings["batch_size"],
            n_queries=settings["n_queries"], random_state=int(seed),
            classes=np.arange(10), progress=progress,
        )
    wall = time.perf_counter() - start
    result = runs[0]
    return _payload(config, result, memory, wall, device)


def _payload(config, result, memory, wall, device):
    targets = PROTOCOLS[config["dataset"]]["targets"]
    return {
        "benchmark": "label_efficiency",
        "status": "complete",
        "config_key": _config_key(config),
        "dataset": config["dataset"],
        "strategy": config["strategy"],
        "seed": result.random_state,
        "quick": config["quick"],
        "n_labeled": [int(v) for v in result.n_labeled],
        "accuracy": [float(v) for v in result.accuracy],
        "aubc": result.aubc,
        "final_accuracy": result.final_accuracy,
        "labels_to_target": {f"{t:.2f}": result.labels_to_reach(t) for t in targets},
        "query_seconds": [float(v) for v in result.query_time],
        "fit_seconds": [float(v) for v in result.fit_time],
        "n_training": [int(v) for v in result.n_training],
        "wall_seconds": wall,
        "peak_rss_mib": memory.peak_mib,
        "peak_rss_increase_mib": memory.increase_mib,
        "peak_rss_scope": memory.scope,
        "peak_cuda_mib": memory.cuda_peak_mib,
        "config": config,
        "machine": _machine(str(device)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run": result.to_dict(),
    }


@contextlib.contextmanager
def _torch_threads(n):
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _progress(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="run", desc="label efficiency", dynamic_ncols=True)


def run_benchmark(args):
    from skal.nets import resolve_device

    dataset = args.dataset
    names = args.strategies or list(QUICK_STRATEGIES if args.quick else DEFAULT_STRATEGIES[dataset])
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        print(f"error: unknown strategies {unknown}; see --list-strategies", file=sys.stderr)
        return 2
    usable = []
    for name in names:
        try:
            make_strategy(name)
            usable.append(name)
        except Exception as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
    if not usable:
        print("error: none of the requested strategies is available", file=sys.stderr)
        return 2
    device = str(resolve_device(args.device))
    results_dir = Path(args.results_dir)
    jobs = [(name, seed) for seed in args.seeds for name in usable]
    print(f"label efficiency: {dataset}{' (quick)' if args.quick else ''}, "
          f"{len(usable)} strategies x {len(args.seeds)} seeds on {device}; "
          f"results in {results_dir}", flush=True)
    failures = 0
    if args.scheduler or args.dask_workers:  # the runs go to a Dask cluster instead
        from benchmarks._dask_runs import run_on_cluster

        failures, jobs = run_on_cluster(args, jobs, device, results_dir), []
    bar = _progress(len(jobs), not args.no_progress)
    try:
        for name, seed in jobs:
            path = result_path(results_dir, dataset, name, seed, args.quick)
            config = _config(dataset, name, make_strategy(name), args.quick, args.epochs,
                             args.waal_epochs)
            if not args.force and _finished(path, _config_key(config)):
                print(f"  {name} seed {seed}: done already ({path.name})", flush=True)
            else:
                if path.exists() and not args.force:
                    print(f"  {name} seed {seed}: {path.name} has other settings or is "
                          "unfinished; recomputing", flush=True)
                try:
                    payload = run_one(
                        dataset, name, seed, quick=args.quick, data_path=args.data_path,
                        device=device, epochs=args.epochs, waal_epochs=args.waal_epochs,
                        progress=not args.no_progress,
                    )
                except FileNotFoundError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 1
                except Exception:  # one broken strategy must not lose the others
                    failures += 1
                    print(f"  {name} seed {seed}: FAILED\n{traceback.format_exc()}",
                          file=sys.stderr, flush=True)
                else:
                    _write_json(path, payload)
                    acc = ", ".join(f"{a:.3f}" for a in payload["accuracy"])
                    print(f"  {name} seed {seed}: AUBC {payload['aubc']:.3f}, accuracy [{acc}], "
                          f"query {sum(payload['query_seconds']):.1f} s, "
                          f"fit {sum(payload['fit_seconds']):.1f} s, "
                          f"peak RSS {payload['peak_rss_mib']:.0f} MiB", flush=True)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    payloads = [p for p in load_results(results_dir, dataset, quick=args.quick)
                if p["strategy"] in usable and p["seed"] in args.seeds]
    if payloads:
        print()
        print(_results(payloads).table())
        print(f"(JSON in {results_dir}; `python -m benchmarks.label_efficiency summarize"
              f"{' --quick' if args.quick else ''}` writes the docs page)")
    return 1 if failures else 0


def check_recipe(args):
    """Train the recipe once on ``--labels`` random labels and report test accuracy."""
    from skal.nets import predict_logits, resolve_device

    dataset = args.dataset
    device = str(resolve_device(args.device))
    seed = args.seeds[0]
    X, y, X_test, y_test = load_protocol_data(dataset, seed, quick=args.quick,
                                              data_path=args.data_path)
    n = min(args.labels, len(y))
    idx = np.sort(np.random.RandomState(seed).choice(len(y), n, replace=False))
    net = training_recipe(dataset, max_epochs=args.epochs, device=device, random_state=seed)
    start = time.perf_counter()
    with PeakMemory() as memory:
        net.fit(X[idx], y[idx])
    fit_s = time.perf_counter() - start
    acc = float((predict_logits(net, X_test).argmax(1) == y_test).mean())
    history = net.history
    # Recipes that hold no labels out (digits) have no validation loss.
    valid = [h.get("valid_loss") for h in history if h.get("valid_loss") is not None]
    payload = {
        "benchmark": "label_efficiency/recipe_check",
        "dataset": dataset,
        "n_labels": int(n),
        "full_pool": bool(n == len(y)),
        "seed": int(seed),
        "test_accuracy": acc,
        "n_test": int(len(y_test)),
        "epochs_run": len(history),
        "best_epoch": int(np.nanargmin(np.asarray(valid, dtype=float)) + 1) if valid else None,
        "fit_seconds": fit_s,
        "peak_rss_mib": memory.peak_mib,
        "recipe": RECIPES[dataset],
        "machine": _machine(device),
        "command": "python -m benchmarks.label_efficiency " + " ".join(args.argv),
    }
    name = (f"recipe_check_{dataset}{'_full' if payload['full_pool'] else ''}"
            f"{'_quick' if args.quick else ''}.json")
    path = Path(args.results_dir) / name
    _write_json(path, payload)
    print(f"{dataset}: {n} random labels -> test accuracy {100 * acc:.2f} % on {len(y_test)} "
          f"test images ({len(history)} epochs, best {payload['best_epoch']}, {fit_s:.0f} s)")
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------
# Summaries


def load_results(results_dir, dataset, quick=False):
    """The finished runs of one data set, as JSON payloads (sorted by strategy, seed)."""
    folder = Path(results_dir) / ("quick" if quick else "")
    payloads = []
    for path in sorted(folder.glob(f"{dataset}__*__seed*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if payload.get("status") == "complete" and payload.get("dataset") == dataset:
            payloads.append(payload)
    order = {name: i for i, name in enumerate(STRATEGIES)}
    payloads.sort(key=lambda p: (order.get(p["strategy"], len(order)), p["strategy"], p["seed"]))
    return payloads


def _results(payloads):
    runs = []
    for p in payloads:
        run = SimulationResult.from_dict(p["run"])
        run.strategy = p["strategy"]
        runs.append(run)
    return SimulationResults(runs)


def _mean_std(values, scale=1.0, digits=3):
    values = np.asarray([v for v in values if v is not None], dtype=float) * scale
    if values.size == 0:
        return "-"
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def full_data_accuracy(results_dir, dataset):
    """Test accuracy of the recipe trained on the whole pool (seed 0), or None.

    Written by ``check-recipe --labels N`` with N at least the pool size; used only
    while the recipe it was trained with is the current one.
    """
    path = Path(results_dir) / f"recipe_check_{dataset}_full.json"
    if not path.exists():
        return None
    check = json.loads(path.read_text(encoding="utf-8"))
    return check["test_accuracy"] if check.get("recipe") == RECIPES[dataset] else None


def _labels_cell(hits, n_runs):
    reached = [h for h in hits if h is not None]
    if not reached:
        return "not reached"
    cell = f"{np.mean(reached):.0f}"
    if len(reached) < n_runs:
        cell += f" ({len(reached)}/{n_runs} seeds)"
    return cell


def markdown_tables(payloads, dataset, full_accuracy=None):
    """Markdown: the summary table and, on Fashion-MNIST, the paper comparison.

    With ``full_accuracy`` (the recipe trained on the whole pool), a column gives
    the labels needed to reach 98 % of it, the thesis's Table 4.2 metric.
    """
    by_name = {}
    for p in payloads:
        by_name.setdefault(p["strategy"], []).append(p)
    targets = PROTOCOLS[dataset]["targets"]
    head = ["strategy", "seeds", "AUBC", "final accuracy (%)"]
    head += [f"labels to {100 * t:.0f} %" for t in targets]
    if full_accuracy is not None:
        head += [f"labels to 98 % of full data ({100 * 0.98 * full_accuracy:.1f} %)"]
    head += ["query s / round", "fit s / round", "peak RSS, MiB (+ during run)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in by_name.items():
        cells = [f"`{name}`", str(len(runs)),
                 _mean_std([r["aubc"] for r in runs]),
                 _mean_std([r["final_accuracy"] for r in runs], 100, 2)]
        for t in targets:
            cells.append(_labels_cell([r["labels_to_target"].get(f"{t:.2f}") for r in runs],
                                      len(runs)))
        if full_accuracy is not None:
            cells.append(_labels_cell(
                [SimulationResult.from_dict(r["run"]).labels_to_reach(0.98 * full_accuracy)
                 for r in runs], len(runs)))
        q = [v for r in runs for v in r["query_seconds"]]
        f = [v for r in runs for v in r["fit_seconds"]]
        peak = max(r["peak_rss_mib"] for r in runs)
        grew = [r["peak_rss_increase_mib"] for r in runs
                if r.get("peak_rss_increase_mib") is not None]
        mem = f"{peak:.0f}" + (f" (+{max(grew):.0f})" if grew else "")
        cells += [f"{np.mean(q):.2f}" if q else "-", f"{np.mean(f):.1f}" if f else "-", mem]
        lines.append("| " + " | ".join(cells) + " |")
    out = ["\n".join(lines)]

    if dataset == "fashion-mnist" and by_name and not any(p["quick"] for p in payloads):
        sizes = [1000, 2000, 3000, 4000, 5000, 6000]
        head = ["strategy (paper column)"] + [f"{s // 1000}K" for s in sizes]
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, runs in by_name.items():
            column = PAPER_COLUMN.get(name)
            cells = [f"`{name}` ({column})" if column else f"`{name}`"]
            for s in sizes:
                accs = [r["accuracy"][r["n_labeled"].index(s)] for r in runs if s in r["n_labeled"]]
                ours = _mean_std(accs, 100, 1) if accs else "-"
                paper = PAPER_TABLE4[column][PAPER_SIZES.index(s)] if column else None
                cells.append(f"{ours} / {paper:.1f}" if paper is not None else ours)
            rows.append("| " + " | ".join(cells) + " |")
        out.append("Test accuracy (%), skal (mean ± std over seeds) / WAAL paper Table 4 "
                   "(mean of 5 runs):\n\n" + "\n".join(rows))
    return out


def plot_results(payloads, dataset, path):
    """PNG of the mean learning curves; on Fashion-MNIST, the paper's as dashed lines."""
    results = _results(payloads)
    fig = results.plot(None, title=f"{dataset}: test accuracy vs labels "
                                   f"(mean over seeds, band = ±1 std)")
    ax = fig.axes[0]
    if dataset == "fashion-mnist" and not any(p["quick"] for p in payloads):
        colors = {line.get_label().split(" (AUBC")[0]: line.get_color() for line in ax.get_lines()}
        drawn = False
        for name, color in colors.items():
            column = PAPER_COLUMN.get(name)
            if column:
                ax.plot(PAPER_SIZES, np.asarray(PAPER_TABLE4[column]) / 100, linestyle="--",
                        linewidth=1, color=color, label="_paper")
                drawn = True
        if drawn:
            ax.plot([], [], "k--", linewidth=1, label="dashed: WAAL paper, Table 4")
            ax.legend(loc="lower right", fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def summarize(args):
    page = Path(args.docs_page)
    img_dir = Path(args.img_dir)
    results_dir = Path(args.results_dir)
    datasets = [args.dataset] if args.dataset_given else list(DATASETS)
    sections = {}
    for dataset in DATASETS:
        payloads = []
        if dataset in datasets:
            payloads = load_results(results_dir, dataset, quick=args.quick)
        if not payloads:
            sections[dataset] = None
            continue
        png = img_dir / f"label_efficiency_{dataset}{'_quick' if args.quick else ''}.png"
        plot_results(payloads, dataset, png)
        rel = os.path.relpath(png, page.parent).replace(os.sep, "/")
        sections[dataset] = (payloads, rel)
        print(f"wrote {png}")
    text = render_page(sections, results_dir, quick=args.quick)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text, encoding="utf-8")
    print(f"wrote {page}")
    return 0


def _run_recipe(dataset, sections):
    """The recipe the runs of ``dataset`` used (an ``--epochs`` override included),
    or the default one where none ran or they disagree."""
    payloads = (sections.get(dataset) or ([], None))[0]
    recipes = {json.dumps(p["config"]["recipe"], sort_keys=True)
               for p in payloads if p.get("config") and p["strategy"] not in _SEMI_SUPERVISED}
    return json.loads(recipes.pop()) if len(recipes) == 1 else RECIPES[dataset]


def _recipe_line(dataset, sections=None):
    return describe_recipe(_run_recipe(dataset, sections or {}))


def render_page(sections, results_dir, quick=False):
    """The whole docs/results.md page (narrative + tables from the JSONs)."""
    rel_results = os.path.relpath(results_dir, _ROOT).replace(os.sep, "/")
    out = [
        "# Results: label efficiency",
        "",
        "<!-- Generated by `python -m benchmarks.label_efficiency summarize` from the JSON "
        f"files in `{rel_results}/`; edit the generator, not this page. -->",
        "",
        "These pages answer one question per data set: how many labels does each strategy "
        "need, and how much does it cost to ask for them? Every number comes from "
        "`skal.simulate` (the labeling loop with the true labels as the oracle), run by "
        "`python -m benchmarks.label_efficiency`. One JSON per (data set, strategy, seed) holds "
        "the per-round test accuracy, AUBC, labels to reach the target accuracies, query and "
        "fit seconds and peak memory; a finished run is never recomputed, so the benchmark can "
        "be stopped and resumed.",
        "",
    ]
    if quick:
        out += ["**These are `--quick` smoke runs: tiny pools and a few epochs. They show that the "
                "pipeline works, not how the strategies compare.**", ""]
    out += [
        "## Protocols",
        "",
        "| data set | pool | test | labels | net and recipe |",
        "|---|---|---|---|---|",
        "| Fashion-MNIST | 40,000 random training images per seed (WAAL paper, Table 2) | "
        "10,000 (official) | 1,000 random + 10 queries x 500 = 6,000 | "
        + _recipe_line("fashion-mnist", sections) + " |",
        "| Fashion-MNIST, small budget | the same pools | the same | 100 random + 9 queries x "
        "100 = 1,000 (thesis, BALNet chapter) | " + _recipe_line("fashion-mnist-thesis", sections)
        + " |",
        "| digits (sklearn, 8x8) | 1,347 (stratified 75 %) | 450 | 20 random + 10 queries x 20 "
        "= 220 | " + _recipe_line("digits", sections) + " |",
        "",
        "Within a seed every strategy gets the same pool, the same random seed set and the same "
        "initial weights; the network is retrained from scratch after every query. Strategies "
        "run with their default parameters (BALD with 10 dropout passes). `waal` trains a "
        "`skal.models.WAALClassifier` on the same module (labeled rows plus the rest of the pool "
        f"as unlabeled rows; on Fashion-MNIST SGD (lr 0.01) as in the paper's code, on digits "
        f"Adam (lr 3e-3), since SGD left the digits CNN near chance with 20 labels; at most "
        f"{RECIPES['fashion-mnist']['waal_max_epochs']} epochs of one pass over the pool each, "
        "with early stopping on the held-out labels where the recipe holds some out); every "
        "other strategy uses the recipe above. `balnet+wasserstein` is `BALNet(diversity=10)` "
        "with its default 1,000 candidates: on digits the criterion pre-selects 200 of them "
        "for the Wasserstein step, but with 100 or 500 per query (the Fashion-MNIST protocols) "
        "the pre-selection keeps every scored candidate, so there the row measures Wasserstein "
        "prototypes of a random subset (see [BALNet](balnet.md)).",
        "",
        "### Why this recipe",
        "",
        "The learner's training is half of label efficiency. With the paper baselines' recipe "
        "(10 epochs of SGD over the labeled set) or with a LeNet trained 20 epochs with Adam, "
        "random queries stall near 77-81 % at 3.5-6K labels on Fashion-MNIST, and uncertainty "
        "and MC-dropout BALD can look worse than random simply because the networks are "
        "under-trained. skal's recipe aims at **at least 84 % test accuracy with 6,000 random "
        "labels**, so that differences between strategies are differences between strategies.",
        "",
    ]
    check = Path(results_dir) / "recipe_check_fashion-mnist.json"
    if check.exists():
        c = json.loads(check.read_text(encoding="utf-8"))
        out += [
            f"Check (`{c['command']}`): {c['n_labels']} random labels, one training, "
            f"**{100 * c['test_accuracy']:.2f} %** on the {c['n_test']} test images "
            f"({c['epochs_run']} epochs, best at epoch {c['best_epoch']}, "
            f"{c['fit_seconds']:.0f} s on {c['machine']['device']} with "
            f"{c['machine']['torch_threads']} thread(s)).",
            "",
        ]
    else:
        out += ["Check it with `python -m benchmarks.label_efficiency check-recipe --dataset "
                "fashion-mnist --labels 6000` (one training, a few minutes on a CPU).", ""]
    out += [
        "### Where the training budget differs from the papers",
        "",
        "* **WAAL paper (Table 4).** Its baselines were most likely trained with the ej0cl6 "
        "recipe (SGD lr 0.01, momentum 0.5, 10 epochs over the labeled set, no early "
        "stopping), on the 1x-width LeNet, while WAAL itself trained 80 epochs of one pass "
        "over the 40K pool each: roughly 30-600 times more optimisation steps. skal trains "
        "every baseline to convergence (early stopping) on a 2x-wide version of the same "
        "LeNet with augmentation, and gives WAAL at most "
        f"{RECIPES['fashion-mnist']['waal_max_epochs']} pool passes. Expect skal's baselines "
        "to be well above the paper's and the gap to WAAL to be much smaller.",
        "* **Thesis (Ducoffe 2018, Table 4.2).** Its code holds out 20 % of the labels, stops "
        "after 5 epochs without progress, and keeps the best of 5 restarts; on Fashion-MNIST "
        "skal holds out 10 %, waits 8 epochs and trains once per round; with 100-1,000 labels "
        "(small budget) and on digits (20-220 labels) it holds none out and trains a fixed 60 "
        "epochs. With one seed's 1,000 random Fashion-MNIST labels, 60 fixed epochs reach "
        "80.1 % and the 10 % hold-out recipe 74.4 % (63.7 % and 60.9 % with 100 labels; "
        "`check-recipe --labels 1000` with `--dataset fashion-mnist-thesis` and `fashion-mnist`). "
        "Table 4.2 is on MNIST, Shoe-Bag and Quick-Draw, so it is quoted below, not compared "
        "number for number.",
        "",
    ]
    titles = {"fashion-mnist": "Fashion-MNIST",
              "fashion-mnist-thesis": "Fashion-MNIST, small budget (thesis protocol)",
              "digits": "Digits"}
    for dataset, title in titles.items():
        out += [f"## {title}", ""]
        section = sections.get(dataset)
        cmd = (f"python -m benchmarks.label_efficiency --dataset {dataset} --seeds 0 1 2"
               + (" --quick" if quick else ""))
        if section is None:
            out += ["No finished runs yet. Run", "", "```bash", cmd,
                    "python -m benchmarks.label_efficiency summarize"
                    + (" --quick" if quick else ""),
                    "```", ""]
            if dataset == "fashion-mnist":
                out += _paper_table()
            continue
        payloads, png = section
        seeds = sorted({p["seed"] for p in payloads})
        machine = payloads[0]["machine"]
        out += [
            f"Command: `{cmd}` ({len(payloads)} runs, seeds {', '.join(map(str, seeds))}; "
            f"{machine['device']}, torch {machine['torch']}, {_threads_text(payloads)}). "
            "Query and fit seconds are means per round; peak RSS is the "
            "process's resident memory during the run, data included.",
            "",
        ]
        full = None if quick else full_data_accuracy(results_dir, dataset)
        tables = markdown_tables(payloads, dataset, full_accuracy=full)
        out += [tables[0], ""]
        out += _coverage_notes(dataset, payloads, seeds)
        if full is not None:
            out += [f"Full data: the same recipe trained on the whole pool reaches "
                    f"{100 * full:.2f} % (`python -m benchmarks.label_efficiency check-recipe "
                    f"--dataset {dataset} --labels 100000 --seeds 0`). The last label column counts "
                    "the labels needed to reach 98 % of it (the thesis's Table 4.2 asks for "
                    "the full-data accuracy itself, within 0.5 %).", ""]
        out += [f"![{title} learning curves]({png})", ""]
        for extra in tables[1:]:
            out += [extra, ""]
        if dataset == "fashion-mnist" and len(tables) == 1:
            out += _paper_table()
    if not quick:
        out += _waal_section()
        out += _low_budget_section()
    out += [
        "## Published numbers for reference",
        "",
        "Thesis Table 4.2: annotations needed to reach the full-training-set accuracy "
        "(± 0.5 %); \"labeled data\" includes DFAL's adversarial copies and CEAL's "
        "pseudo-labels.",
        "",
        "| data set, net | target | DFAL | the two other methods listed |",
        "|---|---|---|---|---|",
        "| MNIST, LeNet5 | ≥ 99.04 % | 1210 (2410 labeled) | CORE-SET 1810; CEAL ≥ 6000 (≥ 6150) |",
        "| MNIST, VGG8 | ≥ 98.98 % | 980 (1950) | CORE-SET 1270; uncertainty 2800 |",
        "| Shoe-Bag, LeNet5 | ≥ 99.70 % | 1070 (2130) | CORE-SET 860; CEAL 1130 (19157) |",
        "| Shoe-Bag, VGG8 | ≥ 99.50 % | 530 (1050) | CORE-SET 400; CEAL 580 (705) |",
        "| Quick-Draw, LeNet5 | ≥ 95.46 % | 7470 (14930) | CORE-SET ≥ 8590; uncertainty ≥ 10590 |",
        "| Quick-Draw, VGG8 | ≥ 96.75 % | 4810 (9610) | CORE-SET ≥ 6750; BALD 5590 |",
        "",
    ]
    out += _peers_section()
    return "\n".join(out).rstrip() + "\n"


def _threads_text(payloads):
    """The runs' torch thread count, naming the strategies that ran with another."""
    counts = collections.Counter(p["machine"]["torch_threads"] for p in payloads)
    usual = counts.most_common(1)[0][0]
    other = sorted({(p["strategy"], p["machine"]["torch_threads"]) for p in payloads
                    if p["machine"]["torch_threads"] != usual})
    text = f"{usual} thread(s)"
    if other:
        text += " (" + ", ".join(f"`{name}`: {n}" for name, n in other) + ")"
    return text


def _coverage_notes(dataset, payloads, seeds):
    """Lines naming default strategies with no runs, or fewer seeds than the page."""
    ran = {}
    for p in payloads:
        ran.setdefault(p["strategy"], set()).add(p["seed"])
    missing = [n for n in DEFAULT_STRATEGIES[dataset] if n not in ran]
    short = [n for n in DEFAULT_STRATEGIES[dataset] if n in ran and len(ran[n]) < len(seeds)]
    command = f"python -m benchmarks.label_efficiency --dataset {dataset}"
    out = []
    if missing:
        out += ["Not run yet under this protocol: " + ", ".join(f"`{n}`" for n in missing)
                + f" (`{command} --strategies {' '.join(missing)}`).", ""]
    for name in short:
        rest = sorted(set(seeds) - ran[name])
        out += [f"`{name}` has fewer seeds than the other rows so far: "
                f"{', '.join(map(str, sorted(ran[name])))} of {', '.join(map(str, seeds))} "
                f"(`{command} --strategies {name} --seeds {' '.join(map(str, rest))}` adds "
                "the rest).", ""]
    for name in missing + short:
        if (dataset, name) in _RUN_COST_NOTES:
            out += [_RUN_COST_NOTES[dataset, name], ""]
    return out


def _paper_table():
    head = "| labels | " + " | ".join(PAPER_TABLE4) + " |"
    rows = [head, "|" + "---|" * (len(PAPER_TABLE4) + 1)]
    for i, n in enumerate(PAPER_SIZES):
        rows.append(f"| {n} | " + " | ".join(f"{v[i]:.2f}" for v in PAPER_TABLE4.values()) + " |")
    return ["WAAL paper, Table 4 (Fashion-MNIST, accuracy %, mean of 5 runs):", ""] + rows + [""]


def _waal_section():
    """WAAL against its paper's baselines on the paper's own LeNet (bench_waal.py)."""
    path = _ROOT / "benchmarks" / "results" / "waal.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    proto, summary = data["protocol"], data["summary"]
    paper_names = {"waal": "WAAL", "random": "Random", "entropy": "Entropy", "margin": "Margin"}
    sizes = next(iter(summary.values()))["n_labeled"]
    cols = [i for i, n in enumerate(sizes) if n % 1000 == 0]
    out = [
        "## WAAL on the paper's LeNet",
        "",
        f"Command: `python benchmarks/bench_waal.py --seeds {proto['seeds']} --waal-epochs "
        f"{proto['waal_epochs']} --strategies {','.join(summary)}` ({proto['seeds']} seed(s), "
        f"pool {proto['pool']:,}, {proto['initial']:,} + {proto['rounds']} x {proto['query']}; "
        f"{data['machine']['device']}). The paper's protocol and its 1x-width LeNet "
        "(`skal.models.WAALLeNet`); the baselines use the recipe the paper's baselines most "
        f"likely had (SGD lr 0.01, momentum 0.5, {proto['baseline_epochs']} epochs over the "
        f"labeled set), and WAAL trains {proto['waal_epochs']} passes over the pool per round "
        "(the paper: 80). The `waal` row of the Fashion-MNIST table above runs it next to "
        "skal's supervised recipe instead. See [WAAL](waal.md).",
        "",
        "Test accuracy (%), skal / WAAL paper Table 4:",
        "",
        "| strategy | " + " | ".join(f"{sizes[i] // 1000}K" for i in cols)
        + " | train s / round | query s / round |",
        "|---|" + "---|" * (len(cols) + 2),
    ]
    for name, row in summary.items():
        paper = PAPER_TABLE4.get(paper_names.get(name, ""), None)
        cells = []
        for i in cols:
            ours = f"{row['accuracy_mean'][i]:.1f}"
            if paper is not None and sizes[i] in PAPER_SIZES:
                ours += f" / {paper[PAPER_SIZES.index(sizes[i])]:.1f}"
            cells.append(ours)
        query = row.get("query_s_per_round")
        out.append(f"| `{name}` | " + " | ".join(cells)
                   + f" | {row['train_s_per_round']:.0f} | "
                   + ("-" if query is None else f"{query:.2f}") + " |")
    return out + [""]


def _low_budget_section():
    """The Wasserstein core-set's low-budget regime (bench_low_budget.py)."""
    path = _ROOT / "benchmarks" / "results" / "low_budget.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    proto, summary, sizes = data["protocol"], data["summary"], data["n_labeled"]
    names = list(summary)
    out = [
        "## Low budgets: the Wasserstein core-set",
        "",
        f"Command: `{data['command']}` ({len(proto['seeds'])} seeds; Fashion-MNIST, "
        f"{proto['features']} features fitted without labels, cosine cost; pool "
        f"{proto['pool']:,}, {proto['initial']} random labels + {proto['rounds']} queries of "
        f"{proto['query']}; a fresh `{proto['learner']}` each round; the core-set solver "
        f"stops after {proto['time_limit']:g} s per query). The regime of the paper "
        "(a fixed feature space, a few labels per round); see "
        "[Wasserstein core-set](wasserstein_coreset.md).",
        "",
        "Test accuracy (%, mean ± std over seeds):",
        "",
        "| labels | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, n in enumerate(sizes):
        out.append(f"| {n} | " + " | ".join(
            f"{summary[s]['accuracy_mean'][i]:.1f} ± {summary[s]['accuracy_std'][i]:.1f}"
            for s in names) + " |")
    out.append("| AUBC | " + " | ".join(f"{summary[s]['aubc_mean']:.3f}" for s in names) + " |")
    out.append("| query s / round | " + " | ".join(
        f"{summary[s]['query_s_per_round']:.2f}" for s in names) + " |")
    return out + [""]


def _peers_section():
    path = _ROOT / "benchmarks" / "results" / "peers.json"
    out = ["## Query cost against other libraries", ""]
    if not path.exists():
        return out + [
            "Same pool, same trained LeNet5, skal against modAL, baal, scikit-activeml and a "
            "per-sample DeepFool loop. The peers live in their own virtual environment:",
            "",
            "```bash",
            "bash benchmarks/peers/setup_peers.sh        # creates .venv-peers",
            ".venv-peers/bin/python benchmarks/peers/bench_peers.py",
            "```",
            "",
        ]
    data = json.loads(path.read_text(encoding="utf-8"))
    out += [
        f"Command: `{data.get('command', '')}` (pool {data['pool']}, query {data['n_instances']}, "
        f"{data['machine']['device']}, {data['machine']['torch_threads']} thread(s)"
        + ("; **quick run: not final**" if data.get("quick") else "") + ").",
        "",
        "| task | skal | peer | skal s | peer s | time ratio skal/peer | skal MiB | peer MiB | "
        "memory ratio | same top-k |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        def fmt(v, spec):
            return "-" if v is None else format(v, spec)
        out.append(
            f"| {row['task']} | {row['skal']} | {row['peer']} | {fmt(row['skal_s'], '.3f')} | "
            f"{fmt(row['peer_s'], '.3f')} | {fmt(row.get('time_ratio'), '.3f')} | "
            f"{fmt(row.get('skal_mib'), '.1f')} | {fmt(row.get('peer_mib'), '.1f')} | "
            f"{fmt(row.get('memory_ratio'), '.2f')} | {row.get('overlap', '-')} |"
        )
    skipped = data.get("skipped") or {}
    if skipped:
        out += ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + "."]
    return out + [""]


# ---------------------------------------------------------------------------
# Command line


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.label_efficiency",
        description="Label efficiency of skal's strategies (resumable; see docs/results.md).",
    )
    parser.add_argument("mode", nargs="?", default="run",
                        choices=("run", "summarize", "check-recipe"),
                        help="run the benchmark (default), summarize the JSONs into "
                             "docs/results.md, or check the training recipe once")
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="default: fashion-mnist (summarize: every data set)")
    parser.add_argument("--strategies", nargs="+", default=None,
                        help="registry names (comma- or space-separated); default: all of "
                             "them on fashion-mnist, a fast subset on digits, "
                             f"{','.join(QUICK_STRATEGIES)} with --quick")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true",
                        help="tiny pools and a few epochs: a smoke run of under a minute")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epoch cap")
    parser.add_argument("--waal-epochs", type=int, default=None,
                        help="override WAAL's epoch cap (one epoch = one pass over the pool)")
    parser.add_argument("--labels", type=int, default=6000, help="check-recipe: random labels")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is fastest on a shared machine)")
    parser.add_argument("--data-path", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--docs-page", default=str(DOCS_PAGE), help="summarize: Markdown output")
    parser.add_argument("--img-dir", default=str(DOCS_IMG), help="summarize: PNG folder")
    parser.add_argument("--force", action="store_true", help="recompute finished runs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--list-strategies", action="store_true")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run the (strategy, seed) runs on this Dask scheduler "
                             "(tcp://host:8786; needs skal[dask])")
    parser.add_argument("--dask-workers", type=int, default=None, metavar="N",
                        help="run them on a local Dask cluster of N one-thread workers")
    return parser


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    if args.list_strategies:
        for name, reason in available_strategies().items():
            print(f"{name:24s} {'available' if reason is None else reason}")
        return 0
    if args.strategies:
        args.strategies = [n.strip() for s in args.strategies for n in s.split(",") if n.strip()]
    from benchmarks._dask_runs import check_cluster_args

    if check_cluster_args(args):
        parser.error(check_cluster_args(args))
    args.dataset_given = args.dataset is not None
    args.dataset = args.dataset or "fashion-mnist"
    with _torch_threads(args.threads):
        if args.mode == "summarize":
            return summarize(args)
        if args.mode == "check-recipe":
            return check_recipe(args)
        return run_benchmark(args)


if __name__ == "__main__":
    # Run the imported module's main, so that classes pickle as
    # benchmarks.label_efficiency.X rather than __main__.X.
    from benchmarks.label_efficiency import main as _main

    sys.exit(_main())
