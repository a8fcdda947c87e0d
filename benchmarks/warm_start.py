"""Warm start against retraining from scratch, in the label-efficiency runner's protocol.

The papers (and skal's default, ``ActiveLearner(warm_start=False)``) retrain the
net from its initial weights on the whole labeled set after every query. With
``warm_start=True`` a skorch net continues from the last round's weights
(``partial_fit``, the recipe's epochs again). Both modes run here on the same
seeds, first model, recipe and test set (round 0 is the same fit), so a
strategy's AUBC difference between them is the effect of warm starting alone,
and the difference between strategies within a mode says whether warm starting
changes which strategy wins. Prints a table, writes JSON; a rerun reuses the rows
already in the JSON.

Usage::

    python -m benchmarks.warm_start                                # digits, 3 seeds
    python -m benchmarks.warm_start --strategies random margin --seeds 0
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks._efficiency_protocols import PROTOCOLS, simulate_protocol  # noqa: E402
from skal.recipes import training_recipe  # noqa: E402
from skal.registry import make_strategy  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "warm_start.json"
MODES = {"from scratch": False, "warm start": True}


def measure(dataset, name, seed, warm, threads=1):
    start = time.perf_counter()
    run, _ = simulate_protocol(dataset, training_recipe(dataset), name, make_strategy(name),
                               seed, threads=threads, learner_params={"warm_start": warm})
    return {"dataset": dataset, "strategy": name, "warm_start": warm, "seed": seed,
            "aubc": run.aubc, "accuracy": [float(a) for a in run.accuracy],
            "n_labeled": [int(n) for n in run.n_labeled],
            "fit_seconds": [float(t) for t in run.fit_time],
            "wall_seconds": time.perf_counter() - start}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=tuple(PROTOCOLS))
    parser.add_argument("--strategies", nargs="+", default=["random", "margin", "entropy"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = json.loads(args.out.read_text(encoding="utf-8"))["rows"] if args.out.exists() else []
    print("| strategy | mode | seed | AUBC | first model | final accuracy | fit s / round |")
    print("|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        for name in args.strategies:
            for mode, warm in MODES.items():
                r = next((r for r in rows if r["dataset"] == args.dataset and r["seed"] == seed
                          and r["strategy"] == name and r["warm_start"] == warm), None)
                if r is None:  # rows are reused on a rerun
                    r = measure(args.dataset, name, seed, warm, args.threads)
                    rows.append(r)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(
                        {"command": "python -m benchmarks.warm_start", "rows": rows}, indent=1),
                        encoding="utf-8")
                print(f"| {name} | {mode} | {seed} | {r['aubc']:.3f} | {r['accuracy'][0]:.3f} | "
                      f"{r['accuracy'][-1]:.3f} | {np.mean(r['fit_seconds']):.1f} |", flush=True)
    for name in args.strategies:
        for mode, warm in MODES.items():
            mine = [r for r in rows if r["dataset"] == args.dataset and r["strategy"] == name
                    and r["warm_start"] == warm and r["seed"] in args.seeds]
            if mine:
                print(f"| {name} | {mode} | mean | {np.mean([r['aubc'] for r in mine]):.3f} | "
                      f"| {np.mean([r['accuracy'][-1] for r in mine]):.3f} | "
                      f"{np.mean([np.mean(r['fit_seconds']) for r in mine]):.1f} |")
    print(f"(JSON in {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
