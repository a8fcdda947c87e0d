import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

from skal.nets import (
    NeuralNetClassifier,
    _dropout,
    cnn_classifier,
    dropout_layers,
    embed,
    get_net,
    mc_dropout_proba,
    predict_logits,
    predict_proba,
    split_at_first_dropout,
)


def _double(X):
    return X * 2.0


def test_get_net_finds_net_in_pipeline_and_applies_transforms(trained_net, digits_split):
    X = digits_split[0][:20]
    pipe = make_pipeline(FunctionTransformer(_double), trained_net)
    net, transform = get_net(pipe)
    assert net is trained_net
    np.testing.assert_allclose(
        predict_logits(pipe, X), predict_logits(trained_net, 2.0 * X), rtol=1e-5, atol=1e-5
    )


def test_get_net_errors():
    with pytest.raises(NotFittedError):
        get_net(cnn_classifier("digits", 10))
    with pytest.raises(TypeError, match="LogisticRegression"):
        get_net(LogisticRegression())


def test_predict_logits_matches_skorch_and_restores_mode(trained_net, digits_split):
    X = digits_split[0][:50]
    expected = trained_net.forward(X, training=False).detach().numpy()
    trained_net.module_.train()
    np.testing.assert_allclose(predict_logits(trained_net, X, batch_size=7), expected, atol=1e-5)
    assert trained_net.module_.training
    trained_net.module_.eval()
    proba = predict_proba(trained_net, X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba, trained_net.predict_proba(X), atol=1e-5)


def test_predict_proba_handles_softmax_output_nets(digits_split):
    X, y = digits_split[0][:40], digits_split[1][:40]
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Softmax(dim=1))
    net = NeuralNetClassifier(module, criterion=nn.NLLLoss, max_epochs=1, verbose=0,
                              random_state=0).fit(X, y)
    np.testing.assert_allclose(predict_proba(net, X), net.predict_proba(X), atol=1e-5)


def test_embed_is_input_of_last_linear(trained_net, digits_split):
    X = digits_split[0][:10]
    module = trained_net.module_.eval()
    with torch.no_grad():
        expected = module.features(torch.from_numpy(X)).numpy()
    # rtol: channels-last inference sums in another order (float32).
    np.testing.assert_allclose(embed(trained_net, X, batch_size=3), expected, rtol=1e-5,
                               atol=1e-6)


def _force_full_passes(module):
    _dropout._SPLIT_CACHE[module] = None


def test_mc_dropout_prefix_split_is_exact_without_dropout(trained_net, digits_split):
    X = digits_split[0][:30]
    assert split_at_first_dropout(trained_net.module_) is not None
    layers = dropout_layers(trained_net.module_)
    rates = [layer.p for layer in layers]
    try:
        for layer in layers:
            layer.p = 0.0
        mc = mc_dropout_proba(trained_net, X, 3, random_state=1, batch_size=8)
    finally:
        for layer, p in zip(layers, rates, strict=True):
            layer.p = p
    for sample in mc:
        np.testing.assert_allclose(sample, predict_proba(trained_net, X), atol=1e-5)


def test_mc_dropout_prefix_split_has_the_full_pass_distribution(trained_net, digits_split):
    X = digits_split[0][:5]
    fast = mc_dropout_proba(trained_net, X, 2000, random_state=1)
    _force_full_passes(trained_net.module_)
    try:
        slow = mc_dropout_proba(trained_net, X, 2000, random_state=2)
    finally:
        del _dropout._SPLIT_CACHE[trained_net.module_]
    assert np.abs(fast[0] - fast[1]).max() > 1e-3  # dropout really is on
    assert np.abs(fast[:, 0] - fast[:, 1]).max() > 1e-3  # rows are different samples
    # Monte-Carlo error of each mean is at most 0.5 / sqrt(2000) ~ 0.011.
    np.testing.assert_allclose(fast.mean(axis=0), slow.mean(axis=0), atol=0.06)
    np.testing.assert_allclose(fast.std(axis=0), slow.std(axis=0), atol=0.06)


def test_mc_dropout_is_seeded_and_leaves_global_rng(trained_net, digits_split):
    X = digits_split[0][:20]
    state = torch.get_rng_state()
    a = mc_dropout_proba(trained_net, X, 3, random_state=5)
    b = mc_dropout_proba(trained_net, X, 3, random_state=5)
    c = mc_dropout_proba(trained_net, X, 3, random_state=6)
    assert torch.equal(state, torch.get_rng_state())
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_mc_dropout_keeps_batchnorm_in_eval():
    module = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(),
                           nn.Dropout(0.5), nn.Linear(8, 3))
    net = NeuralNetClassifier(module, max_epochs=1, verbose=0, random_state=0)
    X = np.random.RandomState(0).randn(32, 4).astype(np.float32)
    net.fit(X, np.arange(32) % 3)
    bn = module[2]
    before = bn.running_mean.clone()
    mc_dropout_proba(net, X * 5 + 3, 3, random_state=0)
    assert torch.equal(before, bn.running_mean)


def test_lenet_prefix_split_is_exact():
    module = cnn_classifier("lenet5", 10).initialize().module_
    prefix, suffix = split_at_first_dropout(module)
    x = torch.randn(3, 1, 28, 28)
    module.eval()
    with torch.no_grad():
        np.testing.assert_allclose(suffix(*prefix(x)).numpy(), module(x).numpy(), atol=1e-5)


def test_dropout_layers_error_names_the_problem():
    with pytest.raises(ValueError, match="no dropout"):
        dropout_layers(nn.Sequential(nn.Linear(2, 2)))


@pytest.mark.parametrize(
    "arch, size, kwargs",
    [("digits", 8, {}), ("lenet5", 28, {}), ("vgg8", 28, {"module__width": 4, "module__dense": 16}),
     ("resnet18", 28, {})],
)
def test_zoo_architectures(arch, size, kwargs):
    net = cnn_classifier(arch, 4, **kwargs).initialize()
    x = np.zeros((2, 1, size, size), dtype=np.float32)
    assert predict_logits(net, x).shape == (2, 4)
    assert embed(net, x).shape[0] == 2


def test_cnn_classifier_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Unknown architecture"):
        cnn_classifier("no-such-net", 10)
    with pytest.raises(ValueError, match="n_classes"):
        cnn_classifier("digits", 1)


def test_random_state_reproduces_training_without_touching_global_rng(digits_split):
    X, y = digits_split[0][:100], digits_split[1][:100]
    state = torch.get_rng_state()
    a = cnn_classifier("digits", 10, max_epochs=2, random_state=3).fit(X, y)
    b = cnn_classifier("digits", 10, max_epochs=2, random_state=3).fit(X, y)
    assert torch.equal(state, torch.get_rng_state())
    np.testing.assert_array_equal(predict_logits(a, X), predict_logits(b, X))
    c = cnn_classifier("digits", 10, max_epochs=2, random_state=4).fit(X, y)
    assert not np.allclose(predict_logits(a, X), predict_logits(c, X))
