import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skal.adversarial import deepfool
from skal.base import candidate_subset
from skal.learner import ActiveLearner
from skal.nets import NeuralNetClassifier, cnn_classifier
from skal.strategies.dfal import CEAL, DFAL, EGL
from skal.strategies.uncertainty import uncertainty


def _scale(Z):
    return Z * 2.0 - 1.0


def _unscale(Z):
    return (Z + 1.0) / 2.0


@pytest.fixture(scope="module")
def pool(digits_split):
    return digits_split[2][:120]


# --- DFAL ------------------------------------------------------------------


def test_dfal_utilities_are_minus_deepfool_norms(trained_net, pool):
    X = pool[:40]
    dfal = DFAL(preselect=None)
    idx = dfal.query(trained_net, X, 5)
    u = dfal.last_utilities_
    r, y, y_adv, _ = deepfool(trained_net.module_, X, return_labels=True)
    assert (y != y_adv).all()
    np.testing.assert_allclose(-u, np.linalg.norm(r.reshape(40, -1), axis=1), rtol=1e-5)
    np.testing.assert_array_equal(idx, np.argsort(-u, kind="stable")[:5])


def test_dfal_linf_utilities(trained_net, pool):
    u = DFAL(norm="inf", max_iter=20).utilities(trained_net, pool[:12])
    r = deepfool(trained_net.module_, pool[:12], norm=np.inf, max_iter=20)
    np.testing.assert_allclose(-u, np.abs(r.reshape(12, -1)).max(1), rtol=1e-5)


def test_dfal_failed_attacks_rank_last(trained_net, pool):
    u = DFAL(max_iter=1, overshoot=0.0).utilities(trained_net, pool[:60])
    _, y, y_adv, _ = deepfool(trained_net.module_, pool[:60], max_iter=1, overshoot=0.0,
                              return_labels=True)
    failed = y == y_adv
    assert failed.any() and (~failed).any()
    assert np.isfinite(u).all() and u[failed].max() < u[~failed].min()


def test_dfal_augment_copies_flip_prediction_with_oracle_labels(trained_net, pool):
    dfal = DFAL(n_candidates=80, random_state=0)
    idx = dfal.query(trained_net, pool, 6)
    assert len(np.unique(idx)) == 6
    y_oracle = np.arange(6) + 100  # any labels: the copies must carry these
    X_adv, y_adv = dfal.augment(pool[idx], y_oracle)
    assert X_adv.shape == (6,) + pool.shape[1:] and X_adv.dtype == pool.dtype
    np.testing.assert_array_equal(y_adv, y_oracle)
    assert (trained_net.predict(X_adv) != trained_net.predict(pool[idx])).all()
    assert not np.shares_memory(X_adv, pool)
    # Any order, any subset of the queried rows.
    X2, y2 = dfal.augment(pool[idx[[4, 1]]], y_oracle[[4, 1]])
    np.testing.assert_array_equal(X2, X_adv[[4, 1]])
    np.testing.assert_array_equal(y2, y_oracle[[4, 1]])
    # Rows that were not queried get nothing.
    others = np.setdiff1d(np.arange(len(pool)), idx)[:3]
    X3, y3 = dfal.augment(pool[others], [0, 1, 2])
    assert X3.shape == (0,) + pool.shape[1:] and y3.shape == (0,)


def test_dfal_chunked_pool_gives_the_same_query(trained_net, pool, monkeypatch):
    from skal.strategies import dfal as dfal_module

    X = pool[:40]
    whole = DFAL(preselect=None)
    idx = whole.query(trained_net, X, 6)
    monkeypatch.setattr(dfal_module, "_POOL_CHUNK", 7)
    chunked = DFAL(preselect=None)
    np.testing.assert_array_equal(chunked.query(trained_net, X, 6), idx)
    # float32 results depend slightly on how rows are batched.
    np.testing.assert_allclose(chunked.last_utilities_, whole.last_utilities_, rtol=1e-4)
    np.testing.assert_allclose(chunked.adversarial_, whole.adversarial_, rtol=1e-5, atol=1e-6)


def test_dfal_without_adversarial_adds_nothing(trained_net, pool):
    dfal = DFAL(add_adversarial=False)
    idx = dfal.query(trained_net, pool[:30], 3)
    X_adv, y_adv = dfal.augment(pool[:30][idx], [0, 1, 2])
    assert len(X_adv) == 0 and len(y_adv) == 0
    assert len(DFAL().augment(pool[:2], [0, 1])[0]) == 0  # never queried


