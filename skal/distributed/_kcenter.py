"""Greedy k-center (CoreSet) on a Dask pool: per-chunk state on the workers, one argmax per pick."""

import numpy as np
from sklearn.utils import check_random_state

from ..strategies.coreset import _sq_norms, min_sq_distances
from ._pool import ChunkRunner, active_client, check_block, without_training_data

__all__ = ["query_k_center"]


def query_k_center(strategy, estimator, X_pool, offsets, n_instances, *, X_labeled=None,
                   y_labeled=None):
    """:class:`skal.CoreSet`'s farthest-first picks on a Dask pool.

    Each chunk's features, squared norms and distance to the nearest center stay
    where the chunk was scored (futures on the workers, or this process without a
    client). Every pick gathers one ``(row, distance, feature)`` per chunk, the
    client takes the farthest (ties to the lower row, as ``np.argmax`` on the whole
    pool), and sends its feature back for the chunks to update their distances.
    The arithmetic per row is :func:`skal.strategies.coreset.k_center_greedy`'s, so
    the picks are the NumPy path's.
    """
    n_pool = int(offsets[-1])
    centers = None
    if X_labeled is not None:
        # float64, as k_center_greedy computes its distances.
        centers = np.asarray(strategy._features(estimator, X_labeled), dtype=np.float64)
    first = None
    if centers is None or not len(centers):
        # As k_center_greedy: the first center is random when nothing is labeled.
        first = int(check_random_state(strategy.random_state).randint(n_pool))
    payload = (strategy, without_training_data(estimator))
    runner = ChunkRunner(payload, active_client())
    try:
        return _picks(runner, X_pool, offsets, n_instances, centers, first)
    finally:
        runner.close()


def _picks(runner, X_pool, offsets, n_instances, centers, first):
    starts, stops = offsets[:-1], offsets[1:]
    trailing = X_pool.shape[1:]
    states = runner.submit_chunks(
        _chunk_features, X_pool,
        [(int(a), int(b - a), trailing) for a, b in zip(starts, stops, strict=True)],
    )
    chosen = []
    if first is not None:
        j = int(np.searchsorted(stops, first, side="right"))
        z, _ = runner.gather([runner.submit(_row, states[j], first - int(starts[j]))])[0]
        centers, chosen = z[None], [first]
    states = [
        runner.submit(_start, s, centers, _local(first, a, b))
        for s, a, b in zip(states, starts, stops, strict=True)
    ]
    while len(chosen) < n_instances:
        best = runner.gather([runner.submit(_farthest, s) for s in states])
        j = 0
        for i in range(1, len(best)):  # strict ">": ties go to the earlier chunk
            if best[i][1] > best[j][1]:
                j = i
        new = int(starts[j]) + best[j][0]
        chosen.append(new)
        if len(chosen) == n_instances:
            break
        z, z_sq = best[j][2], best[j][3]
        states = [
            runner.submit(_update, s, z, z_sq, _local(new, a, b))
            for s, a, b in zip(states, starts, stops, strict=True)
        ]
    return np.asarray(chosen, dtype=np.int64)


def _local(row, start, stop):
    return int(row - start) if row is not None and start <= row < stop else -1


def _chunk_features(payload, block, offset, n_rows, trailing):
    if n_rows == 0:
        return {"Z": None}
    strategy, estimator = payload
    block = check_block(block, offset, n_rows, trailing)
    Z = np.asarray(strategy._features(estimator, block), dtype=np.float64)
    return {"Z": Z, "sq": _sq_norms(Z)}


def _row(state, i):
    return state["Z"][i], state["sq"][i]


def _start(state, centers, mark):
    if state["Z"] is None:
        return state
    dist = min_sq_distances(state["Z"], centers, state["sq"])
    if mark >= 0:
        dist[mark] = -1.0  # already a center
    return {**state, "dist": dist}


def _farthest(state):
    if state["Z"] is None:
        return 0, -np.inf, None, 0.0
    i = int(np.argmax(state["dist"]))
    return i, float(state["dist"][i]), state["Z"][i], float(state["sq"][i])


def _update(state, z, z_sq, mark):
    if state["Z"] is None:
        return state
    Z, sq = state["Z"], state["sq"]
    dist = np.minimum(state["dist"], np.maximum(sq - 2.0 * (Z @ z) + z_sq, 0.0))
    if mark >= 0:
        dist[mark] = -1.0
    return {**state, "dist": dist}
