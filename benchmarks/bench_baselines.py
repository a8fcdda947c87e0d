"""Query cost of the baseline strategies against plain inference (issue 2).

On a Fashion-MNIST pool and one trained LeNet5, all measured in the same run:

* inference batch size: skal's batched no-grad pass at several batch sizes and
  skorch's own ``predict_proba`` (the peer), to pick
  ``skal.nets.DEFAULT_INFERENCE_BATCH_SIZE``;
* entropy sampling over one plain inference pass (goal: ratio ~1);
* BALD with 10 MC-dropout passes over 10 plain passes (goal: well under 1, as
  the layers before the first dropout run once);
* core-set (greedy k-center on embeddings) time and peak memory on the full
  training pool with a batch of 1000.

    python benchmarks/bench_baselines.py           # 20k pool, 59k core-set pool
    python benchmarks/bench_baselines.py --quick   # small pools, < 1 min

Writes ``benchmarks/results/baselines.json`` (``baselines_quick.json``).
"""

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._timing import best_time  # noqa: E402
from skal import BALD, CoreSet, UncertaintySampling  # noqa: E402
from skal.datasets import load_fashion_mnist  # noqa: E402
from skal.nets import cnn_classifier, predict_logits  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pool", type=int, default=20000)
    parser.add_argument("--coreset-pool", type=int, default=59000)
    parser.add_argument("--coreset-batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.pool, args.coreset_pool, args.coreset_batch, args.repeats = 2000, 5000, 100, 1

    X, y = load_fashion_mnist(subset="train")
    rng = np.random.RandomState(0)
    order = rng.permutation(len(X))
    train, pool = order[:1000], order[1000:1000 + args.pool]
    net = cnn_classifier("lenet5", 10, max_epochs=1 if args.quick else 5, random_state=0,
                         device=args.device)
    net.fit(X[train], y[train])
    X_pool = X[pool]
    rows = []

    # Inference batch size, and skorch's predict_proba as the peer.
    plain = {}
    for bs in (64, 128, 256, 512, 1024):
        plain[bs] = best_time(lambda bs=bs: predict_logits(net, X_pool, batch_size=bs),
                              args.repeats)
        rows.append({"what": f"skal inference, batch {bs}", "seconds": plain[bs]})
    skorch_time = best_time(lambda: net.predict_proba(X_pool), args.repeats)
    rows.append({"what": f"skorch predict_proba (batch {net.batch_size})", "seconds": skorch_time})
    one_pass = best_time(lambda: predict_logits(net, X_pool), args.repeats)

    entropy = best_time(lambda: UncertaintySampling().query(net, X_pool, 100), args.repeats)
    rows.append({"what": "entropy query", "seconds": entropy,
                 "ratio": entropy / one_pass, "reference": "1 plain pass"})

    ten_passes = best_time(lambda: [predict_logits(net, X_pool) for _ in range(10)], 1)
    bald = best_time(lambda: BALD(n_passes=10, random_state=0).query(net, X_pool, 100), 1)
    rows.append({"what": "BALD, 10 MC passes", "seconds": bald,
                 "ratio": bald / ten_passes, "reference": "10 plain passes"})

    X_core = X[order[1000:1000 + args.coreset_pool]]
    tracemalloc.start()
    start = time.perf_counter()
    CoreSet().query(net, X_core, args.coreset_batch, X_labeled=X[train])
    core_time = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows.append({"what": f"core-set, pool {len(X_core)}, batch {args.coreset_batch}",
                 "seconds": core_time, "peak_mib": peak / 2**20,
                 "pool_mib": X_core.nbytes / 2**20})

    print(f"pool {len(X_pool)} Fashion-MNIST images, LeNet5, device {net.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'what':45s} {'seconds':>9s} {'ratio':>7s}  note")
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        note = f"vs {r['reference']}" if "reference" in r else ""
        if "peak_mib" in r:
            note = f"peak {r['peak_mib']:.0f} MiB (pool itself {r['pool_mib']:.0f} MiB)"
        print(f"{r['what']:45s} {r['seconds']:9.3f} {ratio:>7s}  {note}")

    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results",
        "baselines_quick.json" if args.quick else "baselines.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"args": vars(args), "machine": platform.platform(),
                   "cpu_count": os.cpu_count(), "rows": rows}, f, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
