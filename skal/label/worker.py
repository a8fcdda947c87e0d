"""The background trainer of ``skal label``: retrain, estimate accuracy, query.

A :class:`Worker` thread reads the labels from the :class:`~skal.label.store.Store`,
refits a :class:`skal.ActiveLearner` every ``retrain_every`` new labels (or when
the pending batch runs out), estimates its accuracy by cross-validation on the
labeled set, updates the stopping criteria and writes the next query batch back
to the store. The web page never waits for it: it only reads the store.
"""

import threading
import time
import traceback
from numbers import Integral

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_val_score

from .pool import UnreadableImage

__all__ = ["MODELS", "Worker", "make_model"]

#: ``--model`` choices: name -> (feature image size, colour mode).
MODELS = {"logreg": (16, "rgb"), "lenet5": (28, "rgb")}


def make_model(name, n_classes, random_state=0):
    """The learner's estimator for ``--model``.

    ``"logreg"`` (default): a logistic regression on the image downsampled to
    16x16 RGB pixels, standardised: a linear model on 768 features, quick to
    refit, that works on images of any size. ``"lenet5"``: skal's
    LeNet-5 (:func:`skal.nets.cnn_classifier`) on 28x28 RGB, 10 epochs; slower,
    but the deep strategies (BALD, DFAL, core-set on embeddings...) need a net.

    Examples
    --------
    >>> make_model("logreg", 3)[-1]
    LogisticRegression(max_iter=300, random_state=0)
    """
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from ..nets import Flatten

        return make_pipeline(
            Flatten(), StandardScaler(),
            LogisticRegression(max_iter=300, random_state=random_state),
        )
    if name == "lenet5":
        from ..nets import cnn_classifier

        size = MODELS["lenet5"][0]
        return cnn_classifier("lenet5", max(2, n_classes), in_channels=3, max_epochs=10,
                              module__input_size=size, random_state=random_state)
    raise ValueError(f"Unknown model {name!r}; choose from {', '.join(MODELS)}.")


def _check_positive(value, name):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


