"""The scaling benchmark's pure parts, and the GPU check's CPU smoke run."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_scaling as bs  # noqa: E402


def test_loglog_slope_recovers_the_exponent():
    ns = np.array([1e4, 4e4, 1.6e5])
    assert bs.fit_loglog_slope(ns, 3.0 * ns**1.5) == pytest.approx(1.5)
    noisy = 0.2 * ns * np.array([1.05, 0.97, 1.02])
    assert bs.fit_loglog_slope(ns, noisy) == pytest.approx(1.0, abs=0.05)
    # Non-positive or missing values are left out; one size left is no fit.
    assert bs.fit_loglog_slope(ns, [0.0, 2.0, 8.0]) == pytest.approx(1.0)
    assert bs.fit_loglog_slope(ns, [None, -1.0, 8.0]) is None


def _point(spec, n, seconds, mib, key="k"):
    return {"strategy": spec, "n_pool": n, "status": "complete", "config_key": key,
            "query_seconds": seconds, "extra_peak_rss_mib": mib, "tracemalloc_peak_mib": mib / 2}


def test_pending_points_skip_only_complete_points_with_the_same_settings():
    payload = {"points": {
        "margin|10": _point("margin", 10, 1.0, 5.0),
        "margin|20": _point("margin", 20, 2.0, 5.0, key="old"),
        "dfal|10": {"strategy": "dfal", "n_pool": 10, "status": "failed", "config_key": "k"},
    }}
    keys = {"margin": "k", "dfal": "k"}
    assert bs.pending_points(payload, ["margin", "dfal"], [10, 20], keys) == [
        ("margin", 20), ("dfal", 10), ("dfal", 20)]
    assert len(bs.pending_points(payload, ["margin", "dfal"], [10, 20], keys, force=True)) == 4
    assert bs.pending_points(payload, ["margin"], [10], keys) == []


def test_page_shows_figures_slopes_and_pending_points():
    sizes = [10_000, 40_000, 160_000]
    payload = {"config": {"batch": 500, "n_labeled": 1000, "threads": 1}, "points": {
        bs.point_key("margin", 10_000): _point("margin", 10_000, 1.0, 100.0),
        bs.point_key("margin", 40_000): _point("margin", 40_000, 4.0, 400.0),
        bs.point_key("dfal", 10_000): _point("dfal", 10_000, 2.0, 10.0),
        bs.point_key("dfal", 40_000): _point("dfal", 40_000, 16.0, 10.0),
        bs.point_key("egl", 10_000): {"strategy": "egl", "n_pool": 10_000, "status": "timeout",
                                      "error": "more than 3600 s"},
    }}
    page = bs.render_page(payload, ["margin", "dfal", "egl"], sizes)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in page.splitlines() if line.startswith("| `")}
    time_rows = page.split("## Query time")[1].split("## Peak memory")[0]
    margin = [line for line in time_rows.splitlines() if line.startswith("| `margin`")][0]
    assert [c.strip() for c in margin.split("|")[2:-1]] == ["1", "4", "pending", "1.00"]
    dfal = [line for line in time_rows.splitlines() if line.startswith("| `dfal`")][0]
    assert "1.50 ⚠" in dfal  # 2 s -> 16 s for 4x the pool: slope 1.5 misses the goal
    assert rows["`egl`"][-1] == "pending" and "egl|10000`: timeout" in page
    assert "5 of 9 points are pending" in page
    assert "GPU figures are pending" in page
    assert "Pending: run" in page  # no inference measurement yet
    assert "## Notes" not in page
    payload["notes"] = ["The 160K points ran beside another benchmark."]
    noted = bs.render_page(payload, ["margin", "dfal", "egl"], sizes)
    assert "## Notes\n\n- The 160K points ran beside another benchmark." in noted


def test_variants_parse_and_bad_ones_fail():
    assert bs.parse_strategy("dfal@candidate_factor=10,preselect=None") == (
        "dfal", {"candidate_factor": 10, "preselect": None})
    with pytest.raises(ValueError, match="param=value"):
        bs.parse_strategy("dfal@candidate_factor")
    assert bs.make_strategy("dfal@candidate_factor=10").candidate_factor == 10
    assert bs.family("entropy+wasserstein") == "wasserstein"


def test_pool_past_the_data_uses_flipped_and_shifted_copies():
    X, _ = np.random.RandomState(0).rand(2, 3, 1, 6, 6), None
    base = X[0].astype(np.float32)
    flipped = bs._augmented(base, 1)  # flipped, shifted right by one pixel
    np.testing.assert_array_equal(flipped[..., 1:], base[..., ::-1][..., :-1])
    assert (flipped[..., 0] == 0).all()
    shifted = bs._augmented(base, 2)  # shifted down by one pixel
    np.testing.assert_array_equal(shifted[..., 1:, :], base[..., :-1, :])
    assert (shifted[..., 0, :] == 0).all()
    X_pool, X_lab, y_lab, _ = bs.make_pool(150, n_labeled=20, quick=True,
                                           data_path="/nonexistent")
    assert X_pool.shape == (150, 1, 28, 28) and X_lab.shape == (20, 1, 28, 28)
    assert len(y_lab) == 20


def test_gpu_check_quick_on_cpu_records_finite_ratios(tmp_path):
    import torch

    from benchmarks import gpu_check

    out = tmp_path / "gpu_check.json"
    threads = torch.get_num_threads()
    try:
        gpu_check.main(["--device", "cpu", "--quick", "--out", str(out),
                        "--scaling-strategies", "margin", "random",
                        # generous: a loaded machine must not time the smoke points out
                        "--point-timeout", "600", "--budget", "1200"])
    finally:
        torch.set_num_threads(threads)
    payload = json.loads(out.read_text())
    assert payload["device"] == "cpu" and payload["quick"] is True
    expected = {"deepfool_batched_speedup", "bald_T10_vs_10_passes", "entropy_vs_one_pass",
                "waal_epoch_vs_plain_epoch", "inference_glue_vs_raw",
                "scaling_random_vs_margin"}
    assert expected <= set(payload["ratios"])
    for key, value in payload["ratios"].items():
        assert math.isfinite(value) and value > 0, key
    assert payload["details"]["scaling"]["margin"]["status"] == "complete"


def test_bench_waal_fit_counts_the_steps_of_each_epoch(tmp_path):
    """A plain epoch steps over the labeled set, a WAAL epoch over the unlabeled pool."""
    from benchmarks import bench_waal_fit

    out = tmp_path / "waal_fit.json"
    assert bench_waal_fit.main(["--quick", "--labels", "70", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    # batch 64: 70 labels -> 2 steps; the 130 unlabeled rows -> 3 paired steps
    assert (row["n_labeled"], row["n_unlabeled"], row["plain_steps"], row["waal_steps"]) == (
        70, 130, 2, 3)
    assert row["waal_epoch_vs_plain_epoch"] == pytest.approx(
        row["waal_epoch_s"] / row["plain_epoch_s"])


def test_model_fingerprint_tells_retrained_models_apart():
    import types

    import torch

    from benchmarks._scaling_measure import model_fingerprint

    def fitted(seed):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return types.SimpleNamespace(module_=torch.nn.Linear(3, 2))

    assert model_fingerprint(fitted(0)) == model_fingerprint(fitted(0))
    assert model_fingerprint(fitted(0)) != model_fingerprint(fitted(1))
    payload = {"model_key": "k", "model_fingerprint": model_fingerprint(fitted(0))}
    assert bs.same_model(payload, "k", model_fingerprint(fitted(0)))
    assert not bs.same_model(payload, "k", model_fingerprint(fitted(1)))
    assert not bs.same_model(payload, "other", model_fingerprint(fitted(0)))
