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

__all__ = ["STRATEGY_NAMES", "build_parser", "main", "make_strategy"]

DEFAULT_STRATEGIES = ("random", "entropy", "margin", "bald", "coreset")

# name -> (module defining the class, class name, constructor kwargs). Classes
# are looked up in skal.strategies and skal first, then in their own module, so
# strategies written by other skal modules show up once they exist.
_STRATEGIES = {
    "random": ("skal.strategies.random", "RandomSampling", {}),
    "entropy": ("skal.strategies.uncertainty", "UncertaintySampling", {"measure": "entropy"}),
    "margin": ("skal.strategies.uncertainty", "UncertaintySampling", {"measure": "margin"}),
    "least-confident": (
        "skal.strategies.uncertainty", "UncertaintySampling", {"measure": "least_confident"}
    ),
    "bald": ("skal.strategies.bayesian", "BALD", {"n_passes": 10}),
    "coreset": ("skal.strategies.coreset", "CoreSet", {}),
    "dqbc": ("skal.strategies.committee", "DQBC", {}),
    "balnet": ("skal.strategies.balnet", "BALNet", {}),
    "dfal": ("skal.strategies.dfal", "DFAL", {}),
    "ceal": ("skal.strategies.dfal", "CEAL", {}),
    "egl": ("skal.strategies.dfal", "EGL", {}),
}
STRATEGY_NAMES = tuple(_STRATEGIES)
_ALIASES = {
    "core-set": "coreset",
    "kcenter": "coreset",
    "least_confident": "least-confident",
    "leastconfident": "least-confident",
    "uncertainty": "least-confident",
}

# Per data set: defaults that keep the default run to a couple of minutes on a
# 2-core CPU (digits) and a few minutes for Fashion-MNIST.
_DATASET_DEFAULTS = {
    "digits": {
        "arch": "digits", "n_initial": 20, "batch_size": 20, "n_queries": 10, "epochs": 20, "lr": 1e-2,
        "n_train": None, "n_test": None, "threads": 1,
    },
    "fashion-mnist": {
        "arch": "lenet5", "n_initial": 100, "batch_size": 100, "n_queries": 10, "epochs": 10, "lr": 1e-3,
        "n_train": 10000, "n_test": 2000, "threads": None,
    },
}


def make_strategy(name, random_state=None):
    """A strategy from its command-line name (see ``skal --list-strategies``).

    Examples
    --------
    >>> make_strategy("margin")  # doctest: +SKIP
    UncertaintySampling(measure='margin')
    """
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in _STRATEGIES:
        raise ValueError(
            f"Unknown strategy {name!r}; choose from {', '.join(available_strategies())}."
        )
    module, class_name, kwargs = _STRATEGIES[key]
    cls = _lookup(module, class_name)
    if cls is None:
        raise ValueError(
            f"Strategy {name!r} ({class_name}) is not available in this skal installation."
        )
    strategy = cls(**kwargs)
    if random_state is not None and "random_state" in strategy.get_params(deep=False):
        strategy.set_params(random_state=random_state)
    return strategy


def available_strategies():
    """Command-line strategy names whose classes exist in this installation."""
    return [name for name, (mod, cls, _) in _STRATEGIES.items() if _lookup(mod, cls) is not None]


def _lookup(module, class_name):
    import importlib

    for name in ("skal.strategies", "skal", module):
        try:
            namespace = importlib.import_module(name)
        except ImportError:
            continue
        cls = getattr(namespace, class_name, None)
        if cls is not None:
            return cls
    return None


