"""BADGE: k-means++ seeding on last-layer gradient embeddings (Ash et al. 2020)."""

import numpy as np
import torch
from sklearn.utils import check_random_state

from ..base import QueryStrategy, candidate_subset, check_int
from ..nets import embed, get_net, last_linear

__all__ = ["BADGE", "gradient_embeddings", "kmeans_plusplus_seeding"]

# Elements of float64 scratch space per block (8 MiB), so memory stays
# O(n_samples x n_features) whatever the pool size.
_BLOCK_ELEMENTS = 1 << 20


def gradient_embeddings(estimator, X, *, batch_size=None):
    """Last-layer gradient embeddings ``g_x = (p - onehot(argmax p)) ⊗ h(x)``.

    ``h(x)`` is the input of the module's last ``nn.Linear`` (the penultimate
    features, see :func:`skal.nets.embed`) and ``p = softmax(W h + b)`` its
    class probabilities. ``g_x`` is the gradient of the cross-entropy loss with
    respect to that layer's weight ``W`` (shape ``(n_classes, n_features)``,
    flattened row by row) when the predicted label is taken as the target: its
    norm measures the model's uncertainty, its direction what it would learn.

    Parameters
    ----------
    estimator : object
        A fitted skorch net, a Pipeline ending in one or an active learner
        (see :func:`skal.nets.get_net`). Its last ``nn.Linear`` must give the
        class logits (the usual classifier head, followed at most by a softmax).
    X : array-like of shape (n_samples, ...)
    batch_size : int or None, default=None
        Inference batch size.

    Returns
    -------
    G : ndarray of shape (n_samples, n_classes * n_features), float32

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> net = cnn_classifier("digits", 10).initialize()
    >>> gradient_embeddings(net, np.zeros((3, 1, 8, 8), dtype="float32")).shape
    (3, 640)
    """
    net, _ = get_net(estimator)
    _, head = last_linear(net.module_)
    H = embed(estimator, X, batch_size=batch_size)
    weight = head.weight.detach().double().cpu()
    bias = None if head.bias is None else head.bias.detach().double().cpu()
    n_classes, n_features = weight.shape
    if H.shape[1] != n_features:
        raise ValueError(
            f"The last nn.Linear takes {n_features} features but its input has "
            f"{H.shape[1]}: cannot form gradient embeddings."
        )
    G = np.empty((H.shape[0], n_classes * n_features), dtype=np.float32)
    block = max(1, _BLOCK_ELEMENTS // (n_classes * n_features))
    for start in range(0, H.shape[0], block):
        h = torch.from_numpy(H[start:start + block]).double()
        logits = h @ weight.T if bias is None else torch.addmm(bias, h, weight.T)
        p = torch.softmax(logits, dim=1)
        # d CE / d logits with the predicted label as target.
        p[torch.arange(p.shape[0]), p.argmax(dim=1)] -= 1.0
        G[start:start + block] = (p[:, :, None] * h[:, None, :]).reshape(h.shape[0], -1).numpy()
    return G


def _sq_dist_to(X, center):
    """Squared distances from each row of ``X`` to ``center``, in float64 blocks."""
    out = np.empty(X.shape[0])
    block = max(1, _BLOCK_ELEMENTS // max(1, X.shape[1]))
    c = center.astype(np.float64)
    for start in range(0, X.shape[0], block):
        diff = X[start:start + block].astype(np.float64) - c
        out[start:start + block] = np.einsum("ij,ij->i", diff, diff)
    return out


def kmeans_plusplus_seeding(X, n_clusters, *, first="norm", random_state=None):
    """k-means++ seeding: pick rows of ``X`` by D² sampling.

    The first center is the row with the largest norm (``first="norm"``, as in
    BADGE's reference code: the most uncertain gradient) or uniformly random
    (``first="random"``, Arthur & Vassilvitskii 2007). Each next center is drawn
    with probability proportional to the squared distance to its nearest chosen
    center; when every remaining distance is 0 (duplicates), uniformly among the
    rows not chosen yet. Memory is O(n_samples): no pairwise matrix.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    n_clusters : int
        How many distinct rows to pick (at most ``n_samples``).
    first : {"norm", "random"}, default="norm"
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    indices : ndarray of shape (n_clusters,)
        In the order picked.

    Examples
    --------
    Two tight pairs: the largest row first, then one of the far pair.

    >>> X = np.array([[0.0, 0.0], [0.0, 0.1], [5.0, 5.0], [5.0, 5.1]])
    >>> kmeans_plusplus_seeding(X, 2, random_state=0)
    array([3, 1])
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}.")
    n = X.shape[0]
    n_clusters = check_int(n_clusters, "n_clusters")
    if n_clusters > n:
        raise ValueError(f"n_clusters={n_clusters} is larger than the number of rows ({n}).")
    if first not in ("norm", "random"):
        raise ValueError(f"first must be 'norm' or 'random', got {first!r}.")
    rng = check_random_state(random_state)
    if first == "norm":
        norms = _sq_dist_to(X, np.zeros(X.shape[1]))
        chosen = [int(np.argmax(norms))]
    else:
        chosen = [int(rng.randint(n))]
    dist = _sq_dist_to(X, X[chosen[0]])
    dist[chosen[0]] = 0.0
    while len(chosen) < n_clusters:
        total = dist.sum()
        if total > 0:
            # One uniform draw against the running sum: side="right" never lands
            # on a zero-weight row, so a chosen row cannot come back.
            cumulative = np.cumsum(dist)
            new = int(np.searchsorted(cumulative, rng.random_sample() * cumulative[-1],
                                      side="right"))
            new = min(new, n - 1)
        else:
            rest = np.setdiff1d(np.arange(n), chosen)
            new = int(rest[rng.randint(rest.shape[0])])
        chosen.append(new)
        np.minimum(dist, _sq_dist_to(X, X[new]), out=dist)
        dist[new] = 0.0
    return np.asarray(chosen, dtype=np.int64)


class BADGE(QueryStrategy):
    """Batch active learning by diverse gradient embeddings (Ash et al. 2020).

    Embeds each pool sample by the gradient of the loss with respect to the
    last layer's weights, taking the predicted label as the target
    (:func:`gradient_embeddings`), and picks the batch by k-means++ seeding in
    that space (:func:`kmeans_plusplus_seeding`). Long gradients (uncertain
    samples) are likely picks, and D² sampling spreads the batch over different
    directions, so it is uncertain *and* diverse without a trade-off parameter.

    Memory is O(n_pool x n_classes x n_features) (the embeddings, float32);
    time is one forward pass over the pool plus O(n_instances x n_pool x
    n_classes x n_features) for the seeding.

    Parameters
    ----------
    first : {"norm", "random"}, default="norm"
        First center: the largest gradient (the authors' code) or a random one.
    n_candidates : int or None, default=None
        Embed and seed among a random subset of the pool of this size only
        (bounds time and memory on large pools). ``None``: the whole pool.
    batch_size : int or None, default=None
        Inference batch size.
    random_state : int, RandomState instance or None, default=None
        Seeds the candidate subset and the D² sampling.

    Attributes
    ----------
    last_utilities_ : ndarray of shape (n_pool,)
        Gradient-embedding norms of the last query (``-inf`` outside the
        candidate subset); :meth:`__call__` returns those of the picks.

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> X = np.random.RandomState(0).rand(30, 1, 8, 8).astype("float32")
    >>> net = cnn_classifier("digits", 3, max_epochs=1, random_state=0).fit(X, np.arange(30) % 3)
    >>> BADGE(random_state=0).query(net, X, 4).shape
    (4,)
    """

    def __init__(self, first="norm", n_candidates=None, batch_size=None, random_state=None):
        self.first = first
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.random_state = random_state

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        if self.first not in ("norm", "random"):
            raise ValueError(f"first must be 'norm' or 'random', got {self.first!r}.")
        check_int(self.batch_size, "batch_size", allow_none=True)
        get_net(estimator)  # a clear error before any work without a torch net
        rng = check_random_state(self.random_state)
        candidates = candidate_subset(X_pool.shape[0], self.n_candidates, n_instances, rng)
        X = X_pool if candidates is None else X_pool[candidates]
        G = gradient_embeddings(estimator, X, batch_size=self.batch_size)
        picked = kmeans_plusplus_seeding(G, n_instances, first=self.first, random_state=rng)
        norms = np.sqrt(_sq_dist_to(G, np.zeros(G.shape[1])))
        if candidates is None:
            self.last_utilities_ = norms
            return picked
        self.last_utilities_ = np.full(X_pool.shape[0], -np.inf)
        self.last_utilities_[candidates] = norms
        return candidates[picked]
