"""The label-efficiency benchmark runner: a tiny --quick run on digits.

Checks what a long benchmark relies on: one JSON per (data set, strategy, seed) with
the documented fields, a finished run is never recomputed, a strategy that is not
available is reported instead of crashing, and ``summarize`` writes the Markdown
page and the PNG.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` run without `python -m`
    sys.path.insert(0, str(ROOT))

from benchmarks import label_efficiency as le  # noqa: E402

FIELDS = (
    "status", "config_key", "dataset", "strategy", "seed", "quick", "n_labeled", "accuracy",
    "aubc", "final_accuracy", "labels_to_target", "query_seconds", "fit_seconds",
    "n_training", "wall_seconds", "peak_rss_mib", "config", "machine", "run",
)


def _run(results_dir, *extra):
    return le.main(["--dataset", "digits", "--quick", "--results-dir", str(results_dir),
                    "--no-progress", *extra])


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    results = tmp_path_factory.mktemp("label_efficiency")
    assert _run(results, "--strategies", "random", "entropy", "--seeds", "0") == 0
    return results


def test_quick_run_writes_one_json_per_strategy_and_seed(quick_results):
    paths = sorted((quick_results / "quick").glob("*.json"))
    assert [p.name for p in paths] == [
        "digits__entropy__seed0.json", "digits__random__seed0.json"
    ]
    settings = le.PROTOCOLS["digits"]["quick"]
    n_points = settings["n_queries"] + 1
    for path in paths:
        payload = json.loads(path.read_text())
        for field in FIELDS:
            assert field in payload, field
        assert payload["status"] == "complete" and payload["dataset"] == "digits"
        assert payload["n_labeled"] == [
            settings["n_initial"] + i * settings["batch_size"] for i in range(n_points)
        ]
        acc = payload["accuracy"]
        assert len(acc) == n_points
        assert all(isinstance(a, float) and 0.0 <= a <= 1.0 for a in acc)
        assert 0.0 <= payload["aubc"] <= 1.0
        assert len(payload["query_seconds"]) == n_points - 1
        assert len(payload["fit_seconds"]) == n_points
        assert all(t >= 0 for t in payload["query_seconds"] + payload["fit_seconds"])
        assert set(payload["labels_to_target"]) == {"0.85", "0.90"}
        assert payload["peak_rss_mib"] is None or payload["peak_rss_mib"] > 0
        # The run keeps the queried indices: distinct, and never the seed set.
        run = payload["run"]
        queried = np.concatenate(run["queried_indices"])
        assert len(np.unique(queried)) == len(queried)
        assert not np.intersect1d(queried, run["initial_indices"]).size


def test_finished_runs_are_not_recomputed(quick_results, tmp_path, monkeypatch, capsys):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(quick_results, results)
    done = results / "quick" / "digits__random__seed0.json"
    before = done.read_bytes()
    calls = []
    real_run_one = le.run_one

    def counting_run_one(dataset, name, seed, **kwargs):
        calls.append((name, seed))
        return real_run_one(dataset, name, seed, **kwargs)

    monkeypatch.setattr(le, "run_one", counting_run_one)
    assert _run(results, "--strategies", "random", "--seeds", "0", "1") == 0
    assert calls == [("random", 1)]  # seed 0 was finished
    assert done.read_bytes() == before
    assert "done already" in capsys.readouterr().out
    assert (results / "quick" / "digits__random__seed1.json").exists()

    # Other settings (here: the epoch cap) are a different run: recomputed.
    calls.clear()
    assert _run(results, "--strategies", "random", "--seeds", "0", "--epochs", "1") == 0
    assert calls == [("random", 0)]


def test_unavailable_strategy_is_reported_not_fatal(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(le.STRATEGIES, "missing",
                        ("skal.strategies.not_written_yet", "Missing", {}, None))
    with pytest.raises(ValueError, match="unavailable"):
        le.make_strategy("missing")
    assert le.available_strategies()["missing"] is not None
    monkeypatch.setattr(le, "run_one", lambda *a, **k: pytest.fail("nothing should run"))
    assert _run(tmp_path, "--strategies", "missing") == 2
    assert "skipping missing" in capsys.readouterr().err
    assert _run(tmp_path, "--strategies", "nonsense") == 2


def test_summarize_writes_markdown_and_png(quick_results, tmp_path):
    page, img = tmp_path / "results.md", tmp_path / "img"
    status = le.main(["summarize", "--quick", "--dataset", "digits",
                      "--results-dir", str(quick_results), "--docs-page", str(page),
                      "--img-dir", str(img)])
    assert status == 0
    text = page.read_text()
    assert "| `random` | 1 |" in text and "| `entropy` | 1 |" in text
    assert "img/label_efficiency_digits_quick.png" in text
    png = img / "label_efficiency_digits_quick.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_page_names_missing_strategies_and_missing_seeds(monkeypatch):
    monkeypatch.setitem(le.DEFAULT_STRATEGIES, "digits", ("random", "entropy", "waal", "bald"))
    monkeypatch.setitem(le._RUN_COST_NOTES, ("digits", "waal"), "WAAL is slow here.")
    payloads = [{"strategy": name, "seed": seed}
                for name, seeds in (("random", (0, 1, 2)), ("entropy", (0, 1, 2)),
                                    ("waal", (0, 2)))
                for seed in seeds]
    text = "\n".join(le._coverage_notes("digits", payloads, [0, 1, 2]))
    assert "Not run yet under this protocol: `bald`" in text
    assert "`waal` has fewer seeds than the other rows so far: 0, 2 of 0, 1, 2" in text
    assert "--strategies waal --seeds 1`" in text
    assert "WAAL is slow here." in text
    assert "`random` has" not in text and "`entropy` has" not in text
    # Every seed run: nothing to say.
    complete = [{"strategy": n, "seed": s} for n in ("random", "entropy", "waal", "bald")
                for s in (0, 1)]
    assert le._coverage_notes("digits", complete, [0, 1]) == []


def test_results_page_names_runs_with_another_thread_count():
    runs = [{"strategy": n, "seed": s, "machine": {"torch_threads": 1}}
            for n in ("random", "margin") for s in (0, 1)]
    assert le._threads_text(runs) == "1 thread(s)"
    runs += [{"strategy": "waal", "seed": s, "machine": {"torch_threads": 2}} for s in (0, 1)]
    assert le._threads_text(runs) == "1 thread(s) (`waal`: 2)"


def test_training_recipe():
    from skal.models import WAALClassifier
    from skal.nets import NeuralNetClassifier

    net = le.training_recipe("fashion-mnist", random_state=0)
    assert isinstance(net, NeuralNetClassifier)
    assert isinstance(net.train_split, le.HoldoutSplit)
    assert isinstance(net.iterator_train__collate_fn, le.AugmentCollate)
    waal = le.training_recipe("fashion-mnist", semi_supervised=True, max_epochs=3)
    assert isinstance(waal, WAALClassifier) and waal.max_epochs == 3
    assert le.FashionLeNet()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    # Digits' 20-220 labels are too few to hold some out: fixed epochs, no callbacks
    # that would need a validation loss; the supervised net averages its last epochs.
    for semi, callbacks in ((False, ["average"]), (True, [])):
        digits = le.training_recipe("digits", semi_supervised=semi)
        assert digits.train_split is None and [n for n, _ in digits.callbacks] == callbacks
    # The small-budget Fashion-MNIST protocol (100 -> 1,000 by 100) trains the same
    # LeNet with augmentation for fixed epochs on every label.
    small = le.training_recipe("fashion-mnist-thesis")
    assert small.module is le.FashionLeNet and small.train_split is None
    assert not small.callbacks and small.batch_size == 32
    assert isinstance(small.iterator_train__collate_fn, le.AugmentCollate)
    p = le.PROTOCOLS["fashion-mnist-thesis"]["full"]
    assert (p["n_initial"], p["batch_size"], p["n_initial"] + p["n_queries"] * p["batch_size"]) \
        == (100, 100, 1000)
    # The low-budget protocol (10 -> 100 by 10) shares the small-budget recipe and pools.
    low = le.PROTOCOLS["fashion-mnist-low"]["full"]
    assert (low["n_initial"], low["batch_size"], low["n_queries"], low["n_pool"]) \
        == (10, 10, 9, p["n_pool"])
    assert le.RECIPES["fashion-mnist-low"] == le.RECIPES["fashion-mnist-thesis"]
    assert le.training_recipe("fashion-mnist-low").batch_size == 32
    with pytest.raises(ValueError, match="Unknown data set"):
        le.training_recipe("cifar")


def test_augmentation_and_holdout_split():
    X = np.arange(2 * 16, dtype=np.float32).reshape(2, 1, 4, 4)
    items = [(X[i], np.int64(i)) for i in range(2)]
    same, y = le.AugmentCollate(flip=False, shift=0)(items)
    assert torch.equal(same, torch.from_numpy(X)) and y.tolist() == [0, 1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        moved, _ = le.AugmentCollate(flip=True, shift=1)(items)
    assert moved.shape == same.shape
    # A shift only moves pixels or brings in zeros; a flip only reorders them.
    for a, b in zip(moved.reshape(2, -1), same.reshape(2, -1), strict=True):
        kept = a[a != 0]
        assert np.isin(kept.numpy(), b.numpy()).all()

    from skorch.dataset import Dataset

    y = np.repeat(np.arange(10), 10)
    ds = Dataset(np.zeros((100, 1, 4, 4), np.float32), y)
    train, valid = le.HoldoutSplit(0.2, min_labels=1)(ds, y)
    assert sorted(np.bincount(y[valid.indices])) == [2] * 10  # stratified
    tiny = np.array([0, 1, 2, 3, 4])  # one label per class: plain random split
    train, valid = le.HoldoutSplit(0.2, min_labels=1)(Dataset(np.zeros((5, 1)), tiny), tiny)
    assert len(valid.indices) == 1 and len(train.indices) == 4


def test_results_page_quotes_the_waal_benchmark_next_to_the_paper(tmp_path, monkeypatch):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    sizes = [1000 + 500 * i for i in range(11)]
    summary = {name: {"n_labeled": sizes, "accuracy_mean": [acc] * 11,
                      "accuracy_std": [0.0] * 11, "train_s_per_round": 12.0,
                      "query_s_per_round": 0.5}
               for name, acc in (("random", 70.0), ("waal", 75.0))}
    (results / "waal.json").write_text(json.dumps({
        "protocol": {"seeds": 1, "pool": 40000, "initial": 1000, "query": 500, "rounds": 10,
                     "waal_epochs": 10, "baseline_epochs": 10},
        "machine": {"device": "cpu"}, "summary": summary}))
    monkeypatch.setattr(le, "_ROOT", tmp_path)
    lines = le._waal_section()
    waal_row = next(line for line in lines if line.startswith("| `waal`"))
    # Whole thousands of labels only, each with the paper's Table 4 value.
    assert waal_row.startswith("| `waal` | 75.0 / 72.3 | 75.0 / 79.8 |")
    assert waal_row.count("/") == 6
    assert "--waal-epochs 10" in lines[2]
    (results / "waal.json").unlink()
    assert le._waal_section() == []


def test_labels_to_98_percent_of_full_data_column(quick_results):
    payloads = le.load_results(quick_results, "digits", quick=True)
    plain = le.markdown_tables(payloads, "digits")[0]
    assert "of full data" not in plain
    # A full-data accuracy of 0 is reached at once; one above 1/0.98 never.
    lines = le.markdown_tables(payloads, "digits", full_accuracy=0.0)[0].splitlines()
    assert "labels to 98 % of full data (0.0 %)" in lines[0]
    first = payloads[0]["n_labeled"][0]
    row = next(line for line in lines if line.startswith("| `random`"))
    assert row.split(" | ")[7] == str(first)
    never = le.markdown_tables(payloads, "digits", full_accuracy=1.03)[0]
    assert next(line for line in never.splitlines()
                if line.startswith("| `random`")).split(" | ")[7] == "not reached"


def test_paired_column_uses_the_random_run_with_the_same_first_model(quick_results):
    payloads = le.load_results(quick_results, "digits", quick=True)
    entropy = next(p for p in payloads if p["strategy"] == "entropy")
    random_ = next(p for p in payloads if p["strategy"] == "random")

    def row(table, name):
        return next(line for line in table.splitlines() if line.startswith(f"| `{name}`"))

    same = le.markdown_tables(payloads, "digits")[0]
    assert "vs random, same first model" in same.splitlines()[0]
    assert row(same, "entropy").split(" | ")[3] == f"{entropy['aubc'] - random_['aubc']:+.3f}"
    assert row(same, "random").split(" | ")[3] == "-"
    # A random run from another first model is not a pair; a rerun from the same one is.
    moved = dict(random_, accuracy=[random_["accuracy"][0] + 0.01, *random_["accuracy"][1:]])
    unpaired = le.markdown_tables([entropy, moved], "digits")[0]
    assert row(unpaired, "entropy").split(" | ")[3] == "-"
    rerun = dict(random_, aubc=random_["aubc"] - 0.25)
    paired = le.markdown_tables([entropy, moved], "digits", references=[rerun])[0]
    assert row(paired, "entropy").split(" | ")[3] == f"{entropy['aubc'] - rerun['aubc']:+.3f}"


def test_results_page_quotes_the_low_budget_benchmark(tmp_path, monkeypatch):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    summary = {name: {"accuracy_mean": [30.0, acc], "accuracy_std": [0.0, 1.5],
                      "aubc_mean": acc / 100, "query_s_per_round": 2.0}
               for name, acc in (("random", 40.0), ("wasserstein-coreset", 55.0))}
    (results / "low_budget.json").write_text(json.dumps({
        "command": "python benchmarks/bench_low_budget.py", "n_labeled": [10, 20],
        "protocol": {"seeds": [0, 1, 2], "features": "PCA-50, L2", "pool": 3000,
                     "initial": 10, "rounds": 1, "query": 10, "learner": "MLPClassifier()",
                     "time_limit": 15.0},
        "summary": summary}))
    monkeypatch.setattr(le, "_ROOT", tmp_path)
    lines = le._low_budget_section()
    assert "| 20 | 40.0 ± 1.5 | 55.0 ± 1.5 |" in lines
    assert "| AUBC | 0.400 | 0.550 |" in lines
    (results / "low_budget.json").unlink()
    assert le._low_budget_section() == []
