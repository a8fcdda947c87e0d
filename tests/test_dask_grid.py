"""Pools from disk as lazy Dask arrays, and grids / simulations on a Dask cluster.

A two-process LocalCluster stands in for a real one: the disk readers must give
the arrays an eager read gives, with the files read on the workers, and
GridSearchCV under joblib's dask backend, ``simulate(scheduler=...)`` and the
benchmark runner's ``--scheduler`` must give what a local run gives.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` run without `python -m`
    sys.path.insert(0, str(ROOT))

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import skal  # noqa: E402
from skal.datasets import load_dataset, open_image_folder, open_npy, open_zarr  # noqa: E402
from skal.strategies import RandomSampling, UncertaintySampling  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def digits_features():
    X, y, X_test, y_test = load_dataset("digits", random_state=0)
    return X[:300].reshape(300, -1), y[:300], X_test[:150].reshape(150, -1), y_test[:150]


# ---------------------------------------------------------------------------
# Pools from disk


def _write_images(root, rng, mode="L", size=(9, 7)):
    """A class folder of PNGs (different sizes, so resizing is exercised) and a corrupt file."""
    from PIL import Image

    files = {}
    for label, cls in enumerate(("bird", "cat")):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            w, h = (size if i % 2 else (12, 10))
            shape = (h, w) if mode == "L" else (h, w, 3)
            img = Image.fromarray(rng.randint(0, 256, shape).astype(np.uint8))
            files[f"{cls}/{i}.png"] = label
            img.save(root / cls / f"{i}.png")
    (root / "cat" / "9_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return files


def _eager(root, names, size, mode):
    from PIL import Image

    out = []
    for name in names:
        img = Image.open(root / name).convert(mode).resize(size, Image.Resampling.BILINEAR)
        pixels = np.asarray(img, dtype=np.float32) / 255.0
        out.append(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))
    return np.stack(out)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_image_folder_matches_eager_read_and_skips_corrupt_file(tmp_path, client, mode):
    files = _write_images(tmp_path, np.random.RandomState(0), mode)
    pool = open_image_folder(tmp_path, size=(9, 7), mode=mode, chunks=4, on_error="skip")
    # The corrupt file is reported and left out; labels come from the class folders.
    assert pool.skipped == ["cat/9_broken.png"]
    assert pool.filenames.tolist() == sorted(files)
    assert pool.target.tolist() == [files[n] for n in pool.filenames]
    assert pool.target_names.tolist() == ["bird", "cat"]
    channels = 1 if mode == "L" else 3
    assert isinstance(pool.data, da.Array)
    assert pool.data.shape == (10, channels, 7, 9) and pool.data.chunks[0] == (4, 4, 2)
    expected = _eager(tmp_path, pool.filenames, (9, 7), mode)
    # Computed on the cluster's worker processes.
    np.testing.assert_allclose(pool.data.compute(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(pool.data[[7, 2]].compute(), expected[[7, 2]], atol=1e-6)


def test_image_folder_corrupt_file_raises_naming_it(tmp_path, client):
    _write_images(tmp_path, np.random.RandomState(1))
    pool = open_image_folder(tmp_path, size=(9, 7), chunks=4)  # on_error="raise": lazy
    assert pool.data.shape[0] == 11 and pool.skipped == []
    pool.data[:8].compute()  # chunks without the broken file read fine
    with pytest.raises(OSError, match="9_broken.png"):
        pool.data.compute()


def test_image_folder_unlabeled_and_bad_input(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.new("L", (5, 4), 50 * i).save(tmp_path / f"{i}.jpg")
    pool = open_image_folder(tmp_path)  # size of the first image
    assert pool.target is None and pool.data.shape == (3, 1, 4, 5)
    np.testing.assert_allclose(pool.data[:, 0, 0, 0].compute(), [0, 50 / 255, 100 / 255],
                               atol=2 / 255)  # JPEG is lossy
    with pytest.raises(ValueError, match="mode"):
        open_image_folder(tmp_path, mode="CMYK")
    with pytest.raises(ValueError, match="size"):
        open_image_folder(tmp_path, size=(0, 4))
    with pytest.raises(ValueError, match="chunks"):
        open_image_folder(tmp_path, chunks=0)
    with pytest.raises(ValueError, match="No images"):
        open_image_folder(tmp_path, extensions=(".png",))
    (tmp_path / "cls").mkdir()
    Image.new("L", (5, 4)).save(tmp_path / "cls" / "a.png")
    with pytest.raises(ValueError, match="both images"):
        open_image_folder(tmp_path)


def test_npy_memmap_matches_np_load(tmp_path, client):
    data = np.random.RandomState(2).randn(37, 3, 4).astype(np.float32)
    np.save(tmp_path / "pool.npy", data)
    pool = open_npy(tmp_path / "pool.npy", chunks=10)
    assert pool.chunks == ((10, 10, 10, 7), (3,), (4,)) and pool.dtype == np.float32
    # The graph carries the file name, not the data.
    assert len(__import__("pickle").dumps(dict(pool.__dask_graph__()))) < data.nbytes / 2
    np.testing.assert_array_equal(pool.compute(), data)
    np.testing.assert_array_equal(pool[[30, 1, 12]].compute(), data[[30, 1, 12]])
    assert open_npy(tmp_path / "pool.npy").chunks[0] == (37,)  # default: ~64 MiB chunks
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="bad.npy"):
        open_npy(tmp_path / "bad.npy")


def test_zarr_matches_eager_and_rechunks_rows_only(tmp_path, client):
    zarr = pytest.importorskip("zarr")
    data = np.random.RandomState(3).randn(50, 6).astype(np.float64)
    z = zarr.open_array(str(tmp_path / "pool.zarr"), mode="w", shape=data.shape,
                        chunks=(8, 2), dtype=data.dtype)
    z[:] = data
    pool = open_zarr(tmp_path / "pool.zarr")
    assert pool.chunks == ((8,) * 6 + (2,), (6,))  # store's rows, columns never split
    np.testing.assert_array_equal(pool.compute(), data)
    pool = open_zarr(tmp_path / "pool.zarr", chunks=20)
    assert pool.chunks[0] == (20, 20, 10)
    np.testing.assert_array_equal(pool[[49, 0]].compute(), data[[49, 0]])
    with pytest.raises(ValueError, match="Zarr"):
        open_zarr(tmp_path / "missing.zarr")


# ---------------------------------------------------------------------------
# Grids and simulations on the cluster


def _grid_search(X, y, estimator, n_jobs):
    clf = skal.ActiveLearningClassifier(estimator, RandomSampling(), n_initial=20,
                                        batch_size=10, n_queries=2, random_state=0)
    grid = {"query_strategy": [RandomSampling(), UncertaintySampling("margin"),
                               UncertaintySampling("entropy", n_candidates=50)]}
    return GridSearchCV(clf, grid, cv=2, n_jobs=n_jobs).fit(X, y)


def test_grid_search_on_dask_backend_equals_local(client, digits_features):
    import joblib

    X, y, _, _ = digits_features
    local = _grid_search(X, y, LogisticRegression(max_iter=300), n_jobs=1)
    with joblib.parallel_backend("dask"):
        remote = _grid_search(X, y, LogisticRegression(max_iter=300), n_jobs=-1)
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
    # The scores differ between strategies, so the comparison is not vacuous.
    assert len(set(local.cv_results_["mean_test_score"])) > 1
    assert repr(remote.best_params_) == repr(local.best_params_)


def test_grid_search_tiny_cnn_on_dask_backend_equals_local(client):
    import joblib

    X, y = skal.datasets.load_digits_images(n_samples=120, random_state=0)
    net = skal.nets.cnn_classifier("digits", n_classes=10, max_epochs=2, device="cpu",
                                   random_state=0)
    clf = skal.ActiveLearningClassifier(net, RandomSampling(), n_initial=20, batch_size=10,
                                        n_queries=1, random_state=0)
    grid = {"query_strategy": [RandomSampling(), UncertaintySampling("entropy")]}
    local = GridSearchCV(clf, grid, cv=2).fit(X, y)
    with joblib.parallel_backend("dask"):
        remote = GridSearchCV(clf, grid, cv=2, n_jobs=-1).fit(X, y)
    for key in ("split0_test_score", "split1_test_score"):
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])


def _simulate(data, **kwargs):
    X, y, X_test, y_test = data
    return skal.simulate(
        LogisticRegression(max_iter=300),
        {"random": RandomSampling(), "margin": UncertaintySampling("margin")},
        X, y, X_test, y_test, n_initial=20, batch_size=10, n_queries=3,
        random_state=[0, 1], progress=False, **kwargs,
    )


@pytest.mark.parametrize("how", ["address", "client", "joblib"])
def test_simulate_on_cluster_equals_local(cluster, digits_features, how):
    local = _simulate(digits_features)
    if how == "address":
        remote = _simulate(digits_features, scheduler=cluster.scheduler_address)
    elif how == "joblib":
        import joblib

        with distributed.Client(cluster), joblib.parallel_backend("dask"):
            remote = _simulate(digits_features, n_jobs=-1)
    else:
        with distributed.Client(cluster) as client:
            remote = _simulate(digits_features, scheduler=client)
            assert client.status == "running"  # a client we pass in stays open
    assert [(r.strategy, r.random_state) for r in remote] == [
        (r.strategy, r.random_state) for r in local
    ]
    for a, b in zip(local, remote, strict=True):
        np.testing.assert_array_equal(a.initial_indices, b.initial_indices)
        np.testing.assert_array_equal(np.concatenate(a.queried_indices),
                                      np.concatenate(b.queried_indices))
        np.testing.assert_array_equal(a.accuracy, b.accuracy)
    assert not np.array_equal(np.concatenate(local[0].queried_indices),
                              np.concatenate(local[1].queried_indices))


def test_simulate_bad_scheduler_is_rejected_before_running(digits_features):
    with pytest.raises(TypeError, match="scheduler"):
        _simulate(digits_features, scheduler=8786)


def test_runner_on_cluster_equals_local_and_resumes(cluster, tmp_path, capsys, monkeypatch):
    from types import SimpleNamespace

    from benchmarks import _dask_runs
    from benchmarks import label_efficiency as le

    # --dask-workers N makes a LocalCluster(N); the module's cluster stands in for
    # it (spawning another one costs a torch import per worker), and must be closed.
    made = []
    monkeypatch.setattr(_dask_runs, "_local_cluster", lambda n: made.append(n) or SimpleNamespace(
        scheduler_address=cluster.scheduler_address, close=lambda: made.append("closed")))

    def run(results, *extra):
        return le.main(["--dataset", "digits", "--quick", "--strategies", "random",
                        "--seeds", "0", "--threads", "1", "--results-dir", str(results),
                        "--no-progress", *extra])

    assert run(tmp_path / "local") == 0
    assert run(tmp_path / "remote", "--dask-workers", "2") == 0
    assert made == [2, "closed"]
    for seed in (0,):
        name = f"quick/digits__random__seed{seed}.json"
        a = json.loads((tmp_path / "local" / name).read_text())
        b = json.loads((tmp_path / "remote" / name).read_text())
        assert a["config_key"] == b["config_key"]
        assert a["accuracy"] == b["accuracy"]
        assert a["run"]["queried_indices"] == b["run"]["queried_indices"]
    # Resumable: a second cluster run finds the JSON and sends nothing.
    capsys.readouterr()
    assert run(tmp_path / "remote", "--scheduler", cluster.scheduler_address) == 0
    out = capsys.readouterr().out
    assert out.count("done already") == 1 and "on a Dask cluster" not in out


def test_runner_local_cluster_has_one_thread_worker_processes():
    from benchmarks import _dask_runs

    cluster = _dask_runs._local_cluster(1)
    try:
        [worker] = cluster.scheduler_info["workers"].values()
        assert worker["nthreads"] == 1 and len(cluster.workers) == 1
    finally:
        cluster.close()


def test_runner_rejects_both_cluster_options():
    from benchmarks import label_efficiency as le

    with pytest.raises(SystemExit):
        le.main(["--dataset", "digits", "--quick", "--scheduler", "tcp://x:1",
                 "--dask-workers", "2"])


def test_import_skal_does_not_import_dask():
    import subprocess

    code = ("import sys, skal, skal.datasets, skal.simulation; "
            "print(sorted({m.split('.')[0] for m in sys.modules}"
            " & {'dask', 'distributed', 'zarr'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_readers_without_dask_name_the_extra(tmp_path, monkeypatch):
    np.save(tmp_path / "pool.npy", np.zeros((3, 2)))
    monkeypatch.setitem(sys.modules, "dask.array", None)  # import dask.array fails
    with pytest.raises(ImportError, match=r"pip install skal\[dask\]"):
        open_npy(tmp_path / "pool.npy")
    with pytest.raises(ImportError, match=r"pip install skal\[dask\]"):
        open_image_folder(tmp_path)
