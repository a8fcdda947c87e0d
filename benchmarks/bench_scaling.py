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
point already there with the same settings is skipped (``--force`` recomputes the
chosen points), so an interrupted run resumes. The shared model is pickled beside
the JSON; when the pickle is lost, it is trained again (seeded) and the points
are kept only when its parameters' fingerprint matches the one recorded. The
script then fits the log-log slope of time and memory in N per strategy and writes
``docs/scaling.md`` and ``docs/img/scaling.png`` from the JSON alone (points not run
yet show as pending). It also measures batched inference
(``skal.nets.predict_logits``) against the raw module's no-grad forward.

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
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks._scaling_common import (  # noqa: E402, F401 (family: re-exported)
    BATCH,
    N_LABELED,
    _registry,
    family,
    make_strategy,
    parse_strategy,
    point_key,
)
from benchmarks._scaling_measure import (  # noqa: E402, F401 (_augmented, _load_models: old paths)
    _augmented,
    _load_models,
    _measure_inference,
    _measure_point,
    _model_path,
    inference_throughput,
    make_pool,
    train_models,
)
from benchmarks._scaling_page import (  # noqa: E402, F401 (old import paths)
    GOAL_EXTRA_MIB,
    GOAL_SLOPE,
    _fmt,
    fit_loglog_slope,
    plot,
    render_page,
    slopes,
)

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
QUICK = {"batch": 20, "n_labeled": 100, "epochs": 1, "waal_unlabeled": 200}
FULL = {"batch": BATCH, "n_labeled": N_LABELED, "epochs": 20, "waal_unlabeled": 5000}
_FORMAT = 1


# ---------------------------------------------------------------------------
# Results file


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


def same_model(payload, model_key, fingerprint):
    """Whether a retrained model is the one ``payload``'s points were measured with.

    Examples
    --------
    >>> same_model({"model_key": "a", "model_fingerprint": "f"}, "a", "f")
    True
    >>> same_model({"model_key": "a"}, "a", "f")  # no fingerprint recorded: unknown
    False
    """
    return (payload.get("model_key") == model_key
            and payload.get("model_fingerprint") is not None
            and payload.get("model_fingerprint") == fingerprint)


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
    parser.add_argument("--force", action="store_true",
                        help="recompute the chosen points even when done")
    parser.add_argument("--retrain", action="store_true",
                        help="train the shared model again (points are kept only when the "
                             "retrained model's fingerprint matches)")
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
    if args.retrain or payload.get("model_key") != model_key or not models.exists():
        print(f"training the shared LeNet on {config['n_labeled']} labels ...", flush=True)
        seconds, fingerprint = train_models(config, device=args.device_resolved,
                                            data_path=args.data, quick=args.quick, path=models)
        if not same_model(payload, model_key, fingerprint):
            # A different model makes every earlier point stale.
            payload["points"] = {}
            payload.pop("inference", None)
        payload.update(model_key=model_key, model_train_seconds=seconds,
                       model_fingerprint=fingerprint)
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
        specs = list(args.strategies)
        # Variants measured with --strategies name@param=value are shown too.
        for point in load_results(args.results)["points"].values():
            if "@" in str(point.get("strategy")) and point["strategy"] not in specs:
                specs.append(point["strategy"])
        page = _render(args.results, specs, args.sizes, args.page,
                       None if args.quick else DOCS_IMG, args.quick)
        print(f"wrote {page}")
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
