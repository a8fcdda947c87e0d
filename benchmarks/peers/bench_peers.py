"""Query time and memory: skal against modAL, baal, scikit-activeml and a DeepFool loop.

One trained LeNet5 (skal's zoo, trained briefly on Fashion-MNIST) and one pool; each
task is timed for skal and for a peer on exactly the same inputs, and the ratios
skal/peer are reported (below 1: skal is faster / lighter):

=====================  ===============================  ==========================================
task                   skal                             peer
=====================  ===============================  ==========================================
entropy                ``UncertaintySampling("entropy")``  modAL ``uncertainty.entropy_sampling``
MC-dropout BALD        ``BALD(n_passes=10)``            modAL ``dropout.mc_dropout_bald``
MC-dropout BALD        ``BALD(n_passes=10)``            baal ``MCDropoutModule`` + ``ModelWrapper``
                                                        + ``heuristics.BALD`` (10 iterations)
MC-dropout BALD        ``BALD(n_passes=10)``            scikit-activeml ``batch_bald`` (GreedyBALD's
                                                        scoring) on 10 plain MC-dropout passes
core-set               ``CoreSet()``                    scikit-activeml ``pool.CoreSet`` on the same
                                                        embeddings (``skal.nets.embed``)
DeepFool margin        ``DFAL(add_adversarial=False)``  the per-sample DeepFool loop of the
                                                        original code (``bench_deepfool.py``)
=====================  ===============================  ==========================================

Every call runs once untimed (warm-up), then ``--repeats`` times; the best time is
kept. Memory is the peak increase of the process's resident set during one call
(Linux: the kernel's high-water mark, reset before the call), plus CUDA's peak when
on a GPU. "same top-k" is the overlap of the two selections (MC-dropout methods
draw different masks, so theirs is only roughly equal).

The peers live in their own environment (modAL needs scikit-learn < 1.8)::

    bash benchmarks/peers/setup_peers.sh
    .venv-peers/bin/python benchmarks/peers/bench_peers.py            # pool 10,000
    .venv-peers/bin/python benchmarks/peers/bench_peers.py --quick    # < 1 min

A peer that is not installed is skipped and listed. Writes
``benchmarks/results/peers.json`` (``peers_quick.json`` with ``--quick``).
"""

import argparse
import copy
import gc
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks.bench_deepfool import deepfool_per_sample  # noqa: E402
from benchmarks.label_efficiency import _reset_peak_rss, _status_mib  # noqa: E402
from skal.nets import cnn_classifier, embed, resolve_device  # noqa: E402
from skal.strategies.bayesian import BALD  # noqa: E402
from skal.strategies.coreset import CoreSet  # noqa: E402
from skal.strategies.dfal import DFAL  # noqa: E402
from skal.strategies.uncertainty import UncertaintySampling  # noqa: E402

# --------------------------------------------------------------------------- measuring


def _glibc():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        # Serve every allocation above 128 KiB with its own mmap, returned to the OS
        # on free (glibc otherwise raises this threshold as big blocks are freed and
        # keeps them in its heap), so that the resident set follows what a call allocates.
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def _trim():
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def measure(fn, repeats, cuda):
    """``(result, best seconds, peak MiB increase or None)`` of ``fn()``."""
    fn()  # warm-up: imports, tracing, thread pools, allocator
    best = np.inf
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    _trim()
    mib = None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    elif _reset_peak_rss():
        start = _status_mib("VmRSS")
        fn()
        mib = max(_status_mib("VmHWM") - start, 0.0)
    return out, best, mib


def overlap(a, b):
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    return round(len(np.intersect1d(a, b)) / max(len(a), 1), 3)


# --------------------------------------------------------------------------- peers


class _ModalLearner:
    """What modAL's dropout functions read: ``classifier.estimator`` (a skorch net)."""

    def __init__(self, net):
        self.estimator = net


def modal_entropy(net, X, k):
    from modAL.uncertainty import entropy_sampling

    idx = entropy_sampling(net, X, n_instances=k)
    return idx[0] if isinstance(idx, tuple) else idx


def modal_bald(net, X_tensor, k, n_passes):
    from modAL.dropout import mc_dropout_bald

    net.module_.eval()  # modAL turns on dropout only; everything else must be in eval
    idx = mc_dropout_bald(_ModalLearner(net), X_tensor, n_instances=k, num_cycles=n_passes)
    return idx[0] if isinstance(idx, tuple) else idx


def make_baal(net, device):
    import logging

    import structlog
    from baal.bayesian.dropout import MCDropoutModule

    # baal logs every prediction call through structlog; keep the table readable.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from baal.modelwrapper import ModelWrapper, TrainingArgs

    model = MCDropoutModule(copy.deepcopy(net.module_)).eval()
    args = TrainingArgs(criterion=torch.nn.CrossEntropyLoss(), use_cuda=device.startswith("cuda"),
                        workers=0)  # baal's default batch size (32) and in-memory replication
    return ModelWrapper(model, args)


