"""Where would each stopping criterion have stopped? The table of docs/stopping.md.

Runs :func:`skal.simulate` with every criterion of :mod:`skal.stopping` recorded
(the loop itself runs to the end) and prints :func:`skal.stopping.stop_table`:
labels and accuracy at each criterion's stop point against the curve's best.

Usage::

    python -m benchmarks.bench_stopping --dataset digits --seeds 0 1 2
    python -m benchmarks.bench_stopping --dataset fashion-mnist --seeds 0 1 2
    python -m benchmarks.bench_stopping --quick          # smoke run, seconds
"""

import argparse
import json
from pathlib import Path

import numpy as np

_SETTINGS = {
    # digits: the CLI's recipe, 20 random labels then 15 x 20.
    "digits": dict(recipe="digits", n_initial=20, batch_size=20, n_queries=15,
                   n_train=None, n_test=None, n_stop=500, n_val=200),
    # Fashion-MNIST: the small-budget protocol's recipe (no labels held out),
    # 100 random labels then 15 x 100 from a 10K pool.
    "fashion-mnist": dict(recipe="fashion-mnist-thesis", n_initial=100, batch_size=100,
                          n_queries=15, n_train=10000, n_test=2000, n_stop=2000, n_val=1000),
}


def run(dataset, seeds, strategies, quick=False, out=None):
    import torch

    from skal import simulate
    from skal.cli import make_strategy
    from skal.datasets import load_dataset
    from skal.recipes import training_recipe
    from skal.stopping import (
        BudgetStop,
        StabilizingPredictions,
        UncertaintyStop,
        ValidationPlateau,
        stop_table,
    )

    cfg = dict(_SETTINGS[dataset])
    if quick:
        cfg.update(max_epochs=2, n_queries=3, n_stop=100, n_val=50)
    X, y, X_test, y_test = load_dataset(dataset, n_train=cfg["n_train"], n_test=cfg["n_test"],
                                        random_state=0)
    rng = np.random.RandomState(0)
    order = rng.permutation(len(X))
    # The validation set is labeled data held out of the pool; the stop set is
    # unlabeled pool data, as in Bloodgood & Vijay-Shanker.
    val, pool = order[: cfg["n_val"]], order[cfg["n_val"]:]
    X_val, y_val, X, y = X[val], y[val], X[pool], y[pool]
    stop_set = X[rng.choice(len(X), cfg["n_stop"], replace=False)]
    n_classes = int(y.max() + 1)
    budget = cfg["n_initial"] + cfg["batch_size"] * (cfg["n_queries"] * 2 // 3)
    stop = {
        f"budget {budget}": BudgetStop(budget),
        "stabilizing (kappa 0.99, w=3)": StabilizingPredictions(stop_set, window=3, threshold=0.99),
        "max uncertainty < 0.1": UncertaintyStop(threshold=0.1, aggregate="max"),
        "overall uncertainty < 0.05": UncertaintyStop(threshold=0.05, aggregate="mean"),
        "validation plateau (p=3)": ValidationPlateau(X_val, y_val, patience=3, min_delta=0.0),
    }
    net = training_recipe(cfg["recipe"], n_classes=n_classes, max_epochs=cfg.get("max_epochs"))
    torch.set_num_threads(1)
    results = simulate(
        net, {name: make_strategy(name) for name in strategies}, X, y, X_test, y_test,
        n_initial=cfg["n_initial"], batch_size=cfg["batch_size"], n_queries=cfg["n_queries"],
        random_state=list(seeds), classes=list(range(n_classes)), stop=stop, progress=False,
    )
    table = stop_table(results)
    if out is not None:
        Path(out).write_text(results.to_json(), encoding="utf-8")
    return results, table, cfg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=tuple(_SETTINGS), default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=["random", "margin"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None, help="write the runs as JSON there")
    args = parser.parse_args(argv)
    results, table, cfg = run(args.dataset, args.seeds, args.strategies, args.quick, args.out)
    print(json.dumps(cfg))
    print(table)


if __name__ == "__main__":
    main()
