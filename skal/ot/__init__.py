"""Optimal transport for active learning, on top of POT.

Flat functions with plain arrays in and out, like POT's ``ot.emd2``:

* :func:`wasserstein2` — W2 between weighted point sets (exact, Sinkhorn, IPOT);
* :func:`ipot` — the inexact proximal point solver (Xie et al. 2019);
* :func:`greedy_prototypes` — greedy Wasserstein prototypes (Ducoffe thesis, ch. 9);
* :class:`DeepWassersteinEmbedding` — images to vectors whose squared distances
  approximate W2^2 (Courty, Flamary & Ducoffe 2018; thesis ch. 8).

The MIP Wasserstein core-set lives in :mod:`skal.ot.mip`.
"""

from . import mip
from ._distance import ipot, sqeuclidean_cost, wasserstein2
from ._dwe import DeepWassersteinEmbedding, grid_cost, make_w2_pairs, w2_squared_pairs
from ._prototypes import greedy_prototypes, reduce_measure

__all__ = [
    "DeepWassersteinEmbedding",
    "greedy_prototypes",
    "grid_cost",
    "ipot",
    "make_w2_pairs",
    "mip",
    "reduce_measure",
    "sqeuclidean_cost",
    "w2_squared_pairs",
    "wasserstein2",
]
