"""Pools from disk as lazy Dask arrays: an image folder, a ``.npy`` memmap, a Zarr array.

Each reader returns a :class:`dask.array.Array` chunked along rows only. Nothing
but metadata is read when it is opened: every chunk is read when (and where) it
is computed, so with a ``distributed.Client`` active the files are read on the
workers and a pool of a million images never sits in one process. The graph
holds file names and shapes, never pixel data, so it is small to send.

The functions are re-exported by :mod:`skal.datasets`. They need the ``dask``
extra (``pip install skal[dask]``); ``import skal`` does not import dask.
"""

import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

__all__ = ["IMAGE_EXTENSIONS", "open_image_folder", "open_npy", "open_zarr"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_MODES = {"L": 1, "RGB": 3}
# Default chunk of the array readers: about this many bytes per chunk.
_CHUNK_BYTES = 64 * 2**20


def _import_dask_array():
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Lazy pools from disk need dask: install the extra with `pip install skal[dask]` "
            "(dask[array], distributed and zarr)."
        ) from exc
    return da


def _check_chunks(chunks, default):
    if chunks is None:
        return max(1, int(default))
    if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
        raise ValueError(
            f"chunks must be a positive int (rows per chunk) or None, got {chunks!r}."
        )
    return int(chunks)


def _default_rows(shape, dtype):
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    return _CHUNK_BYTES // max(row_bytes, 1)


class _NpyRows:
    """Array-like over the rows of a ``.npy`` file; ``dask.array.from_array`` slices it.

    Only the path, shape and dtype travel with it, so it is cheap to pickle to a
    worker; the file is opened as a memmap per block, because a memmap itself
    pickles as its full data.
    """

    def __init__(self, path, shape, dtype, mtime):
        self.path, self.shape, self.dtype, self.mtime = path, shape, np.dtype(dtype), mtime
        self.ndim = len(shape)

    def __getitem__(self, key):
        return np.array(np.load(self.path, mmap_mode="r")[key])

    def __dask_tokenize__(self):
        return ("skal-npy", self.path, self.mtime, self.shape, str(self.dtype))


def _read_images(names, size, mode):
    """One chunk of an image folder: ``(len(names), channels, height, width)`` float32."""
    out = np.empty((len(names), _MODES[mode], size[1], size[0]), dtype=np.float32)
    for i, name in enumerate(names):
        out[i] = _read_image(name, size, mode)
    return out


