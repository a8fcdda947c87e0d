"""Why some strategies lose to random on Fashion-MNIST: cheap one-round diagnostics.

For every seed of a protocol this trains the runner's round-0 model once (the
same seed set and initial weights as ``benchmarks.label_efficiency``'s run of
that seed), lets every strategy make its first query on a random subset of the
unlabeled pool, and measures what it picked, in the model's penultimate
embedding:

* class balance: entropy of the true-label histogram of the picks (1 = all
  classes equally often) and the share of the most picked class; the model's
  error rate on the picks;
* batch redundancy: mean pairwise cosine similarity of the picks and the mean
  distance of each pick to its nearest other pick (on the unit sphere);
* outliers: each pick's distance to its nearest labeled point and its feature
  norm, as percentiles of the pool's; the share of picks beyond the pool's
  95th percentile of that distance;
* informativeness: the picks' BALD and predictive-entropy percentiles;
* the one-round gain: test accuracy after retraining on labels + picks.

The BALD ranking itself is diagnosed too: the Spearman correlation and the
top-k overlap between 10 and 50 MC-dropout passes, between two draws of 10
passes (the noise floor), and with dropout kept only before the last layer;
and the share of the pool's BALD mass in the top k.

``runs`` adds the class balance of every round's picks of the finished full
runs (their JSONs under ``benchmarks/results/label_efficiency``), which needs no
training at all.

Results go to ``benchmarks/results/diagnose_strategies.json`` after every
strategy, and a rerun skips what is done (same settings), so an interrupted run
resumes. ``table`` prints the tables (Markdown) and ``figures`` draws the PNGs of
``docs/diagnoses.md``.

Usage::

    python -m benchmarks.diagnose_strategies --protocols small waal --seeds 0 1 2
    python -m benchmarks.diagnose_strategies --quick          # smoke run, a few minutes
    python -m benchmarks.diagnose_strategies table
    python -m benchmarks.diagnose_strategies figures
"""

import argparse
import contextlib
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks.label_efficiency import (  # noqa: E402
    PROTOCOLS,
    RESULTS_DIR,
    _write_json,
    load_protocol_data,
    make_strategy,
)
from skal.recipes import training_recipe  # noqa: E402
from skal.simulation import _plan_seed  # noqa: E402  (the runner's seed set and sub-seeds)
from skal.strategies.coreset import min_sq_distances  # noqa: E402

__all__ = [
    "class_balance",
    "main",
    "mean_pairwise_cosine",
    "nearest_neighbour_distance",
    "outlier_share",
    "percentile_in",
    "score_concentration",
    "top_k_overlap",
]

OUT = _ROOT / "benchmarks" / "results" / "diagnose_strategies.json"
OUT_QUICK = _ROOT / "benchmarks" / "results" / "diagnose_strategies_quick.json"
IMG = _ROOT / "docs" / "img"
CACHE = Path(os.environ.get("SKAL_DIAGNOSE_CACHE", "/tmp/skal_diagnose_cache"))
_FORMAT = 1

CLASS_NAMES = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
               "bag", "boot")

#: Protocol name here -> the runner's data set.
PROTOCOL_DATASETS = {"waal": "fashion-mnist", "small": "fashion-mnist-thesis",
                     "low": "fashion-mnist-low"}
#: ``runs`` reads the finished full runs only, so it covers digits too.
FULL_RUN_DATASETS = {**PROTOCOL_DATASETS, "digits": "digits"}


def _class_names(protocol):
    return tuple(str(d) for d in range(10)) if protocol == "digits" else CLASS_NAMES

# Strategy rows per protocol: the losers, random (twice: the spread of random
# itself), a winner for reference, and the fixes / batch-aware alternatives.
# Names with a suffix are diagnostic variants built in _make below.
STRATEGY_ROWS = {
    "waal": ("random", "random-2", "margin", "entropy", "bald", "bald-T50", "bald-last-dropout",
             "batchbald", "powerbald", "coreset", "coreset-l2", "coreset-pca50",
             "kmedoids-coreset", "wasserstein-prototypes", "wasserstein-coreset", "balnet",
             "balnet+wasserstein", "badge", "typiclust", "probcover"),
    "small": ("random", "random-2", "margin", "entropy", "bald", "bald-last-dropout",
              "batchbald", "powerbald", "coreset", "coreset-l2", "coreset-pca50", "badge",
              "typiclust", "probcover"),
    "low": ("random", "random-2", "margin", "coreset", "typiclust", "probcover"),
}
QUICK_ROWS = ("random", "random-2", "entropy", "bald", "bald-last-dropout", "coreset",
              "coreset-l2", "coreset-pca50", "powerbald")
