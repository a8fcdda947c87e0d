"""BALNet: KFAC statistics, the trace criterion, greedy selection, the strategy."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from torch import nn

from skal.learner import ActiveLearner
from skal.nets import NeuralNetClassifier
from skal.strategies._kfac import FisherRecorder, find_blocks, iter_block_stats
from skal.strategies.balnet import BALNet, greedy_trace_selection, trace_criterion

# ---------------------------------------------------------------------------
# Tiny nets


class TinyCNN(nn.Module):
    """Conv (KFAC + diagonal bias) -> BatchNorm (diagonal) -> two dense layers (KFAC)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=2)  # 8x8 -> 3x3
        self.bn = nn.BatchNorm2d(2)
        self.fc1 = nn.Linear(18, 5)
        self.fc2 = nn.Linear(5, 10)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x))).flatten(1)
        return self.fc2(F.relu(self.fc1(h)))


class InplaceNet(nn.Module):
    """In-place activations, Conv1d, a layer used twice: the hooks must cope."""

    def __init__(self):
        super().__init__()
        self.conv1d = nn.Conv1d(8, 3, 3, padding=1, padding_mode="reflect")
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.shared = nn.Linear(2 * 64 + 24, 6)
        self.bn1 = nn.BatchNorm1d(6)
        self.out = nn.Linear(6, 4)

    def forward(self, x):
        h = torch.relu_(self.bn(self.conv(x))).flatten(1)
        s = nn.functional.relu(self.conv1d(x[:, 0]), inplace=True).flatten(1)
        z = torch.relu_(self.bn1(self.shared(torch.cat([h, s], 1))))
        return self.out(z) + self.out(0.5 * z)


class SeqNet(nn.Module):
    """Digits rows as 8 time steps of 8 features."""

    def __init__(self, cell="lstm", hidden=12, n_classes=10):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.rnn = rnn(8, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x):
        h = self.rnn(x.reshape(x.shape[0], 8, 8))[0][:, -1]
        return self.out(h)


class Recurrent(nn.Module):
    def __init__(self, cls, **kw):
        super().__init__()
        self.rnn = cls(4, 5, **kw)
        self.fc = nn.Linear(5 * (2 if kw.get("bidirectional") else 1), 3)
        self.batch_first = kw.get("batch_first", False)

    def forward(self, x):
        out = self.rnn(x if self.batch_first else x.transpose(0, 1))[0]
        return self.fc(out[:, -1] if self.batch_first else out[-1])


class FunctionalOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(64, 10) * 0.1)
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return x.flatten(1) @ self.w


def _fit(module, X, y, epochs=2, **kw):
    net = NeuralNetClassifier(module, max_epochs=epochs, lr=1e-2, batch_size=32,
                              optimizer=torch.optim.Adam, random_state=0, verbose=0, **kw)
    return net.fit(X, y)


@pytest.fixture(scope="module")
def tiny(digits):
    X, y = digits
    return _fit(TinyCNN, X[:150], y[:150]), X, y


def _log_softmax(out):
    return torch.log_softmax(out, 1)


# ---------------------------------------------------------------------------
# Per-sample statistics against autograd


def _per_sample_grads(module, X, y, i):
    module.zero_grad()
    (-_log_softmax(module(X[i:i + 1]))[0, y[i]]).backward()
    return {n: p.grad.clone() for n, p in module.named_parameters()}


def _check_stats_against_autograd(module, X, y):
    """sum_t g_t a_t^T must be the per-sample weight gradient (bias as last column)."""
    blocks, owners = find_blocks(module)
    (_, _, stats), = iter_block_stats(
        module, blocks, owners, [(slice(0, len(X)), X)], _log_softmax, y)
    for i in range(len(X)):
        grads = _per_sample_grads(module, X, y, i)
        for block, s in zip(blocks, stats, strict=True):
            mod, _, pname = block.name.rpartition(".")
            prefix = mod + "." if mod else ""
            if block.kind == "kfac":
                acts, g = s
                W = grads[block.name].reshape(block.d_out, -1)
                bias = prefix + pname.replace("weight", "bias")
                if W.shape[1] + 1 == block.d_in:
                    W = torch.cat([W, grads[bias][:, None]], 1)
                torch.testing.assert_close(g[0, i].T @ acts[i], W, atol=1e-5, rtol=1e-4)
            elif pname == "bias":
                torch.testing.assert_close(s[0, i], grads[block.name], atol=1e-5, rtol=1e-4)
            else:  # BatchNorm: weight then bias
                ref = torch.cat([grads[prefix + "weight"], grads[prefix + "bias"]])
                torch.testing.assert_close(s[0, i], ref, atol=1e-5, rtol=1e-4)
    return blocks


