"""Query by committee: DQBC (dropout committees, Ducoffe's thesis ch. 3) and QBC.

A *dropout committee* is sampled from one trained network, without training an
ensemble: each member is a "partial network" in which a random subset of the
units of every hidden layer is switched off (batchwise dropout, Graham 2015),
and whose class-output layer is then fine-tuned on the labeled set.
:class:`DQBC` scores the pool by the committee's soft disagreement with its
majority vote (Eq. 3.3 of the thesis); :class:`QueryByCommittee` offers the
classic disagreement measures (vote entropy, KL to the consensus) on a dropout
committee or on any list of fitted classifiers.
"""

import numpy as np

from ..base import ScoreBasedStrategy
from ..nets import predict_proba
from ._committee_measures import (
    _MEASURES,
    consensus_kl,
    majority_vote,
    soft_vote_disagreement,
    vote_disagreement,
    vote_entropy,
)
from ._dropout_committee import (  # noqa: F401 (_Unit, _finetune_heads: old import paths)
    DropoutCommittee,
    _finetune_heads,
    _Unit,
    dropout_committee,
    maskable_layers,
)

__all__ = [
    "DQBC",
    "QueryByCommittee",
    "DropoutCommittee",
    "dropout_committee",
    "maskable_layers",
    "majority_vote",
    "soft_vote_disagreement",
    "vote_disagreement",
    "vote_entropy",
    "consensus_kl",
]


class DQBC(ScoreBasedStrategy):
    """Query by dropout committee (Ducoffe & Precioso, thesis ch. 3).

    Builds a committee of ``n_members`` partial networks from the trained
    network by batchwise dropout (one mask per hidden layer and member, shared
    by all samples, removing whole units of ``nn.Linear`` layers and whole
    channels of convolutions), fine-tunes each member's output layer on the
    labeled set, and queries the samples the committee disagrees on most:

    ``rg(x) = sum_i [max_j p_i(j|x) - p_i(LABEL(x)|x)]``, ``LABEL`` the
    majority vote (Eq. 3.3).

    Works with any skorch network made of standard layers (the zoo's
    DigitsCNN, LeNet5, VGG8, torchvision ResNets, ...): masks are forward
    hooks on the hidden ``nn.Linear`` / ``nn.Conv*`` layers, applied after the
    BatchNorm that follows a layer if any.

    Parameters
    ----------
    n_members : int, default=5
        Committee size (5 in the thesis, 3 in the author's code).
    dropout : float, default=0.5
        Fraction of each hidden layer's units a member drops.
    score : {"soft", "vote"}, default="soft"
        ``"soft"``: ``rg(x)`` above. ``"vote"``: the number of members that
        disagree with the majority (the author's released code).
    finetune_epochs : int, default=10
        Epochs of Adam on each member's output layer. ``0``, or querying
        without a labeled set, skips fine-tuning: the members then share the
        full network's output layer.
    finetune_lr : float, default=1e-3
    finetune_batch_size : int, default=64
    n_candidates : int or None, default=None
        Score a random subset of the pool of this size (the thesis uses
        ``30 * n_instances``); None scores the whole pool.
    batch_size : int or None, default=None
        Inference batch size.
    random_state : int, RandomState instance or None, default=None
        Seeds the masks, the fine-tuning and the candidate subset.

    Attributes
    ----------
    committee_ : DropoutCommittee
        The committee of the last query (masks, fine-tuned heads, labeled
        losses before and after fine-tuning).

    Examples
    --------
    >>> from skal.nets import cnn_classifier
    >>> X = np.random.RandomState(0).rand(30, 1, 8, 8).astype("float32")
    >>> y = np.arange(30) % 3
    >>> net = cnn_classifier("digits", 3, max_epochs=2, random_state=0).fit(X[:12], y[:12])
    >>> idx = DQBC(random_state=0).query(net, X[12:], 4, X_labeled=X[:12], y_labeled=y[:12])
    >>> idx.shape
    (4,)
    """

    def __init__(
        self,
        n_members=5,
        dropout=0.5,
        score="soft",
        finetune_epochs=10,
        finetune_lr=1e-3,
        finetune_batch_size=64,
        n_candidates=None,
        batch_size=None,
        random_state=None,
    ):
        self.n_members = n_members
        self.dropout = dropout
        self.score = score
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.finetune_batch_size = finetune_batch_size
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.random_state = random_state

    def build_committee(self, estimator, X_probe, *, X_labeled=None, y_labeled=None,
                        random_state=None):
        """Sample (and fine-tune) a dropout committee with this strategy's settings.

        ``random_state`` defaults to the strategy's. See :func:`dropout_committee`.
        """
        return dropout_committee(
            estimator, X_probe,
            n_members=self.n_members, dropout=self.dropout,
            X_labeled=X_labeled, y_labeled=y_labeled,
            finetune_epochs=self.finetune_epochs, finetune_lr=self.finetune_lr,
            finetune_batch_size=self.finetune_batch_size, batch_size=self.batch_size,
            random_state=self.random_state if random_state is None else random_state,
        )

    def _check_score(self):
        if self.score not in ("soft", "vote"):
            raise ValueError(f"score must be 'soft' or 'vote', got {self.score!r}.")

    def _prepare(self, estimator, X_pool, *, X_labeled=None, y_labeled=None):
        self._check_score()
        self.committee_ = self.build_committee(
            estimator, X_pool, X_labeled=X_labeled, y_labeled=y_labeled
        )

    def _utilities(self, estimator, X):
        measure = _MEASURES[self.score]
        scores = np.empty(X.shape[0])
        for rows, proba in self.committee_.iter_proba(estimator, X, batch_size=self.batch_size):
            scores[rows] = measure(proba)
        return scores


