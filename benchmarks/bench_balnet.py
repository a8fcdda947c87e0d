"""BALNet: query time on Fashion-MNIST / LeNet5 and label efficiency on digits.

Two parts:

* ``time``: trains the zoo's LeNet5 briefly on Fashion-MNIST, then times one
  BALNet query of ``--n-query`` samples out of ``--n-candidates`` candidates
  (labeled set of ``--n-labeled``), with predicted labels, expected labels and
  the Wasserstein diversity step. References measured in the same run: one
  no-grad inference pass over the candidates, and BALD (10 MC-dropout passes)
  on the same candidates.
* ``curve``: :func:`skal.simulate` on sklearn's digits with the small CNN:
  BALNet (max and min), BALNet with diversity (``--curve-diversity``), BALD,
  entropy, core-set and random, several seeds; AUBC, final accuracy and query
  seconds. ``--quick`` keeps BALNet, entropy and random, one seed.

    python benchmarks/bench_balnet.py --quick    # < 1 min smoke run
    python benchmarks/bench_balnet.py            # full run (minutes)

Writes ``benchmarks/results/balnet.json`` (``balnet_quick.json`` with --quick).
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

from benchmarks._timing import best_time
from skal.nets import cnn_classifier, predict_logits
from skal.strategies.balnet import BALNet


def bench_time(args):
    from skal.datasets import load_fashion_mnist
    from skal.strategies.bayesian import BALD

    X, y = load_fashion_mnist(n_samples=args.n_train + args.n_candidates,
                              random_state=args.seed)
    X_lab, y_lab = X[:args.n_labeled], y[:args.n_labeled]
    X_train, y_train = X[:args.n_train], y[:args.n_train]
    X_cand = X[args.n_train:]
    net = cnn_classifier("lenet5", 10, max_epochs=args.epochs, device=args.device,
                         random_state=args.seed)
    t0 = time.perf_counter()
    net.fit(X_train, y_train)
    train_s = time.perf_counter() - t0
    kw = {"X_labeled": X_lab, "y_labeled": y_lab}
    n_cand = len(X_cand)

    predict_logits(net, X_cand[:8])  # warm-up (thread pools, allocator)
    rows = []
    ref_s = best_time(lambda: predict_logits(net, X_cand), args.repeat)
    rows.append(("inference pass (reference)", ref_s, None))
    bald_s = best_time(lambda: BALD(n_passes=10, random_state=0).query(
        net, X_cand, args.n_query), args.repeat)
    rows.append(("BALD, 10 passes (reference)", bald_s, None))
    variants = [
        ("BALNet predicted", BALNet(n_candidates=n_cand, random_state=0)),
        ("BALNet expected", BALNet(n_candidates=n_cand, label_mode="expected", random_state=0)),
        ("BALNet predicted, min", BALNet(n_candidates=n_cand, objective="min", random_state=0)),
    ]
    if args.diversity:
        variants.append((f"BALNet + diversity M={args.diversity}",
                         BALNet(n_candidates=n_cand, diversity=args.diversity, random_state=0)))
    for name, strategy in variants:
        sec = best_time(lambda s=strategy: s.query(net, X_cand, args.n_query, **kw), args.repeat)
        rows.append((name, sec, strategy.criterion_))

    print(f"\nQuery time: {args.n_query} of {n_cand} Fashion-MNIST candidates, LeNet5 "
          f"(trained {train_s:.0f}s on {args.n_train}), |A|={args.n_labeled}, "
          f"device={net.device}, threads={torch.get_num_threads()}")
    print(f"{'method':<32} {'seconds':>9} {'x inference':>12} {'x BALD':>8} {'criterion':>11}")
    out = []
    for name, sec, crit in rows:
        c = "" if crit is None else f"{crit:11.1f}"
        print(f"{name:<32} {sec:>9.3f} {sec / ref_s:>11.1f}x {sec / bald_s:>7.2f}x {c:>11}")
        out.append({"method": name, "seconds": sec, "vs_inference": sec / ref_s,
                    "vs_bald": sec / bald_s, "criterion": crit})
    return {"n_candidates": n_cand, "n_labeled": args.n_labeled, "n_query": args.n_query,
            "n_train": args.n_train, "epochs": args.epochs, "train_seconds": train_s,
            "device": str(net.device), "rows": out}


def bench_curve(args):
    from skal.datasets import load_dataset
    from skal.simulation import simulate
    from skal.strategies.bayesian import BALD
    from skal.strategies.coreset import CoreSet
    from skal.strategies.random import RandomSampling
    from skal.strategies.uncertainty import UncertaintySampling

    X, y, X_test, y_test = load_dataset("digits", random_state=0)
    strategies = {
        "balnet": BALNet(n_candidates=args.curve_candidates),
        "balnet-min": BALNet(n_candidates=args.curve_candidates, objective="min"),
        "entropy": UncertaintySampling("entropy"),
        "random": RandomSampling(),
    }
    if not args.quick:
        strategies.update({
            f"balnet-div{args.curve_diversity}": BALNet(n_candidates=args.curve_candidates,
                                                         diversity=args.curve_diversity),
            "bald": BALD(n_passes=10, n_candidates=args.curve_candidates),
            "coreset": CoreSet(),
        })
    net = cnn_classifier("digits", 10, max_epochs=args.curve_epochs, device=args.device)
    runs = simulate(net, strategies, X, y, X_test, y_test, n_initial=args.n_initial,
                    batch_size=args.batch, n_queries=args.n_queries,
                    random_state=list(range(args.seeds)), progress=False)
    print(f"\nLabel efficiency on digits (DigitsCNN, {args.curve_epochs} epochs from scratch "
          f"each round), {args.n_initial} -> {args.n_initial + args.batch * args.n_queries} "
          f"labels by {args.batch}, {args.seeds} seed(s)")
    print(runs.table())
    return runs.to_dict()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 1 min)")
    parser.add_argument("--part", choices=["time", "curve", "both"], default="both")
    parser.add_argument("--n-candidates", type=int, default=1000)
    parser.add_argument("--n-labeled", type=int, default=100)
    parser.add_argument("--n-query", type=int, default=100)
    parser.add_argument("--n-train", type=int, default=10000, help="images to train LeNet5 on")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--diversity", type=int, default=3,
                        help="M of the timed diversity step (exact W2 dominates the query)")
    parser.add_argument("--repeat", type=int, default=3, help="timings keep the best of these")
    parser.add_argument("--n-initial", type=int, default=50)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--n-queries", type=int, default=10)
    parser.add_argument("--curve-epochs", type=int, default=15)
    parser.add_argument("--curve-candidates", type=int, default=500)
    parser.add_argument("--curve-diversity", type=int, default=3,
                        help="M of the diversity step in the curves (exact W2 is slow)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.epochs, args.repeat, args.n_candidates = 1000, 1, 1, 300
        args.n_query, args.diversity = 20, 3
        args.n_initial, args.batch, args.n_queries = 30, 20, 2
        args.curve_epochs, args.curve_candidates, args.seeds = 20, 200, 1

    result = {
        "benchmark": "balnet",
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    if args.part in ("time", "both"):
        result["query_time"] = bench_time(args)
    if args.part in ("curve", "both"):
        result["label_efficiency"] = bench_curve(args)

    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results",
        "balnet_quick.json" if args.quick else "balnet.json",
    )
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(result, fh, indent=2, default=_jsonable)
    print(f"wrote {out}")


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


if __name__ == "__main__":
    main()
