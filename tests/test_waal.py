"""WAAL: training objective (skal.models.WAALClassifier) and query (WAAL strategy)."""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from skal.base import accepts_unlabeled
from skal.models.waal import (
    WAAL_PRESETS,
    TrunkHead,
    WAALClassifier,
    WAALCritic,
    WAALLeNet,
    critic_gradient_penalty,
    critic_loss,
    label_weight_value,
)
from skal.nets import DigitsCNN, NeuralNetClassifier
from skal.registry import make_strategy
from skal.strategies.waal import WAAL, waal_uncertainty


def _semi(X_lab, y_lab, X_unl):
    X = np.concatenate([X_lab, X_unl])
    y = np.concatenate([y_lab, np.full(len(X_unl), -1, dtype=np.int64)])
    return X, y


def _net(**params):
    base = {"module__n_classes": 10, "max_epochs": 1, "batch_size": 32, "random_state": 0,
            "verbose": 0}
    base.update(params)
    return WAALClassifier(DigitsCNN, **base)


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    X_pool = X[100:300]
    net = _net(mu=0.5, lr=0.05).fit(*_semi(X[:100], y[:100], X_pool))
    return net, X_pool


# ------------------------------------------------------------------ gradient penalty


class _TinyCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.5, -2.0]]))
            self.linear.bias.fill_(0.3)

    def forward(self, z):
        return torch.sigmoid(self.linear(z)).reshape(-1)


def _hand_gp(w, b, points, one_sided=False):
    # g(z) = sigmoid(w.z + b)  =>  grad_z g = s(1 - s) w
    s = 1.0 / (1.0 + np.exp(-(points @ w + b)))
    norms = s * (1.0 - s) * np.linalg.norm(w)
    excess = norms - 1.0
    if one_sided:
        excess = np.maximum(excess, 0.0)
    return np.mean(excess**2), norms


@pytest.mark.parametrize("points", ["interpolates", "all"])
@pytest.mark.parametrize("one_sided", [False, True])
def test_gradient_penalty_equals_hand_computation(points, one_sided):
    critic = _TinyCritic().double()
    z_l = torch.tensor([[0.2, -0.1], [1.0, 0.5], [-0.3, 0.8]], dtype=torch.float64)
    z_u = torch.tensor([[-0.5, 0.4], [0.1, 0.1], [2.0, -1.0]], dtype=torch.float64)
    eps = torch.tensor([0.25, 0.5, 0.9], dtype=torch.float64)
    gp, norms = critic_gradient_penalty(
        critic, z_l, z_u, points=points, one_sided=one_sided, eps=eps
    )
    inter = z_u.numpy() + eps.numpy()[:, None] * (z_l.numpy() - z_u.numpy())
    pts = inter if points == "interpolates" else np.concatenate([inter, z_u, z_l])
    w = critic.linear.weight.detach().numpy().ravel()
    b = critic.linear.bias.item()
    expected, expected_norms = _hand_gp(w, b, pts, one_sided)
    assert gp.item() == pytest.approx(expected, rel=1e-7)
    np.testing.assert_allclose(norms.numpy(), expected_norms, rtol=1e-7)

    # The penalty keeps its graph (create_graph): its gradient in the critic's
    # weights equals the finite-difference derivative of the hand formula.
    gp.backward()
    step = 1e-6
    for i in range(2):
        w_plus, w_minus = w.copy(), w.copy()
        w_plus[i] += step
        w_minus[i] -= step
        numeric = (_hand_gp(w_plus, b, pts, one_sided)[0] - _hand_gp(w_minus, b, pts, one_sided)[0])
        assert critic.linear.weight.grad[0, i].item() == pytest.approx(
            numeric / (2 * step), rel=1e-5, abs=1e-9
        )


def test_gradient_penalty_linear_critic_is_norm_gap():
    w = torch.tensor([0.6, 0.8, 2.0])
    gp, norms = critic_gradient_penalty(lambda z: z @ w, torch.randn(4, 3), torch.randn(4, 3))
    assert gp.item() == pytest.approx((w.norm().item() - 1.0) ** 2, rel=1e-5)
    assert norms.shape == (4,)


