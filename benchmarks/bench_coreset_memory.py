"""Extra peak memory of the Wasserstein core-set's selection against the pool size (#19).

    python benchmarks/bench_coreset_memory.py                        # N = 40K and 160K
    python benchmarks/bench_coreset_memory.py --sizes 2000 --quick   # smoke run
    python benchmarks/bench_coreset_memory.py --dense --sizes 40000  # the former dense transport

One child process per point. It builds N Fashion-MNIST feature vectors
(``bench_scaling``'s pool: the training images, then flipped and shifted copies;
PCA to 84 dimensions, the width of LeNet's hidden layer, in float32 as a net's
features are) and 1,000 labeled ones, then runs one ``WassersteinCoreSet.select``
of 500 new points (the WAAL protocol's first round) with the strategy's defaults.
It records the call's extra peak RSS (the kernel's high-water mark, reset before
the call, minus the RSS before it), tracemalloc's peak in a second call (numpy's
arrays; POT's C++ graph is not traced), the solver's own estimate (the
``max_memory`` check) and the largest sparse transport (arcs). Results go to
``benchmarks/results/wasserstein_coreset_memory.json``. Memory figures hold on a
shared machine; the seconds do not.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

RESULTS = _ROOT / "benchmarks" / "results" / "wasserstein_coreset_memory.json"
N_LABELED, BATCH, DIM = 1000, 500, 84


def _status_mib(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return None


def _reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def features(n, quick):
    """``(E, n_labeled)``: labeled rows first, then the pool, PCA features in float32."""
    from sklearn.decomposition import PCA

    from benchmarks.bench_scaling import make_pool

    n_lab = 100 if quick else N_LABELED
    X_pool, X_lab, _, _ = make_pool(n, n_labeled=n_lab, quick=quick)
    X = np.concatenate([X_lab, X_pool]).reshape(n + n_lab, -1)
    del X_pool, X_lab
    rng = np.random.RandomState(0)
    fit = X[rng.choice(len(X), size=min(len(X), 10_000), replace=False)]
    pca = PCA(n_components=min(DIM, fit.shape[0]), random_state=0).fit(fit)
    E = np.empty((len(X), pca.n_components_), dtype=np.float32)
    for s in range(0, len(X), 20_000):
        E[s:s + 20_000] = pca.transform(X[s:s + 20_000])
    return E, n_lab


def child(args):
    import ot

    from skal.ot import mip
    from skal.strategies.wasserstein_coreset import WassersteinCoreSet

    mip._DENSE_TRANSPORT = args.dense
    E, n_lab = features(args.n, args.quick)
    batch = 20 if args.quick else BATCH
    # the solvers' libraries load lazily: load them before the baseline
    WassersteinCoreSet(time_limit=2, max_iter=1).select(E[:60], 3, labeled=np.arange(5))
    arcs = []
    real_emd = ot.emd

    def counting_emd(a, b, M, *rest, **kw):
        arcs.append(int(M.nnz) if hasattr(M, "nnz") else int(np.size(M)))
        return real_emd(a, b, M, *rest, **kw)

    ot.emd = counting_emd
    labeled = np.arange(n_lab)
    estimate = mip._gbd_bytes(len(E), E.shape[1], n_lab + batch, batch,
                              min(1000, len(E)), "cbc")

    def run():
        strat = WassersteinCoreSet(time_limit=args.time_limit, random_state=0)
        new = strat.select(E, batch, labeled=labeled)
        return strat, new

    rss_before = _status_mib("VmRSS")
    _reset_peak_rss()
    t0 = time.perf_counter()
    strat, new = run()
    seconds = time.perf_counter() - t0
    peak = _status_mib("VmHWM")
    record = dict(
        n_pool=args.n, n_labeled=n_lab, batch=batch, dim=int(E.shape[1]),
        transport="dense" if args.dense else "sparse", time_limit=args.time_limit,
        objective=strat.objective_, status=strat.status_, n_iter=strat.n_iter_,
        n_transports=len(arcs), max_arcs=max(arcs), arcs_per_row=max(arcs) / len(E),
        rss_before_mib=rss_before, extra_peak_rss_mib=peak - rss_before,
        estimate_mib=estimate / 2**20, seconds_contended=seconds,
    )
    if not args.no_tracemalloc:
        del strat, new
        arcs.clear()
        tracemalloc.start()
        run()
        record["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    print(json.dumps(record))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[40_000, 160_000])
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--dense", action="store_true", help="the former dense transport")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        args.n = args.child
        child(args)
        return
    out = args.out or (RESULTS.with_name(RESULTS.stem + "_quick.json") if args.quick
                       else RESULTS)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--time-limit",
               str(args.time_limit)]
        cmd += ["--dense"] * args.dense + ["--quick"] * args.quick
        cmd += ["--no-tracemalloc"] * args.no_tracemalloc
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            sys.exit(f"N={n} failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows = [r for r in rows if (r["n_pool"], r["transport"]) != (n, row["transport"])]
        rows.append(row)
        out.write_text(json.dumps(dict(
            meta=dict(python=platform.python_version(),
                      note="memory figures are honest on a shared machine; seconds are not"),
            rows=sorted(rows, key=lambda r: (r["transport"], r["n_pool"]))), indent=1) + "\n")


if __name__ == "__main__":
    main()
