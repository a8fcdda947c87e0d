"""DQBC: query cost against plain forward passes, and label efficiency.

Two parts (``--part``):

``time``
    A 5-member dropout committee scores a Fashion-MNIST pool (20,000 images by
    default) with LeNet5 (and VGG8 outside --quick). The reference, measured in
    the same run, is 5 plain forward passes of the same net over the same pool
    (``skal.nets.predict_logits``); the ratio says what the masks, the
    per-member output layers and the scoring add. The committee build
    (features of the labeled set and fine-tuning of the 5 output layers) is
    timed separately.

``curves``
    DQBC vs QBC (vote entropy on the same committee), entropy sampling and
    random sampling with :func:`skal.simulate`: learning curves, AUBC and the
    labels needed to reach 98 % of the full-data accuracy (the same net trained
    on the whole pool), on digits and (outside --quick) Fashion-MNIST.

    python benchmarks/bench_dqbc.py            # full run (long on a CPU)
    python benchmarks/bench_dqbc.py --quick    # < 1 min smoke run

Writes ``benchmarks/results/dqbc.json`` (``dqbc_quick.json`` with --quick).
"""

import argparse
import json
import os
import platform
import sys

import numpy as np
import torch

# Run from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._timing import best_time
from skal.datasets import load_dataset
from skal.nets import cnn_classifier, predict_logits
from skal.strategies.committee import DQBC, QueryByCommittee


def _time_arch(net, strategy, pool, X_lab, y_lab, args):
    plain = best_time(
        lambda: [predict_logits(net, pool, batch_size=args.batch_size) for _ in range(5)],
        args.repeats,
    )
    build = best_time(
        lambda: strategy.build_committee(net, pool[:1], X_labeled=X_lab, y_labeled=y_lab),
        args.repeats,
    )
    # Scoring alone, with a fixed fine-tuned committee.
    strategy.committee_ = strategy.build_committee(
        net, pool[:1], X_labeled=X_lab, y_labeled=y_lab
    )
    score = best_time(lambda: strategy._utilities(net, pool), args.repeats)
    query = best_time(
        lambda: strategy.query(net, pool, 64, X_labeled=X_lab, y_labeled=y_lab),
        args.repeats,
    )
    return plain, build, score, query


def bench_time(args, device):
    X_pool, _, _, _ = load_dataset("fashion-mnist", n_train=args.pool + args.n_labeled,
                                   n_test=10, random_state=args.seed)
    rng = np.random.RandomState(args.seed)
    order = rng.permutation(len(X_pool))
    X_lab, pool = X_pool[order[:args.n_labeled]], X_pool[order[args.n_labeled:]]
    y_lab = rng.randint(10, size=args.n_labeled)  # the weights don't matter for timing
    rows = []
    archs = {"lenet5": {}}
    if not args.quick:
        archs["vgg8"] = {"module__width": 16, "module__dense": 256}
    for arch, kw in archs.items():
        net = cnn_classifier(arch, 10, device=device, random_state=args.seed, **kw).initialize()
        strategy = DQBC(n_members=5, finetune_epochs=args.finetune_epochs,
                        batch_size=args.batch_size, random_state=args.seed)
        # One untimed call of each: lazy initialisation of autograd and kernels.
        predict_logits(net, pool[:64])
        strategy.query(net, pool[:64], 1, X_labeled=X_lab[:64], y_labeled=y_lab[:64])

        plain, build, score, query = _time_arch(net, strategy, pool, X_lab, y_lab, args)
        rows.append({
            "arch": arch, "pool": len(pool), "n_labeled": len(X_lab), "n_members": 5,
            "plain_5_passes_s": plain, "committee_build_s": build,
            "committee_scoring_s": score, "dqbc_query_s": query,
            "ratio_query_vs_5_passes": query / plain,
            "ratio_scoring_vs_5_passes": score / plain,
        })
    header = ["arch", "pool", "|L|", "5 passes s", "build s", "scoring s", "query s",
              "query/5 passes", "scoring/5 passes"]
    lines = [[r["arch"], str(r["pool"]), str(r["n_labeled"]), f"{r['plain_5_passes_s']:.2f}",
              f"{r['committee_build_s']:.2f}", f"{r['committee_scoring_s']:.2f}",
              f"{r['dqbc_query_s']:.2f}", f"{r['ratio_query_vs_5_passes']:.2f}",
              f"{r['ratio_scoring_vs_5_passes']:.2f}"] for r in rows]
    _print_table(header, lines)
    return rows