def test_dfal_seeds_reproduce(trained_net, pool):
    a = DFAL(preselect="random", n_candidates=30, random_state=3).query(trained_net, pool, 4)
    b = DFAL(preselect="random", n_candidates=30, random_state=3).query(trained_net, pool, 4)
    np.testing.assert_array_equal(a, b)
    c = DFAL(preselect="random", n_candidates=30, random_state=4)
    c.query(trained_net, pool, 4)
    assert np.isfinite(c.last_utilities_).sum() == 30


def test_dfal_modal_protocol_returns_utilities(trained_net, pool):
    idx, u = DFAL()(trained_net, pool[:20], 3)
    assert len(idx) == 3 and (np.diff(u) <= 0).all()


def test_dfal_pipeline_copies_are_mapped_back(digits_split):
    X, y = digits_split[0][:100], digits_split[1][:100]
    pipe = make_pipeline(
        FunctionTransformer(_scale, inverse_func=_unscale),
        cnn_classifier("digits", 10, max_epochs=1, random_state=0),
    ).fit(X, y)
    pool = digits_split[2][:40]
    dfal = DFAL()
    idx = dfal.query(pipe, pool, 3)
    X_adv, _ = dfal.augment(pool[idx], [0, 1, 2])
    assert len(X_adv) == 3
    assert (pipe.predict(X_adv) != pipe.predict(pool[idx])).all()

    # FunctionTransformer's default inverse is the identity: not the inverse.
    bad = make_pipeline(FunctionTransformer(_scale), pipe[-1])
    bad[0].fit(X)
    with pytest.warns(UserWarning, match="no copies") as record:
        idx = dfal.query(bad, pool, 3)
    # Through a learner too, the warning points at the user's line, not into skal.
    learner = ActiveLearner(clone(bad), DFAL(), random_state=0).fit(X[:40], y[:40])
    with pytest.warns(UserWarning, match="no copies") as via_learner:
        learner.query(pool, n_instances=3)
    assert {w.filename for w in [*record, *via_learner]} == {__file__}
    assert len(dfal.augment(pool[idx], [0, 1, 2])[0]) == 0


def test_dfal_in_active_learner_adds_copies(digits_split):
    X, y = digits_split[0][:40], digits_split[1][:40]
    pool, y_pool = digits_split[2][:60], digits_split[3][:60]
    net = cnn_classifier("digits", 10, max_epochs=1, random_state=0)
    learner = ActiveLearner(net, DFAL(n_candidates=30), random_state=0).fit(X, y)
    idx = learner.query(pool, n_instances=4)
    learner.teach(pool[idx], y_pool[idx])
    assert 1 <= len(learner.X_extra_) <= 4 and len(learner.y_training) == 44
    assert set(learner.y_extra_) <= set(y_pool[idx])


def test_dfal_bad_parameters(trained_net, pool):
    with pytest.raises(ValueError, match="norm"):
        DFAL(norm=1).query(trained_net, pool, 1)
    with pytest.raises(ValueError, match="max_iter"):
        DFAL(max_iter=0).query(trained_net, pool, 1)
    with pytest.raises(ValueError, match="batch_size"):
        DFAL(batch_size=0).query(trained_net, pool, 1)
    with pytest.raises(TypeError, match="skorch"):
        DFAL().query(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), [[0.5]], 1)


def _margin_top(net, X, k):
    """Independent margin pre-selection: skorch's own predict_proba, a full sort."""
    proba = np.sort(net.predict_proba(X), axis=1)
    gap = proba[:, -1] - proba[:, -2]
    return np.sort(np.argsort(gap, kind="stable")[:k])


def test_dfal_margin_preselection_attacks_only_the_smallest_margins(trained_net, pool):
    dfal = DFAL(candidate_factor=4)
    idx = dfal.query(trained_net, pool, 5)
    expected = _margin_top(trained_net, pool, 20)
    np.testing.assert_array_equal(dfal.candidates_, expected)
    assert set(idx) <= set(expected)
    np.testing.assert_array_equal(np.flatnonzero(np.isfinite(dfal.last_utilities_)), expected)
    # Among the candidates, the ranking is DeepFool's, as on the whole pool.
    inner = DFAL(preselect=None).query(trained_net, pool[expected], 5)
    np.testing.assert_array_equal(idx, expected[inner])
    # n_candidates overrides the factor.
    dfal = DFAL(n_candidates=9)
    assert set(dfal.query(trained_net, pool, 3)) <= set(_margin_top(trained_net, pool, 9))
    assert dfal.candidates_.shape == (9,)


