"""WAAL query: uncertain samples that the critic finds far from the labeled set.

Shui et al., AISTATS 2020 (arXiv:1911.09162), Algorithm 1 and Sec. 3.4. A sample's
score is ``s(x) = u(x) - selection_weight * g(x)``, where ``u`` is an upper bound on
the unknown-label loss built from ``-log p(x)`` (smallest for uncertain samples) and
``g`` is the critic of a :class:`skal.models.WAALClassifier` (high for samples that
look unlabeled, i.e. far in transport terms from the labeled set). The batch is the
``n_instances`` smallest scores.
"""

import warnings

import numpy as np
import torch

from ..base import ScoreBasedStrategy, user_stacklevel
from ..nets import eval_mode, get_net, iter_batches
from ..nets._glue import _batch_size, _net_device

__all__ = ["WAAL", "WAAL_QUERY_PRESETS", "waal_uncertainty"]

_UNCERTAINTIES = ("l2+l1", "linf+l1")

#: Parameter sets of :class:`WAAL`: the released code (L2 + L1, coefficient 10 for
#: every data set) and the paper's Table 3 for Fashion-MNIST and SVHN (L-inf + L1,
#: coefficient 5; the paper uses 10 for CIFAR10 and STL10).
WAAL_QUERY_PRESETS = {
    "released_code": {"uncertainty": "l2+l1", "mixture": 0.5, "selection_weight": 10.0},
    "paper": {"uncertainty": "linf+l1", "mixture": 0.5, "selection_weight": 5.0},
}


def waal_uncertainty(log_proba, uncertainty="l2+l1", mixture=0.5):
    """WAAL's uncertainty term ``u(x)`` from log-probabilities (lower = more uncertain).

    ``u = mixture * A + (1 - mixture) * ||log p||_1`` with ``A = ||log p||_2``
    (``"l2+l1"``, released code) or ``A = max_k -log p_k`` (``"linf+l1"``, paper).
    Both are upper bounds on ``-log p_{y*}`` for the unknown label ``y*``.

    Parameters
    ----------
    log_proba : torch.Tensor or ndarray of shape (n, n_classes)
    uncertainty : {"l2+l1", "linf+l1"}, default="l2+l1"
    mixture : float in [0, 1], default=0.5

    Returns
    -------
    u : same type as ``log_proba``, shape (n,)

    Examples
    --------
    >>> logp = torch.full((1, 10), -np.log(10.0), dtype=torch.float64)
    >>> round(float(waal_uncertainty(logp)[0]), 2)  # uniform p over 10 classes
    15.15
    """
    is_numpy = isinstance(log_proba, np.ndarray)
    logp = torch.as_tensor(log_proba)
    neg = -logp
    l1 = neg.sum(dim=1)
    if uncertainty == "l2+l1":
        a = torch.linalg.vector_norm(logp, dim=1)
    elif uncertainty == "linf+l1":
        a = neg.max(dim=1).values
    else:
        raise ValueError(f"uncertainty must be one of {_UNCERTAINTIES}, got {uncertainty!r}.")
    u = mixture * a + (1.0 - mixture) * l1
    return u.numpy() if is_numpy else u


#: Share of the pool at one critic value above which the critic counts as collapsed.
_COLLAPSED_SHARE = 0.5