def _print_table(header, lines):
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))


def full_data_accuracy(make_net, X, y, X_test, y_test, seeds):
    accs = []
    for seed in seeds:
        net = make_net(seed).fit(X, y)
        accs.append(float((net.predict(X_test) == y_test).mean()))
    return float(np.mean(accs))


def bench_curves(args, device):
    from skal.simulation import simulate
    from skal.strategies.random import RandomSampling
    from skal.strategies.uncertainty import UncertaintySampling

    out = {}
    configs = [("digits", {
        "arch": "digits", "n_initial": 20, "batch_size": 20,
        "n_queries": args.n_queries or (3 if args.quick else 25),
        "epochs": args.epochs or (20 if args.quick else 30),
        "n_train": 400 if args.quick else None,
    })]
    if not args.quick or args.datasets:
        configs.append(("fashion-mnist", {
            "arch": "lenet5", "n_initial": 64, "batch_size": 64,
            "n_queries": args.n_queries or 20, "epochs": args.epochs or 20,
            "n_train": 10000, "n_test": 2000,
        }))
    if args.datasets:
        configs = [c for c in configs if c[0] in args.datasets]
    seeds = list(range(args.n_seeds or (1 if args.quick else 3)))
    for name, cfg in configs:
        X, y, X_test, y_test = load_dataset(name, n_train=cfg["n_train"],
                                            n_test=cfg.get("n_test"), random_state=0)

        def make_net(seed=None, cfg=cfg):
            return cnn_classifier(cfg["arch"], 10, max_epochs=cfg["epochs"], device=device,
                                  random_state=seed)

        full = full_data_accuracy(make_net, X, y, X_test, y_test, seeds[:1])
        target = 0.98 * full
        n_cand = 30 * cfg["batch_size"]  # the thesis's candidate subset
        strategies = {
            "dqbc": DQBC(n_members=5, n_candidates=n_cand),
            "qbc-vote-entropy": QueryByCommittee(DQBC(n_members=5), n_candidates=n_cand),
            "entropy": UncertaintySampling("entropy", n_candidates=n_cand),
            "random": RandomSampling(),
        }
        runs = simulate(make_net(), strategies, X, y, X_test, y_test,
                        n_initial=cfg["n_initial"], batch_size=cfg["batch_size"],
                        n_queries=cfg["n_queries"], random_state=seeds, progress=False)
        print(f"\n{name}: {cfg['arch']}, pool {len(X)}, full-data accuracy {full:.4f}, "
              f"target 98 % of it = {target:.4f}")
        print(runs.table(target_accuracy=target))
        out[name] = {"config": {k: v for k, v in cfg.items()}, "seeds": seeds,
                     "full_data_accuracy": full, "target_accuracy": target,
                     "results": runs.to_dict(target_accuracy=target)}
        if args.plot_dir:
            runs.plot(os.path.join(args.plot_dir, f"dqbc_{name}.png"),
                      title=f"DQBC on {name}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 1 min)")
    parser.add_argument("--part", choices=["time", "curves", "all"], default="all")
    parser.add_argument("--pool", type=int, default=20000, help="pool size for the timing")
    parser.add_argument("--n-labeled", type=int, default=1000)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None, help="inference batch size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-seeds", type=int, default=None)
    parser.add_argument("--n-queries", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="training epochs per round")
    parser.add_argument("--datasets", nargs="+", choices=["digits", "fashion-mnist"],
                        default=None, help="label-efficiency data sets (default: all; "
                        "digits with --quick)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot-dir", default=None, help="folder for learning-curve PNGs")
    parser.add_argument("--out", default=None, help="JSON path")
    args = parser.parse_args(argv)
    if args.quick:
        args.pool, args.n_labeled, args.repeats = 2000, 200, 1
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device

    result = {
        "command": " ".join(["python benchmarks/bench_dqbc.py", *(argv or sys.argv[1:])]),
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "device": device, "threads": torch.get_num_threads(),
                    "cpus": os.cpu_count()},
    }
    if args.part in ("time", "all"):
        print(f"== query time: 5 members vs 5 plain forward passes (device {device}) ==")
        result["time"] = bench_time(args, device)
    if args.part in ("curves", "all"):
        print("\n== label efficiency ==")
        result["curves"] = bench_curves(args, device)

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "dqbc_quick.json" if args.quick else "dqbc.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2, default=float)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
