"""The metrics of benchmarks/diagnose_strategies.py against values computed by hand."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` run without `python -m`
    sys.path.insert(0, str(ROOT))

from benchmarks import diagnose_strategies as ds  # noqa: E402


def test_class_balance_by_hand():
    got = ds.class_balance([0, 0, 0, 1], 2)
    # -(3/4 ln 3/4 + 1/4 ln 1/4) / ln 2
    assert got["entropy"] == pytest.approx(0.811278, abs=1e-6)
    assert got["max_share"] == 0.75 and got["n_classes"] == 2
    one = ds.class_balance([3, 3, 3], 10)
    assert one == {"entropy": 0.0, "max_share": 1.0, "n_classes": 1}
    even = ds.class_balance(np.arange(10).repeat(5), 10)
    assert even["entropy"] == pytest.approx(1.0) and even["max_share"] == pytest.approx(0.1)
    # Three of ten classes, evenly: log 3 / log 10.
    assert ds.class_balance([1, 4, 7], 10)["entropy"] == pytest.approx(math.log(3) / math.log(10))


def test_redundancy_by_hand():
    Z = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    # cos(z0, z1) = 0, cos(z0, z2) = cos(z1, z2) = 1 / sqrt 2
    assert ds.mean_pairwise_cosine(Z) == pytest.approx((2 / math.sqrt(2)) / 3)
    assert ds.mean_pairwise_cosine(np.ones((4, 3))) == pytest.approx(1.0)
    # nearest other row: |z0 - z1| = sqrt 5 for both; z2's is z1, |z2 - z1| = sqrt 10
    # (|z2 - z0| = sqrt 13)
    assert ds.nearest_neighbour_distance(Z) == pytest.approx(
        (2 * math.sqrt(5) + math.sqrt(10)) / 3)
    dup = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0]])
    assert ds.nearest_neighbour_distance(dup) == pytest.approx(5.0 / 3)


def test_percentiles_and_outliers_by_hand():
    ref = np.arange(10.0)  # 0 .. 9
    np.testing.assert_allclose(ds.percentile_in([0.0, 4.5, 9.0, 10.0], ref), [0, 0.5, 0.9, 1])
    # the 0.8 quantile of 0..9 is 7.2: 8 and 9 are beyond it, 7 is not
    assert ds.outlier_share([7.0, 8.0, 9.0, 1.0], ref, q=0.8) == 0.5


def test_score_concentration_and_overlap_by_hand():
    assert ds.score_concentration([1.0, 1.0, 1.0, 1.0], 1) == 0.25
    assert ds.score_concentration([0.0, 0.0, 6.0, 2.0], 1) == 0.75
    assert ds.score_concentration([-1.0, 3.0, 1.0], 2) == 1.0  # negatives count as 0
    assert ds.top_k_overlap([5, 4, 3, 2, 1], [5, 4, 3, 2, 1], 3) == 1.0
    assert ds.top_k_overlap([5, 4, 3, 2, 1], [1, 2, 3, 4, 5], 2) == 0.0
    assert ds.top_k_overlap([5, 4, 3, 2, 1], [5, 0, 4, 9, 0], 2) == 0.5


def test_last_dropout_only_silences_the_others_and_restores():
    module = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(2, 2),
                                 torch.nn.Dropout(0.5))
    with ds.last_dropout_only(module):
        assert [module[0].p, module[2].p] == [0.0, 0.5]
    assert [module[0].p, module[2].p] == [0.3, 0.5]


def test_tables_average_over_seeds():
    def rec(acc, entropy):
        r = {m: 0.5 for m, _, _ in ds._COLUMNS}
        r.update(class_entropy=entropy, refit_accuracy=acc, picks=[1, 2])
        return r

    cfg = {"k": 2, "n_initial": 10, "n_candidates": 100}
    data = {"contexts": {
        f"small/seed{s}": {"config": cfg, "base_accuracy": 0.5, "strategies": {
            "random": rec(0.60 + s / 100, 0.9), "coreset": rec(0.58 + s / 100, 0.5 + s / 10)}}
        for s in (0, 1)}}
    rows, seeds, _ = ds._rows(data, "small")
    assert seeds == [0, 1]
    np.testing.assert_allclose(rows["coreset"]["gain_vs_random"], [-0.02, -0.02])
    text = ds.tables(data)
    assert "| `coreset` | 0.550 |" in text and "-2.00 ± 0.00" in text