def _int_list(text):
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
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
            "learning curves, AUBC, labels to reach a target accuracy, query times."
        ),
        epilog=(
            "Defaults (digits): --n-initial 20 --batch-size 20 --n-queries 10 --epochs 20 "
            "--lr 0.01 --threads 1; (fashion-mnist): --n-initial 100 --batch-size 100 "
            "--n-queries 10 --epochs 10 --lr 0.001 --n-train 10000 --n-test 2000."
        ),
    )
    parser.add_argument(
        "--dataset",
        choices=("digits", "fashion-mnist"),
        default="digits",
        help="digits: sklearn's 8x8 digits with a small CNN (default); "
        "fashion-mnist: local Fashion-MNIST with LeNet-5",
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
        help=f"comma-separated names (default: {','.join(DEFAULT_STRATEGIES)})",
    )
    parser.add_argument(
        "--seeds", type=_int_list, default=[0, 1, 2], help="comma-separated seeds (default: 0,1,2)"
    )
    parser.add_argument("--n-initial", type=_positive, default=None, help="size of the random seed set")
    parser.add_argument("--batch-size", type=_positive, default=None, help="samples queried per round")
    parser.add_argument("--n-queries", type=_non_negative, default=None, help="number of query rounds")
    parser.add_argument("--epochs", type=_positive, default=None, help="training epochs per fit")
    parser.add_argument(
        "--lr", type=float, default=None, help="Adam learning rate (default: 1e-2 digits, 1e-3 fashion-mnist)"
    )
    parser.add_argument("--n-train", type=_positive, default=None, help="pool size (random stratified subset)")
    parser.add_argument("--n-test", type=_positive, default=None, help="test set size (random stratified subset)")
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
        help="torch CPU threads (default: 1 for digits, whose tiny CNN only loses "
        "from intra-op threading; torch's default for fashion-mnist)",
    )
    parser.add_argument(
        "--n-jobs", type=int, default=None, help="parallel (strategy, seed) runs (default: 1)"
    )
    parser.add_argument(
        "--diagnostics",
        action="store_true",
        help="record a two-sample test and W2 between labeled set and pool each round",
    )
    parser.add_argument(
        "--out", default="skal-results", help="output folder for the PNG and JSON (default: skal-results)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--list-strategies", action="store_true", help="print the available strategy names and exit"
    )
    return parser


def main(argv=None):
    """Run the ``skal`` command; returns the exit status (0 on success).

    Examples
    --------
    >>> main(["--n-queries", "1", "--epochs", "1", "--seeds", "0", "--out", "/tmp/x"])  # doctest: +SKIP
    0
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "label":  # `skal label ...`: the labeling page
        from .label import main as label_main

        return label_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_strategies:
        print("\n".join(available_strategies()))
        return 0

    try:
        strategies = {name: make_strategy(name) for name in args.strategies}
    except ValueError as exc:
        parser.error(str(exc))

    defaults = _DATASET_DEFAULTS[args.dataset]
    settings = {
        key: getattr(args, key) if getattr(args, key) is not None else defaults[key]
        for key in ("n_initial", "batch_size", "n_queries", "epochs", "lr", "n_train", "n_test")
    }

    from .datasets import load_dataset
    from .nets import cnn_classifier
    from .simulation import simulate

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
    net = cnn_classifier(
        defaults["arch"],
        n_classes,
        max_epochs=settings["epochs"],
        lr=settings["lr"],
        device=args.device,
    )

    print(
        f"skal: {args.dataset}, pool {len(X)}, test {len(X_test)}, {defaults['arch']} CNN, "
        f"{settings['epochs']} epochs (lr {settings['lr']:g}); {settings['n_initial']} initial labels + "
        f"{settings['n_queries']} x {settings['batch_size']} queried; "
        f"strategies {', '.join(strategies)}; seeds {', '.join(map(str, args.seeds))}",
        flush=True,
    )
    import torch

    threads = args.threads if args.threads is not None else defaults["threads"]
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        results = simulate(
            net,
            strategies,
            X,
            y,
            X_test,
            y_test,
            n_initial=settings["n_initial"],
            batch_size=settings["batch_size"],
            n_queries=settings["n_queries"],
            random_state=list(args.seeds),
            classes=list(range(n_classes)),
            diagnostics=args.diagnostics,
            progress=not args.no_progress,
            n_jobs=args.n_jobs,
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
    results.plot(png, title=f"{args.dataset}: test accuracy vs labels")
    payload = results.to_dict()
    payload["config"] = {
        "dataset": args.dataset,
        "arch": defaults["arch"],
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