def test_per_sample_statistics_match_autograd_cnn():
    torch.manual_seed(0)
    module = InplaceNet()
    X = torch.randn(5, 1, 8, 8)
    module.train()(X)  # non-trivial BatchNorm running statistics
    module.eval()
    y = np.array([0, 1, 2, 3, 1])
    blocks = _check_stats_against_autograd(module, X, y)
    assert [b.kind for b in blocks].count("diag") == 4  # two conv biases, two BatchNorms


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU, nn.LSTM])
@pytest.mark.parametrize("kw", [{"batch_first": True},
                                {"num_layers": 2, "bidirectional": True, "bias": False}])
def test_recurrent_unrolled_matches_module_and_autograd(cls, kw):
    torch.manual_seed(0)
    module = Recurrent(cls, **kw).eval()
    X = torch.randn(3, 6, 4)
    reference = module(X)
    _, owners = find_blocks(module)
    with FisherRecorder(module, owners):
        torch.testing.assert_close(module(X), reference, atol=1e-5, rtol=1e-5)
    blocks = _check_stats_against_autograd(module, X, np.array([0, 2, 1]))
    n_dir = 2 if kw.get("bidirectional") else 1
    assert len(blocks) == 2 * kw.get("num_layers", 1) * n_dir + 1


# ---------------------------------------------------------------------------
# The trace criterion against explicit Kronecker products


def _reference_factors(module, X, labels):
    """Per-sample KFAC factors and diagonal Fishers by brute force (one sample at a time).

    ``labels``: an int array, "predicted" or "expected".
    """
    module.eval()
    out = []
    for i in range(X.shape[0]):
        seen = {}
        handles = [
            m.register_forward_hook(lambda m, a, o, k=k, seen=seen: seen.__setitem__(k, (a[0], o)))
            for k, m in [("conv", module.conv), ("fc1", module.fc1), ("fc2", module.fc2)]
        ]
        logp = _log_softmax(module(X[i:i + 1]))[0]
        for h in handles:
            h.remove()
        if isinstance(labels, str) and labels == "expected":
            pairs = [(k, float(logp[k].detach().exp())) for k in range(logp.shape[0])]
        elif isinstance(labels, str):
            pairs = [(int(logp.argmax()), 1.0)]
        else:
            pairs = [(int(labels[i]), 1.0)]
        names = ["conv", "fc1", "fc2"]
        tensors = [seen[k][1] for k in names]
        params = [module.conv.bias, module.bn.weight, module.bn.bias]
        taus = {k: 0.0 for k in names}
        diag = {"conv.bias": 0.0, "bn": 0.0}
        for label, w in pairs:
            g = torch.autograd.grad(-logp[label], tensors + params, retain_graph=True)
            G = g[0][0].reshape(2, -1)  # (C_out, positions)
            taus["conv"] = taus["conv"] + w * G @ G.T
            taus["fc1"] = taus["fc1"] + w * torch.outer(g[1][0], g[1][0])
            taus["fc2"] = taus["fc2"] + w * torch.outer(g[2][0], g[2][0])
            diag["conv.bias"] = diag["conv.bias"] + w * g[3] ** 2
            diag["bn"] = diag["bn"] + w * torch.cat([g[4], g[5]]) ** 2
        patches = F.unfold(seen["conv"][0], 3, stride=2)[0].T  # (positions, 9)
        psis = {"conv": patches.T @ patches}
        for k in ["fc1", "fc2"]:
            a = torch.cat([seen[k][0][0], torch.ones(1)])
            psis[k] = torch.outer(a, a)
        out.append({
            "kfac": [(psis[k].detach().double(), taus[k].detach().double()) for k in names],
            "diag": [diag["conv.bias"].detach().double(), diag["bn"].detach().double()],
        })
    return out