class Worker:
    """Retrains and queries in a background thread.

    Parameters
    ----------
    store : Store
    pool : FolderPool or ArrayPool
    classes : list of str
    strategy : str or QueryStrategy, default="margin"
        A ``skal`` command-line name (:func:`skal.cli.make_strategy`) or a strategy.
    model : {"logreg", "lenet5"}, default="logreg"
        See :func:`make_model`.
    batch_size : int, default=10
        Items per query batch.
    retrain_every : int, default=10
        Retrain after this many new labels (also when the batch runs out).
    cv : int, default=5
        Folds of the accuracy estimate (fewer when a class has fewer labels; 0: none).
    budget : int or None, default=None
        Adds a :class:`skal.stopping.BudgetStop` to the criteria shown.
    n_stop_set : int, default=500
        Pool items of the :class:`skal.stopping.StabilizingPredictions` stop set.
    random_state : int, default=0

    Examples
    --------
    >>> worker = Worker(store, pool, ["cat", "dog"])  # doctest: +SKIP
    >>> worker.step()  # doctest: +SKIP

    ``step`` is one pass in the calling thread (the tests use it); ``start`` runs
    it in the background.
    """

    def __init__(self, store, pool, classes, *, strategy="margin", model="logreg", batch_size=10,
                 retrain_every=10, cv=5, budget=None, n_stop_set=500, random_state=0):
        from ..cli import make_strategy

        self.store, self.pool, self.classes = store, pool, list(classes)
        if len(self.classes) < 2:
            raise ValueError(f"Give at least two classes, got {self.classes}.")
        self.strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
        self.strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
        if model not in MODELS:
            raise ValueError(f"Unknown model {model!r}; choose from {', '.join(MODELS)}.")
        self.model_name = model
        self.batch_size = _check_positive(batch_size, "batch_size")
        self.retrain_every = _check_positive(retrain_every, "retrain_every")
        if isinstance(cv, bool) or not isinstance(cv, Integral) or cv < 0 or cv == 1:
            raise ValueError(f"cv must be 0 (no estimate) or an int >= 2, got {cv!r}.")
        self.cv = int(cv)
        self.budget = None if budget is None else _check_positive(budget, "budget")
        self.n_stop_set = _check_positive(n_stop_set, "n_stop_set")
        self.random_state = int(random_state)
        self.learner = None
        self.criteria = None
        self._trained = None  # {id: label} the current model was fitted on
        self._features = None
        self._index = None
        self.phase = "starting"
        self.error = None
        self.last_fit_seconds = None
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread = None

    # -- thread control --------------------------------------------------
    def start(self):
        """Run :meth:`step` in a daemon thread until :meth:`stop`."""
        if self._thread is None or not self._thread.is_alive():
            self._halt.clear()
            self._thread = threading.Thread(target=self._loop, name="skal-label-worker",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout=10):
        self._halt.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self):
        """Wake the thread up (a label was posted)."""
        self._wake.set()

    def _loop(self):
        while not self._halt.is_set():
            try:
                busy = self.step()
            except Exception as exc:  # keep serving the page; show the error there
                self.error = f"{type(exc).__name__}: {exc}"
                self.phase = "error"
                traceback.print_exc()
                busy = False
            if not busy:
                self._wake.wait(timeout=1.0)
                self._wake.clear()

    @property
    def busy(self):
        return self.phase in ("reading images", "training", "querying")

    def status(self):
        return {"phase": self.phase, "error": self.error, "model": self.model_name,
                "strategy": self.strategy_name, "last_fit_seconds": self.last_fit_seconds,
                "model_ready": self.learner is not None}

    # -- one pass --------------------------------------------------------
    def step(self):
        """Do what is due (read the pool, retrain, query); returns True if it did anything."""
        if self._features is None:
            self._read_pool()
            return True
        labels = self.store.labels()
        batch = self.store.batch()
        trainable = len(set(labels.values())) >= 2
        restart = self._trained is None and bool(self.store.rounds())
        new = 0 if self._trained is None else sum(
            1 for k, v in labels.items() if self._trained.get(k) != v)
        changed = self._trained is None or labels != self._trained
        due = trainable and changed and (
            self.learner is None or new >= self.retrain_every or (not batch and new > 0)
        )
        if due:
            # After a restart the model is rebuilt, not a new round of the curve.
            self._train(labels, record=not restart)
            if restart and batch:
                # kill -9 and restart: the pending batch is kept as it was.
                self.phase = "idle"
                return True
            self._query()
            return True
        if not batch:
            if self._candidates():
                self._query()
                return True
            self.phase = "done"
            return False
        self.phase = "idle"
        return False

    def _read_pool(self):
        self.phase = "reading images"
        size, mode = MODELS[self.model_name]
        bad = {a["item_id"] for a in self.store.annotations(kind="unreadable")}
        feats, index = [], {}
        for item in self.pool.ids:
            if item in bad:
                continue
            try:
                feats.append(self.pool.features(item, size=size, mode=mode))
            except UnreadableImage as exc:
                self.store.add_unreadable(item, str(exc))
                continue
            index[item] = len(feats) - 1
        shape = (3, size, size)
        self._features = np.stack(feats).astype(np.float32) if feats else np.zeros((0, *shape),
                                                                                 np.float32)
        self._index = index
        rng = np.random.RandomState(self.random_state)
        ids = list(index)
        stop_ids = [ids[i] for i in rng.permutation(len(ids))[: self.n_stop_set]]
        self._stop_set = self._X(stop_ids)
        self.criteria = self._new_criteria()

    def _new_criteria(self):
        from ..stopping import BudgetStop, StabilizingPredictions, UncertaintyStop, check_criteria

        crit = {}
        if self.budget is not None:
            crit["budget"] = BudgetStop(self.budget)
        if len(self._stop_set):
            crit["stabilizing predictions"] = StabilizingPredictions(self._stop_set)
        crit["max uncertainty"] = UncertaintyStop(threshold=0.1, aggregate="max")
        crit["overall uncertainty"] = UncertaintyStop(threshold=0.05, aggregate="mean")
        return check_criteria(crit)

    def _X(self, ids):
        X = self._features[[self._index[i] for i in ids]] if ids else self._features[:0]
        return X.reshape(len(X), -1) if self.model_name == "logreg" else X

    def _candidates(self):
        done = self.store.annotated_ids()
        return [i for i in self._index if i not in done]

    def _train(self, labels, record=True):
        from ..learner import ActiveLearner

        self.phase = "training"
        ids = [i for i in labels if i in self._index]
        X, y = self._X(ids), np.array([labels[i] for i in ids])
        t0 = time.perf_counter()
        model = make_model(self.model_name, len(self.classes), self.random_state)
        learner = ActiveLearner(model, clone(self.strategy), classes=np.array(self.classes),
                                random_state=self.random_state).fit(X, y)
        self.last_fit_seconds = time.perf_counter() - t0
        cv_acc = self._cv_accuracy(model, X, y)
        self.learner, self._trained = learner, dict(labels)
        self.error = None
        pool_ids = self._candidates()
        for criterion in self.criteria.values():
            criterion.update(learner, self._X(pool_ids))
        if record:
            self.store.add_round(len(labels), cv_acc, strategy=self.strategy_name,
                                 stopping={k: c.state() for k, c in self.criteria.items()})

    def _cv_accuracy(self, model, X, y):
        if self.cv == 0:
            return None
        _, counts = np.unique(y, return_counts=True)
        folds = min(self.cv, int(counts.min()))
        if folds < 2:
            return None
        splitter = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
        # Class indices, not names: skorch nets train on integer targets.
        codes = np.array([self.classes.index(v) for v in y], dtype=np.int64)
        return float(np.mean(cross_val_score(clone(model), X, codes, cv=splitter)))

    def _query(self):
        self.phase = "querying"
        ids = self._candidates()
        if not ids:
            self.phase = "done"
            return
        n = min(self.batch_size, len(ids))
        rounds = self.store.rounds()
        model_round = rounds[-1]["round"] if rounds and self.learner is not None else None
        chosen = None
        if self.learner is not None:
            try:
                chosen = [ids[i] for i in self.learner.query(self._X(ids), n_instances=n)]
            except Exception as exc:  # a strategy that does not fit the model: say so
                self.error = (f"{self.strategy_name} failed on the {self.model_name} model "
                              f"({type(exc).__name__}: {exc}); this batch is random.")
                model_round = None
        if chosen is None:
            rng = np.random.RandomState(
                (self.random_state + self.store.batch_info()["generation"]) % (2**31 - 1))
            chosen = [ids[i] for i in rng.choice(len(ids), n, replace=False)]
        self.store.set_batch(chosen, model_round)
        self.phase = "idle"
