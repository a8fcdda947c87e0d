"""BatchBALD: greedy batches that maximise the joint mutual information (Kirsch et al. 2019)."""

import math

import numpy as np
from scipy.special import entr, logsumexp
from sklearn.utils import check_random_state

from ..base import QueryStrategy, check_int, top_k
from ..nets import dropout_layers, get_net
from ._consistent_dropout import consistent_mc_dropout_proba
from .bayesian import bald_scores

__all__ = ["BatchBALD", "batchbald_select"]

# float64 elements of the (configurations, candidates, classes) scratch array.
_BLOCK_ELEMENTS = 1 << 21


def _sampled_log_proba(P_i, owner, rng):
    """Draw one label per joint sample from its own MC sample; their log-probabilities.

    ``P_i`` holds one point's MC probabilities, shape ``(K, C)``; sample ``m``
    draws its label from ``P_i[owner[m]]``. Returns ``log P_i[k, y_m]`` for all
    ``k``, shape ``(M, K)``.
    """
    cumulative = np.cumsum(P_i[owner], axis=1)
    u = rng.random_sample(owner.shape[0])
    labels = np.minimum((cumulative <= u[:, None]).sum(axis=1), P_i.shape[1] - 1)
    return np.log(np.maximum(P_i[:, labels], np.finfo(float).tiny)).T


