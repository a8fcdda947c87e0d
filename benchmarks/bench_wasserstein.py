"""Wasserstein tools: DWE throughput and prototype quality.

Two parts (``--part``, default both):

``dwe``
    Deep Wasserstein Embedding against the exact solver on 28x28 Fashion-MNIST
    histograms (squared-pixel ground cost). Reference, measured in the same run:
    ``ot.emd2`` on independent image pairs (one core). DWE is timed on
    independent pairs (two forward passes per distance) and pairwise (N forward
    passes for N^2 distances), and its accuracy (Pearson r, MSE) is measured on
    held-out test pairs. Thesis, MNIST: 192 W2^2/s exact (1 CPU), 3,633/s DWE
    independent pairs (1 CPU), 213,384/s pairwise (1 CPU), 233,981/s on GPU,
    r = 0.996 with 100k training pairs.

``prototypes``
    W2 between a k-subset and the pool for greedy Wasserstein prototypes
    (candidates: a random subset of 5,000; target: the pool quantised to 1,000
    k-means centroids) with the strategies' defaults (``max_solves="auto"``,
    here 20 solves per step), with ``min(20, 400 // k)`` solves per step (what
    ``"auto"`` gives once a labeled set outweighs the batch), with a uniform
    1,000-point sample as the target instead of centroids (``quantize=False``)
    and with IPOT (10 iterations); with ``--exact`` (always with ``--quick``)
    also without a cap, the exact greedy: in 50-D its duality bounds prune
    little, and on one core it took 15 minutes for the first 15 of 100
    prototypes. Against k-center (farthest-first over the whole pool, as
    CoreSet) and uniform random subsets, on pools of 10k and 50k embeddings
    (PCA-50 of Fashion-MNIST images), k = 100. W2 is evaluated exactly against
    a held-out subsample of the pool that is independent from the target the
    greedy search used. Selection time is reported per method.

    python benchmarks/bench_wasserstein.py             # full run (hours on a CPU)
    python benchmarks/bench_wasserstein.py --quick     # < 1 min smoke run
    python benchmarks/bench_wasserstein.py --train-pairs 20000 --epochs 20  # shorter DWE

Writes ``benchmarks/results/wasserstein.json`` (``wasserstein_quick.json`` with --quick).
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import ot
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skal.datasets import load_dataset
from skal.ot import (
    DeepWassersteinEmbedding,
    greedy_prototypes,
    make_w2_pairs,
    w2_squared_pairs,
)
from skal.ot._dwe import _histograms, grid_cost
from skal.ot._prototypes import _check_max_solves
from skal.strategies.coreset import k_center_greedy


def _images(n_train, n_test, seed):
    X, _, X_te, _ = load_dataset("fashion-mnist", n_train=n_train, n_test=n_test,
                                 random_state=seed)
    return X[:, 0].astype(np.float64), X_te[:, 0].astype(np.float64)


def bench_dwe(args):
    X_tr, X_te = _images(args.dwe_images, args.dwe_test_images, args.seed)
    rng = np.random.RandomState(args.seed)

    # Reference: exact W2^2 on independent pairs, one core.
    H, shape = _histograms(X_te)
    M = grid_cost(shape)
    i, j = rng.randint(0, len(H), args.exact_pairs), rng.randint(0, len(H), args.exact_pairs)
    start = time.perf_counter()
    for a, b in zip(H[i], H[j], strict=True):
        ot.emd2(a, b, M)
    exact_rate = args.exact_pairs / (time.perf_counter() - start)

    start = time.perf_counter()
    pairs = make_w2_pairs(X_tr, args.train_pairs, random_state=rng, n_jobs=args.n_jobs)
    label_time = time.perf_counter() - start
    dwe = DeepWassersteinEmbedding(n_pairs=args.train_pairs, max_epochs=args.epochs,
                                   random_state=args.seed, device=args.device)
    start = time.perf_counter()
    dwe.fit(X_tr, pairs=pairs)
    train_time = time.perf_counter() - start

    ti, tj = rng.randint(0, len(X_te), args.test_pairs), rng.randint(0, len(X_te), args.test_pairs)
    exact = w2_squared_pairs(X_te[ti], X_te[tj], n_jobs=args.n_jobs)
    approx = dwe.predict_distance(X_te[ti], X_te[tj])
    r = float(np.corrcoef(approx, exact)[0, 1])
    mse = float(np.mean((approx - exact) ** 2))

    # Independent pairs: two forward passes per distance.
    n_ind = args.dwe_pairs
    pi, pj = rng.randint(0, len(X_te), n_ind), rng.randint(0, len(X_te), n_ind)
    A, B = X_te[pi], X_te[pj]
    start = time.perf_counter()
    dwe.predict_distance(A, B)
    ind_rate = n_ind / (time.perf_counter() - start)
    # Pairwise: N forward passes, N^2 distances.
    P = X_te[: args.pairwise_images]
    start = time.perf_counter()
    Z = dwe.transform(P).astype(np.float64)
    sq = (Z * Z).sum(1)
    D = sq[:, None] - 2 * Z @ Z.T + sq[None, :]
    pair_rate = D.size / (time.perf_counter() - start)
    return {
        "exact_per_s": exact_rate,
        "dwe_independent_per_s": ind_rate,
        "dwe_pairwise_per_s": pair_rate,
        "speedup_independent": ind_rate / exact_rate,
        "speedup_pairwise": pair_rate / exact_rate,
        "test_pearson_r": r,
        "test_mse": mse,
        "test_target_var": float(exact.var()),
        "train_pairs": args.train_pairs,
        "epochs_run": len(dwe.history_),
        "label_seconds": label_time,
        "train_seconds": train_time,
        "thesis": {"exact_per_s": 192, "dwe_independent_per_s_cpu": 3633,
                   "dwe_pairwise_per_s_cpu": 213384, "dwe_independent_per_s_gpu": 233981,
                   "pearson_r": 0.996, "mse": 0.40},
    }


def _w2(S, T):
    return float(np.sqrt(ot.emd2(ot.unif(len(S)), ot.unif(len(T)), ot.dist(S, T),
                                 numItermax=10_000_000)))


def bench_prototypes(args):
    from sklearn.decomposition import PCA

    rows = []
    n_max = max(args.pools)
    X, _ = _images(n_max, 10, args.seed)
    E_all = PCA(50, random_state=args.seed).fit_transform(X.reshape(len(X), -1))
    for n_pool in args.pools:
        rng = np.random.RandomState(args.seed)
        E = E_all[rng.choice(len(E_all), n_pool, replace=False)]
        # Evaluation target: a subsample independent of the greedy search's own.
        evaluation = E[rng.choice(n_pool, min(args.eval_points, n_pool), replace=False)]

        def timed(fn):
            start = time.perf_counter()
            idx = fn()
            return idx, time.perf_counter() - start

        cand_rows = (np.arange(n_pool) if n_pool <= args.candidates else
                     np.sort(rng.choice(n_pool, args.candidates, replace=False)))
        C = E[cand_rows]

        def greedy(method, C=C, E=E, **kw):
            return C[greedy_prototypes(C, E, args.k, n_target=args.n_target, method=method,
                                       random_state=args.seed + 1, **kw)]

        # The "auto" cap for a batch of k once a fixed set outweighs it; without
        # one (here), "auto" keeps 20 per step.
        cap = _check_max_solves("auto", args.k, n_fixed_points=args.k)
        methods = [("greedy", lambda: greedy("exact", max_solves="auto")),
                   (f"greedy-cap{cap}", lambda cap=cap: greedy("exact", max_solves=cap))]
        if args.exact:
            methods.append(("greedy-exact", lambda: greedy("exact")))
        methods.append(("greedy-subsample",
                        lambda: greedy("exact", max_solves="auto", quantize=False)))
        if not args.skip_ipot:
            methods.append(("greedy-ipot", lambda: greedy("ipot", n_iter=10, device=args.device)))
        methods.append(("k-center",
                        lambda E=E: E[k_center_greedy(E, args.k, random_state=args.seed)]))
        results = {}
        for name, fn in methods:
            start = time.perf_counter()
            S = fn()
            seconds = time.perf_counter() - start
            results[name] = {"w2": _w2(S, evaluation), "seconds": seconds}
        draws = [_w2(E[rng.choice(n_pool, args.k, replace=False)], evaluation)
                 for _ in range(args.random_draws)]
        results["random"] = {"w2": float(np.mean(draws)), "w2_std": float(np.std(draws)),
                             "seconds": 0.0}
        for name, res in results.items():
            rows.append({"pool": n_pool, "k": args.k, "method": name, **res})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run (< 1 min)")
    p.add_argument("--part", choices=["dwe", "prototypes", "all"], default="all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--n-jobs", type=int, default=-1, help="workers for exact W2^2 labels")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's; 1 with --quick)")
    p.add_argument("--train-pairs", type=int, default=None,
                   help="DWE training pairs (default 100,000; 200 with --quick)")
    p.add_argument("--epochs", type=int, default=None,
                   help="DWE max epochs (default 100; 2 with --quick)")
    p.add_argument("--pools", type=int, nargs="+", default=None,
                   help="pool sizes for the prototype comparison (default 10,000 50,000)")
    p.add_argument("--exact", action="store_true",
                   help="also run the greedy search without a cap on solves (hours)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("train_pairs", "epochs", "pools")}
    args.exact = args.exact or args.quick
    if args.threads or args.quick:
        torch.set_num_threads(args.threads or 1)
    if args.quick:
        args.dwe_images, args.dwe_test_images = 500, 300
        args.exact_pairs, args.train_pairs, args.test_pairs, args.epochs = 20, 200, 60, 2
        args.dwe_pairs, args.pairwise_images = 2000, 300
        args.pools, args.k, args.n_target, args.eval_points = [1000], 10, 200, 500
        args.random_draws, args.candidates, args.skip_ipot = 5, 300, False
    else:
        args.dwe_images, args.dwe_test_images = 60000, 10000
        args.exact_pairs, args.train_pairs, args.test_pairs, args.epochs = 500, 100_000, 2000, 100
        args.dwe_pairs, args.pairwise_images = 100_000, 3000
        args.pools, args.k, args.n_target, args.eval_points = [10_000, 50_000], 100, 1000, 5000
        args.random_draws, args.candidates, args.skip_ipot = 20, 5000, False
    for name, value in overrides.items():
        if value is not None:
            setattr(args, name, value)

    path = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results",
        "wasserstein_quick.json" if args.quick else "wasserstein.json")
    out = {}
    if args.part != "all" and os.path.exists(path):
        # Keep the other part's results from an earlier run.
        with open(path) as fh:
            out = json.load(fh)
    out["quick"] = args.quick
    settings = {"quick": args.quick, "platform": platform.platform(),
                "torch": torch.__version__, "pot": ot.__version__,
                "threads": torch.get_num_threads(), "n_jobs": args.n_jobs,
                "overrides": {k: v for k, v in overrides.items() if v}}
    if args.part in ("dwe", "all"):
        res = bench_dwe(args)
        out["dwe"] = {**res, "settings": settings}
        print("\nDWE vs exact W2^2 on 28x28 Fashion-MNIST histograms")
        print(f"{'':28s}{'per second':>14s}{'x exact':>10s}")
        print(f"{'ot.emd2 (1 core)':28s}{res['exact_per_s']:14.0f}{1:10.1f}")
        print(f"{'DWE independent pairs':28s}{res['dwe_independent_per_s']:14.0f}"
              f"{res['speedup_independent']:10.1f}")
        print(f"{'DWE pairwise':28s}{res['dwe_pairwise_per_s']:14.0f}"
              f"{res['speedup_pairwise']:10.1f}")
        print(f"held-out r = {res['test_pearson_r']:.3f}, MSE = {res['test_mse']:.3f} "
              f"(target variance {res['test_target_var']:.3f}; {res['train_pairs']} pairs, "
              f"{res['epochs_run']} epochs)")
    if args.part in ("prototypes", "all"):
        rows = bench_prototypes(args)
        out["prototypes"] = rows
        out["prototypes_settings"] = settings
        print("\nW2(selection, pool) on PCA-50 Fashion-MNIST embeddings (lower is better)")
        print(f"{'pool':>8s}{'k':>5s}  {'method':16s}{'W2':>10s}{'seconds':>10s}")
        for r in rows:
            w = "n/a" if r["w2"] is None else f"{r['w2']:.3f}"
            extra = f" +/- {r['w2_std']:.3f}" if "w2_std" in r else ""
            print(f"{r['pool']:8d}{r['k']:5d}  {r['method']:16s}{w:>10s}"
                  f"{r['seconds']:10.2f}{extra}")

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(out, fh, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