def test_critic_loss_sign_and_value():
    critic = _TinyCritic().double()
    z_l = torch.tensor([[0.2, -0.1], [1.0, 0.5]], dtype=torch.float64)
    z_u = torch.tensor([[-0.5, 0.4], [0.1, 0.1]], dtype=torch.float64)
    eps = torch.tensor([0.3, 0.7], dtype=torch.float64)
    gp, _ = critic_gradient_penalty(critic, z_l, z_u, eps=eps)
    with torch.no_grad():
        gap = critic(z_u).mean() - 0.25 * critic(z_l).mean()
    kwargs = {"label_weight": 0.25, "mu": 0.1, "gp_weight": 2.0, "eps": eps}
    wgan, stats = critic_loss(critic, z_l, z_u, gradient_penalty="wgan", **kwargs)
    released, _ = critic_loss(critic, z_l, z_u, gradient_penalty="released", **kwargs)
    none, _ = critic_loss(critic, z_l, z_u, gradient_penalty=None, **kwargs)
    assert stats["critic_gap"].item() == pytest.approx(gap.item())
    assert none.item() == pytest.approx(-0.1 * gap.item())
    # WGAN-GP: the critic minimises +lambda*GP; the released code has the opposite sign.
    assert wgan.item() == pytest.approx(-0.1 * gap.item() + 0.2 * gp.item())
    assert released.item() == pytest.approx(-0.1 * gap.item() - 0.2 * gp.item())


def test_wgan_penalty_steps_reduce_the_penalty():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        critic = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
        z_l, z_u = torch.randn(16, 4), torch.randn(16, 4) + 1.0
        eps = torch.rand(16)
    opt = torch.optim.SGD(critic.parameters(), lr=0.05)
    before = critic_gradient_penalty(critic, z_l, z_u, eps=eps)[0].item()
    for _ in range(30):
        opt.zero_grad()
        loss, _ = critic_loss(critic, z_l, z_u, label_weight=1.0, mu=1.0, gp_weight=10.0,
                              eps=eps)
        loss.backward()
        opt.step()
    after = critic_gradient_penalty(critic, z_l, z_u, eps=eps)[0].item()
    assert after < before


# ------------------------------------------------------------------ reweighting


def test_label_weight_values():
    assert label_weight_value("paper", 1000, 9000, query_size=1000) == pytest.approx(4 / 81)
    # Fashion-MNIST round 0 (spec section 5): C0 0.017, L/U 0.026, exact 0.66.
    assert label_weight_value("paper", 1000, 39000, 500) == pytest.approx(0.0169, abs=1e-4)
    assert label_weight_value("ratio", 1000, 39000) == pytest.approx(1 / 39)
    assert label_weight_value("exact", 1000, 39000, 500) == pytest.approx(0.658, abs=1e-3)
    assert label_weight_value("one", 3, 4) == 1.0
    assert label_weight_value(0.3, 3, 4) == 0.3
    with pytest.raises(ValueError, match="query_size"):
        label_weight_value("paper", 10, 100)
    with pytest.raises(ValueError, match="label_weight"):
        label_weight_value("bogus", 10, 100)


# ------------------------------------------------------------------ training


