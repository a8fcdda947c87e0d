import numpy as np
import pytest
import torch
from torch import nn

from skal.adversarial import _diff_grads, deepfool


def deepfool_reference(module, x, *, max_iter=50, overshoot=0.02, norm=2, n_classes=None):
    """Slow DeepFool, one sample and one backward pass per class, as in the paper's code."""
    module.eval()
    x0 = torch.as_tensor(x)[None]
    with torch.no_grad():
        f0 = module(x0)[0]
    order = torch.argsort(f0, descending=True)
    if n_classes is not None:
        order = order[:n_classes]
    label = int(order[0])
    r_tot = torch.zeros_like(x0)
    it = 0
    while True:
        xk = (x0 + (1 + overshoot) * r_tot).detach().requires_grad_(True)
        f = module(xk)[0]
        if (it > 0 and int(f.argmax()) != label) or it >= max_iter:
            break
        g_label = torch.autograd.grad(f[label], xk, retain_graph=True)[0]
        best, w_best = np.inf, None
        for k in order[1:]:
            g = torch.autograd.grad(f[int(k)], xk, retain_graph=True)[0]
            w = g - g_label
            fk = (f[int(k)] - f[label]).abs().item()
            wn = w.norm().item() if norm == 2 else w.abs().sum().item()
            p = fk / wn
            if p < best:
                best, w_best = p, w
        if norm == 2:
            r_i = (best + 1e-4) * w_best / w_best.norm()
        else:
            r_i = (best + 1e-4) * torch.sign(w_best)
        r_tot = r_tot + r_i.detach()
        it += 1
    return ((1 + overshoot) * r_tot)[0].numpy(), label, int(f.argmax()), it


def _mlp(seed, d=12, n_out=5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, n_out)).double()


def _cnn(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 3 * 3, 6),
    ).double()
    # Non-trivial running statistics, so eval vs train mode matters.
    net.train()
    with torch.no_grad():
        net(torch.randn(32, 1, 8, 8, dtype=torch.float64) * 2 + 1)
    return net


