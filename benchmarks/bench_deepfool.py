"""Batched DeepFool vs the per-sample loop of the paper's code, on Fashion-MNIST / LeNet5.

Trains the zoo's LeNet5 briefly on Fashion-MNIST, then attacks ``--n-candidates``
test images twice: one sample at a time with one backward pass per class (the
reference DeepFool code, as DFAL's original code ran it), and with
:func:`skal.adversarial.deepfool`. Reports both times, the speed-up, and how
close the perturbation norms are (they must agree: same algorithm).

    python benchmarks/bench_deepfool.py            # 2,000 candidates
    python benchmarks/bench_deepfool.py --quick    # < 1 min smoke run

Writes ``benchmarks/results/deepfool.json`` (``deepfool_quick.json`` with --quick).
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

# Run from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skal.adversarial import deepfool
from skal.datasets import load_fashion_mnist
from skal.nets import cnn_classifier


def deepfool_per_sample(module, X, *, max_iter=50, overshoot=0.02, device="cpu"):
    """The reference loop: one image at a time, one backward pass per class."""
    module.eval()
    out = np.zeros_like(X)
    labels = np.zeros(len(X), dtype=np.int64)
    adv = np.zeros(len(X), dtype=np.int64)
    for i in range(len(X)):
        x0 = torch.from_numpy(X[i : i + 1]).to(device)
        with torch.no_grad():
            f0 = module(x0)[0]
        order = torch.argsort(f0, descending=True)
        label = int(order[0])
        r_tot = torch.zeros_like(x0)
        it = 0
        while True:
            xk = (x0 + (1 + overshoot) * r_tot).requires_grad_(True)
            f = module(xk)[0]
            k_i = int(f.argmax())
            if (it > 0 and k_i != label) or it >= max_iter:
                break
            g_label = torch.autograd.grad(f[label], xk, retain_graph=True)[0]
            best, w_best = np.inf, None
            for k in order[1:].tolist():
                g = torch.autograd.grad(f[k], xk, retain_graph=True)[0]
                w = g - g_label
                p = (f[k] - f[label]).abs().item() / w.norm().item()
                if p < best:
                    best, w_best = p, w
            r_tot = r_tot + ((best + 1e-4) * w_best / w_best.norm()).detach()
            it += 1
        out[i] = ((1 + overshoot) * r_tot)[0].cpu().numpy()
        labels[i], adv[i] = label, k_i
    return out, labels, adv


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 1 min)")
    parser.add_argument("--n-candidates", type=int, default=2000)
    parser.add_argument("--n-train", type=int, default=10000, help="images to train LeNet5 on")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--max-iter", type=int, default=50)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_candidates, args.n_train, args.epochs = 40, 1000, 1
    if args.batch_sizes is None:
        args.batch_sizes = [128] if args.quick else [64, 128, 256]

    if args.threads:
        torch.set_num_threads(args.threads)
    X_train, y_train = load_fashion_mnist(n_samples=args.n_train, random_state=args.seed)
    X_test, _ = load_fashion_mnist(subset="test", n_samples=args.n_candidates,
                                   random_state=args.seed)
    net = cnn_classifier("lenet5", 10, max_epochs=args.epochs, device=args.device,
                         random_state=args.seed)
    t0 = time.perf_counter()
    net.fit(X_train, y_train)
    train_s = time.perf_counter() - t0
    module, device = net.module_, net.device

    # Warm-up (thread pools, allocator) so neither timing pays for it.
    deepfool(module, X_test[:8], max_iter=args.max_iter)
    deepfool_per_sample(module, X_test[:2], max_iter=args.max_iter, device=device)

    t0, c0 = time.perf_counter(), time.process_time()
    r_ref, _, adv_ref = deepfool_per_sample(module, X_test, max_iter=args.max_iter,
                                                device=device)
    ref_s, ref_cpu = time.perf_counter() - t0, time.process_time() - c0
    norm_ref = np.linalg.norm(r_ref.reshape(len(r_ref), -1), axis=1)

    rows = []
    for bs in args.batch_sizes:
        t0, c0 = time.perf_counter(), time.process_time()
        r, y, adv, n_it = deepfool(module, X_test, max_iter=args.max_iter, batch_size=bs,
                                   return_labels=True)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        norm = np.linalg.norm(r.reshape(len(r), -1), axis=1)
        rel = np.abs(norm - norm_ref) / np.maximum(norm_ref, 1e-12)
        rows.append({
            "batch_size": bs,
            "seconds": sec,
            "speedup": ref_s / sec,
            "cpu_seconds": cpu,
            "cpu_time_ratio": ref_cpu / cpu,
            "median_rel_norm_diff": float(np.median(rel)),
            "frac_norms_within_1e-4": float(np.mean(rel <= 1e-4)),
            "same_adv_labels": float(np.mean(adv == adv_ref)),
            "mean_iterations": float(n_it.mean()),
            "max_iterations": int(n_it.max()),
            "success_rate": float(np.mean(adv != y)),
        })

    print(f"DeepFool on {args.n_candidates} Fashion-MNIST test images, LeNet5 "
          f"(trained {train_s:.0f}s on {args.n_train}), device={device}, "
          f"threads={torch.get_num_threads()}")
    print(f"per-sample reference: {ref_s:8.2f} s wall, {ref_cpu:8.2f} s CPU")
    print(f"{'batch':>6} {'seconds':>9} {'speedup':>8} {'CPU ratio':>9} {'med.rel.diff':>13} "
          f"{'<=1e-4':>7} {'same adv':>9} {'mean it':>8} {'max it':>7}")
    for row in rows:
        print(f"{row['batch_size']:>6} {row['seconds']:>9.2f} {row['speedup']:>7.1f}x "
              f"{row['cpu_time_ratio']:>8.1f}x "
              f"{row['median_rel_norm_diff']:>13.2e} {row['frac_norms_within_1e-4']:>7.3f} "
              f"{row['same_adv_labels']:>9.3f} {row['mean_iterations']:>8.2f} "
              f"{row['max_iterations']:>7d}")

    result = {
        "benchmark": "deepfool",
        "quick": args.quick,
        "n_candidates": args.n_candidates,
        "n_train": args.n_train,
        "epochs": args.epochs,
        "max_iter": args.max_iter,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "reference_seconds": ref_s,
        "reference_cpu_seconds": ref_cpu,
        "batched": rows,
    }
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results",
        "deepfool_quick.json" if args.quick else "deepfool.json",
    )
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
