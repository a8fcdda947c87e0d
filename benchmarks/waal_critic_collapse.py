"""Does WAAL's critic tell pool samples apart? Its values on the pool after one fit.

WAAL ranks the pool by ``selection_weight * g(x) - u(x)``. If the critic ``g`` gives
every pool sample the same value, the critic weight cannot change the batch and the
query is its uncertainty term ``u`` alone. This script fits WAAL's trainer
(``training_recipe(dataset, semi_supervised=True)``) once per seed on the protocol's
initial labels plus the pool, with the critic's labeled-term weight ``label_weight``
``"ratio"`` (skal's and the released code's default) and ``"one"`` (DeepAL+'s port),
and reports the spread of ``g`` over the pool, the share of the critic's hidden
ReLU units that fire on it, the overlap of WAAL's batch with the batch of ``u``
alone for several critic weights, the classes of that batch, and whether
:class:`skal.WAAL` warns that the critic has collapsed. Prints a table,
writes JSON.

Usage::

    python -m benchmarks.waal_critic_collapse                 # digits, 3 seeds
    python -m benchmarks.waal_critic_collapse --seeds 0 --label-weights one
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks._efficiency_protocols import PROTOCOLS, load_protocol_data  # noqa: E402
from benchmarks.diagnose_strategies import class_balance  # noqa: E402
from skal.nets import get_net  # noqa: E402
from skal.recipes import RECIPES, training_recipe  # noqa: E402
from skal.strategies.waal import WAAL, _warn_if_critic_collapsed, waal_uncertainty  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "waal_critic_collapse.json"
WEIGHTS = (5.0, 10.0, 100.0)


def measure(dataset, seed, label_weight, threads=1):
    settings = PROTOCOLS[dataset]["full"]
    X, y, X_test, y_test = load_protocol_data(dataset, seed)
    torch.set_num_threads(threads)
    labeled = np.random.RandomState(seed).choice(len(X), settings["n_initial"], replace=False)
    pool = np.setdiff1d(np.arange(len(X)), labeled)
    y_train = np.full(len(X), -1)
    y_train[labeled] = y[labeled]
    estimator = training_recipe(dataset, semi_supervised=True, random_state=seed,
                                max_epochs=RECIPES[dataset]["waal_max_epochs"])
    estimator.set_params(label_weight=label_weight).fit(X, y_train)
    g, log_proba = WAAL().critic_and_log_proba(estimator, X[pool])
    with warnings.catch_warnings(record=True) as caught:  # WAAL's own check, on the same g
        warnings.simplefilter("always")
        _warn_if_critic_collapsed(g)
    warned = any("collapsed" in str(w.message) for w in caught)
    u = waal_uncertainty(log_proba)
    net, transform = get_net(estimator)
    with torch.no_grad():
        z = net.module_.features(torch.as_tensor(transform(X[pool]), dtype=torch.float32))
        hidden = net.critic_.net[0](z.flatten(1)) > 0
    k = settings["batch_size"]
    alone = set(np.argsort(u)[:k])
    overlap = {}
    for weight in WEIGHTS:
        batch = np.argsort(-(weight * g - u))[:k]
        overlap[f"{weight:g}"] = len(alone & set(batch)) / k
    picked = y[pool][np.argsort(u)[:k]]
    return {"dataset": dataset, "seed": seed, "label_weight": label_weight,
            "g_min": float(g.min()), "g_max": float(g.max()), "g_std": float(g.std()),
            "hidden_alive": float(hidden.float().mean()),
            "u_top_k_range": [float(np.sort(u)[0]), float(np.sort(u)[k - 1])],
            "overlap_with_u_alone": overlap,
            "batch_classes": np.bincount(picked, minlength=10).tolist(),
            "batch_balance": class_balance(picked, 10)["entropy"],
            "query_warns": warned,
            "test_accuracy": float((estimator.predict(X_test) == y_test).mean())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=tuple(PROTOCOLS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--label-weights", nargs="+", default=["ratio", "one"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = [measure(args.dataset, seed, lw, args.threads)
            for lw in args.label_weights for seed in args.seeds]
    heads = " | ".join(f"overlap, weight {w:g}" for w in WEIGHTS)
    print(f"| label_weight | seed | g over the pool (min, max, std) | critic units firing | "
          f"{heads} | classes of the batch | balance | query warns |")
    print("|---|---|---|---|" + "---|" * len(WEIGHTS) + "---|---|---|")
    for r in rows:
        overlaps = " | ".join(f"{v:.2f}" for v in r["overlap_with_u_alone"].values())
        warns = "yes" if r["query_warns"] else "no"
        print(f"| {r['label_weight']} | {r['seed']} | {r['g_min']:.4f}, {r['g_max']:.4f}, "
              f"{r['g_std']:.4f} | {r['hidden_alive']:.3f} | {overlaps} | "
              f"{r['batch_classes']} | {r['batch_balance']:.2f} | {warns} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.waal_critic_collapse " + " ".join(argv or sys.argv[1:])
    args.out.write_text(json.dumps({"command": command.strip(), "rows": rows}, indent=1),
                        encoding="utf-8")
    print(f"(JSON in {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
