"""Query time and peak memory of every strategy against the pool size, one subprocess per point.

For every strategy of the label-efficiency runner (``STRATEGIES`` of
``benchmarks/label_efficiency.py``, read at run time) and every pool size N, one
child process loads a pool of N Fashion-MNIST images (the 60,000 training images
less the labeled ones, plus flipped and shifted copies beyond that), loads the net
trained once for all points (the runner's LeNet on 1,000 labels; WAAL's own
``WAALClassifier`` for ``waal``) and times one query of a batch of 500. Each point
records the wall time, the child's RSS before and after the query, the peak RSS of
the query (the kernel's high-water mark, reset before it), the child's ``ru_maxrss``
and, in a second run of the same query, tracemalloc's peak (numpy / Python
allocations; it slows Python code, so it is not timed).

Results go to ``benchmarks/results/scaling.json`` as soon as a point finishes; a
point already there with the same settings is skipped (``--force`` recomputes), so
an interrupted run resumes. The script then fits the log-log slope of time and
memory in N per strategy and writes ``docs/scaling.md`` and ``docs/img/scaling.png``
from the JSON alone (points not run yet show as pending). It also measures batched
inference (``skal.nets.predict_logits``) against the raw module's no-grad forward.

    python benchmarks/bench_scaling.py                         # everything, N = 10K 40K 160K
    python benchmarks/bench_scaling.py --strategies margin dfal --sizes 10000
    python benchmarks/bench_scaling.py --strategies dfal@candidate_factor=10   # a variant
    python benchmarks/bench_scaling.py --quick                 # smoke run, tiny sizes
    python benchmarks/bench_scaling.py --inference-only        # the inference ratios
    python benchmarks/bench_scaling.py render                  # the docs page from the JSON

Timing figures need a quiet machine: one point per core at a time, nothing else
running. ``--threads`` sets torch's thread count in every child (default 1).
"""

import argparse
import ast
import hashlib
import json
import math
import os
import pickle
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

__all__ = [
    "DEFAULT_SIZES",
    "QUICK_SIZES",
    "fit_loglog_slope",
    "inference_throughput",
    "load_results",
    "main",
    "make_pool",
    "parse_strategy",
    "pending_points",
    "point_key",
    "render_page",
    "slopes",
]

RESULTS = _ROOT / "benchmarks" / "results" / "scaling.json"
QUICK_RESULTS = _ROOT / "benchmarks" / "results" / "scaling_quick.json"
GPU_RESULTS = _ROOT / "benchmarks" / "results" / "gpu_check.json"
DOCS_PAGE = _ROOT / "docs" / "scaling.md"
DOCS_IMG = _ROOT / "docs" / "img" / "scaling.png"
DEFAULT_SIZES = (10_000, 40_000, 160_000)
QUICK_SIZES = (300, 600)
BATCH = 500
N_LABELED = 1000
QUICK = {"batch": 20, "n_labeled": 100, "epochs": 1, "waal_unlabeled": 200}
FULL = {"batch": BATCH, "n_labeled": N_LABELED, "epochs": 20, "waal_unlabeled": 5000}
_FORMAT = 1
# The goals (#19): the page marks the points that miss them.
GOAL_SLOPE = 1.1
GOAL_EXTRA_MIB = 1.5 * 1024


# ---------------------------------------------------------------------------
# Strategies


def _registry():
    from benchmarks import label_efficiency

    return label_efficiency


