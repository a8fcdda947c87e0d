"""WAAL's training cost against the plain supervised fit, per epoch and per step (#19).

One epoch of each learner of the Fashion-MNIST recipe (``training_recipe``): the
plain net passes once over the labeled set, ``WAALClassifier`` once over the
unlabeled pool, each of its steps taking a labeled and an unlabeled batch and
updating the critic. Both are timed in the same process, one after the other, at
the label counts of the WAAL protocol (1K to 6K labels of a 40K pool)::

    python benchmarks/bench_waal_fit.py                 # about 3 minutes on 2 cores
    python benchmarks/bench_waal_fit.py --quick         # tiny pool: a smoke run

Prints a table and writes ``benchmarks/results/waal_fit.json``.
"""

import argparse
import json
import platform
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks.gpu_check import check_waal_epoch  # noqa: E402

RESULTS = _ROOT / "benchmarks" / "results" / "waal_fit.json"


def _data(n_pool, quick, data_path):
    import numpy as np

    if quick:
        rng = np.random.RandomState(0)
        return rng.rand(n_pool, 1, 28, 28).astype(np.float32), rng.randint(0, 10, n_pool)
    from skal.datasets import load_fashion_mnist

    return load_fashion_mnist(data_path, n_samples=n_pool, random_state=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=None)
    parser.add_argument("--pool", type=int, default=None, help="labeled + unlabeled rows")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    labels = args.labels or ([40, 80] if args.quick else [1000, 3000, 6000])
    n_pool = args.pool or (200 if args.quick else 40_000)
    X, y = _data(n_pool, args.quick, args.data)
    rows = []
    print(f"{'labels':>7} {'pool':>7} {'plain s':>8} {'WAAL s':>8} {'epoch x':>8} "
          f"{'steps':>11} {'per step x':>10}")
    for n_lab in labels:
        detail, ratio = check_waal_epoch(X[:n_lab], y[:n_lab], X[n_lab:], args.device)
        detail["waal_epoch_vs_plain_epoch"] = ratio
        rows.append(detail)
        print(f"{n_lab:>7} {n_pool - n_lab:>7} {detail['plain_epoch_s']:>8.2f} "
              f"{detail['waal_epoch_s']:>8.2f} {ratio:>8.1f} "
              f"{detail['plain_steps']:>4}/{detail['waal_steps']:<6} "
              f"{detail['waal_step_vs_plain_step']:>10.2f}", flush=True)
    out = Path(args.out or (RESULTS.with_name("waal_fit_quick.json") if args.quick else RESULTS))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "waal_fit", "quick": args.quick, "threads": args.threads,
        "device": args.device, "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }, indent=2), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
