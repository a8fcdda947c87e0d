import os

# Before torch and numpy start their thread pools (see below).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

# The suite's nets and models are tiny: extra threads only add overhead, and
# one thread per process lets pytest-xdist use both CI cores.
threadpool_limits(1, user_api="blas")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    """Digits as (n, 1, 8, 8) float32 images in [0, 1] and int64 labels."""
    data = load_digits()
    X = (data.images[:, None] / 16.0).astype(np.float32)
    return X, data.target.astype(np.int64)


@pytest.fixture(scope="session")
def digits_split(digits):
    X, y = digits
    rng = np.random.RandomState(0)
    order = rng.permutation(len(y))
    train, test = order[:1200], order[1200:]
    return X[train], y[train], X[test], y[test]


@pytest.fixture(scope="session")
def trained_net(digits_split):
    """A small CNN trained briefly on 300 digits (shared, do not refit it)."""
    from skal.nets import cnn_classifier

    X, y, _, _ = digits_split
    net = cnn_classifier("digits", 10, max_epochs=3, random_state=0)
    return net.fit(X[:300], y[:300])