def test_mu_zero_equals_supervised_training(digits):
    X, y = digits
    X_lab, y_lab, X_unl = X[:96], y[:96], X[96:160]
    common = {"module__n_classes": 10, "optimizer": torch.optim.SGD, "lr": 0.05,
              "optimizer__momentum": 0.5, "batch_size": 32, "max_epochs": 2, "random_state": 3,
              "verbose": 0, "iterator_train__shuffle": True}
    plain = NeuralNetClassifier(DigitsCNN, **common).fit(X_lab, y_lab)
    waal = WAALClassifier(DigitsCNN, mu=0.0, **common).fit(*_semi(X_lab, y_lab, X_unl))
    for (name, a), (_, b) in zip(plain.module_.state_dict().items(),
                                 waal.module_.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    np.testing.assert_allclose(plain.history[:, "train_loss"], waal.history[:, "train_loss"])


class _RecordingCE(nn.CrossEntropyLoss):
    seen: list = []  # noqa: RUF012 - shared on purpose: skorch instantiates the class

    def forward(self, input, target):
        _RecordingCE.seen.append(target.detach().cpu().numpy().copy())
        return super().forward(input, target)


def test_unlabeled_rows_never_enter_cross_entropy(digits):
    X, y = digits
    lab = np.flatnonzero(y < 3)[:30]  # labeled rows: classes 0-2 only
    unl = np.flatnonzero(y >= 3)[:90]  # unlabeled rows come from other classes
    _RecordingCE.seen = []
    net = _net(criterion=_RecordingCE, mu=0.5, batch_size=16)
    net.fit(*_semi(X[lab], y[lab], X[unl]))
    targets = np.concatenate(_RecordingCE.seen)
    assert set(np.unique(targets)) <= {0, 1, 2}
    # One epoch = one pass over the 90 unlabeled rows, each paired with a labeled row.
    assert targets.shape[0] == 90
    assert np.array_equal(np.sort(np.bincount(targets, minlength=3)),
                          np.sort(np.bincount(np.tile(y[lab], 3), minlength=3)))
    assert list(net.classes_) == [0, 1, 2]
    assert net.n_labeled_ == 30 and net.n_unlabeled_ == 90
    assert net.label_weight_ == pytest.approx(30 / 90)


def test_paired_epoch_covers_unlabeled_once_and_cycles_labeled():
    from skal.models.waal import _PairedDataset

    X_l = torch.arange(3.0)[:, None]
    X_u = torch.arange(10.0)[:, None] + 100
    ds = _PairedDataset(X_l, torch.arange(3), X_u)
    (_, x_u), y_l = ds.__getitems__(list(range(len(ds))))
    assert sorted(x_u.ravel().tolist()) == list(range(100, 110))
    counts = np.bincount(y_l.numpy(), minlength=3)
    assert counts.sum() == 10 and counts.min() >= 3 and counts.max() <= 4


def test_critic_trains_only_when_mu_positive(digits):
    X, y = digits
    data = _semi(X[:64], y[:64], X[64:128])
    nets = {}
    for mu in (0.0, 0.5):
        net = _net(mu=mu).initialize()
        start = [p.detach().clone() for p in net.critic_.parameters()]
        net.partial_fit(*data)
        moved = any(not torch.equal(a, b)
                    for a, b in zip(start, net.critic_.parameters(), strict=True))
        nets[mu] = moved
        assert ("critic_gap" in net.history[-1]) == (mu > 0)
    assert nets == {0.0: False, 0.5: True}


def test_seeded_training_is_reproducible_and_leaves_global_rng(digits):
    X, y = digits
    data = _semi(X[:64], y[:64], X[64:128])
    state = torch.get_rng_state()
    a = _net(mu=0.5, random_state=7).fit(*data)
    # The pool can also come as a fit parameter (modAL: teach(X, y, X_unlabeled=pool)).
    b = _net(mu=0.5, random_state=7).fit(X[:64], y[:64], X_unlabeled=X[64:128])
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(list(a.module_.parameters()) + list(a.critic_.parameters()),
                    list(b.module_.parameters()) + list(b.critic_.parameters()), strict=True):
        assert torch.equal(p, q)


def test_step_lr_schedule_and_restored_lr(digits):
    from skorch.callbacks import Callback

    class RecordLR(Callback):
        def initialize(self):
            self.lrs = []
            return self

        def on_epoch_begin(self, net, **kwargs):
            self.lrs.append([opt.param_groups[0]["lr"] for opt in net._waal_optimizers()])

    X, y = digits
    rec = RecordLR()
    net = _net(lr_schedule="step", lr=0.1, max_epochs=4, callbacks=[rec], batch_size=64)
    net.fit(*_semi(X[:20], y[:20], X[20:40]))
    lrs = dict(net.callbacks_)["RecordLR"].lrs
    np.testing.assert_allclose(np.array(lrs)[:, 0], [0.1, 0.1, 0.01, 0.001])
    assert all(len(set(row)) == 1 for row in lrs)  # all three optimizers together
    assert net.optimizer_critic_.param_groups[0]["lr"] == 0.1


def test_presets_and_three_optimizers():
    net = WAALClassifier.from_preset("released_code", DigitsCNN, module__n_classes=3,
                                     verbose=0).initialize()
    assert net.gradient_penalty == "released" and net.gp_points == "all"
    assert net.max_epochs == 80 and net.optimizer_.param_groups[0]["momentum"] == 0.5
    names = {id(p) for opt in net._waal_optimizers() for g in opt.param_groups
             for p in g["params"]}
    expected = {id(p) for p in list(net.module_.parameters()) + list(net.critic_.parameters())}
    assert names == expected
    assert {id(p) for g in net.optimizer_critic_.param_groups for p in g["params"]} == {
        id(p) for p in net.critic_.parameters()}
    assert set(WAAL_PRESETS) == {"released_code", "paper"}
    with pytest.raises(ValueError, match="preset"):
        WAALClassifier.from_preset("nope", DigitsCNN)


def test_tags_clone_and_critic_shape():
    net = _net(critic__hidden_units=7)
    assert accepts_unlabeled(net)
    twin = clone(net)
    assert twin.get_params()["critic__hidden_units"] == 7
    twin.initialize()
    assert isinstance(twin.critic_, WAALCritic)
    assert twin.critic_.net[0].in_features == 64 and twin.critic_.net[0].out_features == 7
    custom = _net(critic=nn.Sequential(nn.Linear(64, 1))).initialize()
    assert isinstance(custom.critic_, nn.Sequential)
    custom.set_params(lr=0.2, optimizer__momentum=0.1)
    for opt in custom._waal_optimizers():
        assert opt.param_groups[0]["lr"] == 0.2 and opt.param_groups[0]["momentum"] == 0.1
    restored = pickle.loads(pickle.dumps(custom))
    assert isinstance(restored.critic_, nn.Sequential)


def test_trunk_head_split_torchvision():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=4).eval()
    split = TrunkHead.split(model).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(split(x), model(x))
        assert split.features(x).shape == (2, 512)
    assert isinstance(model.fc, nn.Linear)  # the original is untouched
    assert split.embedding_dim == 512


