"""Scaling benchmark's measurements: the pools, the shared model, one query's time and memory.

Each function runs in a child process of :mod:`benchmarks.bench_scaling`, which
re-exports them.
"""

import math
import pickle
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks._memory import ru_maxrss_mib as _ru_maxrss_mib
from benchmarks._memory import status_mib as _status_mib
from benchmarks._scaling_common import _registry, make_strategy, parse_strategy

# ---------------------------------------------------------------------------
# Data


def _augmented(X, copy):
    """Copy number ``copy`` of ``X``: 0 as is, then flips and 1-2 pixel shifts."""
    if copy == 0:
        return X
    out = X[..., ::-1] if copy % 2 else X.copy()
    shift = ((copy + 1) // 2) % 3  # 1, 1, 2, 2, 0, 0, ...
    if shift:
        out = np.roll(out, shift, axis=-1 if copy % 4 < 2 else -2)
        # Zero the wrapped-around border: background, not the other side of the image.
        if copy % 4 < 2:
            out[..., :shift] = 0
        else:
            out[..., :shift, :] = 0
    return np.ascontiguousarray(out, dtype=np.float32)


def _fashion(data_path, quick):
    from skal.datasets import load_fashion_mnist

    try:
        return load_fashion_mnist(data_path, subset="train"), "fashion-mnist"
    except FileNotFoundError as exc:
        if not quick:
            raise SystemExit(
                f"bench_scaling needs Fashion-MNIST: {exc}\n"
                "Install it with `apt-get install dataset-fashion-mnist` (Debian) or pass "
                "--data PATH (a folder with the four IDX files)."
            ) from None
    # Smoke runs (CI) work without the data: random images of the same shape.
    rng = np.random.RandomState(0)
    return (rng.rand(2000, 1, 28, 28).astype(np.float32), rng.randint(0, 10, 2000)), "synthetic"


def make_pool(n, *, n_labeled, data_path=None, quick=False):
    """``(X_pool, X_labeled, y_labeled, source)`` for a pool of ``n`` images.

    The labeled set is a fixed random ``n_labeled`` of the training images; the pool
    is drawn (seed 0) from the others and, past their number, from flipped and
    shifted copies of them.
    """
    (X, y), source = _fashion(data_path, quick)
    order = np.random.RandomState(0).permutation(len(y))
    lab, rest = order[:n_labeled], order[n_labeled:]
    n_copies = math.ceil(n / len(rest))
    picks = np.random.RandomState(1).permutation(n_copies * len(rest))[:n]
    X_pool = np.empty((n,) + X.shape[1:], dtype=np.float32)
    for copy in range(n_copies):
        mine = np.flatnonzero(picks // len(rest) == copy)
        if mine.size:
            X_pool[mine] = _augmented(X[rest[picks[mine] % len(rest)]], copy)
    return X_pool, X[lab], y[lab], source


# ---------------------------------------------------------------------------
# The shared model


def _model_path(results):
    return Path(results).with_name(Path(results).stem + "_models.pkl")


def train_models(settings, *, device, data_path=None, quick=False, path):
    """Train the shared LeNet (and WAAL's learner) once and pickle them to ``path``."""
    import torch

    le = _registry()
    X_pool, X_lab, y_lab, source = make_pool(
        settings["waal_unlabeled"], n_labeled=settings["n_labeled"], data_path=data_path,
        quick=quick,
    )
    start = time.perf_counter()
    net = le.training_recipe("fashion-mnist", max_epochs=settings["epochs"], device=device,
                             random_state=0)
    net.fit(X_lab, y_lab)
    waal = le.training_recipe("fashion-mnist", semi_supervised=True,
                              max_epochs=max(1, settings["epochs"] // 10), device=device,
                              random_state=0)
    waal.fit(X_lab, y_lab, X_unlabeled=X_pool)
    seconds = time.perf_counter() - start
    fingerprint = model_fingerprint(net, waal)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump({"net": net, "waal": waal, "source": source, "device": device,
                     "settings": settings, "train_seconds": seconds,
                     "torch": torch.__version__}, fh)
    return seconds, fingerprint


def model_fingerprint(*estimators):
    """SHA-256 (16 hex digits) of the fitted modules' parameters and buffers.

    Training is seeded, so retraining on the same machine and versions gives the
    same fingerprint; the runner keeps the points measured with a lost model's
    pickle only when the retrained model matches it.
    """
    import hashlib

    digest = hashlib.sha256()
    for est in estimators:
        for name, tensor in sorted(est.module_.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _load_models(path):
    with open(path, "rb") as fh:
        return pickle.load(fh)


# ---------------------------------------------------------------------------
# Measuring one point (in a child process)




def _measure_point(spec, n, args):
    import torch

    from skal.nets import resolve_device

    torch.set_num_threads(args.threads)
    models = _load_models(args.models)
    settings = models["settings"]
    semi = parse_strategy(spec)[0] in _registry()._SEMI_SUPERVISED
    estimator = models["waal" if semi else "net"]
    X_pool, X_lab, y_lab, source = make_pool(n, n_labeled=settings["n_labeled"],
                                             data_path=args.data, quick=args.quick)
    strategy = make_strategy(spec)
    device = str(resolve_device(args.device))
    le = _registry()

    def query():
        return strategy.query(estimator, X_pool, settings["batch"], X_labeled=X_lab,
                              y_labeled=y_lab)

    rss_before = _status_mib("VmRSS")
    with le.PeakMemory() as memory:
        start = time.perf_counter()
        idx = query()
        wall = time.perf_counter() - start
    rss_after = _status_mib("VmRSS")
    record = {
        "strategy": spec, "n_pool": n, "status": "complete", "query_seconds": wall,
        "n_queried": int(len(idx)),
        "rss_before_mib": rss_before, "rss_after_mib": rss_after,
        "peak_rss_mib": memory.peak_mib, "extra_peak_rss_mib": memory.increase_mib,
        "peak_rss_scope": memory.scope, "peak_cuda_mib": memory.cuda_peak_mib,
        "pool_mib": X_pool.nbytes / 2**20, "data": source,
    }
    if not args.no_tracemalloc:
        strategy = make_strategy(spec)  # a fresh object: no state from the timed run
        tracemalloc.start()
        query()
        record["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    record["ru_maxrss_mib"] = _ru_maxrss_mib()
    record["torch_threads"] = torch.get_num_threads()
    record["device"] = device
    return record


# ---------------------------------------------------------------------------
# Inference throughput: skal's batched inference against the raw module


def inference_throughput(net, X, *, batch_size=256, repeats=3):
    """Images per second of the raw module (no grad, NCHW and channels-last) and of
    :func:`skal.nets.predict_logits` (with and without its channels-last layout).

    Returns a dict of throughputs and the ratios ``glue_vs_raw`` (skal's default
    against the raw NCHW forward) and ``glue_vs_raw_channels_last``.
    """
    import torch

    from benchmarks._timing import best_time
    from skal.nets import _glue, predict_logits

    module = net.module_
    device = next(module.parameters()).device
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    was_training = module.training
    module.eval()

    def raw(memory_format):
        with torch.no_grad():
            for s in range(0, len(Xt), batch_size):
                module(Xt[s:s + batch_size].to(device).contiguous(memory_format=memory_format))
        if device.type == "cuda":
            torch.cuda.synchronize()

    def glue(channels_last):
        before = _glue.CHANNELS_LAST_ON_CPU
        _glue.CHANNELS_LAST_ON_CPU = channels_last
        try:
            predict_logits(net, X, batch_size=batch_size)
        finally:
            _glue.CHANNELS_LAST_ON_CPU = before

    import copy

    cl_module = copy.deepcopy(module).to(memory_format=torch.channels_last).eval()

    def raw_cl():
        with torch.no_grad():
            for s in range(0, len(Xt), batch_size):
                cl_module(Xt[s:s + batch_size].to(device).contiguous(
                    memory_format=torch.channels_last))
        if device.type == "cuda":
            torch.cuda.synchronize()

    raw(torch.contiguous_format)  # warm-up
    times = {
        "raw": best_time(lambda: raw(torch.contiguous_format), repeats),
        "raw_channels_last": best_time(raw_cl, repeats),
        "glue": best_time(lambda: glue(True), repeats),
        "glue_nchw": best_time(lambda: glue(False), repeats),
    }
    module.train(was_training)
    out = {f"{k}_images_per_s": len(X) / v for k, v in times.items()}
    out.update({
        "n_images": int(len(X)), "batch_size": int(batch_size), "device": str(device),
        "glue_vs_raw": times["raw"] / times["glue"],
        "glue_vs_raw_channels_last": times["raw_channels_last"] / times["glue"],
        "glue_nchw_vs_raw": times["raw"] / times["glue_nchw"],
        "channels_last_speedup": times["glue_nchw"] / times["glue"],
    })
    return out


def _measure_inference(args):
    import torch

    torch.set_num_threads(args.threads)
    models = _load_models(args.models)
    n = 2048 if args.quick else 16384
    X_pool, _, _, source = make_pool(n, n_labeled=models["settings"]["n_labeled"],
                                     data_path=args.data, quick=args.quick)
    record = inference_throughput(models["net"], X_pool, repeats=2 if args.quick else 5)
    record.update(status="complete", data=source, torch_threads=torch.get_num_threads())
    return record
