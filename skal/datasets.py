"""Image data sets that need no download.

* :func:`load_digits_images` reshapes scikit-learn's embedded 8x8 digits into
  ``(n, 1, 8, 8)`` images, the default data of the ``skal`` command and of the tests.
* :func:`load_fashion_mnist` reads Fashion-MNIST from a local folder of IDX files
  (Debian's ``dataset-fashion-mnist`` package, torchvision's ``raw/`` folder, or the
  files from the Zalando repository).
* :func:`load_dataset` returns a train/test split of either, by name.
* :func:`open_image_folder`, :func:`open_npy` and :func:`open_zarr` open pools on
  disk as lazy Dask arrays (defined in :mod:`skal.datasets_lazy`; need ``skal[dask]``).
"""

import gzip
import os
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch, check_random_state

# Lazy pools from disk; that module imports dask only inside its functions.
from .datasets_lazy import open_image_folder, open_npy, open_zarr

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEFAULT_PATH",
    "FASHION_MNIST_ENV",
    "load_dataset",
    "load_digits_images",
    "load_fashion_mnist",
    "open_image_folder",
    "open_npy",
    "open_zarr",
    "read_idx",
]

FASHION_MNIST_ENV = "SKAL_FASHION_MNIST"
FASHION_MNIST_DEFAULT_PATH = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type codes (third byte of the magic number) -> numpy dtype (big-endian).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

DATASETS = ("digits", "fashion-mnist")


def load_digits_images(*, return_X_y=True, n_samples=None, random_state=None):
    """scikit-learn's 8x8 digits as single-channel images.

    The data ships with scikit-learn, so nothing is downloaded.

    Parameters
    ----------
    return_X_y : bool, default=True
        Return ``(X, y)``. If False, return a :class:`~sklearn.utils.Bunch`
        with ``data``, ``target``, ``target_names`` and ``DESCR``.
    n_samples : int or None, default=None
        Keep a random subset of this many samples (``None`` keeps all 1797).
    random_state : int, RandomState instance or None, default=None
        Draws the subset when ``n_samples`` is set.

    Returns
    -------
    X : ndarray of shape (n, 1, 8, 8), float32
        Pixel intensities scaled to [0, 1].
    y : ndarray of shape (n,), int64
        Digit labels 0-9.

    Examples
    --------
    >>> X, y = load_digits_images()
    >>> X.shape, X.dtype, y.dtype
    ((1797, 1, 8, 8), dtype('float32'), dtype('int64'))
    """
    digits = load_digits()
    # The raw pixels are integers 0..16.
    X = digits.images[:, None].astype(np.float32) / np.float32(16.0)
    y = digits.target.astype(np.int64)
    X, y = _subsample(X, y, n_samples, random_state)
    if return_X_y:
        return X, y
    return Bunch(
        data=X,
        target=y,
        target_names=np.arange(10),
        DESCR=digits.DESCR,
    )


def load_fashion_mnist(
    path=None, *, subset="train", return_X_y=True, n_samples=None, random_state=None
):
    """Fashion-MNIST from a local folder of IDX files.

    The folder is, in order: ``path``; the ``SKAL_FASHION_MNIST`` environment
    variable; Debian's ``/usr/share/datasets/fashion-mnist`` (``apt-get install
    dataset-fashion-mnist``). It must contain ``train-images-idx3-ubyte.gz``,
    ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
    ``t10k-labels-idx1-ubyte.gz`` (uncompressed files without ``.gz`` work too,
    as does torchvision's ``FashionMNIST/raw`` folder).

    Parameters
    ----------
    path : str, path-like or None, default=None
        Folder holding the IDX files.
    subset : {"train", "test"}, default="train"
        The 60 000 training images or the 10 000 test images.
    return_X_y : bool, default=True
        Return ``(X, y)``. If False, return a :class:`~sklearn.utils.Bunch`
        with ``data``, ``target``, ``target_names`` and ``path``.
    n_samples : int or None, default=None
        Keep a random subset of this many samples.
    random_state : int, RandomState instance or None, default=None
        Draws the subset when ``n_samples`` is set.

    Returns
    -------
    X : ndarray of shape (n, 1, 28, 28), float32
        Pixel intensities scaled to [0, 1].
    y : ndarray of shape (n,), int64
        Class labels 0-9 (names in ``FASHION_MNIST_CLASSES``).

    Raises
    ------
    FileNotFoundError
        If the files are not found; the message says how to install them.

    Examples
    --------
    >>> X, y = load_fashion_mnist(subset="test")  # doctest: +SKIP
    >>> X.shape  # doctest: +SKIP
    (10000, 1, 28, 28)
    """
    if subset not in _FASHION_FILES:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}.")
    folder, source = _fashion_mnist_folder(path)
    image_name, label_name = _FASHION_FILES[subset]
    images = read_idx(_find_idx(folder, image_name, source))
    labels = read_idx(_find_idx(folder, label_name, source))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Unexpected Fashion-MNIST files in {folder}: images {images.shape}, "
            f"labels {labels.shape}."
        )
    X = images[:, None].astype(np.float32) / np.float32(255.0)
    y = labels.astype(np.int64)
    X, y = _subsample(X, y, n_samples, random_state)
    if return_X_y:
        return X, y
    return Bunch(
        data=X, target=y, target_names=np.array(FASHION_MNIST_CLASSES), path=str(folder)
    )


