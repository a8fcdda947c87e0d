"""How much of the pool ProbCover's balls already cover, round by round, in a finished run.

ProbCover on a fixed embedding (``probcover-pca``: the pixels' principal
components) does not depend on the model, so its queries can be replayed from a
finished label-efficiency run: for every round this rebuilds the labeled set
from the run's JSON, makes the same query, and records the ball radius, the
share of pool + labeled points the labeled set's balls cover before the query,
the share covered after it, and how many of the batch's picks covered nothing
new (the greedy step's gain was zero: ProbCover then picks at random). Prints a
table, writes JSON.

Usage::

    python -m benchmarks.probcover_replay                       # fashion-mnist, seeds 0-2
    python -m benchmarks.probcover_replay --dataset fashion-mnist-thesis --seeds 0
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import skal.strategies.probcover as probcover  # noqa: E402
from benchmarks._efficiency_protocols import load_protocol_data  # noqa: E402
from skal.registry import make_strategy  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "probcover_replay.json"

_ROUND = {}
_greedy = probcover.max_coverage


def _recording_max_coverage(graph, candidates, n_instances, *, covered=None, random_state=None):
    before = covered.copy()
    chosen = _greedy(graph, candidates, n_instances, covered=covered,
                     random_state=random_state)
    now = before.copy()
    zero_gain = 0
    for c in chosen:  # the greedy order: a pick that covers nothing new was random
        cols = graph[c].indices
        zero_gain += int(not (~now[cols]).any())
        now[cols] = True
    _ROUND.update(covered_before=float(before.mean()), covered_after=float(now.mean()),
                  zero_gain_picks=zero_gain)
    return chosen


def replay(dataset, seed, strategy="probcover-pca"):
    run = json.loads((RESULTS / "label_efficiency" / f"{dataset}__{strategy}__seed{seed}.json")
                     .read_text(encoding="utf-8"))["run"]
    X, y, _, _ = load_protocol_data(dataset, seed)
    labeled = list(run["initial_indices"])
    rows = []
    probcover.max_coverage = _recording_max_coverage
    try:
        for batch in run["queried_indices"]:
            pool = np.setdiff1d(np.arange(len(X)), labeled)
            query = make_strategy(strategy).set_params(random_state=seed, n_classes=10)
            query.query(None, X[pool], len(batch), X_labeled=X[labeled], y_labeled=y[labeled])
            rows.append({"n_labeled": len(labeled), "delta": query.delta_, **_ROUND})
            labeled += list(batch)  # the run's own picks, so later rounds match it
    finally:
        probcover.max_coverage = _greedy
    return {"dataset": dataset, "strategy": strategy, "seed": seed, "rounds": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--strategy", default="probcover-pca")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    results = [replay(args.dataset, seed, args.strategy) for seed in args.seeds]
    print("| seed | labels | delta | covered before | covered after | picks covering nothing new |")
    print("|---|---|---|---|---|---|")
    for res in results:
        for r in res["rounds"]:
            print(f"| {res['seed']} | {r['n_labeled']} | {r['delta']:.3f} | "
                  f"{r['covered_before']:.3f} | {r['covered_after']:.3f} | "
                  f"{r['zero_gain_picks']} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python -m benchmarks.probcover_replay",
                                    "results": results}, indent=1), encoding="utf-8")
    print(f"(JSON in {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
