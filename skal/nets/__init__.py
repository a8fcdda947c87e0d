"""skorch glue: the torch module behind an estimator, batched inference, the model zoo."""

from ._dropout import dropout_layers, mc_dropout_proba, seeded_torch, split_at_first_dropout
from ._glue import (
    DEFAULT_INFERENCE_BATCH_SIZE,
    embed,
    eval_mode,
    features,
    get_net,
    iter_batches,
    last_linear,
    outputs_are_logits,
    predict_logits,
    predict_proba,
    resolve_device,
    to_logits,
)
from ._pixels import Flatten, pixel_pca
from ._zoo import (
    VGG8,
    DigitsCNN,
    FashionLeNet,
    LeNet5,
    NeuralNetClassifier,
    TorchvisionNet,
    cnn_classifier,
)

__all__ = [
    "DEFAULT_INFERENCE_BATCH_SIZE",
    "DigitsCNN",
    "Flatten",
    "FashionLeNet",
    "LeNet5",
    "NeuralNetClassifier",
    "TorchvisionNet",
    "VGG8",
    "cnn_classifier",
    "dropout_layers",
    "embed",
    "eval_mode",
    "features",
    "get_net",
    "iter_batches",
    "last_linear",
    "mc_dropout_proba",
    "outputs_are_logits",
    "pixel_pca",
    "predict_logits",
    "predict_proba",
    "resolve_device",
    "seeded_torch",
    "split_at_first_dropout",
    "to_logits",
]
