"""Disagreement measures of a committee: member outputs in, one score per sample out.

Every measure takes the committee's class probabilities of shape
``(n_members, n_samples, n_classes)``. They are importable from
:mod:`skal.strategies.committee`.
"""

import numpy as np


def _check_committee_proba(proba):
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 3:
        raise ValueError(
            "committee probabilities must have shape (n_members, n_samples, n_classes), "
            f"got {proba.shape}."
        )
    if proba.shape[0] == 0 or proba.shape[2] == 0:
        raise ValueError(f"committee probabilities have an empty axis: {proba.shape}.")
    return proba


def _votes(proba):
    """Vote counts, shape (n, n_classes): how many members predict each class."""
    _, n, n_classes = proba.shape
    picks = proba.argmax(axis=2)  # (n_members, n)
    counts = np.zeros((n, n_classes), dtype=np.int64)
    np.add.at(counts, (np.broadcast_to(np.arange(n), picks.shape), picks), 1)
    return counts


def majority_vote(proba):
    """The committee's majority label (Eq. 3.2 of the thesis).

    ``LABEL(x) = argmax_j sum_i 1[j = argmax_k p_i(k|x)]``; ties go to the
    lowest class index.

    Parameters
    ----------
    proba : array-like of shape (n_members, n_samples, n_classes)

    Returns
    -------
    labels : ndarray of shape (n_samples,)

    Examples
    --------
    >>> p = np.array([[[0.9, 0.1]], [[0.2, 0.8]], [[0.6, 0.4]]])
    >>> majority_vote(p)
    array([0])
    """
    return _votes(_check_committee_proba(proba)).argmax(axis=1)


def soft_vote_disagreement(proba):
    """DQBC's soft disagreement ``rg(x)`` (Eq. 3.3 of the thesis).

    ``rg(x) = sum_i [max_j p_i(j|x) - p_i(LABEL(x)|x)]`` with ``LABEL`` the
    majority vote: members that agree with the majority add 0, a dissenting
    member adds the gap between its own top class and the majority class.

    Parameters
    ----------
    proba : array-like of shape (n_members, n_samples, n_classes)

    Returns
    -------
    scores : ndarray of shape (n_samples,)

    Examples
    --------
    >>> p = np.array([[[0.9, 0.1]], [[0.2, 0.8]], [[0.6, 0.4]]])
    >>> soft_vote_disagreement(p).round(2)   # only member 2 dissents: 0.8 - 0.2
    array([0.6])
    """
    proba = _check_committee_proba(proba)
    label = _votes(proba).argmax(axis=1)
    p_label = np.take_along_axis(proba, label[None, :, None], axis=2)[..., 0]
    return (proba.max(axis=2) - p_label).sum(axis=0)


def vote_disagreement(proba):
    """Number of members whose prediction differs from the majority vote.

    The hard score of the thesis's released code (``compute_margin``).

    Examples
    --------
    >>> p = np.array([[[0.9, 0.1]], [[0.2, 0.8]], [[0.6, 0.4]]])
    >>> vote_disagreement(p)
    array([1.])
    """
    proba = _check_committee_proba(proba)
    counts = _votes(proba)
    return (proba.shape[0] - counts.max(axis=1)).astype(float)


def vote_entropy(proba):
    """Entropy of the committee's vote distribution (Dagan & Engelson 1995).

    ``-sum_c V(c)/K log(V(c)/K)`` with ``V(c)`` the number of the ``K``
    members that predict class ``c``.

    Examples
    --------
    >>> p = np.array([[[0.9, 0.1]], [[0.2, 0.8]]])
    >>> vote_entropy(p).round(3)
    array([0.693])
    """
    proba = _check_committee_proba(proba)
    share = _votes(proba) / proba.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(share > 0, share * np.log(share), 0.0)
    return np.maximum(-terms.sum(axis=1), 0.0)


def consensus_kl(proba, eps=1e-12):
    """Mean KL divergence of the members from the consensus (McCallum & Nigam 1998).

    ``(1/K) sum_i KL(p_i || p_bar)`` with ``p_bar`` the members' mean
    distribution (skactiveml's ``KL_divergence``; modAL's
    ``max_disagreement_sampling`` takes the max over members instead).

    Examples
    --------
    >>> p = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    >>> consensus_kl(p).round(3)
    array([0.693])
    """
    proba = _check_committee_proba(proba)
    consensus = proba.mean(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(np.maximum(proba, eps)) - np.log(np.maximum(consensus, eps))
        terms = np.where(proba > 0, proba * ratio, 0.0)
    return np.maximum(terms.sum(axis=2).mean(axis=0), 0.0)


_MEASURES = {
    "soft": soft_vote_disagreement,
    "vote": vote_disagreement,
    "vote_entropy": vote_entropy,
    "consensus_kl": consensus_kl,
}
