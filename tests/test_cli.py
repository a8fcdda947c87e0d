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