def test_waal_lenet_dims():
    net = WAALLeNet(n_classes=10)
    assert net.features(torch.zeros(1, 1, 28, 28)).shape == (1, 320)


# ------------------------------------------------------------------ bad input


def test_bad_input_errors(digits):
    X, y = digits
    X_small = X[:40]
    with pytest.raises(ValueError, match="labeled rows"):
        _net().fit(X_small, np.full(40, -1))
    with pytest.raises(ValueError, match="other than -1"):
        _net().fit(X_small, np.r_[y[:39], -2])
    with pytest.raises(ValueError, match="rows"):
        _net().fit(X_small, y[:30])
    with pytest.raises(ValueError, match="needs y"):
        _net().fit(X_small, None)
    with pytest.raises(ValueError, match="integer"):
        _net().fit(X_small, np.r_[y[:39], 0.5])
    with pytest.raises(ValueError, match="mu"):
        _net(mu=-1.0).fit(X_small, y[:40])
    with pytest.raises(ValueError, match="gradient_penalty"):
        _net(gradient_penalty="bogus").fit(X_small, y[:40])
    with pytest.raises(ValueError, match="query_size"):
        _net(label_weight="paper").fit(*_semi(X[:20], y[:20], X[20:40]))
    # Raised inside skorch's fit loop, the warning still points at this line.
    with pytest.warns(UserWarning, match="no unlabeled rows") as record:
        _net().fit(X_small, y[:40])
    assert {w.filename for w in record} == {__file__}


# ------------------------------------------------------------------ query


def test_uncertainty_reference_values():
    uniform = np.full((1, 10), -np.log(10.0))
    assert waal_uncertainty(uniform)[0] == pytest.approx(15.15, abs=1e-2)
    assert waal_uncertainty(uniform, "linf+l1")[0] == pytest.approx(
        0.5 * (np.log(10) + 10 * np.log(10)))
    sharp = np.log(np.r_[0.99, np.full(9, 0.01 / 9)])[None]
    assert waal_uncertainty(sharp)[0] > waal_uncertainty(uniform)[0]
    with pytest.raises(ValueError, match="uncertainty"):
        waal_uncertainty(uniform, "l3")


@pytest.mark.parametrize("uncertainty", ["l2+l1", "linf+l1"])
def test_query_scores_match_direct_computation(fitted, uncertainty):
    net, X_pool = fitted
    strategy = WAAL(uncertainty=uncertainty, selection_weight=3.0, batch_size=64)
    utilities = strategy.utilities(net, X_pool)
    module, critic = net.module_.eval(), net.critic_.eval()
    with torch.no_grad():
        x = torch.as_tensor(X_pool)
        logp = torch.log_softmax(module(x).double(), dim=1).numpy()
        g = torch.sigmoid(critic(module.features(x))).double().numpy().ravel()
    if uncertainty == "l2+l1":
        u = 0.5 * np.linalg.norm(logp, axis=1) + 0.5 * (-logp).sum(axis=1)
    else:
        u = 0.5 * (-logp).max(axis=1) + 0.5 * (-logp).sum(axis=1)
    np.testing.assert_allclose(utilities, 3.0 * g - u, rtol=1e-5, atol=1e-5)
    idx = strategy.query(net, X_pool, n_instances=7)
    np.testing.assert_array_equal(idx, np.argsort(u - 3.0 * g, kind="stable")[:7])
    assert len(set(idx.tolist())) == 7


