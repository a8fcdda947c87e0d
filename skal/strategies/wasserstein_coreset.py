"""Wasserstein core-set by integer programming (Mahmood, Fidler & Law, ICLR 2022).

Selects the batch whose uniform distribution, together with the labeled set, is
closest in Wasserstein-1 distance to the uniform distribution on the whole pool
(labeled + unlabeled), solved by Generalized Benders Decomposition; see
:mod:`skal.ot.mip` for the solver. A k-medoids baseline of the same objective's
relaxation is provided alongside (the paper's main comparison).
"""

import numpy as np
from sklearn.utils import check_random_state

from ..base import QueryStrategy, check_int
from ..nets import features
from ..ot import mip
from ..ot.mip._common import _check_labeled, _check_n_select

__all__ = ["KMedoidsCoreSet", "WassersteinCoreSet"]


class _EmbeddingMixin:
    """Feature space shared by the core-set strategies."""

    def _embed(self, estimator, X):
        space = self.embedding if self.transformer is None else self.transformer
        return features(estimator, X, space, batch_size=self.batch_size)

    def _query(self, estimator, X_pool, n_instances, *, X_labeled=None, y_labeled=None):
        pool = self._embed(estimator, X_pool)
        n_lab = 0
        if X_labeled is not None and len(X_labeled):
            lab = self._embed(estimator, X_labeled)
            if lab.shape[1] != pool.shape[1]:
                raise ValueError(
                    f"Labeled embeddings have {lab.shape[1]} features, pool ones {pool.shape[1]}."
                )
            n_lab = lab.shape[0]
            pool = np.vstack([lab, pool])
        # the paper's objective covers labeled and unlabeled points, labeled fixed in
        picked = self.select(pool, n_instances, labeled=np.arange(n_lab))
        return picked - n_lab


def _sample_rows(E, k, labeled, max_samples, rng):
    """The rows to solve on and the labeled ones' positions among them.

    Every labeled row plus a uniform sample of the others, ``max_samples`` in
    all (at least ``k`` free ones), sorted; ``(None, labeled)`` when the whole
    pool is used. Bad ``labeled`` or ``k`` raise the solver's own errors here,
    before a sample could hide them.
    """
    if max_samples is None or E.ndim != 2 or len(E) <= max_samples:
        return None, labeled
    lab = np.sort(_check_labeled(labeled, len(E)))
    k = _check_n_select(k, len(E), lab.size)
    free = np.setdiff1d(np.arange(len(E)), lab)
    n_free = max(int(max_samples) - lab.size, k)
    if n_free >= free.size:
        return None, labeled
    sample = np.sort(np.r_[lab, rng.choice(free, n_free, replace=False)])
    return sample, np.searchsorted(sample, lab)


def _check_embeddings(embeddings, metric):
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().cpu().numpy()
    E = np.asarray(embeddings)
    if metric != "precomputed" and E.ndim > 2 and E.shape[0] > 0:
        E = E.reshape(E.shape[0], -1)
    return E


