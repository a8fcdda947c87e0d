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
* ``fashion-mnist-low``: the budgets TypiClust and ProbCover target, on the same
  pools and test set: 10 random labels, then 9 queries of 10 (10 ... 100 labels),
  with the small-budget recipe.
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

from benchmarks._efficiency_page import (  # noqa: E402, F401 (old import paths)
    _coverage_notes,
    _low_budget_section,
    _results,
    _threads_text,
    _waal_section,
    full_data_accuracy,
    load_results,
    markdown_tables,
    plot_results,
    render_page,
)
from benchmarks._efficiency_protocols import (  # noqa: E402, F401 (old import paths)
    _RUN_COST_NOTES,
    _SEMI_SUPERVISED,
    DATASETS,
    DEFAULT_STRATEGIES,
    PAPER_COLUMN,
    PAPER_SIZES,
    PAPER_TABLE4,
    PROTOCOLS,
    QUICK_STRATEGIES,
    STRATEGIES,
    available_strategies,
    load_protocol_data,
    make_strategy,
)
from benchmarks._memory import reset_peak_rss as _reset_peak_rss  # noqa: E402
from benchmarks._memory import status_mib as _status_mib  # noqa: E402
from skal.nets import FashionLeNet  # noqa: E402, F401 (re-exported)
from skal.recipes import (  # noqa: E402, F401 (AugmentCollate, HoldoutSplit: re-exported)
    RECIPES,
    AugmentCollate,
    HoldoutSplit,
    training_recipe,
)
from skal.simulation import simulate  # noqa: E402

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

RESULTS_DIR = _ROOT / "benchmarks" / "results" / "label_efficiency"
DOCS_PAGE = _ROOT / "docs" / "results.md"
DOCS_IMG = _ROOT / "docs" / "img"
_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------
# The training recipe


# AugmentCollate, HoldoutSplit, RECIPES and training_recipe live in skal.recipes (one
# recipe for the CLI, skal.simulate, this runner and the docs); FashionLeNet in skal.nets.
# The protocols and strategies are in benchmarks/_efficiency_protocols.py, the results
# page in benchmarks/_efficiency_page.py.


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