def parse_strategy(spec):
    """``"name"`` or ``"name@param=value,param=value"`` -> ``(name, params)``.

    Examples
    --------
    >>> parse_strategy("dfal@candidate_factor=10,preselect='random'")
    ('dfal', {'candidate_factor': 10, 'preselect': 'random'})
    >>> parse_strategy("margin")
    ('margin', {})
    """
    name, _, rest = spec.partition("@")
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"strategy variant {spec!r}: expected param=value, got {item!r}.")
        try:
            params[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            params[key.strip()] = value.strip()  # a bare word is a string
    return name, params


def make_strategy(spec):
    """The strategy of a registry name or variant, seeded (``random_state=0``)."""
    name, params = parse_strategy(spec)
    strategy = _registry().make_strategy(name)
    if "random_state" in strategy.get_params():
        params.setdefault("random_state", 0)
    return strategy.set_params(**params)


def family(spec):
    """A strategy's family: the registry module it comes from (``uncertainty``, ``dfal``, ...)."""
    name = parse_strategy(spec)[0]
    module = _registry().STRATEGIES.get(name, ("?",))[0]
    return module.rsplit(".", 1)[-1]


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
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump({"net": net, "waal": waal, "source": source, "device": device,
                     "settings": settings, "train_seconds": seconds,
                     "torch": torch.__version__}, fh)
    return seconds


def _load_models(path):
    with open(path, "rb") as fh:
        return pickle.load(fh)


# ---------------------------------------------------------------------------
# Measuring one point (in a child process)


def _status_mib(key):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _ru_maxrss_mib():
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


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


# ---------------------------------------------------------------------------
# Results file


def point_key(spec, n):
    """The JSON key of one point.

    Examples
    --------
    >>> point_key("margin", 10000)
    'margin|10000'
    """
    return f"{spec}|{int(n)}"


def _config(args, spec=None):
    settings = QUICK if args.quick else FULL
    config = {"format": _FORMAT, "quick": bool(args.quick), "threads": args.threads,
              "device": args.device_resolved, **settings}
    if spec is not None:
        config["strategy_repr"] = " ".join(repr(make_strategy(spec)).split())
    return config


def _config_key(config):
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def load_results(path):
    """The results JSON (an empty one if the file is missing or unreadable)."""
    try:
        with open(path, encoding="utf-8") as fh:
            payload = json.load(fh)
        if isinstance(payload.get("points"), dict):
            return payload
    except (OSError, ValueError):
        pass
    return {"benchmark": "scaling", "format": _FORMAT, "points": {}}


def _write(path, payload):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)  # atomic: an interrupted run never leaves half a file


def pending_points(payload, specs, sizes, keys, *, force=False):
    """The (strategy, N) points still to run: not in ``payload`` as complete with
    the same config key (``keys[spec]``), or all of them with ``force``.

    Examples
    --------
    >>> done = {"points": {"margin|10": {"status": "complete", "config_key": "a"}}}
    >>> pending_points(done, ["margin", "dfal"], [10], {"margin": "a", "dfal": "a"})
    [('dfal', 10)]
    >>> pending_points(done, ["margin"], [10], {"margin": "b"})
    [('margin', 10)]
    """
    todo = []
    for spec in specs:
        for n in sizes:
            point = payload.get("points", {}).get(point_key(spec, n))
            if force or not point or point.get("status") != "complete" or (
                point.get("config_key") != keys[spec]
            ):
                todo.append((spec, int(n)))
    return todo


# ---------------------------------------------------------------------------
# Analysis and the docs page


def fit_loglog_slope(ns, values):
    """Least-squares slope of ``log(value)`` against ``log(N)``; None with < 2 usable points.

    Non-positive or missing values are left out (memory below the measurement's
    resolution).

    Examples
    --------
    >>> round(fit_loglog_slope([1e4, 4e4, 1.6e5], [1.0, 4.0, 16.0]), 3)
    1.0
    """
    pts = [(float(n), float(v)) for n, v in zip(ns, values)
           if v is not None and np.isfinite(v) and v > 0 and n > 0]
    if len({n for n, _ in pts}) < 2:
        return None
    x = np.log([n for n, _ in pts])
    y = np.log([v for _, v in pts])
    return float(np.polyfit(x, y, 1)[0])


def slopes(payload):
    """``{strategy: {"time": slope, "memory": slope, "tracemalloc": slope}}`` of the complete points."""
    by = {}
    for point in payload.get("points", {}).values():
        if point.get("status") == "complete" and "n_pool" in point:
            by.setdefault(point["strategy"], []).append(point)
    out = {}
    for spec, points in by.items():
        points.sort(key=lambda p: p["n_pool"])
        ns = [p["n_pool"] for p in points]
        out[spec] = {
            "time": fit_loglog_slope(ns, [p.get("query_seconds") for p in points]),
            "memory": fit_loglog_slope(ns, [p.get("extra_peak_rss_mib") for p in points]),
            "tracemalloc": fit_loglog_slope(ns, [p.get("tracemalloc_peak_mib") for p in points]),
        }
    return out


def _fmt(value, spec=".3g", unit=""):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:{spec}}{unit}"


def _size_label(n):
    return f"{n // 1000}K" if n >= 1000 and n % 1000 == 0 else str(n)


