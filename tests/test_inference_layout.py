"""Channels-last inference in skal.nets gives the outputs of the module's own layout."""

import numpy as np
import pytest
import torch
from torch import nn

from skal.nets import NeuralNetClassifier, _glue, embed, predict_logits


class _ViewNet(nn.Module):
    """A conv net that flattens with view(): it cannot run channels-last."""

    def __init__(self, n_classes=3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 3 * 3, n_classes)

    def forward(self, x):
        z = nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(z.view(z.size(0), -1))


def _net(module, **kwargs):
    return NeuralNetClassifier(module, max_epochs=1, random_state=0, verbose=0,
                               **kwargs).initialize()


def _both_layouts(monkeypatch, fn):
    monkeypatch.setattr(_glue, "CHANNELS_LAST_ON_CPU", False)
    plain = fn()
    monkeypatch.setattr(_glue, "CHANNELS_LAST_ON_CPU", True)
    return plain, fn()


@pytest.mark.parametrize("module, shape", [("lenet5", (37, 1, 28, 28)), (_ViewNet, (37, 1, 8, 8))])
def test_channels_last_outputs_equal_and_module_unchanged(monkeypatch, module, shape):
    from skal.nets import cnn_classifier

    net = (cnn_classifier(module, 10, device="cpu").initialize() if isinstance(module, str)
           else _net(module, module__n_classes=3))
    X = np.random.RandomState(0).rand(*shape).astype("float32")
    params = {k: (v, v.data, v.data_ptr()) for k, v in net.module_.named_parameters()}
    state = {k: v.clone() for k, v in net.module_.state_dict().items()}
    plain, fast = _both_layouts(monkeypatch, lambda: predict_logits(net, X, batch_size=16))
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-5)
    plain, fast = _both_layouts(monkeypatch, lambda: embed(net, X, batch_size=16))
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-5)
    for k, v in net.module_.named_parameters():
        p, data, ptr = params[k]
        assert v is p and v.data_ptr() == ptr and v.is_contiguous()
        torch.testing.assert_close(net.module_.state_dict()[k], state[k], rtol=0, atol=0)


def test_channels_last_restores_weights_when_forward_fails():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)  # with 1 input channel both layouts coincide

        def forward(self, x):
            raise ValueError("boom")

    module = Broken()
    ptr = module.conv.weight.data_ptr()
    layout = _glue._InferenceLayout(module, "cpu")
    assert layout.memory_format == torch.channels_last
    with pytest.raises(ValueError, match="boom"), layout:
        assert not module.conv.weight.is_contiguous()
        layout.forward(module, torch.zeros(1, 3, 5, 5))
    assert module.conv.weight.data_ptr() == ptr and module.conv.weight.is_contiguous()


def test_channels_last_only_for_conv_nets_on_cpu():
    assert _glue._InferenceLayout(nn.Linear(2, 2), "cpu").memory_format is None
    assert _glue._InferenceLayout(nn.Conv2d(1, 2, 3), "cuda").memory_format is None
