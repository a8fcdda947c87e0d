"""Low-budget label efficiency of the Wasserstein core-set (seed 002's regime).

The paper (Mahmood, Fidler and Law, ICLR 2022) selects a few labels at a time
(cumulative budgets of 10 to 180) in a *fixed* self-supervised feature space with
cosine cost, and trains a fresh small MLP head on the labeled features each round.
This script runs that regime on Fashion-MNIST through :func:`skal.simulate`:

* features: PCA to 50 dimensions, fitted on the 60,000 training images without
  their labels, then L2-normalised (an unsupervised stand-in for the paper's
  SimCLR features, which need a download and a GPU here);
* per seed a random pool of ``--pool`` training images, the full 10,000-image
  test set; ``--initial`` random labels (the same for every strategy), then
  ``--rounds`` queries of ``--query`` (10 -> 100 labels by default);
* learner: scikit-learn's ``MLPClassifier`` (one hidden layer of 100 units),
  refitted from scratch each round;
* strategies: random, k-center (:class:`skal.CoreSet`), k-medoids
  (:class:`skal.KMedoidsCoreSet`) and the GBD Wasserstein core-set
  (:class:`skal.WassersteinCoreSet`, ``--time-limit`` seconds per query), all
  with the cosine metric where they take one; TypiClust (:class:`skal.TypiClust`) and
  ProbCover (:class:`skal.ProbCover`, purity rule with the 10 classes), both on these
  features (``--strategies`` picks a subset).

    python benchmarks/bench_low_budget.py            # 3 seeds, about 8 min on a 2-core CPU
    python benchmarks/bench_low_budget.py --quick    # smoke run, < 1 min

Writes ``benchmarks/results/low_budget.json`` (``low_budget_quick.json``) and
prints mean accuracy per budget and AUBC.
"""

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sklearn.decomposition import PCA  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.preprocessing import normalize  # noqa: E402

from skal import (  # noqa: E402
    CoreSet,
    KMedoidsCoreSet,
    ProbCover,
    RandomSampling,
    TypiClust,
    WassersteinCoreSet,
    simulate,
)
from skal.datasets import load_fashion_mnist  # noqa: E402
from skal.simulation import SimulationResults  # noqa: E402


def feature_space(n_components, data):
    """PCA features of the training and test images, L2-normalised."""
    X, y = load_fashion_mnist(data, subset="train")
    X_test, y_test = load_fashion_mnist(data, subset="test")
    flat = X.reshape(len(X), -1)
    pca = PCA(n_components=n_components, random_state=0).fit(flat)
    F = normalize(pca.transform(flat))
    F_test = normalize(pca.transform(X_test.reshape(len(X_test), -1)))
    return F.astype(np.float32), y, F_test.astype(np.float32), y_test


def strategies(time_limit, probcover_delta="auto"):
    return {
        "random": RandomSampling(),
        "k-center": CoreSet(),
        "k-medoids": KMedoidsCoreSet(metric="cosine"),
        "wasserstein-coreset": WassersteinCoreSet(time_limit=time_limit, metric="cosine"),
        "typiclust": TypiClust(),
        "probcover": ProbCover(delta=probcover_delta, n_classes=10),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--initial", type=int, default=10)
    parser.add_argument("--query", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--time-limit", type=float, default=15.0,
                        help="seconds per Wasserstein core-set query")
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--data", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--out", default=None)
    parser.add_argument("--strategies", nargs="+", default=None,
                        help="a subset of: " + ", ".join(strategies(0)))
    parser.add_argument("--probcover-delta", type=float, default=None,
                        help="ProbCover's ball radius (default: the purity rule)")
    args = parser.parse_args(argv)
    # With 10-100 labels the MLP often stops at max_iter; it is still a fine
    # classifier, and hundreds of warnings would hide the table.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    if args.quick:
        args.seeds, args.pool, args.rounds, args.time_limit = [0], 600, 2, 3.0

    F, y, F_test, y_test = feature_space(args.components, args.data)
    if args.quick:
        keep = np.random.RandomState(12345).permutation(len(y_test))[:2000]
        F_test, y_test = F_test[keep], y_test[keep]
    learner = MLPClassifier(hidden_layer_sizes=(100,), max_iter=500)
    chosen = strategies(args.time_limit,
                        "auto" if args.probcover_delta is None else args.probcover_delta)
    if args.strategies:
        unknown = sorted(set(args.strategies) - set(chosen))
        if unknown:
            parser.error(f"unknown strategies {unknown}; choose from {sorted(chosen)}")
        chosen = {name: chosen[name] for name in args.strategies}
    runs = []
    start = time.perf_counter()
    for seed in args.seeds:
        pool = np.random.RandomState(seed).permutation(len(y))[: args.pool]
        result = simulate(
            learner, chosen, F[pool], y[pool], F_test, y_test,
            n_initial=args.initial, batch_size=args.query, n_queries=args.rounds,
            random_state=seed, progress=False,
        )
        runs.extend(result)
    results = SimulationResults(runs)
    print(results.table())
    print()
    names = results.strategies
    sizes = results.by_strategy(names[0])[0].n_labeled
    print("mean test accuracy (%) per cumulative budget, "
          f"{len(args.seeds)} seed(s), pool {args.pool}")
    print(f"{'labels':>7} " + " ".join(f"{n:>20}" for n in names))
    summary = {}
    for name in names:
        curves = np.array([r.accuracy for r in results.by_strategy(name)]) * 100
        query = np.array([r.query_time for r in results.by_strategy(name)])
        summary[name] = {
            "accuracy_mean": curves.mean(0).round(2).tolist(),
            "accuracy_std": curves.std(0).round(2).tolist(),
            "aubc_mean": float(np.mean([r.aubc for r in results.by_strategy(name)])),
            "query_s_per_round": float(query.mean()),
        }
    for i, n in enumerate(sizes):
        print(f"{int(n):>7} " + " ".join(
            f"{summary[s]['accuracy_mean'][i]:>12.2f} +- {summary[s]['accuracy_std'][i]:>4.2f}"
            for s in names))
    print(f"{'AUBC':>7} " + " ".join(f"{summary[s]['aubc_mean']:>20.4f}" for s in names))
    print(f"{'query s':>7} " + " ".join(f"{summary[s]['query_s_per_round']:>20.2f}"
                                       for s in names))

    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results",
        "low_budget_quick.json" if args.quick else "low_budget.json")
    payload = {
        "benchmark": "low_budget",
        "protocol": {"dataset": "fashion-mnist", "features": f"PCA-{args.components}, L2",
                     "pool": args.pool, "initial": args.initial, "query": args.query,
                     "rounds": args.rounds, "seeds": args.seeds,
                     "time_limit": args.time_limit, "learner": repr(learner),
                     "quick": args.quick},
        "n_labeled": [int(n) for n in sizes],
        "summary": summary,
        "runs": results.to_dict()["runs"],
        "wall_seconds": time.perf_counter() - start,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "command": "python benchmarks/bench_low_budget.py" + (" --quick" if args.quick else "")
        + (" --strategies " + " ".join(args.strategies) if args.strategies else "")
        + (f" --probcover-delta {args.probcover_delta}" if args.probcover_delta is not None
           else ""),
    }
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(payload, fh, indent=1, default=float)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