def render_page(payload, specs, sizes, *, gpu=None, image=None):
    """The Markdown page of the scaling benchmark, from the results alone.

    Every (strategy, N) of ``specs`` x ``sizes`` gets a cell: its figure, or
    ``pending`` when the JSON has no complete point for it.
    """
    points = payload.get("points", {})
    fits = slopes(payload)
    config = payload.get("config", {})
    machine = payload.get("machine", {})
    lines = [
        "# Scaling: query time and memory against the pool size",
        "",
        "<!-- Generated by `python benchmarks/bench_scaling.py render` from "
        "benchmarks/results/scaling.json; do not edit by hand. -->",
        "",
        "Every strategy of the label-efficiency runner queries a batch of "
        f"{config.get('batch', BATCH)} from Fashion-MNIST pools of "
        + ", ".join(_size_label(n) for n in sizes)
        + " images (the 60,000 training images less the labeled ones, then flipped and "
        f"shifted copies), with {config.get('n_labeled', N_LABELED)} labels and one LeNet "
        "trained once for all points (WAAL: its own `WAALClassifier`). Each point runs in "
        "its own process. *Time* is the wall time of one query; *extra peak* is the "
        "query's peak RSS above the RSS before it (the pool and the model are loaded "
        "already); *tracemalloc* is the peak of numpy and Python allocations in a second, "
        "untimed run of the same query (torch's own allocations are not traced).",
        "",
        "The goals (issue #19): query time at most about linear in N (log-log slope "
        f"≤ {GOAL_SLOPE}) and an extra peak of at most {GOAL_EXTRA_MIB / 1024:.1f} GB at "
        "N = 160K.",
        "",
        "```",
        "python benchmarks/bench_scaling.py            # all points (resumable), then this page",
        "python benchmarks/bench_scaling.py render     # this page from the JSON",
        "```",
        "",
    ]
    if machine:
        lines += [
            f"Measured with {config.get('threads', '?')} torch thread(s) on "
            f"{machine.get('device', '?')}, {machine.get('cpu_count', '?')} CPUs, torch "
            f"{machine.get('torch', '?')}, {machine.get('platform', '?')}.",
            "",
        ]
    n_done = sum(1 for s in specs for n in sizes
                 if points.get(point_key(s, n), {}).get("status") == "complete")
    n_all = len(specs) * len(sizes)
    if n_done < n_all:
        lines += [f"**{n_all - n_done} of {n_all} points are pending** (not run yet, or "
                  "failed: see the notes below the tables).", ""]
    header = ["strategy"] + [f"time {_size_label(n)}" for n in sizes] + ["slope"]
    lines += ["## Query time (seconds)", "", "| " + " | ".join(header) + " |",
              "|" + "---|" * len(header)]
    for spec in specs:
        row = [f"`{spec}`"]
        for n in sizes:
            p = points.get(point_key(spec, n), {})
            row.append(_fmt(p.get("query_seconds"), ".3g") if p.get("status") == "complete"
                       else "pending")
        slope = fits.get(spec, {}).get("time")
        mark = " ⚠" if slope is not None and slope > GOAL_SLOPE else ""
        row.append(_fmt(slope, ".2f") + mark)
        lines.append("| " + " | ".join(row) + " |")
    header = (["strategy"] + [f"extra peak {_size_label(n)}" for n in sizes]
              + ["slope", f"tracemalloc {_size_label(sizes[-1])}"])
    lines += ["", "## Peak memory of the query (MiB)", "", "| " + " | ".join(header) + " |",
              "|" + "---|" * len(header)]
    for spec in specs:
        row = [f"`{spec}`"]
        for n in sizes:
            p = points.get(point_key(spec, n), {})
            if p.get("status") != "complete":
                row.append("pending")
                continue
            extra = p.get("extra_peak_rss_mib")
            mark = " ⚠" if extra is not None and n >= 160_000 and extra > GOAL_EXTRA_MIB else ""
            row.append(_fmt(extra, ".0f") + mark)
        row.append(_fmt(fits.get(spec, {}).get("memory"), ".2f"))
        last = points.get(point_key(spec, sizes[-1]), {})
        row.append(_fmt(last.get("tracemalloc_peak_mib"), ".0f")
                   if last.get("status") == "complete" else "pending")
        lines.append("| " + " | ".join(row) + " |")
    failed = [(k, p) for k, p in sorted(points.items())
              if p.get("status") not in (None, "complete") and p.get("strategy") in specs]
    if failed:
        lines += ["", "Points that did not finish (they are retried on the next run):", ""]
        for key, p in failed:
            lines.append(f"- `{key}`: {p.get('status')} — {str(p.get('error', ''))[:200]}")
    if image:
        lines += ["", f"![Query time and extra peak memory against N, log-log]({image})"]
    inf = payload.get("inference")
    lines += ["", "## Batched inference against the raw module", ""]
    if inf and inf.get("status") == "complete":
        lines += [
            f"`skal.nets.predict_logits` on {inf['n_images']} images in batches of "
            f"{inf['batch_size']} ({inf['device']}), against the module's own no-grad "
            "forward over the same batches (goal: ≥ 0.95×):",
            "",
            "| | images / s | ratio to the raw NCHW module |",
            "|---|---|---|",
            f"| raw module, NCHW | {inf['raw_images_per_s']:.0f} | 1.00 |",
            f"| raw module, channels-last | {inf['raw_channels_last_images_per_s']:.0f} | "
            f"{inf['raw_channels_last_images_per_s'] / inf['raw_images_per_s']:.2f} |",
            f"| `predict_logits` (channels-last on CPU, the default) | "
            f"{inf['glue_images_per_s']:.0f} | {inf['glue_vs_raw']:.2f} |",
            f"| `predict_logits`, NCHW (`CHANNELS_LAST_ON_CPU = False`) | "
            f"{inf['glue_nchw_images_per_s']:.0f} | {inf['glue_nchw_vs_raw']:.2f} |",
        ]
    else:
        lines.append("Pending: run `python benchmarks/bench_scaling.py --inference-only`.")
    lines += ["", "## GPU", ""]
    if gpu and gpu.get("device", "").startswith("cuda") and not gpu.get("quick"):
        lines.append(f"From `benchmarks/gpu_check.py` on {gpu.get('cuda_device', 'a GPU')}:")
        lines.append("")
        lines.append("| check | ratio |")
        lines.append("|---|---|")
        for key, value in sorted(gpu.get("ratios", {}).items()):
            lines.append(f"| {key} | {_fmt(value, '.3g')} |")
    else:
        lines.append(
            "GPU figures are pending: no GPU was lent to the session that wrote this "
            "benchmark. `python benchmarks/gpu_check.py` (under 8 minutes on one GPU) "
            "records batched DeepFool against the per-sample loop, BALD with T = 10 "
            "against 10 plain passes, entropy against one pass, a WAAL epoch and the "
            "160K scaling points, in `benchmarks/results/gpu_check.json`; this page "
            "shows them once that file holds a GPU run."
        )
    return "\n".join(lines) + "\n"


