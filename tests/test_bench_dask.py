"""The Dask benchmark's pure parts: the synthetic pool file and the results table."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_dask as bd  # noqa: E402


def test_synthetic_pool_is_written_block_by_block_and_deterministic(tmp_path):
    small = np.load(bd.write_synthetic_pool(tmp_path / "small.npy", 300))
    large = np.load(bd.write_synthetic_pool(tmp_path / "large.npy", 500))
    assert small.shape == (300, 84) and small.dtype == np.float32
    np.testing.assert_array_equal(large[:300], small)  # a smaller pool is a prefix
    X_lab, y_lab = bd._synthetic_labeled(200)
    assert set(np.unique(y_lab)) == set(range(10))
    # The classes are separable enough for a head to learn: nearest-center accuracy.
    centers = bd._centers()
    pred = ((X_lab[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
    assert (pred == y_lab).mean() > 0.7


def _record(indices, seconds=1.0):
    return {"status": "complete", "query_seconds": seconds, "indices": indices,
            "client_peak_rss_mib": 900.0, "client_extra_peak_rss_mib": 40.0,
            "client_tracemalloc_peak_mib": 12.5, "workers_peak_rss_mib_max": 400.0,
            "workers_peak_rss_mib_sum": 780.0}


def test_table_shows_memory_and_flags_differing_indices():
    payload = {"pools": {
        "synthetic": {
            "config": {"n_pool": 1_000_000, "batch": 200, "strategies": ["entropy", "kcenter"]},
            "pool_mib": 320.4, "identical": {"entropy": True, "kcenter": False},
            "numpy": {"entropy": _record([1, 2]), "kcenter": _record([3, 4])},
            "dask": {"entropy": _record([1, 2]), "kcenter": _record([4, 3])},
        },
        "fashion": {
            "config": {"n_pool": 160_000, "batch": 200, "strategies": ["entropy"]},
            "pool_mib": 478.5, "identical": {"entropy": False},
            "numpy": {"entropy": _record([5])}, "dask": {"status": "failed", "error": "boom"},
        },
    }}
    rows = [[c.strip() for c in line.split("|")[1:-1]]
            for line in bd.make_table(payload).splitlines()[2:]]
    assert len(rows) == 6
    by = {(r[0].split()[0], r[1].split()[0], r[2]): r for r in rows}
    assert by["synthetic", "entropy", "dask"][3:] == ["1.0", "900", "40", "12.5",
                                                      "400 / 780", "yes"]
    assert by["synthetic", "kcenter", "dask"][-1] == "**no**"
    assert by["synthetic", "kcenter", "numpy"][-2:] == ["–", ""]
    assert by["fashion", "entropy", "dask"][3] == "failed"
    assert "1,000,000" in by["synthetic", "entropy", "numpy"][0]