def _read_image(path, size, mode):
    """One image as a ``(channels, height, width)`` float32 array in [0, 1]."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            if img.size != tuple(size):
                img = img.resize(tuple(size), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32)
    except Exception as exc:  # PIL raises several types for broken files
        raise OSError(f"Cannot read image {path}: {exc}") from exc
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return pixels.transpose(2, 0, 1) / np.float32(255.0)


def _readable(files, size, mode):
    """Mask of the files that decode (run per chunk, on the workers when a client is active)."""
    ok = np.ones(len(files), dtype=bool)
    for i, name in enumerate(files):
        try:
            _read_image(name, size, mode)
        except OSError:
            ok[i] = False
    return ok


def _list_images(root, extensions):
    def images_under(folder, recursive):
        found = folder.rglob("*") if recursive else folder.iterdir()
        return sorted(p for p in found if p.is_file() and p.suffix.lower() in extensions)

    top = images_under(root, recursive=False)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and images_under(d, True))
    if not classes:
        return top, None, None
    if top:
        raise ValueError(
            f"{root} holds both images ({top[0].name}, ...) and class sub-folders "
            f"({classes[0]}, ...); put every image in a class folder, or none."
        )
    files, labels = [], []
    for label, name in enumerate(classes):
        found = images_under(root / name, recursive=True)
        files += found
        labels += [label] * len(found)
    return files, np.asarray(labels, dtype=np.int64), np.asarray(classes)


def open_image_folder(path, *, size=None, mode="L", chunks=256, on_error="raise",
                      extensions=IMAGE_EXTENSIONS):
    """A folder of PNG / JPEG images as a lazy ``(n, channels, height, width)`` pool.

    Images directly in ``path`` are unlabeled; one sub-folder per class (as
    torchvision's ``ImageFolder``: class names sorted, images searched
    recursively inside each) gives labels. Files are sorted, so row ``i`` is
    always ``filenames[i]``.

    Parameters
    ----------
    path : str or path-like
        The folder.
    size : (width, height) or None, default=None
        Every image is resized to this (bilinear). ``None`` takes the size of the
        first image (read now) and resizes the others to it.
    mode : {"L", "RGB"}, default="L"
        Grayscale (1 channel) or RGB (3 channels).
    chunks : int, default=256
        Images per chunk (the rows one task reads).
    on_error : {"raise", "skip"}, default="raise"
        What an unreadable or corrupt image does. ``"raise"``: computing its chunk
        raises an ``OSError`` naming the file (nothing is checked up front).
        ``"skip"``: every image is decoded once now, chunk by chunk (on the
        workers when a ``distributed.Client`` is active, which costs one pass
        over the folder), and the ones that fail are left out of the pool and
        listed in ``skipped``.
    extensions : tuple of str, default=(".png", ".jpg", ".jpeg")
        File suffixes taken as images (case-insensitive).

    Returns
    -------
    Bunch
        ``data``: dask array of shape ``(n, channels, height, width)``, float32
        in [0, 1], chunked along rows; ``target``: int64 labels (``None`` without
        class folders); ``target_names``: class folder names (or ``None``);
        ``filenames``: the image paths relative to ``path``, row by row;
        ``skipped``: the unreadable files left out (``on_error="skip"``).

    Raises
    ------
    ImportError
        Without dask (``pip install skal[dask]``).
    ValueError
        If the folder has no images, or mixes images and class folders.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> folder = Path(tempfile.mkdtemp())
    >>> for c in ("cat", "dog"):
    ...     (folder / c).mkdir()
    ...     for i in range(3):
    ...         Image.new("L", (8, 8), 40 * i).save(folder / c / f"{i}.png")
    >>> pool = open_image_folder(folder, chunks=4)
    >>> pool.data.shape, pool.data.chunks[0], pool.target.tolist()
    ((6, 1, 8, 8), (4, 2), [0, 0, 0, 1, 1, 1])
    >>> str(pool.filenames[3])
    'dog/0.png'
    """
    da = _import_dask_array()
    import dask

    if mode not in _MODES:
        raise ValueError(f"mode must be 'L' (grayscale) or 'RGB', got {mode!r}.")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    chunks = _check_chunks(chunks, 256)
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder.")
    extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    files, target, target_names = _list_images(root, extensions)
    if not files:
        raise ValueError(f"No images ({', '.join(extensions)}) found in {root}.")
    files = np.asarray([str(f) for f in files])
    if size is None:
        from PIL import Image

        try:
            with Image.open(files[0]) as img:
                size = img.size
        except Exception as exc:
            raise OSError(f"Cannot read image {files[0]} (used for size=None): {exc}") from exc
    size = _check_size(size)

    skipped = []
    if on_error == "skip":
        parts = [dask.delayed(_readable)(files[i:i + chunks], size, mode)
                 for i in range(0, len(files), chunks)]
        ok = np.concatenate(dask.compute(*parts))
        skipped = [os.path.relpath(f, root) for f in files[~ok]]
        files = files[ok]
        target = None if target is None else target[ok]
        if not len(files):
            raise ValueError(f"None of the images in {root} could be read.")
    # One task per chunk that carries only its own file names, so no task (and
    # no worker) ever holds the list of a million files.
    shape = (_MODES[mode], size[1], size[0])
    blocks = [
        da.from_delayed(
            dask.delayed(_read_images, pure=True)(files[i:i + chunks].tolist(), size, mode),
            shape=(len(files[i:i + chunks]),) + shape, dtype=np.float32,
            meta=np.empty((0, 0, 0, 0), dtype=np.float32),
        )
        for i in range(0, len(files), chunks)
    ]
    data = da.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
    return Bunch(
        data=data,
        target=target,
        target_names=target_names,
        filenames=np.asarray([os.path.relpath(f, root) for f in files]),
        skipped=skipped,
    )


def _check_size(size):
    try:
        width, height = (int(v) for v in size)
        valid = width >= 1 and height >= 1 and len(size) == 2
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"size must be (width, height) of positive ints, got {size!r}.")
    return (width, height)


def open_npy(path, *, chunks=None):
    """A ``.npy`` file as a lazy pool, read as a memmap block by block.

    Only the header is read now. Each chunk opens the file with
    ``np.load(path, mmap_mode="r")`` where it is computed and copies its rows, so
    the file must be reachable under the same path on every worker (a shared
    file system).

    Parameters
    ----------
    path : str or path-like
        A ``.npy`` file (not ``.npz``, not a pickled object array).
    chunks : int or None, default=None
        Rows per chunk; ``None`` gives chunks of about 64 MiB.

    Returns
    -------
    dask.array.Array
        Same shape and dtype as the file, chunked along rows.

    Examples
    --------
    >>> import tempfile
    >>> file = Path(tempfile.mkdtemp()) / "pool.npy"
    >>> np.save(file, np.arange(20, dtype=np.float32).reshape(10, 2))
    >>> pool = open_npy(file, chunks=4)
    >>> pool.chunks[0], float(pool[5, 1].compute())
    ((4, 4, 2), 11.0)
    """
    da = _import_dask_array()
    path = os.path.abspath(os.fspath(path))
    try:
        mm = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot open {path} as a .npy memmap: {exc}") from exc
    if not isinstance(mm, np.memmap) or mm.ndim == 0:
        raise ValueError(f"{path} is not a .npy array of at least one dimension.")
    shape, dtype = mm.shape, mm.dtype
    del mm
    rows = _NpyRows(path, shape, dtype, os.stat(path).st_mtime_ns)
    chunks = _check_chunks(chunks, _default_rows(shape, dtype))
    return da.from_array(rows, chunks=(chunks,) + shape[1:], asarray=False, fancy=False,
                         meta=np.empty((0,) * len(shape), dtype=dtype))


def open_zarr(store, *, component=None, chunks=None):
    """A Zarr array as a lazy pool, re-chunked along rows.

    Parameters
    ----------
    store : str, path-like or zarr array
        A Zarr store (folder, URL, or anything :func:`dask.array.from_zarr` takes)
        or an opened ``zarr.Array``.
    component : str or None, default=None
        The array's path inside a group store.
    chunks : int or None, default=None
        Rows per chunk; ``None`` keeps the store's own row chunking (a whole
        number of its chunks per task is fastest). Other axes are never split.

    Returns
    -------
    dask.array.Array

    Examples
    --------
    >>> import tempfile, zarr
    >>> folder = Path(tempfile.mkdtemp()) / "pool.zarr"
    >>> z = zarr.open_array(str(folder), mode="w", shape=(10, 3), chunks=(5, 1), dtype="f4")
    >>> z[:] = np.arange(30).reshape(10, 3)
    >>> pool = open_zarr(folder)
    >>> pool.chunks, float(pool[9, 2].compute())
    (((5, 5), (3,)), 29.0)
    """
    da = _import_dask_array()
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    try:
        arr = da.from_zarr(store, component=component)
    except Exception as exc:
        raise ValueError(f"Cannot open {store!r} as a Zarr array: {exc}") from exc
    if arr.ndim == 0:
        raise ValueError(f"{store!r} holds a scalar, not a pool of rows.")
    rows = _check_chunks(chunks, arr.chunks[0][0])
    # Chunks given to from_zarr (not a rechunk) keep one task per block.
    return da.from_zarr(store, component=component, chunks=(rows,) + arr.shape[1:])