class QueryByCommittee(ScoreBasedStrategy):
    """Query by committee with the classic disagreement measures.

    The committee is either a dropout committee sampled from the trained
    network (as in :class:`DQBC`), or a list of fitted classifiers with
    ``predict_proba`` (as modAL's ``Committee`` or scikit-activeml's
    ``QueryByCommittee``).

    Parameters
    ----------
    committee : None, DQBC or list of estimators, default=None
        ``None``: a dropout committee with :class:`DQBC`'s defaults, built
        from the queried network (or, when the estimator passed to
        :meth:`query` is a modAL ``Committee``, its ``learner_list``).
        A :class:`DQBC` instance: a dropout committee with its settings
        (``n_members``, ``dropout``, fine-tuning). A list of fitted
        classifiers: those, whatever estimator :meth:`query` receives; their
        ``predict_proba`` columns must be the same classes. Note that
        ``sklearn.base.clone`` (hence ``GridSearchCV``) returns unfitted copies
        of listed estimators; wrap them in ``sklearn.frozen.FrozenEstimator``
        to keep them fitted.
    measure : {"vote_entropy", "consensus_kl"}, default="vote_entropy"
        Vote entropy of the members' predictions, or the mean KL divergence
        of the members from their mean distribution.
    n_candidates : int or None, default=None
        Score a random subset of the pool of this size.
    batch_size : int or None, default=None
        Inference batch size.
    random_state : int, RandomState instance or None, default=None
        Seeds the dropout committee and the candidate subset.

    Attributes
    ----------
    committee_ : DropoutCommittee or list
        The committee of the last query.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.randn(40, 2), rng.randint(2, size=40)
    >>> members = [LogisticRegression().fit(X, y),
    ...            DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)]
    >>> QueryByCommittee(members).query(None, X, 3).shape
    (3,)
    """

    def __init__(self, committee=None, measure="vote_entropy", n_candidates=None,
                 batch_size=None, random_state=None):
        self.committee = committee
        self.measure = measure
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.random_state = random_state

    def _check_params(self):
        if self.measure not in ("vote_entropy", "consensus_kl"):
            raise ValueError(
                f"measure must be 'vote_entropy' or 'consensus_kl', got {self.measure!r}."
            )
        committee = self.committee
        if committee is None or isinstance(committee, DQBC):
            return
        if isinstance(committee, (list, tuple)):
            if len(committee) < 2:
                raise ValueError(
                    f"a committee needs at least 2 members, got {len(committee)}."
                )
            return
        raise ValueError(
            "committee must be None, a DQBC instance (dropout committee settings) or a "
            f"list of fitted classifiers, got {type(committee).__name__}."
        )

    def _resolve(self, estimator, X_probe, X_labeled, y_labeled, random_state):
        committee = self.committee
        if committee is None and hasattr(estimator, "learner_list"):
            committee = list(estimator.learner_list)  # modAL's Committee
            if len(committee) < 2:
                raise ValueError(
                    f"a committee needs at least 2 members, got {len(committee)}."
                )
        if isinstance(committee, (list, tuple)):
            return list(committee)
        spec = DQBC() if committee is None else committee
        return spec.build_committee(
            estimator, X_probe, X_labeled=X_labeled, y_labeled=y_labeled,
            random_state=random_state,
        )

    def _prepare(self, estimator, X_pool, *, X_labeled=None, y_labeled=None):
        self._check_params()
        self.committee_ = self._resolve(
            estimator, X_pool, X_labeled, y_labeled, self.random_state
        )

    def _utilities(self, estimator, X):
        measure = _MEASURES[self.measure]
        committee = self.committee_
        scores = np.empty(X.shape[0])
        if isinstance(committee, DropoutCommittee):
            for rows, proba in committee.iter_proba(estimator, X, batch_size=self.batch_size):
                scores[rows] = measure(proba)
            return scores
        return measure(_members_proba(committee, X, self.batch_size))


def _unwrap_frozen(member):
    # FrozenEstimator hides the skorch net from skal.nets.get_net; look through it
    # so the net runs batched instead of through skorch's predict_proba.
    try:
        from sklearn.frozen import FrozenEstimator
    except ImportError:  # pragma: no cover - sklearn < 1.6
        return member
    while isinstance(member, FrozenEstimator):
        member = member.estimator
    return member


def _members_proba(members, X, batch_size):
    probas = []
    for i, member in enumerate(members):
        proba = predict_proba(_unwrap_frozen(member), X, batch_size=batch_size)
        if proba.ndim != 2 or proba.shape[0] != X.shape[0]:
            raise ValueError(
                f"committee member {i} ({type(member).__name__}) returned probabilities of "
                f"shape {proba.shape} for {X.shape[0]} samples."
            )
        probas.append(proba)
    widths = {p.shape[1] for p in probas}
    if len(widths) != 1:
        raise ValueError(
            "committee members disagree on the number of classes "
            f"({sorted(widths)}); fit them on the same classes."
        )
    classes = [getattr(_unwrap_frozen(m), "classes_", None) for m in members]
    known = [np.asarray(c) for c in classes if c is not None]
    if known and any(c.shape != known[0].shape or np.any(c != known[0]) for c in known):
        raise ValueError("committee members were fitted on different classes_.")
    return np.stack(probas)