class WassersteinCoreSet(_EmbeddingMixin, QueryStrategy):
    """Wasserstein core-set selection by mixed-integer programming (GBD).

    Chooses the batch so that the uniform distribution on labeled + selected
    points is as close as possible, in discrete Wasserstein-1 distance, to the
    uniform distribution on labeled + pool points, in the model's embedding
    space (the input of its last ``nn.Linear``), a given transformer's, or the
    raw inputs. The problem is a balanced p-median solved by Generalized Benders
    Decomposition: a master MILP (CBC via PuLP, or HiGHS) over which points to
    pick, an exact transport (POT) per trial selection giving Benders cuts,
    enhanced optimality cuts, warm starts and a local polish. Solving stops at
    ``time_limit`` seconds or when the certified gap falls below ``gap``; the
    best selection found is returned with its lower bound.

    Mahmood, Fidler & Law, "Low Budget Active Learning via Wasserstein
    Distance: An Integer Programming Approach", ICLR 2022.

    Parameters
    ----------
    time_limit : float, default=60
        Wall-clock limit of one selection, in seconds (the paper: 3 h). The
        first warm start is always evaluated, so a selection is always returned.
    gap : float, default=1e-3
        Stop early once ``(objective - lower_bound) / objective <= gap``.
    metric : {"cosine", "euclidean", "chord"}, default="cosine"
        Ground cost: ``1 - cos`` (the paper's default for self-supervised
        features), Euclidean, or Euclidean between L2-normalised vectors
        ("chord", a true metric under which every EOC is valid).
    solver : {"cbc", "highs", "scipy"}, default="cbc"
        Master MILP solver: CBC via PuLP; HiGHS via ``highspy`` (when
        installed); or the HiGHS bundled with SciPy.
    eoc : bool, default=True
        Enhanced optimality cuts of the paper (static bound; triangle and dual
        cuts for true metrics only).
    pruning : bool, default=False
        The paper's pruning constraints (P): search near the incumbents only.
        Faster improvement, no optimality certificate (the lower bound falls
        back to the static one).
    warm_start : {"kcenter", "kmedoids", "lloyd_ot", "all"}, default="kcenter"
        Initial selections: greedy k-center (the paper's), k-medoids, the
        transport-aware k-medoids "Lloyd-OT", or all of them.
    random_state : int, RandomState instance or None, default=None
        Seeds the candidate clustering and the master's warm starts. Results
        are reproducible when the run stops on ``gap`` or ``max_iter`` rather
        than on ``time_limit``.
    milp_time_limit : float or None, default=None
        Limit per master solve (the paper: 180 s); None: a quarter of the time
        left, at most 180 s.
    milp_gap : float, default=0.1
        Relative gap of each master solve (the paper's 10 %).
    max_candidates : int or None, default=1000
        Pools larger than this restrict the binaries to this many candidate
        points (all points still carry mass, so objectives stay exact; the
        lower bound is then that of the restricted problem, ``restricted_``).
    polish : bool, default=True
        Improve every master solution by Lloyd-OT steps.
    capacity_cut : bool, default=True
        Add the static capacity lower-bound cut.
    cut : {"capacity", "classic"}, default="capacity"
        Benders cut: the paper's c-transform cut, or its capacity-strengthened
        form (dominates it, same tightness; see :func:`skal.ot.mip.benders_cut`).
    max_iter : int, default=500
        Maximum master solves (the paper: about 500).
    transformer : object or None, default=None
        Fitted transformer (``.transform``) or callable mapping samples to
        feature vectors; overrides ``embedding``.
    embedding : {"auto", "model", "input"}, default="auto"
        Without a transformer: the net's penultimate features ("model"), the
        flattened inputs ("input"), or the net's when there is one ("auto").
    batch_size : int or None, default=None
        Inference batch size for the embeddings.
    verbose : bool, default=False
        Show a progress bar (progress is logged at INFO level on
        ``skal.ot.mip`` in any case).
    max_memory : float or None, default=None
        Memory limit in GiB; None: the memory available when the query starts.
        The selection's peak is estimated from the pool size, the embedding
        dimension, the number of centers and ``max_candidates`` before anything
        large is allocated; a pool that does not fit raises a ValueError naming
        ``max_candidates`` and ``max_memory``. The transport sub-problem is kept
        sparse (screened nearest centers, certified optimal against every arc),
        so memory grows as O(N d), never N x ``|S|``.
    max_samples : int or None, default=50_000
        Pools (labeled + unlabeled) larger than this are solved on a random
        subset of this many points: every labeled point and a uniform sample of
        the unlabeled ones, so the pool's measure is estimated from the sample
        and the selection is drawn from it. The exact transport's network
        simplex grows faster than N (one transport at N = 160K took more than
        25 minutes and 1.7 GB here, against 89 s and 0.5 GB for a whole query
        at 40K; ``docs/scaling.md``), so this bounds the query's time and
        memory whatever the pool size. None: always the whole pool.

    Attributes
    ----------
    objective_ : float
        W of the last selection (labeled + selected), the upper bound.
    lower_bound_ : float
        Certified lower bound on the optimum (of the candidate-restricted problem
        when ``restricted_``).
    gap_ : float
        ``(objective_ - lower_bound_) / objective_``.
    history_ : list of dict
        Bound history: ``time``, ``upper``, ``lower``, ``value``, ``event``,
        ``master_time``, ``n_cuts`` per evaluation or master solve.
    n_iter_ : int
        Master solves.
    status_ : str
        Why the solver stopped: "optimal", "gap", "time_limit", "max_iter", ...
    restricted_ : bool
    heuristics_ : dict
        W of every warm start, by name.
    selection_ : ndarray
        All selected indices of the last :meth:`select` (labeled included).
    sample_ : ndarray or None
        Rows of the last :meth:`select`'s embeddings the problem was solved on
        (``max_samples``), or None when it used them all; ``objective_`` and the
        bounds are those of the sample's problem then.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(60, 5))
    >>> strat = WassersteinCoreSet(time_limit=5, metric="euclidean", random_state=0)
    >>> idx = strat.query(None, X, 4, X_labeled=X[:2])
    >>> idx.shape, bool(strat.lower_bound_ <= strat.objective_)
    ((4,), True)
    """

    def __init__(
        self,
        time_limit=60.0,
        gap=1e-3,
        metric="cosine",
        solver="cbc",
        eoc=True,
        pruning=False,
        warm_start="kcenter",
        random_state=None,
        *,
        milp_time_limit=None,
        milp_gap=0.1,
        max_candidates=1000,
        polish=True,
        capacity_cut=True,
        cut="capacity",
        max_iter=500,
        transformer=None,
        embedding="auto",
        batch_size=None,
        verbose=False,
        max_memory=None,
        max_samples=50_000,
    ):
        self.time_limit = time_limit
        self.gap = gap
        self.metric = metric
        self.solver = solver
        self.eoc = eoc
        self.pruning = pruning
        self.warm_start = warm_start
        self.random_state = random_state
        self.milp_time_limit = milp_time_limit
        self.milp_gap = milp_gap
        self.max_candidates = max_candidates
        self.polish = polish
        self.capacity_cut = capacity_cut
        self.cut = cut
        self.max_iter = max_iter
        self.transformer = transformer
        self.embedding = embedding
        self.batch_size = batch_size
        self.verbose = verbose
        self.max_memory = max_memory
        self.max_samples = max_samples

    def select(self, embeddings, k, labeled=None):
        """Select ``k`` new points of ``embeddings`` (labeled ones forced in).

        Parameters
        ----------
        embeddings : array-like of shape (n, d)
            Feature vectors of the whole pool, labeled points included.
        k : int
            Number of new points.
        labeled : array-like of int or bool mask, optional
            Rows of ``embeddings`` already labeled.

        Returns
        -------
        indices : ndarray of shape (k,)
            New rows of ``embeddings``, best first (each prefix greedily covers
            the pool best).
        """
        if self.metric not in ("cosine", "euclidean", "chord"):
            raise ValueError(
                f"metric must be 'cosine', 'euclidean' or 'chord', got {self.metric!r}."
            )
        check_int(self.max_samples, "max_samples", allow_none=True)
        E = _check_embeddings(embeddings, self.metric)
        rng = check_random_state(self.random_state)
        sample, labeled = _sample_rows(E, k, labeled, self.max_samples, rng)
        if sample is not None:
            E = E[sample]
        res = mip.solve_gbd(
            E,
            k,
            labeled=labeled,
            metric=self.metric,
            time_limit=self.time_limit,
            gap=self.gap,
            milp_time_limit=self.milp_time_limit,
            milp_gap=self.milp_gap,
            solver=self.solver,
            eoc=self.eoc,
            capacity_cut=self.capacity_cut,
            pruning=self.pruning,
            warm_start=self.warm_start,
            polish=self.polish,
            cut=self.cut,
            max_candidates=self.max_candidates,
            max_iter=self.max_iter,
            random_state=rng,
            verbose=self.verbose,
            max_memory=self.max_memory,
        )
        self.sample_ = sample
        if sample is not None:
            res.selected = sample[np.asarray(res.selected, dtype=np.int64)]
            res.selection = sample[np.asarray(res.selection, dtype=np.int64)]
        self.result_ = res
        self.objective_ = res.objective
        self.lower_bound_ = res.lower_bound
        self.gap_ = res.gap
        self.history_ = res.history
        self.n_iter_ = res.n_iter
        self.status_ = res.status
        self.restricted_ = res.restricted
        self.heuristics_ = res.heuristics
        self.selection_ = res.selection
        return np.asarray(res.selected, dtype=np.int64)


