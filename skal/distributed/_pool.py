"""Dask pool plumbing: validation, the active client, running one task per chunk, top-k merge."""

import copy
import sys
import threading
import uuid

import dask
import numpy as np

from ..base import check_pool, top_k

__all__ = ["active_client", "check_dask_pool", "is_dask_array", "merge_top_k", "ChunkRunner"]


def is_dask_array(X):
    """Whether ``X`` is a ``dask.array.Array`` (checked without importing dask).

    Examples
    --------
    >>> import dask.array as da
    >>> is_dask_array(da.zeros((4, 2), chunks=2)), is_dask_array(np.zeros((4, 2)))
    (True, False)
    """
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(X, module.Array)


def check_dask_pool(X_pool, *, name="X_pool"):
    """Validate a Dask pool's layout (not its values) and return its row offsets.

    Parameters
    ----------
    X_pool : dask.array.Array of shape (n_samples, ...)
        Chunked along the first axis only.
    name : str, default="X_pool"

    Returns
    -------
    offsets : ndarray of shape (n_chunks + 1,)
        Global row number of the first row of each chunk, then ``n_samples``.

    Raises
    ------
    ValueError
        If the pool has no rows, unknown chunk sizes, several chunks along a
        column axis, or an object dtype. NaN values are found later, chunk by
        chunk, where the chunks are scored.

    Examples
    --------
    >>> import dask.array as da
    >>> check_dask_pool(da.zeros((10, 3), chunks=(4, 3))).tolist()
    [0, 4, 8, 10]
    """
    if not is_dask_array(X_pool):
        raise TypeError(f"{name} must be a dask array, got {type(X_pool).__name__}.")
    if X_pool.ndim == 0:
        raise ValueError(f"{name} must be an array of samples, got a scalar.")
    rows = X_pool.chunks[0]
    if any(np.isnan(c) for c in rows):
        raise ValueError(
            f"{name} has unknown chunk sizes (NaN in .chunks); call "
            f"{name}.compute_chunk_sizes() first."
        )
    split = [axis for axis in range(1, X_pool.ndim) if len(X_pool.chunks[axis]) > 1]
    if split:
        raise ValueError(
            f"{name} is chunked along axis {split[0]} ({len(X_pool.chunks[split[0]])} chunks); "
            "a pool must be chunked along rows only, each chunk holding whole samples: "
            f"use {name}.rechunk({{{', '.join(f'{a}: -1' for a in range(1, X_pool.ndim))}}})."
        )
    if X_pool.dtype == object:
        raise ValueError(f"{name} must be numeric, got an object array.")
    if X_pool.shape[0] == 0:
        raise ValueError(f"{name} is empty: there is nothing to query from.")
    return np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)


def merge_top_k(indices, scores, k):
    """Global top-``k`` of per-chunk top-k lists, ties to the lower index.

    Ranks exactly as :func:`skal.base.top_k` on the concatenated scores would,
    provided each list holds its chunk's own ``top_k``.

    Parameters
    ----------
    indices : list of ndarray of int
        Global row numbers, one array per chunk.
    scores : list of ndarray of float
        Their scores.
    k : int

    Returns
    -------
    indices, scores : ndarray
        The ``k`` best, best first.

    Examples
    --------
    >>> idx, s = merge_top_k([np.array([3, 1]), np.array([5])],
    ...                      [np.array([0.9, 0.5]), np.array([0.9])], 2)
    >>> idx.tolist(), s.tolist()
    ([3, 5], [0.9, 0.9])
    """
    idx = np.concatenate([np.asarray(i, dtype=np.int64) for i in indices])
    s = np.concatenate([np.asarray(v, dtype=float) for v in scores])
    # top_k breaks ties by position: put the rows in index order first.
    order = np.argsort(idx, kind="stable")
    idx, s = idx[order], s[order]
    keep = top_k(s, k)
    return idx[keep], s[keep]


def active_client():
    """The default ``distributed.Client``, or None when there is none (or no distributed).

    Examples
    --------
    >>> active_client() is None
    True
    """
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


_private = threading.local()


