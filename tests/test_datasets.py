import gzip
import struct

import numpy as np
import pytest

from skal.datasets import (
    FASHION_MNIST_ENV,
    load_dataset,
    load_digits_images,
    load_fashion_mnist,
    read_idx,
)


def _write_idx(path, array, compress=True):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as fh:
        fh.write(header + array.tobytes())


def _fake_fashion(folder, n_train=12, n_test=6, compress=True):
    rng = np.random.RandomState(0)
    data = {}
    for subset, n, stem in (("train", n_train, "train"), ("test", n_test, "t10k")):
        images = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255  # the full range appears
        labels = np.arange(n) % 10
        suffix = ".gz" if compress else ""
        _write_idx(folder / f"{stem}-images-idx3-ubyte{suffix}", images, compress)
        _write_idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", labels, compress)
        data[subset] = (images, labels)
    return data


def test_digits_images_shape_dtype_range():
    X, y = load_digits_images()
    assert X.shape == (1797, 1, 8, 8)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    from sklearn.datasets import load_digits

    np.testing.assert_allclose(X.reshape(len(X), -1) * 16, load_digits().data)


def test_digits_bunch_and_subset():
    bunch = load_digits_images(return_X_y=False)
    assert bunch.data.shape == (1797, 1, 8, 8) and bunch.target.shape == (1797,)
    X1, y1 = load_digits_images(n_samples=50, random_state=3)
    X2, y2 = load_digits_images(n_samples=50, random_state=3)
    assert X1.shape == (50, 1, 8, 8)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(X1, X2)
    with pytest.raises(ValueError, match="n_samples"):
        load_digits_images(n_samples=0)


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_from_path(tmp_path, compress):
    data = _fake_fashion(tmp_path, compress=compress)
    for subset in ("train", "test"):
        X, y = load_fashion_mnist(tmp_path, subset=subset)
        images, labels = data[subset]
        assert X.shape == (len(labels), 1, 28, 28)
        assert X.dtype == np.float32 and y.dtype == np.int64
        assert X.min() == 0.0 and X.max() == 1.0
        np.testing.assert_allclose(X[:, 0] * 255, images, atol=1e-4)
        np.testing.assert_array_equal(y, labels)


def test_fashion_mnist_from_env_var(tmp_path, monkeypatch):
    _fake_fashion(tmp_path)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    X, _y = load_fashion_mnist(subset="test")
    assert X.shape == (6, 1, 28, 28)
    bunch = load_fashion_mnist(subset="train", return_X_y=False)
    assert bunch.data.shape == (12, 1, 28, 28) and len(bunch.target_names) == 10


def test_fashion_mnist_missing_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(tmp_path / "nowhere")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert FASHION_MNIST_ENV in message
    assert "nowhere" in message
    # The env var is honoured too, and named in the error.
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=FASHION_MNIST_ENV):
        load_fashion_mnist()


def test_fashion_mnist_bad_subset(tmp_path):
    with pytest.raises(ValueError, match="subset"):
        load_fashion_mnist(tmp_path, subset="validation")


def test_read_idx_rejects_corrupt_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(struct.pack(">BBBBI", 0, 0, 0x08, 1, 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(short)


def test_load_dataset_digits_split_is_stratified_and_seeded():
    X_tr, y_tr, X_te, y_te = load_dataset("digits", random_state=0)
    assert X_tr.shape == (1347, 1, 8, 8) and X_te.shape == (450, 1, 8, 8)
    assert len(y_tr) + len(y_te) == 1797
    # Stratified: every class keeps its share in the test set.
    frac = np.bincount(y_te, minlength=10) / np.bincount(np.r_[y_tr, y_te], minlength=10)
    assert np.all(np.abs(frac - 0.25) < 0.02)
    again = load_dataset("digits", random_state=0)
    np.testing.assert_array_equal(again[1], y_tr)
    other = load_dataset("digits", random_state=1)
    assert not np.array_equal(other[1], y_tr)


def test_load_dataset_subsets_and_errors(tmp_path):
    X_tr, y_tr, X_te, _ = load_dataset("digits", n_train=200, n_test=50, random_state=0)
    assert len(X_tr) == 200 and len(X_te) == 50
    assert np.bincount(y_tr).min() >= 19  # stratified subset
    _fake_fashion(tmp_path, n_train=20, n_test=10)
    X_tr, y_tr, X_te, _y_te = load_dataset("fashion-mnist", path=tmp_path, n_train=10)
    assert X_tr.shape == (10, 1, 28, 28) and X_te.shape == (10, 1, 28, 28)
    with pytest.raises(ValueError, match="Unknown data set"):
        load_dataset("cifar")