def load_dataset(
    name="digits",
    *,
    path=None,
    test_size=0.25,
    n_train=None,
    n_test=None,
    random_state=0,
):
    """A named data set split into train (the pool) and test sets.

    Parameters
    ----------
    name : {"digits", "fashion-mnist"}, default="digits"
        ``"digits"`` is split with a stratified, seeded split; ``"fashion-mnist"``
        uses its official train/test split.
    path : str, path-like or None, default=None
        Fashion-MNIST folder (see :func:`load_fashion_mnist`).
    test_size : float, default=0.25
        Fraction of the digits kept for testing (ignored for Fashion-MNIST).
    n_train, n_test : int or None, default=None
        Keep stratified random subsets of this many train / test samples
        (``None`` keeps all).
    random_state : int, RandomState instance or None, default=0
        Seeds the split and the subsets.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarrays

    Examples
    --------
    >>> X_train, y_train, X_test, y_test = load_dataset("digits", random_state=0)
    >>> X_train.shape, X_test.shape
    ((1347, 1, 8, 8), (450, 1, 8, 8))
    """
    key = str(name).lower().replace("_", "-")
    if key in ("fashion", "fmnist"):
        key = "fashion-mnist"
    rng = check_random_state(random_state)
    if key == "digits":
        X, y = load_digits_images()
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=test_size, stratify=y, random_state=rng
        )
    elif key == "fashion-mnist":
        X_train, y_train = load_fashion_mnist(path, subset="train")
        X_test, y_test = load_fashion_mnist(path, subset="test")
    else:
        raise ValueError(f"Unknown data set {name!r}; choose one of {DATASETS}.")
    X_train, y_train = _stratified_subset(X_train, y_train, n_train, rng, "n_train")
    X_test, y_test = _stratified_subset(X_test, y_test, n_test, rng, "n_test")
    return X_train, y_train, X_test, y_test


def read_idx(file):
    """Read one IDX file (the MNIST format), gzip-compressed or not.

    Parameters
    ----------
    file : str or path-like
        File name; a name ending in ``.gz`` is decompressed.

    Returns
    -------
    ndarray
        Array with the file's shape and native-endian dtype.
    """
    file = Path(file)
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{file} is not an IDX file (bad magic number).")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{file} is truncated or corrupt: header says {shape}, "
            f"{len(raw) - header} data bytes instead of {expected}."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _fashion_mnist_folder(path):
    if path is not None:
        return Path(path), "the path argument"
    env = os.environ.get(FASHION_MNIST_ENV)
    if env:
        return Path(env), f"${FASHION_MNIST_ENV}"
    return Path(FASHION_MNIST_DEFAULT_PATH), "the default location"


def _find_idx(folder, stem, source):
    candidates = [
        folder / f"{stem}.gz",
        folder / stem,
        # torchvision keeps the files under FashionMNIST/raw/.
        folder / "FashionMNIST" / "raw" / f"{stem}.gz",
        folder / "FashionMNIST" / "raw" / stem,
        folder / "raw" / f"{stem}.gz",
        folder / "raw" / stem,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}.gz not found in {folder} (from {source}). "
        "Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, "
        f"files go to {FASHION_MNIST_DEFAULT_PATH}), or download the four IDX .gz "
        "files from https://github.com/zalandoresearch/fashion-mnist and pass their "
        f"folder as `path` or in the {FASHION_MNIST_ENV} environment variable."
    )


def _check_count(n, name):
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive int or None, got {n!r}.")
    return int(n)


def _subsample(X, y, n_samples, random_state):
    n_samples = _check_count(n_samples, "n_samples")
    if n_samples is None or n_samples >= len(y):
        return X, y
    idx = np.sort(check_random_state(random_state).choice(len(y), n_samples, replace=False))
    return X[idx], y[idx]


def _stratified_subset(X, y, n, rng, name):
    n = _check_count(n, name)
    if n is None or n >= len(y):
        return X, y
    n_classes = len(np.unique(y))
    if n < n_classes:
        # Stratification needs one sample per class; fall back to a plain draw.
        idx = np.sort(rng.choice(len(y), n, replace=False))
        return X[idx], y[idx]
    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=rng)
    idx = np.sort(idx)
    return X[idx], y[idx]
