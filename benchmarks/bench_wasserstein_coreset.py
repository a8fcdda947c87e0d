"""Wasserstein core-set (GBD) against k-medoids and k-center on Fashion-MNIST embeddings (issue 8).

A LeNet5 is trained on a few Fashion-MNIST training images; its 84-d hidden
features of pools of 2k, 10k and 50k other training
images are the feature space. For every pool size and budget B (no labeled
points: B is the whole selection) the objective W (discrete Wasserstein-1 between
uniform on the pool and uniform on the selection, cosine cost) is reported for

* k-center (greedy, the paper's warm start), k-medoids (alternating, seeded by
  k-center: the paper's main baseline), random (mean of 3 draws), Lloyd-OT
  (transport-aware k-medoids, spec 5.3);
* GBD (``skal.ot.mip.solve_gbd``) stopped at each time limit, with its certified
  lower bound and gap (of the candidate-restricted problem when the pool is
  larger than ``max_candidates``), and its ratio to k-medoids (the paper: about
  0.5 at larger B, below 1 even after 3 minutes).

    python benchmarks/bench_wasserstein_coreset.py --quick     # < 1 min
    # hours: 3 pools x 6 budgets x (1+3+10 min)
    python benchmarks/bench_wasserstein_coreset.py
    python benchmarks/bench_wasserstein_coreset.py --pools 2000 10000 --budgets 10 40 180 \
        --time-limits 60 180

Writes ``benchmarks/results/wasserstein_coreset.json`` (``..._quick.json``).

``--compare-dense`` instead compares the sparse, screened transport (the
default) with the original dense one (N x |S| float64 cost and plan inside
``ot.emd``), each run in its own subprocess so that peak RSS is honest: for
every pool and budget, the W of the k-center, k-medoids and Lloyd-OT selections,
GBD stopped after ``--max-iter`` master solves (a deterministic stop, so both
runs search the same way up to the duals of degenerate transports), the
tracemalloc peak and the peak RSS above the process's RSS before the run.
``--labeled`` points (the first ones of the pool) are fixed in, as in a later
active-learning round; ``--skip-dense-above N`` leaves out the dense runs of
larger pools (11 GB at N = 40K with 1500 centers)::

    python benchmarks/bench_wasserstein_coreset.py --compare-dense --pools 2000 10000 \
        --budgets 10 40 --max-iter 5
    python benchmarks/bench_wasserstein_coreset.py --compare-dense --pools 40000 \
        --budgets 500 --labeled 1000 --max-iter 1 --skip-dense-above 20000

Writes ``benchmarks/results/wasserstein_coreset_dense_vs_sparse.json``.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skal.datasets import load_fashion_mnist  # noqa: E402
from skal.nets import cnn_classifier, iter_batches  # noqa: E402
from skal.ot import mip  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def features(n_train, epochs, max_pool, seed):
    X, y = load_fashion_mnist(subset="train")
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(X))
    tr, rest = order[:n_train], order[n_train:]
    net = cnn_classifier("lenet5", 10, max_epochs=epochs, random_state=seed, device="cpu",
                         verbose=0)
    net.fit(X[tr], y[tr])
    pool_idx = rest[:max_pool]
    if max_pool > rest.size:
        # larger pools than the 60K training images: mirrored copies (left-right,
        # then upside-down) of the pool images, as bench_scaling.py does
        X = np.concatenate([X, X[..., ::-1], X[..., ::-1, :]])
        y = np.concatenate([y, y, y])
        pool_idx = np.concatenate([rest, rest + len(order), rest + 2 * len(order)])[:max_pool]
    # skal's LeNet5 (the thesis version) ends its trunk in a 10-d layer, which
    # is what skal.nets.embed returns; the 84-d layer before it is a richer space
    trunk = net.module_.features[:12]
    out = []
    with torch.no_grad():
        for _, batch in iter_batches(X[pool_idx], 1024, torch.device("cpu")):
            out.append(trunk.eval()(batch).numpy())
    return np.concatenate(out).astype(np.float64), y[pool_idx]


def _rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(path, n, B, n_labeled, dense, metric, max_iter, max_candidates, seed):
    """One GBD run in this (fresh) process; prints a JSON line."""
    X = np.array(np.load(path, mmap_mode="r")[:n], dtype=np.float64)
    lab = np.arange(n_labeled)
    mip._DENSE_TRANSPORT = dense
    # the solvers' libraries load lazily: load them first, so the RSS measured
    # above the baseline is the run's data, not shared code
    import pulp  # noqa: F401
    import scipy.optimize  # noqa: F401
    import sklearn.cluster  # noqa: F401

    mip.coreset_cost(X[:50], np.arange(5), metric)
    mip.solve_gbd(X[:50], 3, metric=metric, time_limit=5, max_iter=2, lp_rounds=1)
    base = _rss_bytes()
    tracemalloc.start()
    t0 = time.perf_counter()
    S_kc = mip.kcenter_greedy(X, B, labeled=lab, metric=metric)
    S_km = mip.kmedoids(X, B, labeled=lab, metric=metric)
    w = {name: mip.coreset_cost(X, np.r_[lab, S], metric)
         for name, S in (("kcenter", S_kc), ("kmedoids", S_km))}
    res = mip.solve_gbd(X, B, labeled=lab, metric=metric, time_limit=1e6, max_iter=max_iter,
                        lp_rounds=3, polish_iter=2, max_candidates=max_candidates,
                        warm_start="lloyd_ot", random_state=seed)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(
        n_pool=n, budget=B, n_labeled=n_labeled, transport="dense" if dense else "sparse",
        kcenter=w["kcenter"], kmedoids=w["kmedoids"], lloyd_ot=res.heuristics.get("lloyd_ot"),
        gbd=res.objective, lower_bound=res.lower_bound, n_iter=res.n_iter,
        tracemalloc_peak_mb=peak / 2**20, extra_peak_rss_mb=(maxrss - base) / 2**20,
        peak_rss_mb=maxrss / 2**20, seconds_contended=seconds)))


def compare_dense(args, F):
    """Dense vs sparse transport, each (pool, budget, transport) in a subprocess."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "features.npy")
        np.save(path, F)
        print(f"{'N':>6} {'B':>4} {'L':>5} {'transport':>9} {'kcenter':>8} {'kmedoids':>8} "
              f"{'lloydOT':>8} {'GBD':>8} {'tracemalloc MB':>14} {'extra RSS MB':>12}")
        for n in args.pools:
            for B in args.budgets:
                for dense in (True, False):
                    if dense and n > args.skip_dense_above:
                        continue
                    cmd = [sys.executable, os.path.abspath(__file__), "--_one", path, str(n),
                           str(B), str(args.labeled), str(int(dense)), args.metric,
                           str(args.max_iter), str(args.max_candidates), str(args.seed)]
                    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                               MKL_NUM_THREADS="1")
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    if out.returncode:
                        print(out.stderr[-2000:])
                        raise SystemExit(f"run failed: {' '.join(cmd)}")
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    rows.append(row)
                    print(f"{n:>6} {B:>4} {args.labeled:>5} {row['transport']:>9} "
                          f"{row['kcenter']:>8.5f} {row['kmedoids']:>8.5f} "
                          f"{row['lloyd_ot']:>8.5f} {row['gbd']:>8.5f} "
                          f"{row['tracemalloc_peak_mb']:>14.1f} "
                          f"{row['extra_peak_rss_mb']:>12.1f}", flush=True)
    by = {}
    for r in rows:
        by.setdefault((r["n_pool"], r["budget"]), {})[r["transport"]] = r
    for (n, B), pair in by.items():
        if len(pair) == 2:
            rel = {k: pair["sparse"][k] / pair["dense"][k] - 1
                   for k in ("kcenter", "kmedoids", "lloyd_ot", "gbd")}
            print(f"N={n} B={B}: sparse/dense - 1: " +
                  ", ".join(f"{k} {v:+.2e}" for k, v in rel.items()))
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_one":
        p, n, B, L, dense, metric, it, mc, seed = argv[1:]
        return run_one(p, int(n), int(B), int(L), bool(int(dense)), metric, int(it),
                       int(mc), int(seed))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pools", type=int, nargs="+", default=[2000, 10000, 50000])
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 40, 80, 120, 180])
    parser.add_argument("--time-limits", type=float, nargs="+", default=[60.0, 180.0, 600.0])
    parser.add_argument("--solver", default="cbc", choices=mip.SOLVERS)
    parser.add_argument("--metric", default="cosine", choices=["cosine", "euclidean", "chord"])
    parser.add_argument("--max-candidates", type=int, default=1000)
    parser.add_argument("--warm-start", default="all", choices=mip.WARM_STARTS)
    parser.add_argument("--train", type=int, default=5000, help="images to train the net on")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--compare-dense", action="store_true",
                        help="dense vs sparse transport: objectives and peak memory")
    parser.add_argument("--labeled", type=int, default=0, help="(--compare-dense)")
    parser.add_argument("--max-iter", type=int, default=5, help="(--compare-dense)")
    parser.add_argument("--skip-dense-above", type=int, default=20000,
                        help="(--compare-dense) no dense run for larger pools")
    args = parser.parse_args(argv)
    if args.quick:
        args.pools, args.budgets, args.time_limits = [2000], [10, 40], [8.0]
        args.train, args.epochs, args.max_candidates = 1000, 1, 500

    (F, labels), t_feat = timed(lambda: features(args.train, args.epochs, max(args.pools),
                                                 args.seed))
    print(f"features: {F.shape} in {t_feat:.1f}s (LeNet5 84-d layer, {args.train} images, "
          f"{args.epochs} epochs)", flush=True)
    if args.compare_dense:
        rows = compare_dense(args, F)
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                       "wasserstein_coreset_dense_vs_sparse.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        meta = dict(args=vars(args), python=platform.python_version(),
                    note="memory figures are honest on a shared machine; seconds are not")
        with open(out, "w") as fh:
            json.dump(dict(meta=meta, rows=rows), fh, indent=1, default=float)
        print(f"wrote {out}")
        return
    rows = []
    header = (f"{'N':>6} {'B':>4} {'kcenter':>8} {'kmedoids':>8} {'random':>8} {'lloydOT':>8} "
              f"{'T(s)':>5} {'GBD':>8} {'lower':>8} {'gap':>6} {'GBD/kmed':>8} {'iter':>4} "
              f"{'classes':>7}")
    print(header)
    rng = np.random.RandomState(args.seed)
    for n in args.pools:
        X = F[:n]
        for B in args.budgets:
            S_kc, t_kc = timed(lambda X=X, B=B: mip.kcenter_greedy(X, B, metric=args.metric))
            S_km, t_km = timed(lambda X=X, B=B: mip.kmedoids(X, B, metric=args.metric))
            S_lo, t_lo = timed(lambda X=X, B=B: mip.lloyd_ot(X, B, metric=args.metric))
            w = {name: mip.coreset_cost(X, S, args.metric)
                 for name, S in (("kcenter", S_kc), ("kmedoids", S_km), ("lloyd_ot", S_lo))}
            w["random"] = float(np.mean([
                mip.coreset_cost(X, rng.choice(n, B, replace=False), args.metric)
                for _ in range(3)]))
            for tl in args.time_limits:
                res, t_gbd = timed(lambda X=X, B=B, tl=tl: mip.solve_gbd(
                    X, B, metric=args.metric, time_limit=tl, solver=args.solver,
                    warm_start=args.warm_start, max_candidates=args.max_candidates,
                    random_state=args.seed))
                row = dict(
                    n_pool=n, budget=B, time_limit=tl, metric=args.metric, solver=args.solver,
                    kcenter=w["kcenter"], kmedoids=w["kmedoids"], random=w["random"],
                    lloyd_ot=w["lloyd_ot"], gbd=res.objective, lower_bound=res.lower_bound,
                    gap=res.gap, gbd_over_kmedoids=res.objective / w["kmedoids"],
                    n_iter=res.n_iter, status=res.status, restricted=res.restricted,
                    n_candidates=len(res.candidates), gbd_seconds=t_gbd,
                    kcenter_seconds=t_kc, kmedoids_seconds=t_km, lloyd_ot_seconds=t_lo,
                    classes_covered=len(np.unique(labels[:n][res.selection])),
                    history=[{k: v for k, v in h.items()} for h in res.history
                             if h["event"] in ("master", "lp")],
                )
                rows.append(row)
                print(f"{n:>6} {B:>4} {w['kcenter']:>8.4f} {w['kmedoids']:>8.4f} "
                      f"{w['random']:>8.4f} {w['lloyd_ot']:>8.4f} {tl:>5.0f} "
                      f"{res.objective:>8.4f} {res.lower_bound:>8.4f} {res.gap:>6.3f} "
                      f"{row['gbd_over_kmedoids']:>8.3f} {res.n_iter:>4} "
                      f"{row['classes_covered']:>7}", flush=True)
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results",
        "wasserstein_coreset_quick.json" if args.quick else "wasserstein_coreset.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    meta = dict(args=vars(args), python=platform.python_version(), machine=platform.machine(),
                processor=platform.processor(), cpu_count=os.cpu_count(),
                feature_seconds=t_feat,
                note="gap/lower bound are for the candidate-restricted problem when restricted")
    with open(out, "w") as fh:
        json.dump(dict(meta=meta, rows=rows), fh, indent=1, default=float)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