def _warn_if_critic_collapsed(g):
    # A critic whose hidden ReLUs have died returns its output bias for nearly every
    # sample; seen on digits with skal's recipe (docs/waal.md). The query is then the
    # uncertainty term alone, whatever selection_weight says, and the user should know.
    if g.size < 2:
        return
    _, counts = np.unique(np.round(g, 6), return_counts=True)
    share = counts.max() / g.size
    if share > _COLLAPSED_SHARE:
        warnings.warn(
            f"WAAL's critic gives {share:.0%} of the pool the same value "
            f"({np.median(g):.4f}): it has collapsed (its hidden units are inactive), so "
            "selection_weight cannot change the batch and the query is WAAL's uncertainty "
            "term alone. Check the learner's critic_grad_norm history; see docs/waal.md.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


class WAAL(ScoreBasedStrategy):
    """WAAL query strategy (Shui et al., AISTATS 2020): uncertainty plus critic diversity.

    Utility (higher = query first) is ``selection_weight * g(x) - u(x)``, the negated
    score of the paper's Algorithm 1, so the top utilities are the smallest scores.
    One pass over the pool runs the feature extractor once and feeds both heads.
    The estimator must be a fitted :class:`skal.models.WAALClassifier` (or a pipeline
    or active learner around one): the critic is trained with the net.

    Parameters
    ----------
    uncertainty : {"l2+l1", "linf+l1"}, default="l2+l1"
        See :func:`waal_uncertainty` (released code: L2 + L1; paper: L-inf + L1).
    mixture : float in [0, 1], default=0.5
        Convex weight of the first norm (the paper's "mixture coefficient").
    selection_weight : float >= 0, default=10.0
        Weight of the critic value (released code: 10; paper: 5 on Fashion-MNIST and
        SVHN, 10 on CIFAR10).
    batch_size : int or None, default=None
        Pool rows per forward pass (``skal.nets.DEFAULT_INFERENCE_BATCH_SIZE``).
    n_candidates : int or None, default=None
        Score only a random subset of the pool of this size.
    random_state : int, RandomState instance or None, default=None
        Draws the candidate subset.

    Warns
    -----
    UserWarning
        When the critic gives more than half of the pool the same value (its hidden
        units have died): ``selection_weight`` then cannot change the batch.

    Examples
    --------
    >>> import numpy as np
    >>> from skal.models import WAALClassifier
    >>> from skal.nets import DigitsCNN
    >>> from skal.datasets import load_digits_images
    >>> X, y = load_digits_images()
    >>> X_lab, y_lab, X_pool = X[:100], y[:100], X[100:400]
    >>> net = WAALClassifier(DigitsCNN, module__n_classes=10, max_epochs=1,
    ...                      random_state=0, verbose=0)
    >>> net = net.fit(np.concatenate([X_lab, X_pool]),
    ...               np.concatenate([y_lab, np.full(len(X_pool), -1)]))
    >>> WAAL().query(net, X_pool, n_instances=5).shape
    (5,)
    """

    def __init__(
        self,
        uncertainty="l2+l1",
        mixture=0.5,
        selection_weight=10.0,
        batch_size=None,
        n_candidates=None,
        random_state=None,
    ):
        self.uncertainty = uncertainty
        self.mixture = mixture
        self.selection_weight = selection_weight
        self.batch_size = batch_size
        self.n_candidates = n_candidates
        self.random_state = random_state

    @classmethod
    def from_preset(cls, preset, **params):
        """A strategy configured by a :data:`WAAL_QUERY_PRESETS` entry.

        Examples
        --------
        >>> WAAL.from_preset("paper").selection_weight
        5.0
        """
        if preset not in WAAL_QUERY_PRESETS:
            raise ValueError(
                f"preset must be one of {sorted(WAAL_QUERY_PRESETS)}, got {preset!r}."
            )
        return cls(**{**WAAL_QUERY_PRESETS[preset], **params})

    def _check_params(self):
        if self.uncertainty not in _UNCERTAINTIES:
            raise ValueError(
                f"uncertainty must be one of {_UNCERTAINTIES}, got {self.uncertainty!r}."
            )
        for name, value, upper in (
            ("mixture", self.mixture, 1.0),
            ("selection_weight", self.selection_weight, np.inf),
        ):
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ) or not (0.0 <= value <= upper) or np.isnan(value):
                bound = "in [0, 1]" if upper == 1.0 else ">= 0"
                raise ValueError(f"{name} must be a float {bound}, got {value!r}.")

    def critic_and_log_proba(self, estimator, X):
        """Critic values ``g(x)`` and log-probabilities in one pass over ``X``.

        Returns
        -------
        g : ndarray of shape (n,)
        log_proba : ndarray of shape (n, n_classes), float64
        """
        net, transform = get_net(estimator)
        critic = getattr(net, "critic_", None)
        module = net.module_
        if critic is None or not hasattr(module, "features") or not hasattr(
            module, "classifier"
        ):
            raise TypeError(
                f"WAAL needs a fitted skal.models.WAALClassifier (a net with a critic and "
                f"a features/classifier module), got {type(net).__name__}."
            )
        X = transform(X)
        device = _net_device(net)
        n = X.shape[0]
        g = np.empty(n, dtype=np.float64)
        log_proba = None
        with eval_mode(module), eval_mode(critic), torch.no_grad():
            for rows, batch in iter_batches(X, _batch_size(self.batch_size), device):
                z = module.features(batch)
                logits = module.classifier(z)
                g[rows] = torch.sigmoid(critic(z)).reshape(-1).double().cpu().numpy()
                logp = torch.log_softmax(logits.double(), dim=1).cpu().numpy()
                if log_proba is None:
                    log_proba = np.empty((n, logp.shape[1]), dtype=np.float64)
                log_proba[rows] = logp
        return g, log_proba

    def _utilities(self, estimator, X):
        self._check_params()
        g, log_proba = self.critic_and_log_proba(estimator, X)
        _warn_if_critic_collapsed(g)
        u = waal_uncertainty(log_proba, self.uncertainty, self.mixture)
        utilities = self.selection_weight * g - u
        # A class probability that underflows makes u infinite: such a point is
        # confidently classified and ranks last, as in the paper.
        # NaN (a diverged net) is left for the base class to report.
        return np.where(np.isneginf(utilities), -np.finfo(np.float64).max, utilities)
