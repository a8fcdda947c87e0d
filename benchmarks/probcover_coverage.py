"""ProbCover's radius against the coverage of its picks, on the low-budget protocol's pool.

One query of 90 after 10 random labels (the whole 100-label budget at once), in
the pixels' principal components (``skal.nets.pixel_pca``), for the purity rule's
``delta="auto"`` and for radii given as fractions of the median pairwise distance.
No training and no labels beyond the 10: coverage is a label-free quantity, so it can
guide the choice of ``delta`` without test accuracy. Prints a table, writes JSON.

Usage::

    python -m benchmarks.probcover_coverage                       # seed 0
    python -m benchmarks.probcover_coverage --fractions 0.05 0.1 --seeds 0 1
"""

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks._efficiency_protocols import load_protocol_data
from benchmarks.diagnose_strategies import CLASS_NAMES
from skal import ProbCover
from skal.nets import pixel_pca

OUT = Path(__file__).resolve().parent / "results" / "probcover_coverage.json"


def measure(seed, fractions, n_pairs=2000):
    X, y, _, _ = load_protocol_data("fashion-mnist-low", seed)
    rng = np.random.RandomState(seed)
    labeled = np.sort(rng.choice(len(X), 10, replace=False))
    pool = np.setdiff1d(np.arange(len(X)), labeled)
    Z = pixel_pca().fit_transform(X)
    a, b = rng.choice(len(Z), n_pairs), rng.choice(len(Z), n_pairs)
    median = float(np.median(np.linalg.norm(Z[a] - Z[b], axis=1)))
    rows = []
    for frac in [None, *fractions]:
        delta = "auto" if frac is None else frac * median
        pc = ProbCover(embedding=pixel_pca(), n_classes=10, delta=delta, random_state=0)
        idx = pc.query(None, X[pool], 90, X_labeled=X[labeled], y_labeled=y[labeled])
        counts = np.bincount(y[pool][idx], minlength=10)
        rows.append({"seed": seed, "delta_rule": "purity (auto)" if frac is None
                     else f"{frac:g} x median distance", "delta": float(pc.delta_),
                     "coverage": float(pc.coverage_), "class_counts": counts.tolist(),
                     "top_classes": [CLASS_NAMES[i] for i in np.argsort(-counts)[:3]]})
    return median, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.07, 0.1])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    result = {"command": "python -m benchmarks.probcover_coverage", "rows": [], "median": {}}
    print("| seed | delta rule | delta | coverage after 100 labels | most picked classes |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        median, rows = measure(seed, args.fractions)
        result["median"][str(seed)] = median
        result["rows"] += rows
        for r in rows:
            top = sorted(r["class_counts"], reverse=True)[:3]
            print(f"| {seed} | {r['delta_rule']} | {r['delta']:.2f} | {r['coverage']:.2f} | "
                  f"{', '.join(r['top_classes'])} ({', '.join(map(str, top))} of 90) |",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"(JSON in {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
