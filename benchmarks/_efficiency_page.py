"""Label-efficiency results page: tables, plots and the Markdown of ``docs/results.md``.

Reads the runner's JSONs (:func:`load_results`) and renders them, with the
sections that quote the other benchmarks' results. ``python -m
benchmarks.label_efficiency summarize`` calls it; :mod:`benchmarks.label_efficiency`
re-exports these functions.
"""

import collections
import json
import os
from pathlib import Path

import numpy as np

from benchmarks._efficiency_protocols import (
    _RUN_COST_NOTES,
    _SEMI_SUPERVISED,
    DEFAULT_STRATEGIES,
    PAPER_COLUMN,
    PAPER_SIZES,
    PAPER_TABLE4,
    PROTOCOLS,
    STRATEGIES,
)
from skal.recipes import RECIPES, describe_recipe
from skal.registry import strategy_family
from skal.simulation import SimulationResult, SimulationResults

#: Random (and margin) reruns on the machine of later runs, beside the results
#: folder: they pair those runs with a random run from the same first model.
SAME_START_DIR = "same_start"


def _root():
    # The runner's _ROOT, read at call time: tests point it at a scratch checkout.
    from benchmarks import label_efficiency

    return label_efficiency._ROOT


def load_results(results_dir, dataset, quick=False):
    """The finished runs of one data set, as JSON payloads (sorted by strategy, seed)."""
    folder = Path(results_dir) / ("quick" if quick else "")
    payloads = []
    for path in sorted(folder.glob(f"{dataset}__*__seed*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if payload.get("status") == "complete" and payload.get("dataset") == dataset:
            payloads.append(payload)
    order = {name: i for i, name in enumerate(STRATEGIES)}
    payloads.sort(key=lambda p: (order.get(p["strategy"], len(order)), p["strategy"], p["seed"]))
    return payloads


def _results(payloads):
    runs = []
    for p in payloads:
        run = SimulationResult.from_dict(p["run"])
        run.strategy = p["strategy"]
        runs.append(run)
    return SimulationResults(runs)


def _mean_std(values, scale=1.0, digits=3):
    values = np.asarray([v for v in values if v is not None], dtype=float) * scale
    if values.size == 0:
        return "-"
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def full_data_accuracy(results_dir, dataset):
    """Test accuracy of the recipe trained on the whole pool (seed 0), or None.

    Written by ``check-recipe --labels N`` with N at least the pool size; used only
    while the recipe it was trained with is the current one.
    """
    path = Path(results_dir) / f"recipe_check_{dataset}_full.json"
    if not path.exists():
        return None
    check = json.loads(path.read_text(encoding="utf-8"))
    return check["test_accuracy"] if check.get("recipe") == RECIPES[dataset] else None


def _labels_cell(hits, n_runs):
    reached = [h for h in hits if h is not None]
    if not reached:
        return "not reached"
    cell = f"{np.mean(reached):.0f}"
    if len(reached) < n_runs:
        cell += f" ({len(reached)}/{n_runs} seeds)"
    return cell


def _first_model(payload):
    return payload["seed"], round(float(payload["accuracy"][0]), 4)


def _paired_cell(runs, randoms):
    """Mean AUBC difference to the random run of the same seed and the same first model."""
    by_start = {_first_model(r): r["aubc"] for r in randoms}
    diffs = [r["aubc"] - by_start[_first_model(r)] for r in runs if _first_model(r) in by_start]
    if not diffs:
        return "-"
    cell = f"{np.mean(diffs):+.3f}"
    return cell if len(diffs) == len(runs) else f"{cell} ({len(diffs)}/{len(runs)} seeds)"


def markdown_tables(payloads, dataset, full_accuracy=None, references=()):
    """Markdown: the summary table and, on Fashion-MNIST, the paper comparison.

    With ``full_accuracy`` (the recipe trained on the whole pool), a column gives
    the labels needed to reach 98 % of it, the thesis's Table 4.2 metric.
    ``references`` are extra random runs (reruns on another machine) for the
    column that pairs each run with the random run of its seed that started from
    the same first model (same round-0 accuracy).
    """
    by_name = {}
    for p in payloads:
        by_name.setdefault(p["strategy"], []).append(p)
    randoms = [p for p in [*payloads, *references] if p["strategy"] == "random"]
    targets = PROTOCOLS[dataset]["targets"]
    head = ["strategy", "seeds", "AUBC", "vs random, same first model", "final accuracy (%)"]
    head += [f"labels to {100 * t:.0f} %" for t in targets]
    if full_accuracy is not None:
        head += [f"labels to 98 % of full data ({100 * 0.98 * full_accuracy:.1f} %)"]
    head += ["query s / round", "fit s / round", "peak RSS, MiB (+ during run)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in by_name.items():
        cells = [f"`{name}`", str(len(runs)),
                 _mean_std([r["aubc"] for r in runs]),
                 "-" if name == "random" else _paired_cell(runs, randoms),
                 _mean_std([r["final_accuracy"] for r in runs], 100, 2)]
        for t in targets:
            cells.append(_labels_cell([r["labels_to_target"].get(f"{t:.2f}") for r in runs],
                                      len(runs)))
        if full_accuracy is not None:
            cells.append(_labels_cell(
                [SimulationResult.from_dict(r["run"]).labels_to_reach(0.98 * full_accuracy)
                 for r in runs], len(runs)))
        q = [v for r in runs for v in r["query_seconds"]]
        f = [v for r in runs for v in r["fit_seconds"]]
        peak = max(r["peak_rss_mib"] for r in runs)
        grew = [r["peak_rss_increase_mib"] for r in runs
                if r.get("peak_rss_increase_mib") is not None]
        mem = f"{peak:.0f}" + (f" (+{max(grew):.0f})" if grew else "")
        cells += [f"{np.mean(q):.2f}" if q else "-", f"{np.mean(f):.1f}" if f else "-", mem]
        lines.append("| " + " | ".join(cells) + " |")
    out = ["\n".join(lines)]

    if dataset == "fashion-mnist" and by_name and not any(p["quick"] for p in payloads):
        sizes = [1000, 2000, 3000, 4000, 5000, 6000]
        head = ["strategy (paper column)"] + [f"{s // 1000}K" for s in sizes]
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, runs in by_name.items():
            column = PAPER_COLUMN.get(name)
            cells = [f"`{name}` ({column})" if column else f"`{name}`"]
            for s in sizes:
                accs = [r["accuracy"][r["n_labeled"].index(s)] for r in runs if s in r["n_labeled"]]
                ours = _mean_std(accs, 100, 1) if accs else "-"
                paper = PAPER_TABLE4[column][PAPER_SIZES.index(s)] if column else None
                cells.append(f"{ours} / {paper:.1f}" if paper is not None else ours)
            rows.append("| " + " | ".join(cells) + " |")
        out.append("Test accuracy (%), skal (mean ± std over seeds) / WAAL paper Table 4 "
                   "(mean of 5 runs):\n\n" + "\n".join(rows))
    return out


def plot_results(payloads, dataset, path):
    """PNG of the mean learning curves; on Fashion-MNIST, the paper's as dashed lines.

    Many strategies are drawn as one panel per registry family, so that every
    line and legend stays readable.
    """
    results = _results(payloads)
    groups = {name: strategy_family(name) for name in results.strategies}
    fig = results.plot(None, title=f"{dataset}: test accuracy vs labels "
                                   f"(mean over seeds, band = ±1 std)", groups=groups)
    if dataset == "fashion-mnist" and not any(p["quick"] for p in payloads):
        for ax in fig.axes:
            colors = {line.get_label().split(" (AUBC")[0]: line.get_color()
                      for line in ax.get_lines()}
            drawn = False
            for name, color in colors.items():
                column = PAPER_COLUMN.get(name)
                if column:
                    ax.plot(PAPER_SIZES, np.asarray(PAPER_TABLE4[column]) / 100, linestyle="--",
                            linewidth=1, color=color, label="_paper")
                    drawn = True
            if drawn:
                ax.plot([], [], "k--", linewidth=1, label="dashed: WAAL paper, Table 4")
                ax.legend(loc="lower right", fontsize="x-small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _run_recipe(dataset, sections):
    """The recipe the runs of ``dataset`` used (an ``--epochs`` override included),
    or the default one where none ran or they disagree."""
    payloads = (sections.get(dataset) or ([], None))[0]
    recipes = {json.dumps(p["config"]["recipe"], sort_keys=True)
               for p in payloads if p.get("config") and p["strategy"] not in _SEMI_SUPERVISED}
    return json.loads(recipes.pop()) if len(recipes) == 1 else RECIPES[dataset]


def _recipe_line(dataset, sections=None):
    return describe_recipe(_run_recipe(dataset, sections or {}))


def _first_model_note(payloads):
    """A warning when runs of one seed started from different round-0 models.

    Same seed means same labels and initial weights, but runs made on other
    machines (other CPU kernels, library versions) can train a different first
    model, which loosens the pairing of their rows.
    """
    firsts = {}
    for p in payloads:
        if p["strategy"] in _SEMI_SUPERVISED:  # WAAL's first model is trained differently
            continue
        firsts.setdefault(p["seed"], set()).add(round(float(p["accuracy"][0]), 4))
    spread = {s: sorted(v) for s, v in sorted(firsts.items()) if len(v) > 1}
    if not spread:
        return []
    parts = "; ".join(f"seed {s}: " + ", ".join(f"{100 * a:.2f}" for a in v)
                      for s, v in spread.items())
    return [f"Not every run of a seed started from the same first model: the round-0 test "
            f"accuracy differs between runs made on different machines ({parts} %). Rows "
            "from different batches of runs are paired less tightly than the same seed "
            "suggests; the first column of the accuracy table shows which rows share a start.",
            ""]


def render_page(sections, results_dir, quick=False):
    """The whole docs/results.md page (narrative + tables from the JSONs)."""
    rel_results = os.path.relpath(results_dir, _root()).replace(os.sep, "/")
    out = [
        "# Results: label efficiency",
        "",
        "<!-- Generated by `python -m benchmarks.label_efficiency summarize` from the JSON "
        f"files in `{rel_results}/`; edit the generator, not this page. -->",
        "",
        "These pages answer one question per data set: how many labels does each strategy "
        "need, and how much does it cost to ask for them? Every number comes from "
        "`skal.simulate` (the labeling loop with the true labels as the oracle), run by "
        "`python -m benchmarks.label_efficiency`. One JSON per (data set, strategy, seed) holds "
        "the per-round test accuracy, AUBC, labels to reach the target accuracies, query and "
        "fit seconds and peak memory; a finished run is never recomputed, so the benchmark can "
        "be stopped and resumed.",
        "",
    ]
    if quick:
        out += ["**These are `--quick` smoke runs: tiny pools and a few epochs. They show that the "
                "pipeline works, not how the strategies compare.**", ""]
    out += [
        "## Protocols",
        "",
        "| data set | pool | test | labels | net and recipe |",
        "|---|---|---|---|---|",
        "| Fashion-MNIST | 40,000 random training images per seed (WAAL paper, Table 2) | "
        "10,000 (official) | 1,000 random + 10 queries x 500 = 6,000 | "
        + _recipe_line("fashion-mnist", sections) + " |",
        "| Fashion-MNIST, small budget | the same pools | the same | 100 random + 9 queries x "
        "100 = 1,000 (thesis, BALNet chapter) | " + _recipe_line("fashion-mnist-thesis", sections)
        + " |",
        "| Fashion-MNIST, low budget | the same pools | the same | 10 random + 9 queries x 10 "
        "= 100 (TypiClust's and ProbCover's regime: one label per class per round) | "
        + _recipe_line("fashion-mnist-low", sections) + " |",
        "| digits (sklearn, 8x8) | 1,347 (stratified 75 %) | 450 | 20 random + 10 queries x 20 "
        "= 220 | " + _recipe_line("digits", sections) + " |",
        "",
        "Within a seed every strategy gets the same pool, the same random seed set and the same "
        "initial weights; the network is retrained from scratch after every query. Strategies "
        "run with their default parameters (BALD with 10 dropout passes). `waal` trains a "
        "`skal.models.WAALClassifier` on the same module (labeled rows plus the rest of the pool "
        f"as unlabeled rows; on Fashion-MNIST SGD (lr 0.01) as in the paper's code, on digits "
        f"Adam (lr 3e-3), since SGD left the digits CNN near chance with 20 labels; at most "
        f"{RECIPES['fashion-mnist']['waal_max_epochs']} epochs of one pass over the pool each, "
        "with early stopping on the held-out labels where the recipe holds some out); every "
        "other strategy uses the recipe above. `balnet+wasserstein` is `BALNet(diversity=10)` "
        "with its default 1,000 candidates: on digits the criterion pre-selects 200 of them "
        "for the Wasserstein step, but with 100 or 500 per query (the Fashion-MNIST protocols) "
        "the pre-selection keeps every scored candidate, so there the row measures Wasserstein "
        "prototypes of a random subset (see [BALNet](balnet.md)).",
        "",
        "### Why this recipe",
        "",
        "The learner's training is half of label efficiency. With the paper baselines' recipe "
        "(10 epochs of SGD over the labeled set) or with a LeNet trained 20 epochs with Adam, "
        "random queries stall near 77-81 % at 3.5-6K labels on Fashion-MNIST, and uncertainty "
        "and MC-dropout BALD can look worse than random simply because the networks are "
        "under-trained. skal's recipe aims at **at least 84 % test accuracy with 6,000 random "
        "labels**, so that differences between strategies are differences between strategies.",
        "",
    ]
    check = Path(results_dir) / "recipe_check_fashion-mnist.json"
    if check.exists():
        c = json.loads(check.read_text(encoding="utf-8"))
        out += [
            f"Check (`{c['command']}`): {c['n_labels']} random labels, one training, "
            f"**{100 * c['test_accuracy']:.2f} %** on the {c['n_test']} test images "
            f"({c['epochs_run']} epochs, best at epoch {c['best_epoch']}, "
            f"{c['fit_seconds']:.0f} s on {c['machine']['device']} with "
            f"{c['machine']['torch_threads']} thread(s)).",
            "",
        ]
    else:
        out += ["Check it with `python -m benchmarks.label_efficiency check-recipe --dataset "
                "fashion-mnist --labels 6000` (one training, a few minutes on a CPU).", ""]
    out += [
        "### Where the training budget differs from the papers",
        "",
        "* **WAAL paper (Table 4).** Its baselines were most likely trained with the ej0cl6 "
        "recipe (SGD lr 0.01, momentum 0.5, 10 epochs over the labeled set, no early "
        "stopping), on the 1x-width LeNet, while WAAL itself trained 80 epochs of one pass "
        "over the 40K pool each: roughly 30-600 times more optimisation steps. skal trains "
        "every baseline to convergence (early stopping) on a 2x-wide version of the same "
        "LeNet with augmentation, and gives WAAL at most "
        f"{RECIPES['fashion-mnist']['waal_max_epochs']} pool passes. Expect skal's baselines "
        "to be well above the paper's and the gap to WAAL to be much smaller.",
        "* **Thesis (Ducoffe 2018, Table 4.2).** Its code holds out 20 % of the labels, stops "
        "after 5 epochs without progress, and keeps the best of 5 restarts; on Fashion-MNIST "
        "skal holds out 10 %, waits 8 epochs and trains once per round; with 100-1,000 labels "
        "(small budget) and on digits (20-220 labels) it holds none out and trains a fixed 60 "
        "epochs. With one seed's 1,000 random Fashion-MNIST labels, 60 fixed epochs reach "
        "80.1 % and the 10 % hold-out recipe 74.4 % (63.7 % and 60.9 % with 100 labels; "
        "`check-recipe --labels 1000` with `--dataset fashion-mnist-thesis` and `fashion-mnist`). "
        "Table 4.2 is on MNIST, Shoe-Bag and Quick-Draw, so it is quoted below, not compared "
        "number for number.",
        "",
    ]
    titles = {"fashion-mnist": "Fashion-MNIST",
              "fashion-mnist-thesis": "Fashion-MNIST, small budget (thesis protocol)",
              "fashion-mnist-low": "Fashion-MNIST, low budget (10 + 9 x 10 labels)",
              "digits": "Digits"}
    for dataset, title in titles.items():
        out += [f"## {title}", ""]
        section = sections.get(dataset)
        cmd = (f"python -m benchmarks.label_efficiency --dataset {dataset} --seeds 0 1 2"
               + (" --quick" if quick else ""))
        if section is None:
            out += ["No finished runs yet. Run", "", "```bash", cmd,
                    "python -m benchmarks.label_efficiency summarize"
                    + (" --quick" if quick else ""),
                    "```", ""]
            if dataset == "fashion-mnist":
                out += _paper_table()
            continue
        payloads, png = section
        seeds = sorted({p["seed"] for p in payloads})
        machine = payloads[0]["machine"]
        out += [
            f"Command: `{cmd}` ({len(payloads)} runs, seeds {', '.join(map(str, seeds))}; "
            f"{machine['device']}, torch {machine['torch']}, {_threads_text(payloads)}). "
            "Query and fit seconds are means per round; peak RSS is the "
            "process's resident memory during the run, data included.",
            "",
        ]
        out += _first_model_note(payloads)
        full = None if quick else full_data_accuracy(results_dir, dataset)
        references = load_results(Path(results_dir).parent / SAME_START_DIR, dataset)
        tables = markdown_tables(payloads, dataset, full_accuracy=full, references=references)
        out += [tables[0], ""]
        if references:
            out += ["\"vs random, same first model\" is the mean AUBC difference to the random "
                    "run of the same seed that started from the same round-0 model (same test "
                    "accuracy); random was rerun on the machine of the later runs for this "
                    f"(`--strategies random --results-dir benchmarks/results/{SAME_START_DIR}`). "
                    "\"(k/n seeds)\": only k of the row's seeds have such a random run.", ""]
        out += _coverage_notes(dataset, payloads, seeds)
        if full is not None:
            out += [f"Full data: the same recipe trained on the whole pool reaches "
                    f"{100 * full:.2f} % (`python -m benchmarks.label_efficiency check-recipe "
                    f"--dataset {dataset} --labels 100000 --seeds 0`). "
                    "The last label column counts the labels needed to reach 98 % of it "
                    "(the thesis's Table 4.2 asks for the full-data accuracy itself, "
                    "within 0.5 %).", ""]
        out += [f"![{title} learning curves]({png})", ""]
        for extra in tables[1:]:
            out += [extra, ""]
        if dataset == "fashion-mnist" and len(tables) == 1:
            out += _paper_table()
    if not quick:
        out += _waal_section()
        out += _low_budget_section()
    out += [
        "## Published numbers for reference",
        "",
        "Thesis Table 4.2: annotations needed to reach the full-training-set accuracy "
        "(± 0.5 %); \"labeled data\" includes DFAL's adversarial copies and CEAL's "
        "pseudo-labels.",
        "",
        "| data set, net | target | DFAL | the two other methods listed |",
        "|---|---|---|---|---|",
        "| MNIST, LeNet5 | ≥ 99.04 % | 1210 (2410 labeled) | CORE-SET 1810; CEAL ≥ 6000 (≥ 6150) |",
        "| MNIST, VGG8 | ≥ 98.98 % | 980 (1950) | CORE-SET 1270; uncertainty 2800 |",
        "| Shoe-Bag, LeNet5 | ≥ 99.70 % | 1070 (2130) | CORE-SET 860; CEAL 1130 (19157) |",
        "| Shoe-Bag, VGG8 | ≥ 99.50 % | 530 (1050) | CORE-SET 400; CEAL 580 (705) |",
        "| Quick-Draw, LeNet5 | ≥ 95.46 % | 7470 (14930) | CORE-SET ≥ 8590; uncertainty ≥ 10590 |",
        "| Quick-Draw, VGG8 | ≥ 96.75 % | 4810 (9610) | CORE-SET ≥ 6750; BALD 5590 |",
        "",
    ]
    out += _peers_section()
    return "\n".join(out).rstrip() + "\n"


def _threads_text(payloads):
    """The runs' torch thread count, naming the strategies that ran with another."""
    counts = collections.Counter(p["machine"]["torch_threads"] for p in payloads)
    usual = counts.most_common(1)[0][0]
    other = sorted({(p["strategy"], p["machine"]["torch_threads"]) for p in payloads
                    if p["machine"]["torch_threads"] != usual})
    text = f"{usual} thread(s)"
    if other:
        text += " (" + ", ".join(f"`{name}`: {n}" for name, n in other) + ")"
    return text


def _coverage_notes(dataset, payloads, seeds):
    """Lines naming default strategies with no runs, or fewer seeds than the page."""
    ran = {}
    for p in payloads:
        ran.setdefault(p["strategy"], set()).add(p["seed"])
    missing = [n for n in DEFAULT_STRATEGIES[dataset] if n not in ran]
    short = [n for n in DEFAULT_STRATEGIES[dataset] if n in ran and len(ran[n]) < len(seeds)]
    command = f"python -m benchmarks.label_efficiency --dataset {dataset}"
    out = []
    if missing:
        out += ["Not run yet under this protocol: " + ", ".join(f"`{n}`" for n in missing)
                + f" (`{command} --strategies {' '.join(missing)}`).", ""]
    for name in short:
        rest = sorted(set(seeds) - ran[name])
        out += [f"`{name}` has fewer seeds than the other rows so far: "
                f"{', '.join(map(str, sorted(ran[name])))} of {', '.join(map(str, seeds))} "
                f"(`{command} --strategies {name} --seeds {' '.join(map(str, rest))}` adds "
                "the rest).", ""]
    for name in missing + short:
        if (dataset, name) in _RUN_COST_NOTES:
            out += [_RUN_COST_NOTES[dataset, name], ""]
    return out


def _paper_table():
    head = "| labels | " + " | ".join(PAPER_TABLE4) + " |"
    rows = [head, "|" + "---|" * (len(PAPER_TABLE4) + 1)]
    for i, n in enumerate(PAPER_SIZES):
        rows.append(f"| {n} | " + " | ".join(f"{v[i]:.2f}" for v in PAPER_TABLE4.values()) + " |")
    return ["WAAL paper, Table 4 (Fashion-MNIST, accuracy %, mean of 5 runs):", ""] + rows + [""]


def _waal_section():
    """WAAL against its paper's baselines on the paper's own LeNet (bench_waal.py)."""
    path = _root() / "benchmarks" / "results" / "waal.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    proto, summary = data["protocol"], data["summary"]
    paper_names = {"waal": "WAAL", "random": "Random", "entropy": "Entropy", "margin": "Margin"}
    sizes = next(iter(summary.values()))["n_labeled"]
    cols = [i for i, n in enumerate(sizes) if n % 1000 == 0]
    out = [
        "## WAAL on the paper's LeNet",
        "",
        f"Command: `python benchmarks/bench_waal.py --seeds {proto['seeds']} --waal-epochs "
        f"{proto['waal_epochs']} --strategies {','.join(summary)}` ({proto['seeds']} seed(s), "
        f"pool {proto['pool']:,}, {proto['initial']:,} + {proto['rounds']} x {proto['query']}; "
        f"{data['machine']['device']}). The paper's protocol and its 1x-width LeNet "
        "(`skal.models.WAALLeNet`); the baselines use the recipe the paper's baselines most "
        f"likely had (SGD lr 0.01, momentum 0.5, {proto['baseline_epochs']} epochs over the "
        f"labeled set), and WAAL trains {proto['waal_epochs']} passes over the pool per round "
        "(the paper: 80). The `waal` row of the Fashion-MNIST table above runs it next to "
        "skal's supervised recipe instead. See [WAAL](waal.md).",
        "",
        "Test accuracy (%), skal / WAAL paper Table 4:",
        "",
        "| strategy | " + " | ".join(f"{sizes[i] // 1000}K" for i in cols)
        + " | train s / round | query s / round |",
        "|---|" + "---|" * (len(cols) + 2),
    ]
    for name, row in summary.items():
        paper = PAPER_TABLE4.get(paper_names.get(name, ""), None)
        cells = []
        for i in cols:
            ours = f"{row['accuracy_mean'][i]:.1f}"
            if paper is not None and sizes[i] in PAPER_SIZES:
                ours += f" / {paper[PAPER_SIZES.index(sizes[i])]:.1f}"
            cells.append(ours)
        query = row.get("query_s_per_round")
        out.append(f"| `{name}` | " + " | ".join(cells)
                   + f" | {row['train_s_per_round']:.0f} | "
                   + ("-" if query is None else f"{query:.2f}") + " |")
    return out + [""]


def _low_budget_section():
    """The Wasserstein core-set's low-budget regime (bench_low_budget.py)."""
    path = _root() / "benchmarks" / "results" / "low_budget.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    proto, summary, sizes = data["protocol"], data["summary"], data["n_labeled"]
    names = list(summary)
    out = [
        "## Low budgets: the Wasserstein core-set",
        "",
        f"Command: `{data['command']}` ({len(proto['seeds'])} seeds; Fashion-MNIST, "
        f"{proto['features']} features fitted without labels, cosine cost; pool "
        f"{proto['pool']:,}, {proto['initial']} random labels + {proto['rounds']} queries of "
        f"{proto['query']}; a fresh `{proto['learner']}` each round; the core-set solver "
        f"stops after {proto['time_limit']:g} s per query). The regime of the paper "
        "(a fixed feature space, a few labels per round); see "
        "[Wasserstein core-set](wasserstein_coreset.md).",
        "",
        "Test accuracy (%, mean ± std over seeds):",
        "",
        "| labels | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, n in enumerate(sizes):
        out.append(f"| {n} | " + " | ".join(
            f"{summary[s]['accuracy_mean'][i]:.1f} ± {summary[s]['accuracy_std'][i]:.1f}"
            for s in names) + " |")
    out.append("| AUBC | " + " | ".join(f"{summary[s]['aubc_mean']:.3f}" for s in names) + " |")
    out.append("| query s / round | " + " | ".join(
        f"{summary[s]['query_s_per_round']:.2f}" for s in names) + " |")
    return out + [""]


def _peers_section():
    path = _root() / "benchmarks" / "results" / "peers.json"
    out = ["## Query cost against other libraries", ""]
    if not path.exists():
        return out + [
            "Same pool, same trained LeNet5, skal against modAL, baal, scikit-activeml and a "
            "per-sample DeepFool loop. The peers live in their own virtual environment:",
            "",
            "```bash",
            "bash benchmarks/peers/setup_peers.sh        # creates .venv-peers",
            ".venv-peers/bin/python benchmarks/peers/bench_peers.py",
            "```",
            "",
        ]
    data = json.loads(path.read_text(encoding="utf-8"))
    out += [
        f"Command: `{data.get('command', '')}` (pool {data['pool']}, query {data['n_instances']}, "
        f"{data['machine']['device']}, {data['machine']['torch_threads']} thread(s)"
        + ("; **quick run: not final**" if data.get("quick") else "") + ").",
        "",
        "| task | skal | peer | skal s | peer s | time ratio skal/peer | skal MiB | peer MiB | "
        "memory ratio | same top-k |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        def fmt(v, spec):
            return "-" if v is None else format(v, spec)
        out.append(
            f"| {row['task']} | {row['skal']} | {row['peer']} | {fmt(row['skal_s'], '.3f')} | "
            f"{fmt(row['peer_s'], '.3f')} | {fmt(row.get('time_ratio'), '.3f')} | "
            f"{fmt(row.get('skal_mib'), '.1f')} | {fmt(row.get('peer_mib'), '.1f')} | "
            f"{fmt(row.get('memory_ratio'), '.2f')} | {row.get('overlap', '-')} |"
        )
    skipped = data.get("skipped") or {}
    if skipped:
        out += ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + "."]
    return out + [""]
