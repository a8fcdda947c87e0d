"""The selection problem instance: budget, labeled points, candidates and cost access."""

import numpy as np

from ._bounds import _BoundsMixin
from ._common import _BLOCK_ENTRIES, _CACHE_ENTRIES
from ._heuristics import _MovesMixin
from ._transport import _TransportMixin


class _Problem(_TransportMixin, _BoundsMixin, _MovesMixin):
    """One selection instance: cost oracle, budget, labeled points, candidates."""

    def __init__(self, cost, B, labeled, candidates):
        self.cost = cost
        self.N = cost.n
        self.B = int(B)
        self.labeled = np.asarray(labeled, dtype=np.int64)
        self.cand = np.asarray(candidates, dtype=np.int64)
        self.M = self.cand.size
        self.pos = np.full(self.N, -1, dtype=np.int64)
        self.pos[self.cand] = np.arange(self.M)
        self.is_labeled = np.zeros(self.N, dtype=bool)
        self.is_labeled[self.labeled] = True
        self._Dc = None
        if self.N * self.M <= _CACHE_ENTRIES:
            self._Dc = cost.block(None, self.cand)
        self.n_emd = 0
        self.emd_time = 0.0

    # -- cost access ------------------------------------------------------
    def cols(self, S):
        S = np.asarray(S, dtype=np.int64)
        if self._Dc is not None:
            p = self.pos[S]
            if np.all(p >= 0):
                return self._Dc[:, p]
        return self.cost.block(None, S)

    def cand_chunks(self):
        """Yield (slice of candidate positions, D[:, cand[slice]])."""
        if self._Dc is not None:
            yield slice(0, self.M), self._Dc
            return
        step = max(1, _BLOCK_ENTRIES // self.N)
        for start in range(0, self.M, step):
            sl = slice(start, min(self.M, start + step))
            yield sl, self.cost.block(None, self.cand[sl])

    def row_blocks(self, S):
        """Yield (row slice, D[rows][:, S]) blocks of at most ``_BLOCK_ENTRIES`` entries."""
        S = np.asarray(S, dtype=np.int64)
        if self._Dc is not None and np.all(self.pos[S] >= 0):
            p = self.pos[S]
            step = max(1, _BLOCK_ENTRIES // max(1, S.size))
            for start in range(0, self.N, step):
                rsl = slice(start, min(self.N, start + step))
                yield rsl, self._Dc[rsl, :][:, p]
            return
        for rsl in self.cost.row_chunks(S.size):
            yield rsl, self.cost.block(rsl, S)