# Variants that only feed a comparison of picks: no retraining.
NO_REFIT = {"bald-T50"}
# The runner's AUBC of each row comes from this registry name.
RUNNER_NAME = {"random-2": None, "bald-T50": None, "bald-last-dropout": None,
               "coreset-pca50": None}

# ---------------------------------------------------------------------------
# Metrics (pure NumPy; tests/test_diagnose_strategies.py checks them by hand)


def class_balance(labels, n_classes):
    """Class balance of a batch's true labels.

    Returns ``{"entropy": H / log(n_classes), "max_share": share of the most
    frequent class, "n_classes": classes present}``; ``entropy`` is 1 for a
    batch with every class equally often and 0 for a batch of one class.

    Examples
    --------
    >>> class_balance([0, 0, 1, 1], 2)
    {'entropy': 1.0, 'max_share': 0.5, 'n_classes': 2}
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)
    p = counts[counts > 0] / counts.sum()
    return {"entropy": float(-(p * np.log(p)).sum() / np.log(n_classes)),
            "max_share": float(p.max()), "n_classes": int((counts > 0).sum())}


def mean_pairwise_cosine(Z):
    """Mean cosine similarity over the distinct pairs of rows of ``Z``.

    Examples
    --------
    >>> round(mean_pairwise_cosine(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])), 4)
    0.4714
    """
    Z = np.asarray(Z, dtype=np.float64)
    norms = np.linalg.norm(Z, axis=1)
    U = Z / np.where(norms > 0, norms, 1.0)[:, None]
    n = len(U)
    # sum over i != j of u_i . u_j = |sum u|^2 - sum |u_i|^2
    s = U.sum(axis=0)
    total = float(s @ s - np.einsum("ij,ij->", U, U))
    return total / (n * (n - 1))


def nearest_neighbour_distance(Z):
    """Mean Euclidean distance from each row of ``Z`` to its nearest other row.

    Examples
    --------
    >>> round(nearest_neighbour_distance(np.array([[0.0], [1.0], [3.0]])), 4)
    1.3333
    """
    Z = np.asarray(Z, dtype=np.float64)
    sq = np.einsum("ij,ij->i", Z, Z)
    d = sq[:, None] - 2.0 * Z @ Z.T + sq[None, :]
    np.fill_diagonal(d, np.inf)
    return float(np.sqrt(np.maximum(d.min(axis=1), 0.0)).mean())


def percentile_in(values, reference):
    """For each value, the fraction of ``reference`` strictly below it (0-1).

    Examples
    --------
    >>> percentile_in([0.5, 3.0], [0.0, 1.0, 2.0, 3.0]).tolist()
    [0.25, 0.75]
    """
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    return np.searchsorted(ref, np.asarray(values, dtype=np.float64), side="left") / ref.size


def outlier_share(values, reference, q=0.95):
    """Share of ``values`` above the ``q``-quantile of ``reference``.

    Examples
    --------
    >>> outlier_share([1.0, 50.0], np.arange(100.0), q=0.9)
    0.0
    >>> outlier_share([1.0, 95.0], np.arange(100.0), q=0.9)
    0.5
    """
    cut = np.quantile(np.asarray(reference, dtype=np.float64), q)
    return float(np.mean(np.asarray(values, dtype=np.float64) > cut))


def score_concentration(scores, k):
    """Share of the total (non-negative) score held by the ``k`` highest scores.

    Examples
    --------
    >>> score_concentration([1.0, 4.0, 2.0, 3.0], 1)
    0.4
    """
    s = np.sort(np.maximum(np.asarray(scores, dtype=np.float64), 0.0))[::-1]
    return float(s[:k].sum() / s.sum()) if s.sum() > 0 else 0.0


def top_k_overlap(a, b, k):
    """Fraction of the ``k`` highest entries of ``a`` that are among those of ``b``.

    Examples
    --------
    >>> top_k_overlap([4, 3, 2, 1], [4, 1, 3, 2], 2)
    0.5
    """
    ta = np.argsort(-np.asarray(a), kind="stable")[:k]
    tb = np.argsort(-np.asarray(b), kind="stable")[:k]
    return len(np.intersect1d(ta, tb)) / k


def _jaccard(a, b):
    a, b = set(map(int, a)), set(map(int, b))
    return len(a & b) / len(a | b)


# ---------------------------------------------------------------------------
# The experiment


@contextlib.contextmanager
def last_dropout_only(module):
    """Sample only the last dropout layer (the others get ``p = 0``) inside the block."""
    from skal.nets import dropout_layers

    layers = dropout_layers(module)
    saved = [layer.p for layer in layers]
    try:
        for layer in layers[:-1]:
            layer.p = 0.0
        yield
    finally:
        for layer, p in zip(layers, saved, strict=False):
            layer.p = p


def _settings(protocol, quick):
    return PROTOCOLS[PROTOCOL_DATASETS[protocol]]["quick" if quick else "full"]


def _config(args, protocol):
    s = _settings(protocol, args.quick)
    return {"format": _FORMAT, "protocol": protocol, "quick": bool(args.quick),
            "n_initial": s["n_initial"], "k": s["batch_size"], "n_candidates": _pool_size(args),
            "epochs": s["max_epochs"], "refit_epochs": _refit_epochs(args, protocol)}


def _pool_size(args):
    return 1000 if args.quick else args.pool


def _refit_epochs(args, protocol):
    if args.quick:
        return 3
    # The small protocol's recipe trains a fixed 60 epochs on 200 labels (seconds);
    # on 1.5K labels the cap keeps one refit cheap (the brief's 20 epochs).
    return args.refit_epochs if protocol == "waal" else None


class Context:
    """One (protocol, seed): the round-0 model, the candidate pool and their embeddings."""

    def __init__(self, args, protocol, seed):
        from skal.nets import embed, predict_proba, resolve_device

        self.protocol, self.seed = protocol, seed
        self.dataset = PROTOCOL_DATASETS[protocol]
        s = _settings(protocol, args.quick)
        self.k = s["batch_size"]
        X, y, X_test, y_test = load_protocol_data(self.dataset, seed, quick=args.quick,
                                                  data_path=args.data_path)
        self.X, self.y, self.X_test, self.y_test = X, y, X_test, y_test
        _, self.initial, self.sub_seeds = _plan_seed(seed, len(X), s["n_initial"])
        rest = np.setdiff1d(np.arange(len(X)), self.initial)
        n_cand = min(_pool_size(args), len(rest))
        self.cand = np.sort(np.random.RandomState(seed + 7919).choice(rest, n_cand, replace=False))
        self.device = str(resolve_device(args.device))
        self.epochs = s["max_epochs"]
        self.refit_epochs = _refit_epochs(args, protocol)
        self.net, self.base_accuracy = self._base_model(args.quick)
        self.X_lab, self.y_lab = X[self.initial], y[self.initial]
        self.X_pool, self.y_pool = X[self.cand], y[self.cand]
        self.Z_pool = embed(self.net, self.X_pool).astype(np.float64)
        self.Z_lab = embed(self.net, self.X_lab).astype(np.float64)
        norms = np.linalg.norm(self.Z_pool, axis=1)
        self.U_pool = self.Z_pool / np.where(norms > 0, norms, 1.0)[:, None]
        self.norms = norms
        self.dist_lab = np.sqrt(min_sq_distances(self.Z_pool, self.Z_lab))
        proba = predict_proba(self.net, self.X_pool)
        self.pred = proba.argmax(axis=1)
        p = np.clip(proba, 1e-12, 1.0)
        self.entropy = -(p * np.log(p)).sum(axis=1)
        from skal.strategies import BALD

        self.bald10 = BALD(n_passes=10, random_state=self.sub_seeds["strategy"]).utilities(
            self.net, self.X_pool)

    def _base_model(self, quick):
        key = f"{self.protocol}_seed{self.seed}_{'quick' if quick else 'full'}_{self.device}.pkl"
        path = CACHE / key
        if path.exists():
            with open(path, "rb") as fh:
                return pickle.load(fh)
        net = training_recipe(self.dataset, max_epochs=self.epochs, device=self.device,
                              random_state=self.sub_seeds["estimator"])
        net.fit(self.X[self.initial], self.y[self.initial])
        out = (net, float(net.score(self.X_test, self.y_test)))
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".tmp"), "wb") as fh:
            pickle.dump(out, fh)
        os.replace(path.with_suffix(".tmp"), path)
        return out

    def refit_accuracy(self, picks):
        rows = np.concatenate([self.initial, self.cand[picks]])
        net = training_recipe(self.dataset, max_epochs=self.refit_epochs or self.epochs,
                              device=self.device, random_state=self.sub_seeds["estimator"])
        net.fit(self.X[rows], self.y[rows])
        return float(net.score(self.X_test, self.y_test))


def _make(name, ctx, quick):
    """The strategy of a row (and a context manager to query it under)."""
    from skal.nets import embed
    from skal.strategies import BALD, CoreSet

    rs = ctx.sub_seeds["strategy"]
    if name == "random-2":
        return make_strategy("random", random_state=rs + 1), contextlib.nullcontext()
    if name == "bald-T50":
        return BALD(n_passes=50, random_state=rs), contextlib.nullcontext()
    if name == "bald-last-dropout":
        return BALD(n_passes=10, random_state=rs), last_dropout_only(ctx.net.module_)
    if name == "coreset-pca50":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=min(50, ctx.Z_pool.shape[1]), random_state=0).fit(
            np.vstack([ctx.Z_pool, ctx.Z_lab]))
        return (CoreSet(embedding=lambda X: pca.transform(embed(ctx.net, X))),
                contextlib.nullcontext())
    strategy = make_strategy(name, random_state=rs)
    if quick and "time_limit" in strategy.get_params():
        strategy.set_params(time_limit=5.0)
    return strategy, contextlib.nullcontext()


def pick_metrics(ctx, picks):
    """What a batch of picks (indices into the candidate pool) looks like."""
    yp = ctx.y_pool[picks]
    bal = class_balance(yp, 10)
    return {
        "class_entropy": bal["entropy"], "max_class_share": bal["max_share"],
        "n_classes": bal["n_classes"],
        "class_counts": np.bincount(yp, minlength=10).tolist(),
        "error_rate": float(np.mean(ctx.pred[picks] != yp)),
        "pairwise_cosine": mean_pairwise_cosine(ctx.Z_pool[picks]),
        "nn_distance_unit": nearest_neighbour_distance(ctx.U_pool[picks]),
        "dist_labeled_pct": float(percentile_in(ctx.dist_lab[picks], ctx.dist_lab).mean()),
        "outlier_share": outlier_share(ctx.dist_lab[picks], ctx.dist_lab, 0.95),
        "norm_pct": float(percentile_in(ctx.norms[picks], ctx.norms).mean()),
        "bald_pct": float(percentile_in(ctx.bald10[picks], ctx.bald10).mean()),
        "entropy_pct": float(percentile_in(ctx.entropy[picks], ctx.entropy).mean()),
    }


def bald_ranking(ctx):
    """How stable the BALD ranking is: passes, MC noise, dropout placement."""
    from skal.strategies import BALD

    rs, k, net, X = ctx.sub_seeds["strategy"], ctx.k, ctx.net, ctx.X_pool
    t10b = BALD(n_passes=10, random_state=rs + 1).utilities(net, X)
    t50 = BALD(n_passes=50, random_state=rs + 2).utilities(net, X)
    with last_dropout_only(net.module_):
        last10 = BALD(n_passes=10, random_state=rs).utilities(net, X)
        last50 = BALD(n_passes=50, random_state=rs + 2).utilities(net, X)
    pairs = {"T10 vs T10 (other masks)": (ctx.bald10, t10b), "T10 vs T50": (ctx.bald10, t50),
             "T50 vs T50 last-layer dropout": (t50, last50),
             "T10 vs T10 last-layer dropout": (ctx.bald10, last10),
             "BALD T50 vs entropy": (t50, ctx.entropy)}
    out = {"pairs": {name: {"spearman": float(spearmanr(a, b)[0]),
                            "top_k_overlap": top_k_overlap(a, b, k)}
                     for name, (a, b) in pairs.items()}}
    out["concentration"] = {"bald_T10": score_concentration(ctx.bald10, k),
                            "bald_T50": score_concentration(t50, k),
                            "entropy": score_concentration(ctx.entropy, k),
                            "uniform": k / len(X)}
    return out


def _load(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": _FORMAT, "contexts": {}}


def run(args):
    path = Path(args.out or (OUT_QUICK if args.quick else OUT))
    data = _load(path)
    data.setdefault("contexts", {})
    torch.set_num_threads(args.threads)
    # Protocol by protocol, so an interrupted run has every seed of the first one.
    for protocol in args.protocols:
        for seed in args.seeds:
            key = f"{protocol}/seed{seed}"
            config = _config(args, protocol)
            entry = data["contexts"].get(key)
            if entry is None or entry.get("config") != config or args.force:
                entry = {"config": config, "strategies": {}}
            rows = args.strategies or (QUICK_ROWS if args.quick else STRATEGY_ROWS[protocol])
            todo = [r for r in rows if r not in entry["strategies"]]
            if not todo and "bald_ranking" in entry and "base_class_accuracy" in entry:
                print(f"{key}: done already", flush=True)
                continue
            t0 = time.perf_counter()
            ctx = Context(args, protocol, seed)
            entry["base_accuracy"] = ctx.base_accuracy
            pred = ctx.net.predict(ctx.X_test)
            entry["base_class_accuracy"] = [float(np.mean(pred[ctx.y_test == c] == c))
                                            for c in range(10)]
            entry["n_pool"] = int(len(ctx.cand))
            entry["pool_class_entropy"] = class_balance(ctx.y_pool, 10)["entropy"]
            print(f"{key}: round-0 model {100 * ctx.base_accuracy:.2f} % "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if "bald_ranking" not in entry:
                entry["bald_ranking"] = bald_ranking(ctx)
                data["contexts"][key] = entry
                _write_json(path, data)
            for name in todo:
                t0 = time.perf_counter()
                strategy, scope = _make(name, ctx, args.quick)
                with scope:
                    picks = strategy.query(ctx.net, ctx.X_pool, ctx.k, X_labeled=ctx.X_lab,
                                           y_labeled=ctx.y_lab)
                picks = np.asarray(picks, dtype=np.int64)
                q_s = time.perf_counter() - t0
                rec = pick_metrics(ctx, picks)
                rec["picks"] = ctx.cand[picks].tolist()  # indices into the protocol's pool
                rec["query_seconds"] = q_s  # contended machine: not a timing result
                if name not in NO_REFIT and not args.no_refit:
                    rec["refit_accuracy"] = ctx.refit_accuracy(picks)
                entry["strategies"][name] = rec
                data["contexts"][key] = entry
                _write_json(path, data)
                acc = rec.get("refit_accuracy")
                print(f"  {name:24s} class H {rec['class_entropy']:.3f}"
                      f"  max {rec['max_class_share']:.2f}"
                      f"  cos {rec['pairwise_cosine']:.3f}  out {rec['outlier_share']:.2f}"
                      f"  acc {'-' if acc is None else f'{100 * acc:.2f}'}"
                      f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(tables(data))
    return 0


# ---------------------------------------------------------------------------
# Full runs: the class balance of every round's picks (no training)


def full_run_balance(results_dir=RESULTS_DIR):
    """``{protocol: {strategy: {seed: [class entropy of round 1, 2, ...]}}}`` and the AUBCs."""
    out = {}
    for protocol, dataset in FULL_RUN_DATASETS.items():
        for path in sorted(Path(results_dir).glob(f"{dataset}__*__seed*.json")):
            payload = json.loads(path.read_text(encoding="utf-8"))
            if payload.get("dataset") != dataset or payload.get("quick"):
                continue
            seed = int(payload["seed"])
            y = load_protocol_data(dataset, seed)[1]
            rounds = payload["run"]["queried_indices"]
            ent = [class_balance(y[np.asarray(r)], 10)["entropy"] for r in rounds]
            share = [class_balance(y[np.asarray(r)], 10)["max_share"] for r in rounds]
            rec = out.setdefault(protocol, {}).setdefault(payload["strategy"], {})
            counts = sum(np.bincount(y[np.asarray(r)], minlength=10) for r in rounds)
            rec[seed] = {"class_entropy": ent, "max_class_share": share, "aubc": payload["aubc"],
                         "class_counts": counts.tolist()}
    return out


def runs(args):
    path = Path(args.out or OUT)
    data = _load(path)
    data["full_runs"] = full_run_balance(args.results_dir)
    _write_json(path, data)
    print(full_run_table(data))
    return 0


# ---------------------------------------------------------------------------
# Tables and figures


_COLUMNS = (("class_entropy", "class H", "{:.3f}"), ("max_class_share", "top class", "{:.2f}"),
            ("error_rate", "model error", "{:.2f}"), ("pairwise_cosine", "pair cos", "{:.3f}"),
            ("nn_distance_unit", "NN dist", "{:.3f}"),
            ("dist_labeled_pct", "dist-lab pct", "{:.2f}"),
            ("outlier_share", "outliers", "{:.2f}"), ("norm_pct", "norm pct", "{:.2f}"),
            ("bald_pct", "BALD pct", "{:.2f}"), ("entropy_pct", "entropy pct", "{:.2f}"))


def _rows(data, protocol):
    """``{strategy: {metric: [value per seed]}}`` and the seeds."""
    rows, seeds, base = {}, [], []
    for key, entry in sorted(data.get("contexts", {}).items()):
        if not key.startswith(protocol + "/"):
            continue
        seeds.append(int(key.split("seed")[1]))
        base.append(entry["base_accuracy"])
        rand = entry["strategies"].get("random", {}).get("refit_accuracy")
        for name, rec in entry["strategies"].items():
            row = rows.setdefault(name, {})
            for m in [c[0] for c in _COLUMNS] + ["refit_accuracy"]:
                if m in rec:
                    row.setdefault(m, []).append(rec[m])
            if "refit_accuracy" in rec and rand is not None:
                row.setdefault("gain_vs_random", []).append(rec["refit_accuracy"] - rand)
    return rows, seeds, base


def _order(protocol, names):
    known = [n for n in STRATEGY_ROWS[protocol] if n in names]
    return known + sorted(set(names) - set(known))


def _runner_aubc(data, protocol, name):
    reg = RUNNER_NAME.get(name, name)
    runs_ = data.get("full_runs", {}).get(protocol, {}).get(reg) if reg else None
    if not runs_:
        return "-"
    vals = [r["aubc"] for r in runs_.values()]
    return f"{np.mean(vals):.3f}" + ("" if len(vals) >= 3 else f" ({len(vals)} seed)")


def tables(data):
    out = []
    for protocol in PROTOCOL_DATASETS:
        rows, seeds, base = _rows(data, protocol)
        if not rows:
            continue
        entry0 = next(e for k, e in sorted(data["contexts"].items()) if k.startswith(protocol))
        cfg = entry0["config"]
        out += [f"### {protocol}: first query of {cfg['k']} after {cfg['n_initial']} random "
                f"labels, {cfg['n_candidates']:,} candidates; seeds {', '.join(map(str, seeds))}",
                "", f"Round-0 model: {100 * np.mean(base):.2f} % test accuracy (mean)"
                + _class_accuracy_text(data, protocol) + ".", "",
                "| strategy | " + " | ".join(c[1] for c in _COLUMNS)
                + " | acc. after refit % | vs random (pts) | runner AUBC |",
                "|---|" + "---|" * (len(_COLUMNS) + 3)]
        for name in _order(protocol, rows):
            r = rows[name]
            cells = [fmt.format(np.mean(r[m])) if m in r else "-" for m, _, fmt in _COLUMNS]
            acc = r.get("refit_accuracy")
            gain = r.get("gain_vs_random")
            cells.append("-" if not acc else f"{100 * np.mean(acc):.2f}")
            cells.append("-" if not gain else
                         f"{100 * np.mean(gain):+.2f} ± {100 * np.std(gain):.2f}")
            cells.append(_runner_aubc(data, protocol, name))
            out.append(f"| `{name}` | " + " | ".join(cells) + " |")
        out += ["", bald_table(data, protocol), "", overlap_table(data, protocol), ""]
    if data.get("full_runs"):
        out += [full_run_table(data)]
    return "\n".join(out)


def _class_accuracy_text(data, protocol):
    accs = [e["base_class_accuracy"] for k, e in sorted(data.get("contexts", {}).items())
            if k.startswith(protocol + "/") and "base_class_accuracy" in e]
    if not accs:
        return ""
    acc = np.mean(accs, axis=0)
    pairs = zip(CLASS_NAMES, acc, strict=True)
    return "; per class: " + ", ".join(f"{n} {100 * a:.0f}" for n, a in pairs)


def bald_table(data, protocol):
    pairs, conc = {}, {}
    for key, entry in sorted(data.get("contexts", {}).items()):
        if key.startswith(protocol + "/") and "bald_ranking" in entry:
            for name, v in entry["bald_ranking"]["pairs"].items():
                pairs.setdefault(name, []).append((v["spearman"], v["top_k_overlap"]))
            for name, v in entry["bald_ranking"]["concentration"].items():
                conc.setdefault(name, []).append(v)
    if not pairs:
        return ""
    out = ["| BALD scores compared | Spearman | top-k overlap |", "|---|---|---|"]
    for name, vals in pairs.items():
        v = np.asarray(vals)
        out.append(f"| {name} | {v[:, 0].mean():.3f} | {v[:, 1].mean():.2f} |")
    out += ["", "Share of the pool's score mass in the top k: " + ", ".join(
        f"{n} {np.mean(v):.3f}" for n, v in conc.items()) + "."]
    return "\n".join(out)


def overlap_table(data, protocol):
    """Jaccard overlap of the picks of related rows (same seed), mean over seeds."""
    groups = (("coreset", "coreset-l2"), ("coreset", "coreset-pca50"),
              ("coreset-l2", "coreset-pca50"), ("coreset", "kmedoids-coreset"),
              ("bald", "bald-T50"), ("bald", "bald-last-dropout"), ("bald", "entropy"),
              ("bald", "powerbald"), ("bald", "batchbald"), ("balnet", "balnet+wasserstein"))
    out = ["| picks compared | Jaccard overlap |", "|---|---|"]
    any_ = False
    for a, b in groups:
        vals = [_jaccard(e["strategies"][a]["picks"], e["strategies"][b]["picks"])
                for k, e in sorted(data.get("contexts", {}).items())
                if k.startswith(protocol + "/") and a in e["strategies"] and b in e["strategies"]]
        if vals:
            any_ = True
            out.append(f"| `{a}` / `{b}` | {np.mean(vals):.2f} |")
    return "\n".join(out) if any_ else ""


def full_run_table(data):
    out = []
    for protocol, strategies in data.get("full_runs", {}).items():
        out += [f"### {protocol}: class balance of the full runs' picks (every round, every seed)",
                "", "| strategy | seeds | AUBC | class H (mean) | class H (worst round) | "
                "top class (mean) | most picked classes (share of all picks) |",
                "|---|---|---|---|---|---|---|"]
        order = sorted(strategies, key=lambda n: -np.mean(
            [np.mean(r["class_entropy"]) for r in strategies[n].values()]))
        for name in order:
            recs = strategies[name].values()
            ent = np.concatenate([r["class_entropy"] for r in recs])
            share = np.concatenate([r["max_class_share"] for r in recs])
            aubc = np.mean([r["aubc"] for r in recs])
            counts = np.sum([r.get("class_counts", np.zeros(10)) for r in recs], axis=0)
            counts = counts / max(counts.sum(), 1)
            names = _class_names(protocol)
            top = ", ".join(f"{names[i]} {counts[i]:.2f}" for i in np.argsort(-counts)[:3])
            out.append(f"| `{name}` | {len(recs)} | {aubc:.3f} | {ent.mean():.3f} | "
                       f"{ent.min():.3f} | {share.mean():.2f} | {top} |")
        out.append("")
    return "\n".join(out)


def figures(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _load(Path(args.out or OUT))
    IMG.mkdir(parents=True, exist_ok=True)
    written = []
    for protocol in PROTOCOL_DATASETS:
        rows, seeds, _ = _rows(data, protocol)
        names = [n for n in _order(protocol, rows) if "gain_vs_random" in rows[n]]
        if not names:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharey=True)
        for ax, (m, label) in zip(axes, (("class_entropy", "class-balance entropy of the picks"),
                                         ("outlier_share", "share of picks beyond the pool's "
                                                           "95th pct. distance to the labels"),
                                         ("pairwise_cosine", "mean pairwise cosine of the picks")),
                                  strict=True):
            for n in names:
                x = np.asarray(rows[n][m])
                g = 100 * np.asarray(rows[n]["gain_vs_random"])
                ax.errorbar(x.mean(), g.mean(), xerr=x.std(), yerr=g.std(), fmt="o", ms=4,
                            capsize=2, alpha=0.8)
                ax.annotate(n, (x.mean(), g.mean()), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xlabel(label)
        axes[0].set_ylabel("test accuracy after one query and refit,\nminus random's (points)")
        fig.suptitle(f"{protocol} protocol, first query (mean ± std over seeds "
                     f"{', '.join(map(str, seeds))})")
        fig.tight_layout()
        png = IMG / f"diagnose_{protocol}_gain.png"
        fig.savefig(png, dpi=110)
        plt.close(fig)
        written.append(png)

        show = [n for n in ("random", "margin", "bald", "batchbald", "powerbald", "coreset",
                            "coreset-l2", "kmedoids-coreset", "wasserstein-prototypes",
                            "badge", "typiclust", "probcover") if n in rows]
        counts = {n: np.zeros(10) for n in show}
        for key, e in data["contexts"].items():
            if key.startswith(protocol + "/"):
                for n in show:
                    if n in e["strategies"]:
                        counts[n] += e["strategies"][n]["class_counts"]
        fig, ax = plt.subplots(figsize=(12, 4))
        width = 0.8 / len(show)
        for i, n in enumerate(show):
            ax.bar(np.arange(10) + i * width, counts[n] / counts[n].sum(), width, label=n)
        ax.axhline(0.1, color="grey", lw=0.8, ls="--")
        ax.set_xticks(np.arange(10) + 0.4)
        ax.set_xticklabels(CLASS_NAMES)
        ax.set_ylabel("share of the picks")
        ax.legend(fontsize=7, ncol=4)
        ax.set_title(f"{protocol} protocol: true classes of the first query's picks "
                     f"(seeds {', '.join(map(str, seeds))} pooled)")
        fig.tight_layout()
        png = IMG / f"diagnose_{protocol}_classes.png"
        fig.savefig(png, dpi=110)
        plt.close(fig)
        written.append(png)

    full = data.get("full_runs", {})
    for protocol, strategies in full.items():
        fig, ax = plt.subplots(figsize=(8, 4))
        shown = [n for n in ("random", "margin", "entropy", "bald", "coreset", "kmedoids-coreset",
                             "wasserstein-coreset", "wasserstein-prototypes", "balnet",
                             "balnet+wasserstein", "dqbc", "waal") if n in strategies]
        for name in shown:
            ent = np.asarray([r["class_entropy"] for r in strategies[name].values()])
            ax.plot(np.arange(1, ent.shape[1] + 1), ent.mean(axis=0), marker="o", ms=3,
                    label=f"{name} ({np.mean([r['aubc'] for r in strategies[name].values()]):.3f})",
                    lw=2.2 if name == "random" else 1.0)
        ax.set_xlabel("query round")
        ax.set_ylabel("class-balance entropy of the round's picks")
        ax.set_title(f"{protocol} protocol, full runs (legend: AUBC)")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        png = IMG / f"diagnose_{protocol}_full_runs.png"
        fig.savefig(png, dpi=110)
        plt.close(fig)
        written.append(png)
    for p in written:
        print(p)
    return 0


# ---------------------------------------------------------------------------
# Command line


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diagnose_strategies",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="run",
                        choices=("run", "runs", "table", "figures"))
    parser.add_argument("--protocols", nargs="+", choices=tuple(PROTOCOL_DATASETS),
                        default=["small", "waal"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=None,
                        help="rows to run (default: every row of the protocol)")
    parser.add_argument("--pool", type=int, default=10000,
                        help="candidates drawn from the unlabeled pool (default 10,000)")
    parser.add_argument("--refit-epochs", type=int, default=20,
                        help="epoch cap of the refit on labels + picks (waal protocol)")
    parser.add_argument("--no-refit", action="store_true", help="skip the refits")
    parser.add_argument("--quick", action="store_true",
                        help="the runner's quick protocol: 1,000 candidates, a few epochs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--results-dir", default=str(RESULTS_DIR),
                        help="runs: the runner's JSONs")
    parser.add_argument("--out", default=None, help="the JSON (default: benchmarks/results/"
                        "diagnose_strategies.json, _quick with --quick)")
    parser.add_argument("--force", action="store_true", help="recompute finished rows")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.mode == "run":
        return run(args)
    if args.mode == "runs":
        return runs(args)
    if args.mode == "figures":
        return figures(args)
    print(tables(_load(Path(args.out or (OUT_QUICK if args.quick else OUT)))))
    return 0


if __name__ == "__main__":
    from benchmarks.diagnose_strategies import main as _main

    sys.exit(_main())
