"""Strategy queries on a Dask pool: per-chunk top-k for score-based strategies, dispatch, errors."""

import copy

import numpy as np
from sklearn.utils import check_random_state

from ..base import QueryStrategy, ScoreBasedStrategy, candidate_subset, check_n_instances, top_k
from ..nets import DEFAULT_INFERENCE_BATCH_SIZE
from ._pool import (
    ChunkRunner,
    active_client,
    check_block,
    check_dask_pool,
    merge_top_k,
    without_training_data,
)

__all__ = ["query", "utilities"]

# Strategies whose selection looks at the whole pool at once, and what to do instead.
_PRESELECT = (
    "Pre-select candidates on the Dask pool with a score-based strategy, then run {name} "
    "on them in memory: cand = np.sort(skal.UncertaintySampling().query(est, X_pool, m)); "
    "idx = cand[{name}(...).query(est, X_pool[cand].compute(), n)]."
)
_WHOLE_POOL = {
    "BALNet": "BALNet fits its outlier and variance scores on the whole pool",
    "WassersteinPrototypes": "WassersteinPrototypes matches the whole pool's distribution",
    "WassersteinDiversity": "WassersteinDiversity matches the whole pool's distribution",
    "WassersteinCoreSet": "WassersteinCoreSet solves one MIP over the whole pool",
    "KMedoidsCoreSet": "KMedoidsCoreSet solves one MIP over the whole pool",
    "CEAL": "CEAL pseudo-labels every confident pool sample, which makes the whole pool "
            "training data",
}


def _check_labeled(X_labeled, y_labeled):
    # As QueryStrategy.query does for NumPy pools.
    if X_labeled is None:
        return None, None
    X_labeled = np.asarray(X_labeled)
    if X_labeled.shape[0] == 0:
        return None, None
    if y_labeled is not None and len(y_labeled) != X_labeled.shape[0]:
        raise ValueError(
            f"X_labeled has {X_labeled.shape[0]} rows but y_labeled has {len(y_labeled)}."
        )
    return X_labeled, y_labeled


def query(strategy, estimator, X_pool, n_instances=1, *, X_labeled=None, y_labeled=None):
    """``strategy.query`` on a Dask pool; what :meth:`QueryStrategy.query` calls for one.

    Parameters
    ----------
    strategy : QueryStrategy
    estimator : estimator
        As in :meth:`QueryStrategy.query`.
    X_pool : dask.array.Array of shape (n_samples, ...)
        Chunked along rows.
    n_instances : int, default=1
    X_labeled, y_labeled : array-like, default=None
        The labeled set (in memory).

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Global row numbers of ``X_pool``, best first.

    Raises
    ------
    ValueError
        On a badly chunked pool, NaN values in a chunk, or a strategy that
        needs the whole pool in one process.

    Examples
    --------
    >>> import dask.array as da
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skal import UncertaintySampling
    >>> clf = LogisticRegression().fit([[-3.0], [-2.0], [2.0], [3.0]], [0, 0, 1, 1])
    >>> X_pool = da.from_array(np.array([[-2.5], [0.2], [2.5], [0.1]]), chunks=2)
    >>> UncertaintySampling().query(clf, X_pool, 2)
    array([3, 1])
    """
    offsets = check_dask_pool(X_pool)
    n_pool = int(offsets[-1])
    n_instances = check_n_instances(n_instances, n_pool)
    X_labeled, y_labeled = _check_labeled(X_labeled, y_labeled)
    strategy.last_utilities_ = None
    kwargs = dict(X_labeled=X_labeled, y_labeled=y_labeled)
    from ..strategies import DFAL, EGL, CoreSet, RandomSampling
    from ..strategies.stochastic import PowerBALD, StochasticBatch

    name = type(strategy).__name__
    if isinstance(strategy, RandomSampling):
        # It only reads the pool's length: a zero-width stand-in draws the same rows.
        indices = strategy._query(estimator, np.empty((n_pool, 0)), n_instances, **kwargs)
    elif isinstance(strategy, CoreSet):
        from ._kcenter import query_k_center

        indices = query_k_center(strategy, estimator, X_pool, offsets, n_instances, **kwargs)
    elif isinstance(strategy, (StochasticBatch, PowerBALD)):
        # They sample from every row's utility: BALD or the base strategy scores the chunks
        # (one float per row comes back), then they draw on the client as in memory.
        indices = strategy._query(estimator, X_pool, n_instances, **kwargs)
    elif isinstance(strategy, (DFAL, EGL)):
        _check_margin_params(strategy)
        indices = _query_scores(strategy, estimator, X_pool, n_instances, **kwargs)
    elif isinstance(strategy, ScoreBasedStrategy) and (
        type(strategy)._query is ScoreBasedStrategy._query
    ):
        indices = _query_scores(strategy, estimator, X_pool, n_instances, **kwargs)
    elif name in _WHOLE_POOL:
        raise ValueError(
            f"{name} cannot query a Dask pool: {_WHOLE_POOL[name]}. "
            + _PRESELECT.format(name=name)
        )
    else:
        raise ValueError(
            f"{name} has no Dask-pool support (its _query is not a per-row score). "
            + _PRESELECT.format(name=name)
        )
    return QueryStrategy._check_indices(strategy, indices, n_pool, n_instances)