def _explicit_criterion(ref_A, ref_B, damping):
    """Tr(I_{AuB} I_A^-1) with full block-diagonal matrices built by torch.kron."""
    m = len(ref_A) + len(ref_B)
    blocks_A, blocks_AB = [], []

    def damp(M):
        return M + damping * torch.trace(M) / M.shape[0] * torch.eye(M.shape[0], dtype=M.dtype)

    for layer in range(len(ref_A[0]["kfac"])):
        psi_A = sum(r["kfac"][layer][0] for r in ref_A) / len(ref_A)
        tau_A = sum(r["kfac"][layer][1] for r in ref_A) / len(ref_A)
        psi_AB = sum(r["kfac"][layer][0] for r in ref_A + ref_B) / m
        tau_AB = sum(r["kfac"][layer][1] for r in ref_A + ref_B) / m
        blocks_A.append(torch.kron(damp(psi_A), damp(tau_A)))
        blocks_AB.append(torch.kron(psi_AB, tau_AB))
    for d in range(len(ref_A[0]["diag"])):
        D_A = sum(r["diag"][d] for r in ref_A) / len(ref_A)
        blocks_A.append(torch.diag(D_A + damping * D_A.mean()))
        blocks_AB.append(torch.diag(sum(r["diag"][d] for r in ref_A + ref_B) / m))
    I_A = torch.block_diag(*blocks_A)
    I_AB = torch.block_diag(*blocks_AB)
    return float(torch.trace(I_AB @ torch.linalg.inv(I_A)))


@pytest.mark.parametrize("label_mode", ["predicted", "expected"])
@pytest.mark.parametrize("damping", [1e-3, 0.5])
def test_kfac_criterion_equals_explicit_kronecker(tiny, label_mode, damping):
    net, X, y = tiny
    XA, yA, XB = X[:40], y[:40], X[200:205]
    module = net.module_
    ref_A = _reference_factors(module, torch.from_numpy(XA), yA)
    ref_B = _reference_factors(module, torch.from_numpy(XB), label_mode)
    expected = _explicit_criterion(ref_A, ref_B, damping)
    strategy = BALNet(damping=damping, label_mode=label_mode)
    value = strategy.criterion(net, XB, X_labeled=XA, y_labeled=yA)
    assert value == pytest.approx(expected, rel=1e-4)
    assert strategy.blocks_ == ["conv.weight", "fc1.weight", "fc2.weight", "conv.bias",
                                "bn.weight+bias"]


def test_damping_lowers_the_criterion_and_zero_is_the_pseudo_inverse(tiny):
    net, X, y = tiny
    XA, yA, XB = X[:60], y[:60], X[300:310]
    values = [BALNet(damping=d).criterion(net, XB, X_labeled=XA, y_labeled=yA)
              for d in (0.0, 1e-3, 1e-1, 10.0)]
    assert all(np.isfinite(values))
    assert values[0] > values[1] > values[2] > values[3] > 0
    # Undamped, sum_{i in A} Tr(psi_i psi_A^+) = |A| rank(psi_A): the thesis's
    # |A| dim(psi) when psi_A is invertible. Softmax gradients sum to zero over
    # the classes, so the output layer's tau has rank 9 of 10.
    strategy = BALNet(damping=0.0)
    *_, const = strategy._statistics(net, XB, XA, yA)
    ranks = np.concatenate([const["phi"], const["tau"]]) / 60
    np.testing.assert_allclose(ranks, np.round(ranks), atol=1e-3)
    assert (ranks <= [9, 19, 6, 2, 5, 10]).all()
    assert const["phi"][0] == pytest.approx(60 * 9) and const["tau"][2] == pytest.approx(60 * 9)