def plot(payload, specs, path):
    """Log-log small multiples, one panel per strategy family: time and extra peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = payload.get("points", {})
    families = {}
    for spec in specs:
        families.setdefault(family(spec), []).append(spec)
    names = sorted(families)
    ncols = min(4, max(1, len(names)))
    nrows = 2 * math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for i, fam in enumerate(names):
        r, c = 2 * (i // ncols), i % ncols
        for row, key, ylabel in ((r, "query_seconds", "query s"),
                                 (r + 1, "extra_peak_rss_mib", "extra peak MiB")):
            ax = axes[row][c]
            ax.set_visible(True)
            drawn = False
            for spec in families[fam]:
                done = sorted((p["n_pool"], p.get(key)) for p in points.values()
                              if p.get("strategy") == spec and p.get("status") == "complete"
                              and p.get(key) is not None and p.get(key) > 0)
                if done:
                    ax.plot(*zip(*done), marker="o", label=spec)
                    drawn = True
            if drawn:
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.legend(fontsize=6, loc="upper left")
            else:
                ax.text(0.5, 0.5, "pending", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(fam if key == "query_seconds" else f"{fam} (memory)", fontsize=9)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_xlabel("pool size N", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _render(results_path, specs, sizes, page, image, quick):
    payload = load_results(results_path)
    gpu = None
    if GPU_RESULTS.exists():
        try:
            gpu = json.loads(GPU_RESULTS.read_text(encoding="utf-8"))
        except ValueError:
            gpu = None
    rel = None
    if image is not None:
        plot(payload, specs, image)
        rel = os.path.relpath(image, Path(page).parent)
    Path(page).parent.mkdir(parents=True, exist_ok=True)
    Path(page).write_text(render_page(payload, specs, sizes, gpu=gpu, image=rel),
                          encoding="utf-8")
    return page


# ---------------------------------------------------------------------------
# Driver


def _child(args, what):
    """Run one point (or the inference measurement) in a fresh interpreter."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", what,
           "--models", str(args.models), "--threads", str(args.threads),
           "--device", args.device_resolved]
    if args.data:
        cmd += ["--data", args.data]
    if args.quick:
        cmd.append("--quick")
    if args.no_tracemalloc:
        cmd.append("--no-tracemalloc")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=args.timeout, cwd=str(_ROOT))
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"more than {args.timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"status": "failed", "returncode": proc.returncode,
            "error": " | ".join(tail) or f"exit code {proc.returncode}"}


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "render", "_child"])
    parser.add_argument("what", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="pool sizes (default 10000 40000 160000; --quick: 300 600)")
    parser.add_argument("--strategies", nargs="+", default=None,
                        help="registry names, or variants name@param=value,...")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and model: a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per child")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--results", default=None, help="JSON path")
    parser.add_argument("--page", default=None, help="Markdown page to write")
    parser.add_argument("--force", action="store_true", help="recompute points already done")
    parser.add_argument("--inference-only", action="store_true")
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per point")
    parser.add_argument("--models", default=None, help=argparse.SUPPRESS)
    return parser