def batchbald_select(mc_proba, n_instances, *, n_joint_samples=1000, random_state=None):
    """Greedy BatchBALD selection from Monte-Carlo class probabilities.

    Adds, one at a time, the point ``x`` that maximises the mutual information
    between the labels of the batch and the weights,
    ``I(y_1, ..., y_n; w) = H(y_1, ..., y_n) - sum_i E_w H(y_i | w)``, with
    ``w`` uniform over the ``K`` MC samples. The joint entropy of the batch
    chosen so far (``n - 1`` points) is enumerated exactly over all
    ``C ** (n - 1)`` label configurations while that number is at most
    ``n_joint_samples``; beyond, it is estimated from ``n_joint_samples`` (rounded
    up to a multiple of ``K``) configurations drawn from the joint predictive,
    ``n_joint_samples / K`` per MC sample, by importance sampling (Kirsch et al.
    2019, sec. 3.3).

    Parameters
    ----------
    mc_proba : array-like of shape (n_passes, n_samples, n_classes)
        ``p(y | x, w_k)``, e.g. from :func:`skal.nets.mc_dropout_proba`.
    n_instances : int
        Batch size (at most ``n_samples``).
    n_joint_samples : int, default=1000
        Most configurations enumerated exactly, and the number sampled beyond.
    random_state : int, RandomState instance or None, default=None
        Seeds the sampled configurations (unused while the computation is exact).

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        In the order picked.
    scores : ndarray of shape (n_instances,)
        ``scores[i]``: the (estimated) joint mutual information of the first
        ``i + 1`` picks, in nats.

    Examples
    --------
    Four MC samples; points 0 and 1 are copies that tell samples {0, 1} from
    {2, 3}, point 2 tells {0, 2} from {1, 3}. Top-2 BALD could take the copies;
    BatchBALD takes point 2 second, and the pair has ``log 4`` nats.

    >>> a, b = [1.0, 0.0], [0.0, 1.0]
    >>> p = np.array([[a, a, a], [a, a, b], [b, b, a], [b, b, b]])
    >>> idx, scores = batchbald_select(p, 2)
    >>> idx.tolist(), scores.round(3).tolist()
    ([0, 2], [0.693, 1.386])
    """
    P = np.asarray(mc_proba, dtype=np.float64)
    if P.ndim != 3:
        raise ValueError(
            f"mc_proba must have shape (n_passes, n_samples, n_classes), got {P.shape}.")
    K, N, C = P.shape
    n_instances = check_int(n_instances, "n_instances")
    if n_instances > N:
        raise ValueError(f"n_instances={n_instances} is larger than the pool ({N} samples).")
    n_joint_samples = check_int(n_joint_samples, "n_joint_samples")
    rng = check_random_state(random_state)
    conditional = entr(P).sum(axis=2).mean(axis=0)  # E_w H(y_i | w)
    n_sampled = math.ceil(n_joint_samples / K) * K
    owner = np.repeat(np.arange(K), n_sampled // K)
    # log p(y_A = configuration s | w_k) for the batch A chosen so far: shape (S, K).
    log_joint = np.zeros((1, K))
    exact = True
    chosen, scores = [], []
    for step in range(n_instances):
        if step:
            last = chosen[-1]
            if exact and C ** step <= n_joint_samples:
                log_last = np.log(np.maximum(P[:, last, :], np.finfo(float).tiny)).T  # (C, K)
                log_joint = (log_joint[:, None, :] + log_last[None, :, :]).reshape(-1, K)
            elif exact:
                exact = False
                log_joint = np.zeros((n_sampled, K))
                for i in chosen:
                    log_joint += _sampled_log_proba(P[:, i, :], owner, rng)
            else:
                log_joint += _sampled_log_proba(P[:, last, :], owner, rng)
        norm = logsumexp(log_joint, axis=1)
        weights = np.exp(log_joint - norm[:, None])  # p(w_k | y_A = s)
        log_p_config = norm - np.log(K)
        if exact:
            config_weight = np.exp(log_p_config)
            batch_entropy = float(entr(config_weight).sum())
        else:
            # Configurations were drawn from p(y_A): a plain mean estimates
            # expectations under it.
            config_weight = np.full(log_joint.shape[0], 1.0 / log_joint.shape[0])
            batch_entropy = float(-log_p_config.mean())
        # H(y_A, y_x) = H(y_A) + E_{y_A} H(y_x | y_A), per candidate x.
        joint = np.empty(N)
        block = max(1, _BLOCK_ELEMENTS // (weights.shape[0] * C))
        for start in range(0, N, block):
            chunk = P[:, start:start + block, :]
            q = (weights @ chunk.reshape(K, -1)).reshape(weights.shape[0], -1, C)
            joint[start:start + block] = config_weight @ entr(q).sum(axis=2)
        gain = batch_entropy + joint - conditional - conditional[chosen].sum()
        gain[chosen] = -np.inf
        pick = int(np.argmax(gain))
        chosen.append(pick)
        scores.append(float(gain[pick]))
    return np.asarray(chosen, dtype=np.int64), np.asarray(scores)


class BatchBALD(QueryStrategy):
    """BatchBALD: the batch with the largest joint mutual information (Kirsch et al. 2019).

    Top-k BALD queries ``k`` samples that are each informative but often about
    the same thing (near-duplicates). BatchBALD scores the batch as a whole,
    ``I(y_1, ..., y_k; w)``, and builds it greedily (a ``1 - 1/e``
    approximation, the objective being submodular): a sample whose label the
    batch already predicts adds little. ``w`` is sampled by consistent MC
    dropout (one mask per pass shared by the whole pool, as Kirsch et al.; plain
    per-row masks would make the points' labels look independent); the joint
    entropy is exact for small batches and importance-sampled for larger ones
    (:func:`batchbald_select`).

    The whole pool gets ``n_passes`` dropout passes (BALD's cost); the greedy
    step runs on the ``n_candidates`` samples with the highest BALD scores and
    costs O(n_instances x n_joint_samples x n_passes x n_candidates x n_classes).

    Parameters
    ----------
    n_passes : int, default=20
        MC-dropout samples ``K``.
    n_candidates : int or None, default=1000
        Pre-select this many samples by their BALD score (at least
        ``n_instances``). ``None``: the whole pool.
    n_joint_samples : int, default=1000
        Label configurations of the batch enumerated exactly (up to this many)
        or sampled (beyond); see :func:`batchbald_select`.
    batch_size : int or None, default=None
        Inference batch size.
    random_state : int, RandomState instance or None, default=None
        Seeds the dropout masks and the sampled configurations.

    Attributes
    ----------
    last_utilities_ : ndarray of shape (n_pool,)
        BALD scores of the last query's pool.
    batch_scores_ : ndarray of shape (n_instances,)
        Joint mutual information of the first ``i + 1`` picks.

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> X = np.random.RandomState(0).rand(30, 1, 8, 8).astype("float32")
    >>> net = cnn_classifier("digits", 3, max_epochs=1, random_state=0).fit(X, np.arange(30) % 3)
    >>> BatchBALD(n_passes=5, random_state=0).query(net, X, 3).shape
    (3,)
    """

    def __init__(self, n_passes=20, n_candidates=1000, n_joint_samples=1000, batch_size=None,
                 random_state=None):
        self.n_passes = n_passes
        self.n_candidates = n_candidates
        self.n_joint_samples = n_joint_samples
        self.batch_size = batch_size
        self.random_state = random_state

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        n_passes = check_int(self.n_passes, "n_passes")
        n_candidates = check_int(self.n_candidates, "n_candidates", allow_none=True)
        check_int(self.n_joint_samples, "n_joint_samples")
        batch = check_int(self.batch_size, "batch_size", allow_none=True)
        net, _ = get_net(estimator)
        dropout_layers(net.module_)
        rng = check_random_state(self.random_state)
        n_pool = X_pool.shape[0]
        # One mask per pass for the whole pool: the joint entropy compares the
        # points' labels under the same weight sample.
        mc = consistent_mc_dropout_proba(estimator, X_pool, n_passes, random_state=rng,
                                         batch_size=batch).astype(np.float32)
        scores = bald_scores(mc)
        self.last_utilities_ = scores
        if n_candidates is None or n_candidates >= n_pool:
            candidates = np.arange(n_pool)
        else:
            candidates = top_k(scores, max(n_candidates, n_instances))
        picked, self.batch_scores_ = batchbald_select(
            mc[:, candidates], n_instances, n_joint_samples=self.n_joint_samples,
            random_state=rng,
        )
        return candidates[picked]
