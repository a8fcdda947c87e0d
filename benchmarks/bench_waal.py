"""WAAL on Fashion-MNIST: the paper's Table 2 / Table 4 protocol.

Protocol (Shui et al., AISTATS 2020, Table 2): per seed, a fixed random permutation
of the 60,000 training images; the first 40,000 are the pool. 1,000 random pool
images start labeled; 10 queries of 500 follow (1K ... 6K labels). Every round
trains a fresh network and reports accuracy on the full 10,000-image test set.
Images use the released code's normalisation (mean 0.1307, std 0.3081).

Strategies, all on the paper's LeNet (:class:`skal.models.WAALLeNet`, 320-d trunk):

* ``waal``: :class:`skal.models.WAALClassifier` (labeled rows + the rest of the
  pool as ``y = -1``), ``--waal-epochs`` epochs (80 in the paper; one epoch = one
  pass over the unlabeled pool), queried with :class:`skal.WAAL`.
* ``random``, ``entropy``, ``margin``: the same network trained on the labeled rows
  only with the ej0cl6 recipe the paper's baselines most likely used (SGD lr 0.01,
  momentum 0.5, batch 64, ``--baseline-epochs`` = 10 epochs over the labeled set).

WAAL's training sees far more optimisation steps than the baselines (about 600 per
epoch against 16-94); that budget difference is part of the paper's round-0 gap.

    python benchmarks/bench_waal.py                # full protocol (GPU advised)
    python benchmarks/bench_waal.py --quick        # < 1 min smoke run
    python benchmarks/bench_waal.py --preset released_code   # the released code's loop

Writes ``benchmarks/results/waal.json`` (``waal_quick.json`` with --quick). A
(strategy, seed) already in that file under the same protocol is reused, not
recomputed, so ``--seeds 3`` after a one-seed run adds seeds 1 and 2 (``--force``
recomputes everything).
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

# Run from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skal.datasets import load_fashion_mnist  # noqa: E402
from skal.models.waal import WAAL_PRESETS, WAALClassifier, WAALLeNet  # noqa: E402
from skal.nets import NeuralNetClassifier, predict_logits, resolve_device  # noqa: E402
from skal.strategies.random import RandomSampling  # noqa: E402
from skal.strategies.uncertainty import UncertaintySampling  # noqa: E402
from skal.strategies.waal import WAAL, WAAL_QUERY_PRESETS  # noqa: E402

MEAN, STD = 0.1307, 0.3081

# Paper, Table 4 (Fashion-MNIST, mean over 5 runs), labeled size -> accuracy %.
PAPER = {
    "waal": [72.29, 76.99, 79.85, 81.08, 82.04, 82.74, 83.25, 83.96, 84.45, 85.20, 85.99],
    "random": [58.03, 66.81, 71.21, 73.12, 75.80, 77.34, 78.68, 79.58, 80.02, 80.93, 81.30],
    "entropy": [57.40, 66.37, 69.70, 71.60, 74.84, 76.66, 79.00, 79.89, 80.85, 82.26, 83.66],
    "margin": [57.81, 65.61, 70.05, 72.74, 76.55, 78.99, 81.77, 82.32, 83.89, 84.87, 85.52],
}
PAPER_SIZES = [1000 + 500 * i for i in range(11)]


def load_data(args):
    X_train, y_train = load_fashion_mnist(args.data, subset="train")
    X_test, y_test = load_fashion_mnist(args.data, subset="test")
    X_train = (X_train - MEAN) / STD
    X_test = (X_test - MEAN) / STD
    if args.test_size < len(y_test):
        keep = np.random.RandomState(12345).permutation(len(y_test))[: args.test_size]
        X_test, y_test = X_test[keep], y_test[keep]
    return X_train, y_train, X_test, y_test


def make_waal_net(args, seed, device):
    params = dict(WAAL_PRESETS[args.preset]) if args.preset != "default" else {}
    params.update(max_epochs=args.waal_epochs, random_state=seed, device=device, verbose=0)
    return WAALClassifier(WAALLeNet, module__n_classes=10, **params)


def make_plain_net(args, seed, device):
    return NeuralNetClassifier(
        WAALLeNet, module__n_classes=10, optimizer=torch.optim.SGD, lr=0.01,
        optimizer__momentum=0.5, batch_size=64, max_epochs=args.baseline_epochs,
        iterator_train__shuffle=True, random_state=seed, device=device, verbose=0,
    )


def make_strategy(name, args, seed):
    if name == "waal":
        preset = "released_code" if args.preset == "released_code" else None
        return WAAL.from_preset(preset) if preset else WAAL(**WAAL_QUERY_PRESETS["released_code"])
    if name == "random":
        return RandomSampling(random_state=seed)
    return UncertaintySampling(measure=name)


def accuracy(net, X, y):
    return float((predict_logits(net, X, batch_size=1000).argmax(1) == y).mean())


def run_one(name, seed, data, args, device):
    X_pool, y_pool, X_test, y_test = data
    rng = np.random.RandomState(seed)
    labeled = np.zeros(len(y_pool), dtype=bool)
    labeled[rng.choice(len(y_pool), args.initial, replace=False)] = True
    rounds = []
    for r in range(args.rounds + 1):
        net_seed = 1000 * seed + r
        start = time.perf_counter()
        if name == "waal":
            net = make_waal_net(args, net_seed, device)
            net.fit(X_pool, np.where(labeled, y_pool, -1))
        else:
            net = make_plain_net(args, net_seed, device)
            net.fit(X_pool[labeled], y_pool[labeled])
        train_s = time.perf_counter() - start
        row = {"n_labeled": int(labeled.sum()), "accuracy": accuracy(net, X_test, y_test),
               "train_s": train_s, "query_s": None}
        if name == "waal":
            last = net.history[-1]
            row.update({k: last.get(k) for k in ("critic_gap", "gradient_penalty",
                                                 "critic_grad_norm", "train_ce")})
        if r < args.rounds:
            unl = np.flatnonzero(~labeled)
            strategy = make_strategy(name, args, net_seed)
            start = time.perf_counter()
            idx = strategy.query(net, X_pool[unl], n_instances=args.query)
            row["query_s"] = time.perf_counter() - start
            labeled[unl[idx]] = True
        rounds.append(row)
        print(f"  {name:8s} seed {seed} round {r:2d}: {row['n_labeled']:6d} labels, "
              f"acc {100 * row['accuracy']:.2f} %, train {train_s:.1f} s"
              + (f", query {row['query_s']:.2f} s" if row["query_s"] is not None else ""),
              flush=True)
    return rounds


PROTOCOL_KEYS = ("seeds", "pool", "initial", "query", "rounds", "waal_epochs",
                 "baseline_epochs", "test_size", "preset", "quick")


def finished_runs(path, args):
    """Per-seed runs of an earlier invocation with the same protocol, by strategy.

    The seed count may differ: seed ``i`` is the ``i``-th run of a strategy.
    """
    if args.force or not os.path.exists(path):
        return {}
    with open(path) as fh:
        old = json.load(fh)
    protocol = {k: getattr(args, k) for k in PROTOCOL_KEYS if k != "seeds"}
    old_protocol = {k: v for k, v in old.get("protocol", {}).items() if k != "seeds"}
    return old.get("runs", {}) if old_protocol == protocol else {}


def summarise(results, strategies):
    summary = {}
    for name in strategies:
        runs = results[name]
        acc = np.array([[r["accuracy"] for r in run] for run in runs]) * 100
        train = np.array([[r["train_s"] for r in run] for run in runs])
        query = np.array([[r["query_s"] for r in run[:-1]] for run in runs], dtype=float)
        summary[name] = {
            "n_labeled": [r["n_labeled"] for r in runs[0]],
            "accuracy_mean": acc.mean(0).round(2).tolist(),
            "accuracy_std": acc.std(0).round(2).tolist(),
            "train_s_per_round": float(train.mean()),
            "query_s_per_round": float(np.nanmean(query)) if query.size else None,
        }
    return summary


def print_table(summary, strategies, paper_protocol):
    sizes = summary[strategies[0]]["n_labeled"]
    head = f"{'labels':>7} " + " ".join(f"{s:>14}" for s in strategies)
    if paper_protocol:
        head += "  | paper: " + " ".join(f"{s:>7}" for s in strategies if s in PAPER)
    print(head)
    for i, n in enumerate(sizes):
        cells = [f"{summary[s]['accuracy_mean'][i]:6.2f}+-{summary[s]['accuracy_std'][i]:5.2f}"
                 for s in strategies]
        line = f"{n:>7} " + " ".join(f"{c:>14}" for c in cells)
        if paper_protocol:
            line += "  |        " + " ".join(f"{PAPER[s][i]:7.2f}" for s in strategies
                                            if s in PAPER)
        print(line)
    print()
    print(f"{'strategy':>9} {'train s/round':>14} {'query s/round':>14} {'query / waal':>13}")
    ref = summary.get("waal", {}).get("query_s_per_round")
    for s in strategies:
        q = summary[s]["query_s_per_round"]
        ratio = f"{q / ref:13.2f}" if (ref and q is not None) else f"{'-':>13}"
        print(f"{s:>9} {summary[s]['train_s_per_round']:14.2f} "
              f"{(q if q is not None else float('nan')):14.3f} {ratio}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (< 1 min on CPU)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=40000)
    parser.add_argument("--initial", type=int, default=1000)
    parser.add_argument("--query", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--waal-epochs", type=int, default=80)
    parser.add_argument("--baseline-epochs", type=int, default=10)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--strategies", default="waal,random,entropy,margin")
    parser.add_argument("--preset", choices=["default", "released_code"], default="default",
                        help="WAALClassifier/WAAL settings: skal's defaults (released code "
                             "with a correct WGAN-GP penalty) or the released code exactly")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--out", default=None)
    parser.add_argument("--force", action="store_true",
                        help="recompute runs already in the output file")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.pool, args.initial, args.query, args.rounds = 1, 600, 100, 50, 1
        args.waal_epochs, args.baseline_epochs, args.test_size = 1, 2, 500
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    device = str(resolve_device(args.device))
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))

    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results",
        "waal_quick.json" if args.quick else "waal.json")
    finished = finished_runs(out, args)
    X_train, y_train, X_test, y_test = load_data(args)
    results = {name: [] for name in strategies}
    reused = {name: 0 for name in strategies}
    for seed in range(args.seeds):
        order = np.random.RandomState(seed).permutation(len(y_train))[: args.pool]
        data = (X_train[order], y_train[order], X_test, y_test)
        for name in strategies:
            done = finished.get(name, [])
            if seed < len(done):
                print(f"  {name:8s} seed {seed}: reused from {out}", flush=True)
                results[name].append(done[seed])
                reused[name] += 1
            else:
                results[name].append(run_one(name, seed, data, args, device))

    summary = summarise(results, strategies)
    paper_protocol = (args.pool, args.initial, args.query, args.rounds) == (40000, 1000, 500, 10)
    print()
    print_table(summary, strategies, paper_protocol)

    os.makedirs(os.path.dirname(out), exist_ok=True)
    payload = {
        "benchmark": "waal-fashion-mnist",
        "protocol": {k: getattr(args, k) for k in PROTOCOL_KEYS},
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "device": device, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if device.startswith("cuda") else None},
        # "machine" describes this invocation; the first reused[name] runs of a
        # strategy come from earlier ones, possibly on another machine.
        "reused": reused,
        "summary": summary,
        "paper": {"n_labeled": PAPER_SIZES, **PAPER} if paper_protocol else None,
        "runs": results,
    }
    with open(out, "w") as fh:
        json.dump(payload, fh, indent=1)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