def _defaults(args):
    from skal.nets import resolve_device

    args.device_resolved = str(resolve_device(args.device))
    if args.results is None:
        args.results = str(QUICK_RESULTS if args.quick else RESULTS)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if args.strategies is None:
        args.strategies = list(_registry().STRATEGIES)  # read at run time: new ones included
    if args.page is None:
        args.page = str(Path(args.results).with_suffix(".md") if args.quick else DOCS_PAGE)
    if args.models is None:
        args.models = str(_model_path(args.results))
    return args


def run(args):
    """Run the pending points, then write the page. Returns the results payload."""
    for spec in args.strategies:
        name = parse_strategy(spec)[0]
        if name not in _registry().STRATEGIES:
            raise SystemExit(f"unknown strategy {name!r}; the runner knows "
                             f"{', '.join(_registry().STRATEGIES)}.")
        make_strategy(spec)  # bad variant parameters fail here, before any work
    results = Path(args.results)
    payload = load_results(results)
    config = _config(args)
    models = Path(args.models)
    import torch

    payload.update(config=config, machine={
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "cpu_count": os.cpu_count(),
        "device": args.device_resolved,
    })
    model_key = _config_key({k: v for k, v in config.items() if k != "threads"})
    if args.force or payload.get("model_key") != model_key or not models.exists():
        print(f"training the shared LeNet on {config['n_labeled']} labels ...", flush=True)
        seconds = train_models(config, device=args.device_resolved, data_path=args.data,
                               quick=args.quick, path=models)
        payload.update(model_key=model_key, model_train_seconds=seconds)
        # A new model makes every earlier point stale.
        payload["points"] = {}
        payload.pop("inference", None)
        _write(results, payload)
    keys = {spec: _config_key(_config(args, spec)) for spec in args.strategies}
    if not args.no_inference and (args.force or "inference" not in payload
                                  or payload["inference"].get("status") != "complete"):
        print("inference throughput ...", flush=True)
        payload["inference"] = _child(args, "inference")
        _write(results, payload)
        inf = payload["inference"]
        if inf.get("status") == "complete":
            print(f"  predict_logits / raw module: {inf['glue_vs_raw']:.2f}x "
                  f"(channels-last gain {inf['channels_last_speedup']:.2f}x)", flush=True)
    if not args.inference_only:
        todo = pending_points(payload, args.strategies, args.sizes, keys, force=args.force)
        print(f"{len(todo)} point(s) to run, "
              f"{len(args.strategies) * len(args.sizes) - len(todo)} done already", flush=True)
        for spec, n in todo:
            start = time.perf_counter()
            record = _child(args, point_key(spec, n))
            record.update(strategy=spec, n_pool=n, config_key=keys[spec],
                          finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            payload["points"][point_key(spec, n)] = record
            _write(results, payload)
            if record["status"] == "complete":
                print(f"  {spec:>24} N={n:>7}: {record['query_seconds']:8.2f} s, extra peak "
                      f"{_fmt(record.get('extra_peak_rss_mib'), '.0f')} MiB "
                      f"({time.perf_counter() - start:.0f} s with loading)", flush=True)
            else:
                print(f"  {spec:>24} N={n:>7}: {record['status']}: {record.get('error')}",
                      flush=True)
    payload["slopes"] = slopes(payload)
    _write(results, payload)
    image = None if args.quick else DOCS_IMG
    if args.quick:
        image = Path(args.page).with_suffix(".png")
    _render(results, args.strategies, args.sizes, args.page, image, args.quick)
    print(f"wrote {results} and {args.page}", flush=True)
    return payload


def main(argv=None):
    args = _defaults(_parser().parse_args(argv))
    if args.command == "_child":
        try:
            if args.what == "inference":
                record = _measure_inference(args)
            else:
                spec, _, n = args.what.rpartition("|")
                record = _measure_point(spec, int(n), args)
        except MemoryError as exc:
            record = {"status": "failed", "error": f"MemoryError: {exc}"}
        except Exception as exc:  # reported in the JSON; the parent goes on
            record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        print("RESULT " + json.dumps(record), flush=True)
        return 0
    if args.command == "render":
        page = _render(args.results, args.strategies, args.sizes, args.page,
                       None if args.quick else DOCS_IMG, args.quick)
        print(f"wrote {page}")
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
