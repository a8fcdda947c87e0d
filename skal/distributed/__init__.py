"""Dask pools: query strategies on a row-chunked ``dask.array`` pool, on a cluster or locally.

A pool that does not fit in one process can be a ``dask.array.Array`` chunked
along rows (the first axis). Every strategy's ``query`` and
:meth:`skal.ActiveLearner.query` accept one and dispatch here; ``import skal``
never imports dask, this package is only loaded when a Dask pool shows up.

With a ``distributed.Client`` active (``distributed.default_client()``), the
chunks are scored on the workers: the fitted model (and the strategy, with what
its ``_prepare`` built) is broadcast once per query, each task scores one chunk,
and only that chunk's top-k (global row numbers and scores) comes back; the
client merges them with :func:`merge_top_k`. Greedy k-center (:class:`skal.CoreSet`)
keeps each chunk's features and min-distance vector on the workers and gathers
one candidate per chunk per pick. Without a client the same code runs chunk by
chunk in this process. The client never holds a chunk of the pool in the
distributed case, and about one chunk in the local one.

See the "Scaling out" page of the documentation for which strategies return
indices identical to a NumPy pool, and which need the whole pool at once.
"""

from ._pool import active_client, check_dask_pool, is_dask_array, merge_top_k
from ._query import query, utilities

__all__ = [
    "active_client",
    "check_dask_pool",
    "is_dask_array",
    "merge_top_k",
    "query",
    "utilities",
]