def utilities(strategy, estimator, X_pool, *, X_labeled=None, y_labeled=None):
    """``strategy.utilities`` on a Dask pool: every row's utility, scored chunk by chunk.

    The client receives one float per row (not the pool).

    Examples
    --------
    >>> import dask.array as da
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skal import UncertaintySampling
    >>> clf = LogisticRegression().fit([[-3.0], [-2.0], [2.0], [3.0]], [0, 0, 1, 1])
    >>> X_pool = da.from_array(np.array([[-2.5], [0.2], [2.5]]), chunks=2)
    >>> UncertaintySampling().utilities(clf, X_pool).round(2)
    array([0.31, 0.69, 0.31])
    """
    check_dask_pool(X_pool)
    X_labeled, y_labeled = _check_labeled(X_labeled, y_labeled)
    runner, X, offsets, seeds = _start(strategy, estimator, X_pool, None, X_labeled, y_labeled)
    try:
        parts = runner.gather(_submit_scores(runner, X, offsets, seeds, None))
    finally:
        runner.close()
    return np.concatenate(parts) if parts else np.empty(0)


def _query_scores(strategy, estimator, X_pool, n_instances, *, X_labeled, y_labeled):
    n_pool = X_pool.shape[0]
    runner, X, offsets, seeds = _start(
        strategy, estimator, X_pool, n_instances, X_labeled, y_labeled
    )
    candidates = strategy._dask_candidates
    del strategy._dask_candidates
    try:
        parts = runner.gather(_submit_scores(runner, X, offsets, seeds, n_instances))
    finally:
        runner.close()
    rows, scores = merge_top_k([p[0] for p in parts], [p[1] for p in parts], n_instances)
    indices = rows if candidates is None else candidates[rows]
    from ..strategies import DFAL, EGL

    if isinstance(strategy, DFAL):
        # DFAL also keeps the queried rows and their adversarial copies: rerun its
        # own query on the n best rows (in best-first order, so its ties agree).
        # n rows are their own whole pool, so the rerun pre-selects nothing.
        order = np.argsort(indices, kind="stable")
        X_top = np.empty((n_instances,) + X_pool.shape[1:], dtype=X_pool.dtype)
        X_top[order] = np.asarray(X_pool[indices[order]].compute())
        local = strategy._query(estimator, X_top, n_instances)
        indices, scores = indices[local], scores[local]
    if isinstance(strategy, (DFAL, EGL)):
        strategy.candidates_ = candidates
    # The client keeps only the queried rows' utilities (others were never gathered).
    full = np.full(n_pool, -np.inf)
    full[indices] = scores
    strategy.last_utilities_ = full
    return indices


def _check_margin_params(strategy):
    """DFAL's / EGL's parameter checks, on the client before any chunk is scored."""
    from ..adversarial import _check_norm
    from ..base import check_int
    from ..strategies import DFAL
    from ..strategies.dfal import _check_preselect

    _check_preselect(strategy)
    check_int(strategy.batch_size, "batch_size", allow_none=True)
    if isinstance(strategy, DFAL):
        _check_norm(strategy.norm)


