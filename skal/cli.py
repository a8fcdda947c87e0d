"""The ``skal`` command: compare query strategies on a data set.

``skal`` (or ``python -m skal``) runs a simulated active-learning comparison
(random, entropy, margin, BALD and core-set by default) on scikit-learn's 8x8
digits with a small CNN, prints a table, and writes a PNG of the learning curves
and a JSON file of every run. ``--dataset fashion-mnist`` uses a local
Fashion-MNIST with LeNet-5.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from . import registry
from .recipes import describe_recipe

__all__ = ["DEFAULT_STRATEGIES", "STRATEGY_NAMES", "available_strategies", "build_parser",
           "main", "make_strategy"]

DEFAULT_STRATEGIES = ("random", "entropy", "margin", "bald", "coreset")

# Every strategy has one name, in skal.registry (shared with the benchmark runner).
STRATEGY_NAMES = tuple(registry.STRATEGIES)
make_strategy = registry.make_strategy
available_strategies = registry.available_strategies

# Per data set: the protocol of the default run (a couple of minutes on a 2-core
# CPU for digits). The training recipe is skal.recipes.training_recipe(dataset).
_DATASET_DEFAULTS = {
    "digits": {
        "n_initial": 20, "batch_size": 20, "n_queries": 10, "n_train": None, "n_test": None,
        "threads": 1, "n_jobs": 2,
    },
    "fashion-mnist": {
        "n_initial": 100, "batch_size": 100, "n_queries": 10, "n_train": 10000, "n_test": 2000,
        "threads": None, "n_jobs": None,
    },
}


def _int_list(text):
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _name_list(text):
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected at least one strategy name")
    return names


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def _fraction(text):
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected an accuracy in (0, 1], got {text}")
    return value


def build_parser():
    """The ``skal`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="skal",
        description=(
            "Compare active-learning query strategies in a simulated labeling loop: "
            "learning curves, AUBC, the gain over random sampling, labels to reach a "
            "target accuracy, query times."
        ),
        epilog=(
            "Protocol defaults (digits): --n-initial 20 --batch-size 20 --n-queries 10 "
            "--threads 1 --n-jobs 2; (fashion-mnist): --n-initial 100 --batch-size 100 "
            "--n-queries 10 --n-train 10000 --n-test 2000. The training recipe of each data "
            "set: skal --recipe [--dataset ...]."
        ),
    )
    parser.add_argument(
        "--dataset",
        choices=("digits", "fashion-mnist"),
        default="digits",
        help="digits: sklearn's 8x8 digits with a small CNN (default); "
        "fashion-mnist: local Fashion-MNIST with the WAAL paper's LeNet",
    )
    parser.add_argument(
        "--data-path",
        default=None,
        help="Fashion-MNIST folder (default: $SKAL_FASHION_MNIST, then "
        "/usr/share/datasets/fashion-mnist)",
    )
    parser.add_argument(
        "--strategies",
        type=_name_list,
        default=list(DEFAULT_STRATEGIES),
        help=f"comma-separated names, or 'all' (default: {','.join(DEFAULT_STRATEGIES)}; "
        "see skal --list)",
    )
    parser.add_argument(
        "--seeds", type=_int_list, default=[0, 1, 2], help="comma-separated seeds (default: 0,1,2)"
    )
    parser.add_argument(
        "--n-initial", type=_positive, default=None, help="size of the random seed set"
    )
    parser.add_argument(
        "--batch-size", type=_positive, default=None, help="samples queried per round"
    )
    parser.add_argument(
        "--n-queries", type=_non_negative, default=None, help="number of query rounds"
    )
    parser.add_argument(
        "--epochs", type=_positive, default=None,
        help="override the recipe's training epochs per fit",
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="override the recipe's learning rate"
    )
    parser.add_argument(
        "--n-train", type=_positive, default=None, help="pool size (random stratified subset)"
    )
    parser.add_argument(
        "--n-test", type=_positive, default=None,
        help="test set size (random stratified subset)",
    )
    parser.add_argument(
        "--target",
        type=_fraction,
        default=None,
        help="accuracy for 'labels to reach' (default: 95%% of the best mean final accuracy)",
    )
    parser.add_argument("--device", default="auto", help="torch device (default: auto)")
    parser.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help="torch CPU threads per run (default: 1 for digits, whose tiny CNN only loses "
        "from intra-op threading; torch's default for fashion-mnist)",
    )
    parser.add_argument(
        "--n-jobs", type=int, default=None,
        help="parallel (strategy, seed) runs (default: 2 for digits, 1 for fashion-mnist); "
        "results do not depend on it",
    )
    parser.add_argument(
        "--diagnostics",
        action="store_true",
        help="record a two-sample test and W2 between labeled set and pool each round",
    )
    parser.add_argument(
        "--out", default="skal-results",
        help="output folder for the PNG and JSON (default: skal-results)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--list", "--list-strategies", dest="list_strategies", action="store_true",
        help="print every strategy with one line on what it queries, and exit",
    )
    parser.add_argument(
        "--recipe", action="store_true",
        help="print the data set's training recipe and protocol, and exit",
    )
    return parser


def _settings(args):
    defaults = _DATASET_DEFAULTS[args.dataset]
    return {
        key: getattr(args, key) if getattr(args, key) is not None else defaults[key]
        for key in ("n_initial", "batch_size", "n_queries", "n_train", "n_test")
    }


def _print_recipe(args):
    settings = _settings(args)
    print(f"{args.dataset}: {describe_recipe(args.dataset)}")
    overrides = [f"{k} {v:g}" for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v]
    if overrides:
        print(f"overridden here: {', '.join(overrides)}")
    print(
        f"protocol: {settings['n_initial']} random labels, then {settings['n_queries']} queries "
        f"of {settings['batch_size']}; pool {settings['n_train'] or 'all'}, "
        f"test {settings['n_test'] or 'all'}"
    )
    print("Python: skal.recipes.training_recipe(" + repr(args.dataset) + ")")


def _run_simulations(strategies, dataset, n_classes, args, data, settings):
    """simulate() once per kind of learner (WAAL trains its own), results merged."""
    from .recipes import training_recipe
    from .simulation import SimulationResults, simulate

    X, y, X_test, y_test = data
    groups = {}
    for name, strategy in strategies.items():
        groups.setdefault(name in registry.SEMI_SUPERVISED, {})[name] = strategy
    defaults = _DATASET_DEFAULTS[dataset]
    n_jobs = args.n_jobs if args.n_jobs is not None else defaults["n_jobs"]
    runs = []
    for semi, group in groups.items():
        net = training_recipe(dataset, n_classes=n_classes, semi_supervised=semi,
                              max_epochs=args.epochs, lr=args.lr, device=args.device)
        results = simulate(
            net, group, X, y, X_test, y_test,
            n_initial=settings["n_initial"], batch_size=settings["batch_size"],
            n_queries=settings["n_queries"], random_state=list(args.seeds),
            classes=list(range(n_classes)), diagnostics=args.diagnostics,
            progress=not args.no_progress, n_jobs=n_jobs,
        )
        runs.extend(results)
    order = list(strategies)
    runs.sort(key=lambda r: order.index(r.strategy))
    return SimulationResults(runs)


def main(argv=None):
    """Run the ``skal`` command; returns the exit status (0 on success).

    Examples
    --------
    >>> main(["--n-queries", "1", "--epochs", "1", "--seeds", "0",
    ...       "--out", "/tmp/x"])  # doctest: +SKIP
    0
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "label":  # `skal label ...`: the labeling page
        from .label import main as label_main

        return label_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_strategies:
        print(registry.describe_strategies())
        return 0
    if args.recipe:
        _print_recipe(args)
        return 0

    names = list(registry.STRATEGIES) if args.strategies == ["all"] else args.strategies
    try:
        strategies = {name: make_strategy(name) for name in names}
    except ValueError as exc:
        parser.error(str(exc))
    settings = _settings(args)

    from .datasets import load_dataset

    try:
        X, y, X_test, y_test = load_dataset(
            args.dataset,
            path=args.data_path,
            n_train=settings["n_train"],
            n_test=settings["n_test"],
            random_state=0,
        )
    except FileNotFoundError as exc:
        print(f"skal: error: {exc}", file=sys.stderr)
        return 1

    budget = settings["n_initial"] + settings["batch_size"] * settings["n_queries"]
    if budget > len(X):
        parser.error(
            f"--n-initial + --batch-size * --n-queries = {budget} labels, "
            f"more than the {len(X)} samples in the pool."
        )

    n_classes = int(max(y.max(), y_test.max()) + 1)
    print(
        f"skal: {args.dataset}, pool {len(X)}, test {len(X_test)}; "
        f"{settings['n_initial']} initial labels + {settings['n_queries']} x "
        f"{settings['batch_size']} queried; strategies {', '.join(strategies)}; "
        f"seeds {', '.join(map(str, args.seeds))}",
        flush=True,
    )
    print(f"recipe: {describe_recipe(args.dataset)}"
          + (f" (overridden: epochs {args.epochs})" if args.epochs else "")
          + (f" (overridden: lr {args.lr:g})" if args.lr else ""), flush=True)
    import torch

    defaults = _DATASET_DEFAULTS[args.dataset]
    threads = args.threads if args.threads is not None else defaults["threads"]
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        results = _run_simulations(
            strategies, args.dataset, n_classes, args, (X, y, X_test, y_test), settings
        )
    finally:
        # main() may run inside a larger program (tests, notebooks).
        torch.set_num_threads(previous_threads)
    elapsed = time.perf_counter() - start
    results.target_accuracy = args.target

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "learning_curves.png"
    json_path = out / "results.json"
    results.plot(png, title=f"{args.dataset}: test accuracy vs labels",
                 groups={name: registry.strategy_family(name) for name in strategies})
    payload = results.to_dict()
    payload["config"] = {
        "dataset": args.dataset,
        "recipe": describe_recipe(args.dataset),
        "epochs": args.epochs,
        "lr": args.lr,
        "strategies": {name: repr(s) for name, s in strategies.items()},
        "seeds": list(args.seeds),
        "device": args.device,
        "threads": torch.get_num_threads() if threads is None else threads,
        "n_pool": len(X),
        "n_test_samples": len(X_test),
        "wall_time_s": elapsed,
        **settings,
    }
    json_path.write_text(json.dumps(payload, indent=2), encoding="utf-8")

    print()
    print(results.table())
    print()
    print(f"wall time {elapsed:.1f} s")
    print(f"wrote {png}")
    print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