def test_dfal_whole_pool_and_random_variants_keep_the_old_selection(trained_net, pool):
    # The code before pre-selection: the whole pool, or candidate_subset's random
    # draw, ranked by -||r|| with ties to the lower index.
    X = pool[:50]
    u = DFAL(preselect=None).utilities(trained_net, X)
    dfal = DFAL(preselect=None)
    np.testing.assert_array_equal(dfal.query(trained_net, X, 4), np.argsort(-u, kind="stable")[:4])
    assert dfal.candidates_ is None
    cand = candidate_subset(len(pool), 30, 4, 3)
    u = DFAL(preselect=None).utilities(trained_net, pool[cand])
    idx = DFAL(preselect="random", n_candidates=30, random_state=3).query(trained_net, pool, 4)
    np.testing.assert_array_equal(idx, cand[np.argsort(-u, kind="stable")[:4]])
    # A pre-selection as large as the pool attacks the whole pool.
    small = DFAL(candidate_factor=10)
    np.testing.assert_array_equal(small.query(trained_net, X, 5), dfal.query(trained_net, X, 5))
    assert small.candidates_ is None


@pytest.mark.parametrize("cls", [DFAL, EGL])
@pytest.mark.parametrize(
    "params, match",
    [({"preselect": "entropy"}, "preselect"), ({"candidate_factor": 0}, "candidate_factor"),
     ({"candidate_factor": 2.5}, "candidate_factor"),
     ({"candidate_factor": None}, "candidate_factor"),
     ({"n_candidates": 0}, "n_candidates"), ({"n_candidates": "all"}, "n_candidates"),
     ({"preselect": None, "n_candidates": 30}, "needs a pre-selection")],
)
def test_preselection_bad_parameters(trained_net, pool, cls, params, match):
    strategy = cls(**params)
    with pytest.raises(ValueError, match=match):
        strategy.query(trained_net, pool, 2)
    assert not hasattr(strategy, "candidates_")


# --- EGL -------------------------------------------------------------------


def _egl_reference(net, X):
    module = net.module_
    module.eval()
    params = [p for p in module.parameters() if p.requires_grad]
    out = []
    for x in torch.as_tensor(X):
        logits = module(x[None])[0]
        p = torch.softmax(logits, 0).detach()
        total = 0.0
        for k in range(len(p)):
            loss = torch.nn.functional.cross_entropy(logits[None], torch.tensor([k]))
            grads = torch.autograd.grad(loss, params, retain_graph=True)
            total += p[k].item() * torch.sqrt(sum((g**2).sum() for g in grads)).item()
        out.append(total)
    return np.array(out)


def test_egl_matches_per_sample_loop(trained_net, pool):
    X = pool[:6]
    module = trained_net.module_
    was_training = module.training
    expected = _egl_reference(trained_net, X)
    module.train(was_training)
    np.testing.assert_allclose(EGL().utilities(trained_net, X), expected, rtol=1e-4)
    np.testing.assert_allclose(EGL(batch_size=3).utilities(trained_net, X), expected, rtol=1e-4)
    assert module.training == was_training
    idx = EGL().query(trained_net, X, 3)
    np.testing.assert_array_equal(idx, np.argsort(-expected, kind="stable")[:3])


def test_egl_frozen_weights_and_probability_outputs():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    module[0].weight.requires_grad_(False)
    net = NeuralNetClassifier(module, max_epochs=1, random_state=0).initialize()
    X = torch.randn(6, 5).numpy()
    np.testing.assert_allclose(EGL().utilities(net, X), _egl_reference(net, X), rtol=1e-4)

    # skorch's default: a module ending in softmax, trained with NLLLoss.
    soft = torch.nn.Sequential(module, torch.nn.Softmax(dim=1))
    net2 = NeuralNetClassifier(soft, criterion=torch.nn.NLLLoss, max_epochs=1).initialize()
    np.testing.assert_allclose(EGL().utilities(net2, X), _egl_reference(net, X), rtol=1e-4)