@pytest.mark.parametrize("norm", [2, np.inf])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("n_classes", [None, 3])
def test_batched_matches_reference(kind, norm, n_classes):
    if kind == "mlp":
        net = _mlp(0)
        X = torch.randn(20, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    else:
        net = _cnn(0)
        X = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    X = X.numpy()
    r, y, y_adv, n_it = deepfool(net, X, norm=norm, n_classes=n_classes, batch_size=4,
                                 return_labels=True)
    assert r.shape == X.shape and r.dtype == X.dtype
    ord_ = 2 if norm == 2 else np.inf
    for i in range(len(X)):
        r_ref, lab, adv, it = deepfool_reference(net, X[i], norm=norm, n_classes=n_classes)
        assert (y[i], y_adv[i], n_it[i]) == (lab, adv, it)
        np.testing.assert_allclose(
            np.linalg.norm(r[i].ravel(), ord_), np.linalg.norm(r_ref.ravel(), ord_), rtol=1e-4
        )
        np.testing.assert_allclose(r[i], r_ref, rtol=1e-4, atol=1e-8)
    assert (y != y_adv).all()


@pytest.mark.parametrize("norm", [2, np.inf])
def test_linear_model_closed_form_distance(norm):
    torch.manual_seed(3)
    lin = nn.Linear(6, 4).double()
    X = torch.randn(40, 6, dtype=torch.float64).numpy()
    W, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    overshoot = 0.02
    r, y, y_adv, n_it = deepfool(lin, X, overshoot=overshoot, norm=norm, return_labels=True)
    dual = 2 if norm == 2 else 1
    for i, x in enumerate(X):
        f = W @ x + b
        c = int(np.argmax(f))
        # Distance to the nearest face of the (convex) decision region of c.
        dist = min(
            (f[c] - f[k]) / np.linalg.norm(W[c] - W[k], dual) for k in range(4) if k != c
        )
        got = np.linalg.norm(r[i], 2 if norm == 2 else np.inf)
        np.testing.assert_allclose(got, (1 + overshoot) * (dist + 1e-4), rtol=1e-6)
    assert (n_it == 1).all() and (y != y_adv).all()
    np.testing.assert_array_equal((X + r) @ W.T + b == ((X + r) @ W.T + b).max(1, keepdims=True),
                                  np.eye(4, dtype=bool)[y_adv])


def test_tensor_in_tensor_out_and_no_side_effects():
    net = _cnn(1)
    net.train()
    net[1].eval()  # a submodule deliberately in another mode must be kept as is
    X = torch.rand(6, 1, 8, 8, dtype=torch.float32)
    X_copy = X.clone()
    r = deepfool(net, X, max_iter=5, batch_size=4)
    assert isinstance(r, torch.Tensor) and r.shape == X.shape and r.dtype == torch.float32
    torch.testing.assert_close(X, X_copy)
    assert net.training and not net[1].training and net[5].training
    assert all(p.grad is None for p in net.parameters())
    Xn = X.numpy().copy()
    rn = deepfool(net, Xn, max_iter=5)
    assert isinstance(rn, np.ndarray) and rn.dtype == np.float32
    np.testing.assert_array_equal(Xn, X_copy.numpy())
    np.testing.assert_allclose(rn, r.numpy(), rtol=1e-5, atol=1e-6)


def test_batch_size_invariance_and_max_iter():
    net = _mlp(2)
    X = torch.randn(30, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r1, _, _, it1 = deepfool(net, X.numpy(), batch_size=1, return_labels=True)
    r2, _, _, it2 = deepfool(net, X.numpy(), batch_size=64, return_labels=True)
    np.testing.assert_allclose(r1, r2, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(it1, it2)
    # With a single step allowed, samples that needed more keep their label.
    _, y, y_adv, it = deepfool(net, X.numpy(), max_iter=1, return_labels=True)
    assert (it == 1).all() and (it2 > 1).any()
    np.testing.assert_array_equal(y == y_adv, it2 > 1)


def test_batched_gradients_equal_per_class_fallback():
    net = _cnn(4)
    net.eval()
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    order = torch.tensor([[0, 3, 1], [2, 1, 0], [5, 4, 3], [1, 0, 2], [4, 5, 0]])
    d1, g1 = _diff_grads(net, x, order, [True])
    d2, g2 = _diff_grads(net, x, order, [False])
    torch.testing.assert_close(d1, d2)
    torch.testing.assert_close(g1, g2)
    # Against one sample at a time.
    xi = x[2:3].clone().requires_grad_(True)
    f = net(xi)[0]
    (g,) = torch.autograd.grad(f[3] - f[5], xi)
    torch.testing.assert_close(g1[2, 1], g.ravel())


def test_zero_gradient_sample_does_not_move():
    class Flat(nn.Module):
        def forward(self, x):
            return torch.stack([x.sum(1) * 0, x.sum(1) * 0 + 1], dim=1)

    r, y, y_adv, it = deepfool(Flat(), np.ones((3, 4)), max_iter=3, return_labels=True)
    assert np.all(r == 0) and (y == y_adv).all() and (it == 3).all()


def test_empty_input():
    r = deepfool(_mlp(0), np.zeros((0, 12)))
    assert r.shape == (0, 12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"norm": 1}, "norm must be 2 or np.inf"),
        ({"max_iter": 0}, "max_iter must be >= 1"),
        ({"n_classes": 1}, "n_classes must be >= 2"),
        ({"overshoot": -0.1}, "overshoot"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        deepfool(_mlp(0), np.zeros((2, 12)), **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        deepfool(_mlp(0), np.full((2, 12), np.nan))
    with pytest.raises(ValueError, match="shape"):
        deepfool(_mlp(0), np.zeros(12))
    with pytest.raises(ValueError, match="n_classes >= 2"):
        deepfool(nn.Linear(3, 1), np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        deepfool(lambda x: x, np.zeros((2, 3)))
