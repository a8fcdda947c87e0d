import json
import subprocess
import sys
from pathlib import Path

import pytest

from skal.cli import available_strategies, build_parser, main, make_strategy
from skal.datasets import FASHION_MNIST_ENV


@pytest.fixture(autouse=True, scope="module")
def _restore_torch_threads():
    # main() sets torch's thread count for its run; check it puts it back.
    import torch

    before = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == before


def test_tiny_run_writes_png_json_and_prints_table(tmp_path, capsys):
    out = tmp_path / "out"
    status = main(
        [
            "--n-queries", "1", "--epochs", "1", "--seeds", "0",
            "--n-initial", "10", "--batch-size", "10", "--n-train", "200", "--n-test", "100",
            "--out", str(out), "--no-progress",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    for name in ("random", "entropy", "margin", "bald", "coreset"):
        assert f"\n{name} " in printed
    assert "AUBC" in printed and "final acc" in printed

    png = out / "learning_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    payload = json.loads((out / "results.json").read_text())
    assert payload["config"]["dataset"] == "digits"
    assert payload["config"]["n_queries"] == 1 and payload["config"]["n_pool"] == 200
    assert [row["strategy"] for row in payload["summary"]] == [
        "random", "entropy", "margin", "bald", "coreset"
    ]
    assert len(payload["runs"]) == 5
    for run in payload["runs"]:
        assert run["n_labeled"] == [10, 20]
        assert len(run["accuracy"]) == 2 and len(run["query_time"]) == 1


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    status = main(
        [
            "--strategies", "random", "--n-queries", "1", "--epochs", "1", "--seeds", "0,1",
            "--n-initial", "10", "--batch-size", "5", "--n-train", "100", "--n-test", "50",
            "--out", str(tmp_path),
        ]
    )
    assert status == 0
    captured = capsys.readouterr()
    assert "simulate" in captured.err
    payload = json.loads((tmp_path / "results.json").read_text())
    assert [run["random_state"] for run in payload["runs"]] == [0, 1]


def test_bad_arguments_exit_with_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--strategies", "random,nonsense", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "nonsense" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--seeds", "a,b"])
    with pytest.raises(SystemExit):
        main(["--n-queries", "10", "--batch-size", "500", "--n-train", "100", "--epochs", "1",
              "--out", str(tmp_path)])


def test_missing_fashion_mnist_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "nowhere"))
    status = main(["--dataset", "fashion-mnist", "--out", str(tmp_path / "out")])
    assert status == 1
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err
    assert not (tmp_path / "out").exists()


def test_strategy_names():
    names = available_strategies()
    for name in ("random", "entropy", "margin", "least-confident", "bald", "coreset"):
        assert name in names
    assert make_strategy("margin").measure == "margin"
    assert make_strategy("core-set").__class__.__name__ == "CoreSet"
    with pytest.raises(ValueError, match="Unknown strategy"):
        make_strategy("oracle")
    assert build_parser().parse_args([]).dataset == "digits"


def test_python_dash_m_skal():
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "skal", "--list-strategies"],
        cwd=root, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "entropy" in proc.stdout.split()


def test_list_prints_every_registry_strategy_with_a_line(capsys):
    from skal.registry import STRATEGIES

    assert main(["--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(STRATEGIES)
    for name in ("waal", "wasserstein-prototypes", "wasserstein-coreset", "entropy+wasserstein",
                 "bald+wasserstein", "balnet+wasserstein", "qbc", "kmedoids-coreset"):
        assert name in STRATEGIES
    # Each line says what the strategy queries, not only its class name.
    assert all(len(line.split()) >= 4 for line in lines)
    assert "unavailable" not in "\n".join(lines)


def test_recipe_prints_the_shared_recipe(capsys):
    from skal.recipes import describe_recipe

    assert main(["--recipe"]) == 0
    out = capsys.readouterr().out
    assert describe_recipe("digits") in out and "20 random labels, then 10 queries of 20" in out
    assert main(["--recipe", "--dataset", "fashion-mnist", "--epochs", "5"]) == 0
    out = capsys.readouterr().out
    assert describe_recipe("fashion-mnist") in out and "epochs 5" in out


def test_waal_runs_with_its_own_learner_next_to_the_others(tmp_path, capsys):
    status = main([
        "--strategies", "random,waal,margin", "--n-queries", "1", "--epochs", "1", "--seeds", "0",
        "--n-initial", "10", "--batch-size", "10", "--n-train", "120", "--n-test", "60",
        "--out", str(tmp_path), "--no-progress", "--n-jobs", "1",
    ])
    assert status == 0
    out = capsys.readouterr().out
    assert "AUBC - random" in out and "labels saved" in out
    payload = json.loads((tmp_path / "results.json").read_text())
    assert [row["strategy"] for row in payload["summary"]] == ["random", "waal", "margin"]
    learners = [run["params"]["estimator"] for run in payload["runs"]]
    assert "WAALClassifier" in learners[1]
    assert "WAALClassifier" not in learners[0] and "WAALClassifier" not in learners[2]
    assert payload["summary"][1]["aubc_vs_random_mean"] is not None


def test_every_public_strategy_has_a_command_line_name():
    import inspect

    import skal
    from skal.registry import STRATEGIES

    public = {name for name in skal.__all__
              if inspect.isclass(getattr(skal, name))
              and issubclass(getattr(skal, name), skal.QueryStrategy)
              and getattr(skal, name) not in (skal.QueryStrategy, skal.ScoreBasedStrategy)}
    named = {entry[1] for entry in STRATEGIES.values()}
    assert public - named == set(), "strategies the skal command cannot run"