def test_trace_criterion_and_greedy_on_toy_coefficients():
    rng = np.random.RandomState(0)
    a, c, e = rng.rand(7, 3), rng.rand(7, 3), rng.rand(7)
    const = {"n": 4, "phi": rng.rand(3) * 4, "tau": rng.rand(3) * 4, "delta": 2.0}
    for objective, pick in (("max", np.argmax), ("min", np.argmin)):
        chosen, first, values = greedy_trace_selection(a, c, e, const, 3, objective)
        assert len(set(chosen.tolist())) == 3
        # every step is the best single addition (brute force over all candidates)
        for step in range(3):
            rest = [j for j in range(7) if j not in chosen[:step]]
            scores = [trace_criterion(a, c, e, const, list(chosen[:step]) + [j]) for j in rest]
            assert chosen[step] == rest[int(pick(scores))]
            assert values[step] == pytest.approx(
                trace_criterion(a, c, e, const, chosen[:step + 1]))
        assert first == pytest.approx([trace_criterion(a, c, e, const, [j]) for j in range(7)])


@pytest.mark.parametrize("objective", ["max", "min"])
def test_greedy_query_equals_brute_force(tiny, objective):
    net, X, y = tiny
    XA, yA, XB = X[:40], y[:40], X[400:408]
    module = net.module_
    ref_A = _reference_factors(module, torch.from_numpy(XA), yA)
    ref_B = _reference_factors(module, torch.from_numpy(XB), "predicted")
    pick = np.argmax if objective == "max" else np.argmin
    strategy = BALNet(n_candidates=None, objective=objective)
    idx = strategy.query(net, XB, 2, X_labeled=XA, y_labeled=yA)
    singles = [_explicit_criterion(ref_A, [ref_B[j]], 1e-3) for j in range(8)]
    assert idx[0] == pick(singles)
    rest = [j for j in range(8) if j != idx[0]]
    pairs = [_explicit_criterion(ref_A, [ref_B[idx[0]], ref_B[j]], 1e-3) for j in rest]
    assert idx[1] == rest[int(pick(pairs))]
    assert strategy.criterion_ == pytest.approx(max(pairs) if objective == "max" else min(pairs),
                                                rel=1e-4)
    utilities = strategy.last_utilities_
    assert utilities[idx[0]] == pytest.approx(
        singles[idx[0]] * (1 if objective == "max" else -1), rel=1e-4)


def test_objective_flag_changes_the_batch(tiny):
    net, X, y = tiny
    kw = {"X_labeled": X[:100], "y_labeled": y[:100]}
    hi = BALNet(n_candidates=None).query(net, X[500:600], 5, **kw)
    lo = BALNet(n_candidates=None, objective="min").query(net, X[500:600], 5, **kw)
    assert not set(hi) & set(lo)


# ---------------------------------------------------------------------------
# The strategy


def test_query_distinct_valid_and_reproducible(trained_net, digits_split):
    X, y, _, _ = digits_split
    pool = X[300:700]
    s = BALNet(n_candidates=150, random_state=0)
    idx = s.query(trained_net, pool, 8, X_labeled=X[:300], y_labeled=y[:300])
    assert idx.dtype == np.int64 and len(set(idx.tolist())) == 8
    assert idx.min() >= 0 and idx.max() < len(pool)
    assert set(idx) <= set(s.candidates_) and len(s.candidates_) == 150
    again = BALNet(n_candidates=150, random_state=0).query(
        trained_net, pool, 8, X_labeled=X[:300], y_labeled=y[:300])
    np.testing.assert_array_equal(idx, again)
    other = BALNet(n_candidates=150, random_state=1).query(
        trained_net, pool, 8, X_labeled=X[:300], y_labeled=y[:300])
    assert not np.array_equal(idx, other)
    # the modAL protocol reads the labeled set from the learner
    learner = type("L", (), {"estimator": trained_net, "query_strategy": s,
                             "X_training": X[:300], "y_training": y[:300]})()
    idx2, utilities = s(learner, pool, 8)
    np.testing.assert_array_equal(idx, idx2)
    assert np.isfinite(utilities).all()