def _candidates(strategy, estimator, X_pool, n_instances):
    """The rows a query scores (sorted global rows), or None for the whole pool.

    As on a NumPy pool: a random ``n_candidates`` subset, or DFAL's / EGL's
    pre-selection. Their margin pre-selection is a distributed margin query of
    its own (per-chunk top-k, merged), so the same rows are selected.
    """
    from ..strategies import DFAL, EGL, UncertaintySampling
    from ..strategies.dfal import _preselect_size

    n_pool = X_pool.shape[0]
    random_state = getattr(strategy, "random_state", None)
    if not isinstance(strategy, (DFAL, EGL)):
        return candidate_subset(n_pool, getattr(strategy, "n_candidates", None), n_instances,
                                random_state)
    if strategy.preselect is None:
        return None
    size = _preselect_size(strategy, n_instances)
    if strategy.preselect == "random":
        return candidate_subset(n_pool, size, n_instances, random_state)
    size = max(int(size), int(n_instances))
    if size >= n_pool:
        return None
    # skal.strategies.dfal._preselected's margins: predict_proba at its default batch size.
    margin = UncertaintySampling(measure="margin")
    return np.sort(_query_scores(margin, estimator, X_pool, size, X_labeled=None,
                                 y_labeled=None))


def _start(strategy, estimator, X_pool, n_instances, X_labeled, y_labeled):
    """Prepare the strategy, pick the rows to score, and broadcast the payload."""
    # _prepare gets the first row only: it builds model-side state (DQBC's
    # committee) and must not read the pool's values.
    probe = np.asarray(X_pool[:1].compute())
    strategy._prepare(estimator, probe, X_labeled=X_labeled, y_labeled=y_labeled)
    X = X_pool
    candidates = None
    if n_instances is not None:
        candidates = _candidates(strategy, estimator, X_pool, n_instances)
        if candidates is not None:
            X = X_pool[candidates]
    strategy._dask_candidates = candidates
    X, seeds = _align_random_blocks(strategy, X)
    payload = (strategy, without_training_data(estimator))
    return ChunkRunner(payload, active_client()), X, check_dask_pool(X), seeds


def _align_random_blocks(strategy, X):
    """Chunks and seeds that reproduce a strategy's per-block random draws.

    BALD scores its rows in blocks of ``16 * batch_size``, drawing one torch seed
    per block from its ``random_state`` (skal.strategies.bayesian). Rechunking the
    pool to whole blocks and handing each chunk its blocks' seeds gives every row
    the dropout masks it gets on a NumPy pool.
    """
    from ..strategies import BALD

    if not isinstance(strategy, BALD):
        return X, None
    batch = strategy.batch_size or DEFAULT_INFERENCE_BATCH_SIZE
    block = max(batch, 16 * batch)
    n = X.shape[0]
    starts = np.cumsum((0,) + X.chunks[0])[:-1]
    if np.any(starts % block):
        size = block * max(1, int(round(max(X.chunks[0]) / block)))
        X = X.rechunk({0: size})
    rng = check_random_state(strategy.random_state)
    seeds = [int(rng.randint(np.iinfo(np.int32).max)) for _ in range(-(-n // block))]
    offsets = np.cumsum((0,) + X.chunks[0])
    return X, [
        seeds[start // block: -(-stop // block)]
        for start, stop in zip(offsets[:-1], offsets[1:], strict=True)
    ]


def _submit_scores(runner, X, offsets, seeds, k):
    trailing = X.shape[1:]
    args = [
        (int(offsets[i]), int(offsets[i + 1] - offsets[i]), trailing, k,
         None if seeds is None else seeds[i])
        for i in range(len(offsets) - 1)
    ]
    return runner.submit_chunks(_score_chunk, X, args)


class _SeedReplay(np.random.RandomState):
    """A RandomState whose ``randint`` replays seeds drawn on the client."""

    def __init__(self, seeds):
        super().__init__(0)
        self._seeds = list(seeds)

    def randint(self, *args, **kwargs):
        return self._seeds.pop(0)


def _score_chunk(payload, block, offset, n_rows, trailing, k, seeds):
    """Runs on a worker: one chunk's utilities, or its top-k as global rows."""
    if n_rows == 0:  # a chunk without candidates
        return np.empty(0) if k is None else (np.empty(0, dtype=np.int64), np.empty(0))
    strategy, estimator = payload
    block = check_block(block, offset, n_rows, trailing)
    strategy = copy.copy(strategy)
    if seeds is not None:
        strategy.random_state = _SeedReplay(seeds)
    u = strategy._checked_utilities(estimator, block)
    if k is None:
        return u
    local = top_k(u, k)
    return offset + local, u[local]
