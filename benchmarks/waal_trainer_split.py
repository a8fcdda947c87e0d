"""WAAL's trainer against WAAL's query: which one sets its label efficiency?

WAAL changes two things at once: the learner (a semi-supervised trainer whose
critic also sees the unlabeled pool) and the query (uncertainty plus the critic's
score). The label-efficiency runner compares WAAL with random and margin sampling
run on the plain supervised recipe, which mixes the two. This script runs random,
margin and WAAL's query all on WAAL's trainer (``training_recipe(dataset,
semi_supervised=True)``), in the runner's protocol (same seed sets, initial weights
and test set), so that within it only the query differs; WAAL's query also with other critic
weights (``selection_weight=0``: its uncertainty term alone). Prints a table, writes
JSON; a rerun reuses the rows already in the JSON.

Usage::

    python -m benchmarks.waal_trainer_split                          # digits, 3 seeds
    python -m benchmarks.waal_trainer_split --strategies random waal --seeds 0
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks._efficiency_protocols import PROTOCOLS, simulate_protocol  # noqa: E402
from benchmarks.diagnose_strategies import class_balance  # noqa: E402
from skal.recipes import RECIPES, training_recipe  # noqa: E402
from skal.registry import make_strategy  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "waal_trainer_split.json"


def measure(dataset, name, seed, threads=1, selection_weight=None):
    estimator = training_recipe(dataset, semi_supervised=True,
                                max_epochs=RECIPES[dataset]["waal_max_epochs"])
    strategy = make_strategy(name)
    if selection_weight is not None:
        strategy.set_params(selection_weight=selection_weight)
    run, y = simulate_protocol(dataset, estimator, name, strategy, seed, threads=threads)
    if selection_weight is not None:
        name = f"waal (selection_weight={selection_weight:g})"
    return {"dataset": dataset, "strategy": name, "trainer": "waal", "seed": seed,
            "aubc": run.aubc, "accuracy": [float(a) for a in run.accuracy],
            "class_entropy": [class_balance(y[np.asarray(q)], 10)["entropy"]
                              for q in run.queried_indices],
            "n_labeled": [int(n) for n in run.n_labeled]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=tuple(PROTOCOLS))
    parser.add_argument("--strategies", nargs="+", default=["random", "margin", "waal"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--waal-selection-weights", type=float, nargs="*", default=[0.0],
                        help="extra WAAL rows with these critic weights (default 10 is `waal`)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    done = json.loads(args.out.read_text(encoding="utf-8"))["rows"] if args.out.exists() else []
    rows = list(done)  # every data set's rows are kept; lookups filter on this one
    jobs = [(name, None) for name in args.strategies]
    jobs += [("waal", w) for w in args.waal_selection_weights]
    print("| query | trainer | seed | AUBC | first model | final accuracy | class balance |")
    print("|---|---|---|---|---|---|---|")
    names = []
    for seed in args.seeds:
        for name, weight in jobs:
            label = name if weight is None else f"waal (selection_weight={weight:g})"
            names += [label] if label not in names else []
            r = next((r for r in rows if r["dataset"] == args.dataset and r["strategy"] == label
                      and r["seed"] == seed), None)
            if r is None:  # rows are reused on a rerun
                r = measure(args.dataset, name, seed, args.threads, weight)
                rows.append(r)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                command = "python -m benchmarks.waal_trainer_split"
                args.out.write_text(json.dumps({"command": command, "rows": rows}, indent=1),
                                    encoding="utf-8")
            print(f"| {label} | WAAL's | {seed} | {r['aubc']:.3f} | {r['accuracy'][0]:.3f} | "
                  f"{r['accuracy'][-1]:.3f} | {np.mean(r['class_entropy']):.2f} |", flush=True)
    for name in names:
        mine = [r for r in rows if r["dataset"] == args.dataset and r["strategy"] == name
                and r["seed"] in args.seeds]
        aubcs = [r["aubc"] for r in mine]
        balance = [np.mean(r["class_entropy"]) for r in mine]
        print(f"| {name} | WAAL's | mean | {np.mean(aubcs):.3f} | | | {np.mean(balance):.2f} |")
    print(f"(JSON in {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