class KMedoidsCoreSet(_EmbeddingMixin, QueryStrategy):
    """k-medoids core-set: the baseline of the Wasserstein core-set paper.

    Alternating (Voronoi) k-medoids, initialised by greedy k-center, with the
    labeled points fixed as medoids, in the same feature space as
    :class:`WassersteinCoreSet`. It minimises ``mean_i min_j D_ij``, the
    relaxation of the Wasserstein core-set objective that ignores that every
    selected point must represent the same mass.

    Parameters
    ----------
    metric : {"cosine", "euclidean", "chord"}, default="cosine"
    max_iter : int, default=50
    transformer, embedding, batch_size, max_memory
        As in :class:`WassersteinCoreSet` (memory is O(N d): distances in
        blocks, the transport of ``objective_`` sparse).

    Attributes
    ----------
    objective_ : float
        Wasserstein core-set objective W of the last selection, computed on
        first read (an exact transport).
    kmedoids_objective_ : float
        Its k-medoids objective.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(40, 3))
    >>> KMedoidsCoreSet(metric="euclidean").query(None, X, 3).shape
    (3,)
    """

    def __init__(self, metric="cosine", max_iter=50, *, transformer=None, embedding="auto",
                 batch_size=None, max_memory=None):
        self.max_memory = max_memory
        self.metric = metric
        self.max_iter = max_iter
        self.transformer = transformer
        self.embedding = embedding
        self.batch_size = batch_size

    def select(self, embeddings, k, labeled=None):
        """Select ``k`` new rows of ``embeddings``; see :meth:`WassersteinCoreSet.select`."""
        if self.metric not in ("cosine", "euclidean", "chord"):
            raise ValueError(
                f"metric must be 'cosine', 'euclidean' or 'chord', got {self.metric!r}."
            )
        E = _check_embeddings(embeddings, self.metric)
        new = mip.kmedoids(E, k, labeled=labeled, metric=self.metric, max_iter=self.max_iter,
                           max_memory=self.max_memory)
        lab = np.zeros(0, dtype=np.int64) if labeled is None else np.asarray(labeled)
        if lab.dtype == bool:
            lab = np.flatnonzero(lab)
        sel = np.r_[lab.astype(np.int64).ravel(), new]
        self.selection_ = np.sort(sel)
        self.kmedoids_objective_ = mip.kmedoids_objective(E, sel, metric=self.metric)
        # objective_ needs an exact transport (minutes on a 40K pool); kept for first read
        self._objective_inputs = (np.array(E, copy=True), self.metric)
        self._objective = None
        return new

    @property
    def objective_(self):
        # Documented under Attributes (a docstring here would list it twice). An
        # exact transport takes longer than the k-medoids search on large pools.
        if "_objective_inputs" not in self.__dict__:
            raise AttributeError(
                "objective_ is set by select or query; this KMedoidsCoreSet has not selected yet."
            )
        if self._objective is None:
            E, metric = self._objective_inputs
            self._objective = mip.coreset_cost(E, self.selection_, metric=metric,
                                               max_memory=self.max_memory)
        return self._objective