def test_query_weight_zero_is_pure_uncertainty(fitted):
    net, X_pool = fitted
    idx = WAAL(selection_weight=0.0).query(net, X_pool, n_instances=5)
    _, logp = WAAL().critic_and_log_proba(net, X_pool)
    np.testing.assert_array_equal(idx, np.argsort(waal_uncertainty(logp), kind="stable")[:5])


def test_collapsed_critic_is_reported_and_query_falls_back_to_uncertainty(fitted):
    net, X_pool = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a working critic tells samples apart: no warning
        WAAL().query(net, X_pool, n_instances=5)
    dead = copy.deepcopy(net)
    with torch.no_grad():  # every hidden ReLU inactive: what training on digits ends in
        dead.critic_.net[0].weight.zero_()
        dead.critic_.net[0].bias.fill_(-1.0)
    with pytest.warns(UserWarning, match="collapsed") as record:
        idx = WAAL(selection_weight=10.0).query(dead, X_pool, n_instances=5)
    _, logp = WAAL().critic_and_log_proba(dead, X_pool)
    np.testing.assert_array_equal(idx, np.argsort(waal_uncertainty(logp), kind="stable")[:5])
    # The warning points at the caller's line, also through a wrapping strategy.
    with pytest.warns(UserWarning, match="collapsed") as wrapped:
        make_strategy("softrank-waal", random_state=0).query(dead, X_pool, n_instances=5)
    assert {w.filename for w in [*record, *wrapped]} == {__file__}


def test_query_modal_protocol_and_errors(fitted, digits):
    net, X_pool = fitted

    class ModalLikeLearner:  # what modAL's ActiveLearner exposes
        def __init__(self, estimator):
            self.estimator = estimator
            self.query_strategy = WAAL()
            self.X_training = None

    idx, util = WAAL()(ModalLikeLearner(net), X_pool, n_instances=4)
    assert idx.shape == (4,) and util.shape == (4,)
    assert np.all(np.diff(util) <= 0)

    X, y = digits
    plain = NeuralNetClassifier(DigitsCNN, module__n_classes=10, max_epochs=1, verbose=0,
                                random_state=0).fit(X[:40], y[:40])
    with pytest.raises(TypeError, match="WAALClassifier"):
        WAAL().query(plain, X_pool, 3)
    with pytest.raises(ValueError, match="selection_weight"):
        WAAL(selection_weight=-1.0).query(net, X_pool, 3)
    with pytest.raises(ValueError, match="uncertainty"):
        WAAL(uncertainty="max").query(net, X_pool, 3)
    assert WAAL.from_preset("paper").get_params()["uncertainty"] == "linf+l1"


def test_skal_active_learner_passes_pool(digits):
    from skal import ActiveLearner

    X, y = digits
    X_pool, y_pool = X[40:140], y[40:140]
    learner = ActiveLearner(_net(mu=0.5), WAAL(), random_state=0)
    learner.fit(X[:40], y[:40], X_unlabeled=X_pool)
    assert learner.estimator_.n_unlabeled_ == len(X_pool)
    idx = learner.query(X_pool, n_instances=5)
    assert len(set(idx.tolist())) == 5
    learner.teach(X_pool[idx], y_pool[idx])
    assert learner.estimator_.n_unlabeled_ == len(X_pool) - 5


def test_waal_in_grid_search(digits):
    from sklearn.model_selection import GridSearchCV

    from skal import ActiveLearningClassifier, RandomSampling

    X, y = digits
    clf = ActiveLearningClassifier(_net(mu=0.5), WAAL(), n_initial=20, batch_size=10,
                                   n_queries=1, random_state=0)
    search = GridSearchCV(clf, {"query_strategy": [WAAL(), RandomSampling()]}, cv=2)
    search.fit(X[:160], y[:160])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.learner_.estimator_.n_unlabeled_ > 0


def test_other_optimizers_do_not_get_sgd_momentum(digits):
    X, y = digits
    net = _net(optimizer=torch.optim.Adam, lr=3e-3).fit(*_semi(X[:60], y[:60], X[60:120]))
    assert isinstance(net.optimizer_, torch.optim.Adam)
    assert _net().get_params()["optimizer__momentum"] == 0.5