def test_without_labeled_set_and_with_active_learner(digits):
    from skal.learner import ActiveLearner

    X, y = digits
    net = _fit(TinyCNN, X[:60], y[:60], epochs=1)
    idx = BALNet(n_candidates=None).query(net, X[60:120], 4)
    assert len(set(idx.tolist())) == 4
    learner = ActiveLearner(
        NeuralNetClassifier(TinyCNN, max_epochs=1, random_state=0, verbose=0),
        BALNet(n_candidates=50), random_state=0)
    # labels 3..9 only: the learner encodes them before BALNet sees them
    mask = y[:200] >= 3
    learner.fit(X[:200][mask][:60], y[:200][mask][:60])
    q = learner.query(X[200:300], n_instances=3)
    assert len(set(q.tolist())) == 3


def test_diversity_keeps_a_subset_of_the_preselection(tiny):
    net, X, y = tiny
    kw = {"X_labeled": X[:50], "y_labeled": y[:50]}
    pool = X[600:750]
    pre = BALNet(n_candidates=100, random_state=0).query(net, pool, 12, **kw)
    div = BALNet(n_candidates=100, diversity=3, random_state=0).query(net, pool, 4, **kw)
    assert len(set(div.tolist())) == 4
    assert set(div) <= set(pre)


def test_diversity_warns_when_the_preselection_keeps_every_candidate(tiny):
    net, X, y = tiny
    kw = {"X_labeled": X[:50], "y_labeled": y[:50]}
    pool = X[600:750]
    with pytest.warns(UserWarning, match="does not narrow") as record:
        idx = BALNet(n_candidates=40, diversity=4, random_state=0).query(net, pool, 10, **kw)
    learner = ActiveLearner(clone(net), BALNet(n_candidates=40, diversity=4, random_state=0))
    learner.fit(X[:50], y[:50])
    with pytest.warns(UserWarning, match="does not narrow") as via_learner:
        learner.query(pool, n_instances=10)
    assert {w.filename for w in [*record, *via_learner]} == {__file__}  # the user's line
    assert len(set(idx.tolist())) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BALNet(n_candidates=41, diversity=4, random_state=0).query(net, pool, 10, **kw)


def test_recurrent_sequence_classifier(digits):
    """Eq. 5.22: recurrent weight matrices with factors over time steps."""
    X, y = digits
    net = _fit(SeqNet, X[:200], y[:200], epochs=2)
    for mode in ("predicted", "expected"):
        s = BALNet(n_candidates=None, label_mode=mode)
        idx = s.query(net, X[200:300], 5, X_labeled=X[:200], y_labeled=y[:200])
        assert len(set(idx.tolist())) == 5
    assert s.blocks_ == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "out.weight"]
    assert np.isfinite(s.criterion_) and s.criterion_ > 0


def test_errors(tiny, digits):
    net, X, y = tiny
    kw = {"X_labeled": X[:20], "y_labeled": y[:20]}
    for bad in ({"damping": -1.0}, {"damping": np.nan}, {"objective": "argmax"},
                {"label_mode": "true"}, {"diversity": 0}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            BALNet(**bad).query(net, X[100:120], 2, **kw)
    with pytest.raises(ValueError, match="class indices"):
        BALNet().query(net, X[100:120], 2, X_labeled=X[:20], y_labeled=y[:20] + 10)
    with pytest.raises(ValueError, match="rows"):
        BALNet().query(net, X[100:120], 2, X_labeled=X[:20], y_labeled=y[:10])
    # only an unused Linear besides a functional weight: nothing runs
    functional = _fit(FunctionalOnly, X[:40].reshape(40, -1), y[:40], epochs=1)
    with pytest.raises(ValueError, match="ran in its forward"):
        BALNet().query(functional, X[40:60].reshape(20, -1), 2)
    # no supported layer at all
    functional.module_.unused.weight.requires_grad_(False)
    functional.module_.unused.bias.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable layer"):
        BALNet().query(functional, X[40:60].reshape(20, -1), 2)