def baal_bald(wrapper, dataset, k, n_passes):
    from baal.active.heuristics import BALD as BaalBALD

    preds = wrapper.predict_on_dataset(dataset, iterations=n_passes, verbose=False)
    ranks = BaalBALD().get_ranks(preds)[0]
    return ranks[:k]


def plain_mc_dropout(module, X, n_passes, device, batch_size=256):
    """The MC-dropout loop a scikit-activeml user writes (it has no sampler for torch)."""
    module.eval()
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.dropout._DropoutNd):
            layer.train()
    out = []
    with torch.no_grad():
        for _ in range(n_passes):
            probs = [
                torch.softmax(module(torch.from_numpy(X[i:i + batch_size]).to(device)), 1).cpu()
                for i in range(0, len(X), batch_size)
            ]
            out.append(torch.cat(probs).numpy())
    module.eval()
    return np.stack(out)  # (n_passes, n, C)


def skactiveml_bald(module, X, k, n_passes, device):
    from skactiveml.pool import batch_bald

    probas = plain_mc_dropout(module, X, n_passes, device)
    utilities = batch_bald(probas, batch_size=1)[0]  # GreedyBALD's scoring
    return np.argsort(-utilities, kind="stable")[:k]


def skactiveml_coreset(net, X_labeled, X_pool, k):
    from skactiveml.pool import CoreSet as SkCoreSet

    emb = embed(net, np.concatenate([X_labeled, X_pool]))
    y = np.full(len(emb), np.nan)
    y[: len(X_labeled)] = 0.0  # any label: only "labeled or not" matters
    idx = SkCoreSet(random_state=0).query(emb, y, batch_size=k)
    return np.asarray(idx) - len(X_labeled)


def deepfool_loop(module, X, k, device):
    r, _, _ = deepfool_per_sample(module, X, max_iter=50, overshoot=0.02, device=device)
    norms = np.linalg.norm(r.reshape(len(r), -1), axis=1)
    return np.argsort(norms, kind="stable")[:k]


# --------------------------------------------------------------------------- main