def test_egl_seeds_reproduce(trained_net, pool):
    a = EGL(n_candidates=10, random_state=1).query(trained_net, pool[:40], 2)
    b = EGL(n_candidates=10, random_state=1).query(trained_net, pool[:40], 2)
    np.testing.assert_array_equal(a, b)


def test_egl_random_preselection_scores_only_its_subset(trained_net, pool):
    X = pool[:60]
    egl = EGL(candidate_factor=5, random_state=2)
    idx = egl.query(trained_net, X, 3)
    cand = candidate_subset(60, 15, 3, 2)
    np.testing.assert_array_equal(egl.candidates_, cand)
    u = EGL().utilities(trained_net, X[cand])
    np.testing.assert_array_equal(idx, cand[np.argsort(-u, kind="stable")[:3]])
    whole = EGL(preselect=None)
    u = EGL().utilities(trained_net, X)
    np.testing.assert_array_equal(whole.query(trained_net, X, 3), np.argsort(-u, kind="stable")[:3])
    assert whole.candidates_ is None
    margin = EGL(preselect="margin", n_candidates=12)
    assert set(margin.query(trained_net, X, 3)) <= set(_margin_top(trained_net, X, 12))


# --- CEAL ------------------------------------------------------------------


def test_ceal_queries_and_pseudo_labels(digits_split):
    X, y = digits_split[0][:200].reshape(200, -1), digits_split[1][:200]
    pool = digits_split[2][:300].reshape(300, -1)
    labels = np.array(list("abcdefghij"))
    clf = LogisticRegression(max_iter=300).fit(X, labels[y])
    ceal = CEAL(delta=0.4)
    idx = ceal.query(clf, pool, 10)
    proba = clf.predict_proba(pool)
    h = uncertainty(proba, "entropy")
    np.testing.assert_array_equal(idx, np.argsort(-h, kind="stable")[:10])
    expected = np.setdiff1d(np.flatnonzero(h < 0.4), idx)
    assert len(expected) > 20
    X_extra, y_extra = ceal.augment(pool[idx], labels[:10])
    np.testing.assert_array_equal(X_extra, pool[expected])
    np.testing.assert_array_equal(y_extra, clf.predict(pool[expected]))
    # Not the last query's samples: nothing.
    assert len(ceal.augment(pool[expected[:2]], ["a", "b"])[0]) == 0


def test_ceal_with_net_in_learner(digits_split):
    X, y = digits_split[0][:60], digits_split[1][:60] + 10  # labels 10..19
    pool = digits_split[2][:80]
    net = cnn_classifier("digits", 10, max_epochs=2, random_state=0)
    learner = ActiveLearner(net, CEAL(measure="margin", delta=3.0), random_state=0).fit(X, y)
    idx = learner.query(pool, 5)
    strategy = learner.query_strategy_
    proba = learner.predict_proba(pool)
    assert len(strategy.pseudo_indices_) == 75  # delta > log(10): all but the queried
    assert not set(idx) & set(strategy.pseudo_indices_)
    np.testing.assert_array_equal(
        strategy.pseudo_labels_, learner.classes_[proba[strategy.pseudo_indices_].argmax(1)]
    )
    # teach trains on this round's pseudo-labels only; they never pile up.
    learner.teach(pool[idx], digits_split[3][:80][idx] + 10)
    assert len(learner.X_extra_) == 75
    rest = np.delete(pool, idx, axis=0)
    idx2 = learner.query(rest, 5)
    learner.teach(rest[idx2], np.delete(digits_split[3][:80], idx)[idx2] + 10)
    assert len(learner.X_extra_) == len(learner.query_strategy_.pseudo_indices_) <= 70


def test_ceal_bad_parameters(trained_net, pool):
    with pytest.raises(ValueError, match="measure"):
        CEAL(measure="nope").query(trained_net, pool, 1)
    with pytest.raises(ValueError, match="delta"):
        CEAL(delta=-1).query(trained_net, pool, 1)


@pytest.mark.parametrize("strategy", [DFAL(), CEAL(), EGL()])
def test_augment_rejects_mismatched_labels(trained_net, pool, strategy):
    strategy.query(trained_net, pool, n_instances=3)
    with pytest.raises(ValueError, match="X_queried has 3 rows but y_queried has 2"):
        strategy.augment(pool[:3], np.array([0, 1]))