def private_payload(payload, token):
    """The payload as this thread may use it.

    A worker deserialises a broadcast object once and its threads share it;
    scoring switches module modes and registers hooks, so each thread of a
    multi-threaded worker works on its own copy (made once per query).
    """
    try:
        from distributed import get_worker

        nthreads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        nthreads = 1
    if nthreads <= 1:
        return payload
    cached = getattr(_private, "entry", None)
    if cached is None or cached[0] != token:
        _private.entry = (token, copy.deepcopy(payload))
    return _private.entry[1]


def check_block(block, offset, n_rows, trailing):
    """Check one materialised chunk: declared shape, finite numeric values."""
    block = np.asarray(block)
    if block.shape != (n_rows,) + tuple(trailing):
        raise ValueError(
            f"the pool's chunk at row {offset} has shape {block.shape}, but the dask array "
            f"declares {(n_rows,) + tuple(trailing)}; its chunks disagree with its shape."
        )
    try:
        return check_pool(block)
    except ValueError as exc:
        raise ValueError(f"X_pool (chunk at row {offset}): {exc}") from None


def without_training_data(estimator):
    """A shallow copy of a learner without its training arrays, to ship to workers.

    Scoring only needs the fitted model; a learner also holds its labeled set and
    its last pool (possibly a dask array embedding NumPy chunks).
    """
    names = [
        a for a in ("_X_pool", "_pool_queried", "X_training", "y_training", "X_training_",
                    "y_training_", "X_extra_", "y_extra_")
        # X_training / y_training are read-only views of X_training_ / y_training_.
        if not isinstance(getattr(type(estimator), a, None), property)
        and getattr(estimator, a, None) is not None
    ]
    if not names:
        return estimator
    slim = copy.copy(estimator)
    for name in names:
        setattr(slim, name, None)
    return slim


class ChunkRunner:
    """Run a function on every chunk of a Dask pool, on a client's workers or here.

    ``func(payload, block, *args)`` gets the (privatised) payload and one
    chunk as a NumPy array; only its return value travels back.

    Parameters
    ----------
    payload : object
        Sent to every worker once (``Client.scatter(broadcast=True)``).
    client : distributed.Client or None
        None runs the chunks one after the other in this process, each chunk
        computed with the synchronous scheduler (so only it is in memory).
    """

    def __init__(self, payload, client=None):
        self.client = client
        self.token = uuid.uuid4().hex
        self.payload = payload
        self._remote = None
        if client is not None:
            self._remote = client.scatter(payload, broadcast=True, hash=False)

    def submit_chunks(self, func, X, args):
        """Start ``func`` on every chunk; return handles for :meth:`gather`.

        ``args`` holds one tuple of extra arguments per chunk.
        """
        blocks = X.to_delayed().ravel()
        if self.client is None:
            return [_Local(func, self.payload, self.token, b, a)
                    for b, a in zip(blocks, args, strict=True)]
        tasks = [
            dask.delayed(_call, pure=False)(func, self._remote, self.token, b, *a)
            for b, a in zip(blocks, args, strict=True)
        ]
        return self.client.compute(tasks)

    def submit(self, func, *args):
        """Run ``func(*args)`` where the arguments' data lives (a worker, or here)."""
        if self.client is None:
            return _Done(func(*[a.result() if isinstance(a, _Done) else a for a in args]))
        return self.client.submit(func, *args, pure=False)

    def gather(self, handles):
        if self.client is None:
            return [h.result() for h in handles]
        return self.client.gather(handles)

    def close(self):
        self._remote = None


def _call(func, payload, token, block, *args):
    return func(private_payload(payload, token), block, *args)


class _Done:
    """A finished local result, shaped like a future."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class _Local(_Done):
    """One chunk scored in this process when asked for (one chunk in memory at a time)."""

    def __init__(self, func, payload, token, block, args):
        self.func, self.payload, self.token, self.block, self.args = (
            func, payload, token, block, args
        )
        self.done = False

    def result(self):
        if not self.done:
            block = self.block.compute(scheduler="synchronous")
            self.value = self.func(self.payload, block, *self.args)
            self.done, self.block = True, None
        return self.value