def _available(module):
    try:
        __import__(module)
        return None
    except Exception as exc:  # a broken peer is reported, not fatal
        return f"{type(exc).__name__}: {exc}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 1 min)")
    parser.add_argument("--pool", type=int, default=10000, help="pool images")
    parser.add_argument("--labeled", type=int, default=1000, help="labeled images (core-set)")
    parser.add_argument("--n-instances", type=int, default=100, help="query size")
    parser.add_argument("--deepfool-pool", type=int, default=1000,
                        help="pool images for the DeepFool task (the loop is slow)")
    parser.add_argument("--n-train", type=int, default=5000, help="images to train LeNet5 on")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--passes", type=int, default=10, help="MC-dropout passes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-path", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--out", default=None, help="JSON path")
    args = parser.parse_args(argv)
    if args.quick:
        args.pool, args.labeled, args.n_instances = 1000, 200, 20
        args.deepfool_pool, args.n_train, args.epochs, args.repeats = 30, 1000, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    cuda = device.startswith("cuda")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)

    from skal.datasets import load_fashion_mnist

    X_all, y_all = load_fashion_mnist(args.data_path, subset="train")
    order = np.random.RandomState(args.seed).permutation(len(y_all))
    tr = order[: args.n_train]
    lab = order[args.n_train: args.n_train + args.labeled]
    pool = order[args.n_train + args.labeled: args.n_train + args.labeled + args.pool]
    X_train, y_train = X_all[tr], y_all[tr]
    X_lab, X_pool = X_all[lab], X_all[pool]
    k = args.n_instances

    net = cnn_classifier("lenet5", 10, max_epochs=args.epochs, device=device,
                         random_state=args.seed)
    t0 = time.perf_counter()
    net.fit(X_train, y_train)
    train_s = time.perf_counter() - t0
    module = net.module_

    skipped = {}
    for peer, mod in (("modAL", "modAL"), ("baal", "baal"), ("scikit-activeml", "skactiveml")):
        reason = _available(mod)
        if reason:
            skipped[peer] = reason

    tasks = []
    entropy = UncertaintySampling("entropy")
    bald = BALD(n_passes=args.passes, random_state=args.seed)
    skal_bald = (f"BALD(n_passes={args.passes})", lambda: bald.query(net, X_pool, k))
    if "modAL" not in skipped:
        tasks.append(("entropy", ("UncertaintySampling('entropy')",
                                  lambda: entropy.query(net, X_pool, k)),
                      ("modAL entropy_sampling", lambda: modal_entropy(net, X_pool, k))))
        X_tensor = torch.from_numpy(X_pool)
        tasks.append(("MC-dropout BALD", skal_bald,
                      ("modAL mc_dropout_bald",
                       lambda: modal_bald(net, X_tensor, k, args.passes))))
    if "baal" not in skipped:
        wrapper = make_baal(net, device)
        dataset = torch.utils.data.TensorDataset(torch.from_numpy(X_pool),
                                                 torch.zeros(len(X_pool), dtype=torch.long))
        tasks.append(("MC-dropout BALD", skal_bald,
                      ("baal MCDropoutModule + BALD",
                       lambda: baal_bald(wrapper, dataset, k, args.passes))))
    if "scikit-activeml" not in skipped:
        tasks.append(("MC-dropout BALD", skal_bald,
                      ("scikit-activeml batch_bald (greedy) + MC loop",
                       lambda: skactiveml_bald(module, X_pool, k, args.passes, device))))
        coreset = CoreSet(random_state=args.seed)
        tasks.append(("core-set", ("CoreSet()", lambda: coreset.query(
                          net, X_pool, k, X_labeled=X_lab, y_labeled=np.zeros(len(X_lab), int))),
                      ("scikit-activeml CoreSet (+ skal.nets.embed)",
                       lambda: skactiveml_coreset(net, X_lab, X_pool, k))))
    X_df = X_pool[: args.deepfool_pool]
    k_df = min(k, max(1, len(X_df) // 10))
    dfal = DFAL(add_adversarial=False, max_iter=50, overshoot=0.02)
    tasks.append(("DeepFool margin", ("DFAL(add_adversarial=False)",
                                      lambda: dfal.query(net, X_df, k_df)),
                  ("per-sample DeepFool loop", lambda: deepfool_loop(module, X_df, k_df, device))))

    rows = []
    skal_cache = {}
    for task, (skal_name, skal_fn), (peer_name, peer_fn) in tasks:
        print(f"{task}: {skal_name} vs {peer_name} ...", flush=True)
        if skal_name not in skal_cache:
            skal_cache[skal_name] = measure(skal_fn, args.repeats, cuda)
        skal_idx, skal_s, skal_mib = skal_cache[skal_name]
        try:
            peer_idx, peer_s, peer_mib = measure(peer_fn, args.repeats, cuda)
        except Exception as exc:  # report a peer that breaks on this setup, keep going
            skipped[peer_name] = f"{type(exc).__name__}: {exc}"
            print(f"  {peer_name} failed: {skipped[peer_name]}", flush=True)
            continue
        n = args.deepfool_pool if task == "DeepFool margin" else args.pool
        rows.append({
            "task": task, "skal": skal_name, "peer": peer_name, "pool": min(n, len(X_pool)),
            "skal_s": skal_s, "peer_s": peer_s, "time_ratio": skal_s / peer_s,
            "skal_mib": skal_mib, "peer_mib": peer_mib,
            # Below 1 MiB the resident-set measure is noise, not a ratio.
            "memory_ratio": (skal_mib / peer_mib)
            if skal_mib is not None and peer_mib is not None and min(skal_mib, peer_mib) >= 1
            else None,
            "overlap": overlap(skal_idx, peer_idx),
        })

    print()
    print(f"LeNet5 trained {args.epochs} epoch(s) on {args.n_train} Fashion-MNIST images "
          f"({train_s:.0f} s); pool {len(X_pool)}, query {k}; device {device}, "
          f"{torch.get_num_threads()} thread(s)")
    head = (f"{'task':16} {'peer':44} {'skal s':>8} {'peer s':>8} {'ratio':>7} "
            f"{'skal MiB':>9} {'peer MiB':>9} {'ratio':>6} {'top-k':>6}")
    print(head)
    print("-" * len(head))

    def f(v, spec):
        return format(v, spec) if v is not None else "-"

    for r in rows:
        print(f"{r['task']:16} {r['peer']:44} {r['skal_s']:8.3f} {r['peer_s']:8.3f} "
              f"{r['time_ratio']:7.3f} {f(r['skal_mib'], '9.1f')} {f(r['peer_mib'], '9.1f')} "
              f"{f(r['memory_ratio'], '6.2f')} {r['overlap']:6.2f}")
    print("(ratio = skal / peer: below 1 means skal is faster or lighter; times are the best "
          f"of {args.repeats}; MiB = peak resident-set increase during one call)")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")

    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in ("skal", "torch", "skorch", "scikit-learn", "modAL-python", "baal",
                 "scikit-activeml"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    out = args.out or str(_ROOT / "benchmarks" / "results" /
                          ("peers_quick.json" if args.quick else "peers.json"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    payload = {
        "benchmark": "peers",
        "command": "python benchmarks/peers/bench_peers.py " + " ".join(argv or sys.argv[1:]),
        "quick": args.quick,
        "pool": len(X_pool), "labeled": len(X_lab), "n_instances": k,
        "deepfool_pool": len(X_df), "passes": args.passes, "repeats": args.repeats,
        "train": {"n_train": args.n_train, "epochs": args.epochs, "seconds": train_s},
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "device": device, "torch_threads": torch.get_num_threads(),
                    "cuda_device": torch.cuda.get_device_name(0) if cuda else None},
        "versions": versions,
        "rows": rows,
        "skipped": skipped,
    }
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
