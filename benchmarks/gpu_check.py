"""One-shot GPU check: the costs that matter on a GPU, as ratios, in one JSON.

Records, on one device (a GPU by default, when there is one):

* ``deepfool_batched_speedup``: :func:`skal.adversarial.deepfool` against the
  per-sample loop of the paper's code (``benchmarks/bench_deepfool.py``), same images;
* ``bald_T10_vs_10_passes``: ``BALD(n_passes=10)`` scoring against 10 plain batched
  inference passes;
* ``entropy_vs_one_pass``: an entropy query against one batched inference pass;
* ``waal_epoch_vs_plain_epoch``: one ``WAALClassifier`` epoch (the labeled set and
  an unlabeled pool, critic included) against one plain epoch on the labeled set, and
  ``waal_step_vs_plain_step``, the same per optimisation step;
* ``inference_glue_vs_raw``: ``predict_logits`` against the raw module;
* ``scaling_<strategy>_vs_margin``: the query time of each strategy against margin's
  at N = 160K, from ``benchmarks/bench_scaling.py``'s own code (one subprocess per
  point, each cut at ``--point-timeout`` seconds; the whole run stops starting new
  points at ``--budget`` seconds).

    python benchmarks/gpu_check.py                       # about 8 minutes on one GPU
    python benchmarks/gpu_check.py --device cpu --quick  # CI-sized smoke run (< 30 s)

Writes ``benchmarks/results/gpu_check.json`` (``gpu_check_quick.json`` with --quick);
``python benchmarks/bench_scaling.py render`` puts a GPU run on ``docs/scaling.md``.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks import bench_scaling  # noqa: E402
from benchmarks._timing import best_time  # noqa: E402

__all__ = ["main"]

RESULTS = _ROOT / "benchmarks" / "results" / "gpu_check.json"
QUICK_RESULTS = _ROOT / "benchmarks" / "results" / "gpu_check_quick.json"
# Sizes of each check: (full, quick).
_SIZES = {
    "deepfool_images": (500, 6),
    "inference_images": (40_000, 256),
    "waal_unlabeled": (20_000, 200),
    "scaling_n": (160_000, 300),
}


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def check_deepfool(net, X, device):
    from benchmarks.bench_deepfool import deepfool_per_sample
    from skal.adversarial import deepfool

    module = net.module_.eval()
    deepfool(module, X[:2], device=device)  # warm-up
    t0 = time.perf_counter()
    r_ref, _, _ = deepfool_per_sample(module, X, device=device)
    _sync(device)
    ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = deepfool(module, X, batch_size=128, device=device)
    _sync(device)
    batched = time.perf_counter() - t0
    norm = np.linalg.norm(r.reshape(len(r), -1), axis=1)
    norm_ref = np.linalg.norm(r_ref.reshape(len(r_ref), -1), axis=1)
    rel = np.abs(norm - norm_ref) / np.maximum(norm_ref, 1e-12)
    return {"n_images": int(len(X)), "per_sample_s": ref, "batched_s": batched,
            "median_rel_norm_diff": float(np.median(rel))}, ref / batched


def check_bald_entropy(net, X, device, repeats):
    from skal.nets import predict_proba
    from skal.strategies.bayesian import BALD
    from skal.strategies.uncertainty import UncertaintySampling

    def one_pass():
        predict_proba(net, X)
        _sync(device)

    one = best_time(one_pass, repeats)
    bald = best_time(lambda: BALD(n_passes=10, random_state=0).utilities(net, X), repeats)
    entropy = best_time(lambda: UncertaintySampling(measure="entropy").query(net, X, 10),
                        repeats)
    timings = {"n_images": int(len(X)), "one_pass_s": one, "bald_T10_s": bald,
               "entropy_query_s": entropy}
    return timings, bald / (10 * one), entropy / one


def check_waal_epoch(X_lab, y_lab, X_unl, device):
    """One WAAL epoch against one plain epoch, in seconds and per optimisation step.

    A plain epoch is one pass over the labeled set; a WAAL epoch one pass over the
    unlabeled pool, each step taking a labeled and an unlabeled batch and updating
    the critic too. The per-step ratio is the cost of WAAL's extra work; the step
    counts give the rest of the epoch ratio.
    """
    from benchmarks.label_efficiency import training_recipe

    def fit(semi):
        net = training_recipe("fashion-mnist", semi_supervised=semi, max_epochs=1,
                              device=device, random_state=0)
        t0 = time.perf_counter()
        if semi:
            net.fit(X_lab, y_lab, X_unlabeled=X_unl)
        else:
            net.fit(X_lab, y_lab)
        _sync(device)
        steps = sum("train_loss" in b for b in net.history[-1]["batches"])
        return time.perf_counter() - t0, max(steps, 1)

    fit(False)  # warm-up (cuDNN autotuning, allocator)
    plain, plain_steps = fit(False)
    waal, waal_steps = fit(True)
    return {"n_labeled": int(len(y_lab)), "n_unlabeled": int(len(X_unl)),
            "plain_epoch_s": plain, "waal_epoch_s": waal,
            "plain_steps": plain_steps, "waal_steps": waal_steps,
            "waal_step_vs_plain_step": (waal / waal_steps) / (plain / plain_steps)}, waal / plain


def check_scaling(args, device, n, deadline):
    """The 160K points (``n`` in quick runs) through bench_scaling's own driver."""
    strategies = args.scaling_strategies or list(bench_scaling._registry().STRATEGIES)
    if "margin" in strategies:  # the reference goes first
        strategies = ["margin"] + [s for s in strategies if s != "margin"]
    results = Path(args.out).with_name(Path(args.out).stem + "_scaling.json")
    points = {}
    for spec in strategies:
        remaining = deadline - time.perf_counter()
        if remaining < 5:
            points[spec] = {"status": "skipped", "error": "gpu_check's time budget is spent"}
            continue
        argv = ["--sizes", str(n), "--strategies", spec, "--results", str(results),
                "--page", str(results.with_suffix(".md")), "--device", device,
                "--threads", str(args.threads), "--timeout",
                str(min(args.point_timeout, remaining)), "--no-inference", "--no-tracemalloc"]
        if args.quick:
            argv.append("--quick")
        bench_scaling.run(bench_scaling._defaults(bench_scaling._parser().parse_args(argv)))
        payload = bench_scaling.load_results(results)
        points[spec] = payload["points"].get(bench_scaling.point_key(spec, n), {})
    return points


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="CI-sized smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--data", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--out", default=None, help="JSON path")
    parser.add_argument("--scaling-strategies", nargs="*", default=None,
                        help="strategies for the scaling points (default: all; none: skip)")
    parser.add_argument("--point-timeout", type=float, default=60.0)
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds after which no new scaling point starts")
    args = parser.parse_args(argv)
    import torch

    from skal.nets import resolve_device

    start = time.perf_counter()
    deadline = start + args.budget
    device = str(resolve_device(args.device))
    args.threads = args.threads or (1 if args.quick else (os.cpu_count() or 1))
    torch.set_num_threads(args.threads)
    args.out = args.out or str(QUICK_RESULTS if args.quick else RESULTS)
    size = {k: v[1 if args.quick else 0] for k, v in _SIZES.items()}
    settings = bench_scaling.QUICK if args.quick else bench_scaling.FULL
    models_path = Path(args.out).with_name(Path(args.out).stem + "_models.pkl")
    print(f"gpu_check on {device}: training the shared LeNet ...", flush=True)
    bench_scaling.train_models(settings, device=device, data_path=args.data, quick=args.quick,
                               path=models_path)
    net = bench_scaling._load_models(models_path)["net"]
    X_pool, X_lab, y_lab, source = bench_scaling.make_pool(
        max(size["inference_images"], size["waal_unlabeled"]), n_labeled=settings["n_labeled"],
        data_path=args.data, quick=args.quick)
    repeats = 1 if args.quick else 3
    ratios, details = {}, {}

    details["deepfool"], ratios["deepfool_batched_speedup"] = check_deepfool(
        net, X_pool[: size["deepfool_images"]], device)
    print(f"  DeepFool batched vs per-sample: {ratios['deepfool_batched_speedup']:.1f}x",
          flush=True)
    X_inf = X_pool[: size["inference_images"]]
    details["bald_entropy"], ratios["bald_T10_vs_10_passes"], ratios["entropy_vs_one_pass"] = (
        check_bald_entropy(net, X_inf, device, repeats))
    print(f"  BALD T=10 / 10 passes: {ratios['bald_T10_vs_10_passes']:.2f}; entropy / one pass: "
          f"{ratios['entropy_vs_one_pass']:.2f}", flush=True)
    inference = bench_scaling.inference_throughput(net, X_inf, repeats=repeats)
    details["inference"] = inference
    ratios["inference_glue_vs_raw"] = inference["glue_vs_raw"]
    ratios["inference_channels_last_speedup"] = inference["channels_last_speedup"]
    details["waal_epoch"], ratios["waal_epoch_vs_plain_epoch"] = check_waal_epoch(
        X_lab, y_lab, X_pool[: size["waal_unlabeled"]], device)
    ratios["waal_step_vs_plain_step"] = details["waal_epoch"]["waal_step_vs_plain_step"]
    print(f"  WAAL epoch / plain epoch: {ratios['waal_epoch_vs_plain_epoch']:.2f}; per step: "
          f"{ratios['waal_step_vs_plain_step']:.2f}", flush=True)

    if args.scaling_strategies is None or args.scaling_strategies:
        if args.quick and args.scaling_strategies is None:
            args.scaling_strategies = ["margin", "random"]
        points = check_scaling(args, device, size["scaling_n"], deadline)
        details["scaling"] = points
        ref = points.get("margin", {}).get("query_seconds")
        for spec, point in points.items():
            if spec != "margin" and ref and point.get("status") == "complete":
                ratios[f"scaling_{spec}_vs_margin"] = point["query_seconds"] / ref

    payload = {
        "benchmark": "gpu_check", "quick": bool(args.quick), "device": device,
        "data": source, "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "platform": platform.platform(),
        "cuda_device": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "sizes": size, "ratios": ratios, "details": details,
        "seconds": time.perf_counter() - start,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")
    print(f"wrote {args.out} ({payload['seconds']:.0f} s)", flush=True)
    return payload


if __name__ == "__main__":
    main()
