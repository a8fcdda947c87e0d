"""One-file save and load of a fitted :class:`skal.ActiveLearner` (``save`` / ``load``).

The file is a zip archive:

* ``manifest.json``: format name and version, the skal version, how the model is stored;
* ``learner.pkl``: the learner without its model (parameters, classes, strategy state,
  pool bookkeeping), pickled;
* ``arrays.npz`` / ``sparse_<name>.npz``: the labeled set, the strategy's extra training
  data and the pending query (``allow_pickle=False``);
* the model: ``estimator.pkl`` (any estimator), or for a skorch net ``net_<name>.pt``
  per module / optimizer / criterion (``save_params``), ``net_history.json``,
  ``net_attrs.pkl`` (learned attributes and the net's unfitted parameters) and
  ``pipeline_head.pkl`` (the fitted steps before a net in a ``Pipeline``).
"""

import io
import json
import os
import pickle
import tempfile
import zipfile

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone

FORMAT = "skal.ActiveLearner"
FORMAT_VERSION = 1
_ARRAYS = ("X_training_", "y_training_", "X_extra_", "y_extra_", "pending_query_",
           "_pool_queried", "_X_pool")
# Attributes skorch rebuilds itself in initialize() or that save_params stores.
_SKORCH_OWN = {"history_", "callbacks_", "initialized_", "virtual_params_", "prefixes_",
               "cuda_dependent_attributes_", "init_context_"}


def _version():
    from . import __version__

    return __version__


def _final(estimator):
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def _is_skorch(estimator):
    from skorch import NeuralNet

    return isinstance(_final(estimator), NeuralNet)


def _write_net(zf, estimator):
    net = _final(estimator)
    if hasattr(estimator, "steps"):
        zf.writestr("pipeline_head.pkl", pickle.dumps(estimator[:-1]))
    names = {}
    for kind in ("_modules", "_optimizers", "_criteria"):
        for name in getattr(net, kind, []):
            buf = io.BytesIO()
            key = "f_params" if name == "module" else f"f_{name}"
            net.save_params(**{key: buf})
            zf.writestr(f"net_{name}.pt", buf.getvalue())
            names[name] = key
    # skorch closes a history file object it is given: serialise the list directly.
    zf.writestr("net_history.json", json.dumps(net.history.to_list()))
    learned = {
        k: v for k, v in vars(net).items()
        if k.endswith("_") and not k.startswith("_") and k not in _SKORCH_OWN
        and k.rstrip("_") not in names
    }
    zf.writestr("net_attrs.pkl", pickle.dumps({"params": clone(net), "learned": learned,
                                               "files": names}))


def _read_net(zf, step_name):
    from skorch.history import History

    info = pickle.loads(zf.read("net_attrs.pkl"))
    net = info["params"]
    net.initialize()
    for name, key in info["files"].items():
        net.load_params(**{key: io.BytesIO(zf.read(f"net_{name}.pt"))})
    net.history_ = History(json.loads(zf.read("net_history.json")))
    for k, v in info["learned"].items():
        setattr(net, k, v)
    if step_name is None:
        return net
    from sklearn.pipeline import Pipeline

    head = pickle.loads(zf.read("pipeline_head.pkl"))
    return Pipeline(list(head.steps) + [(step_name, net)])


def save_learner(learner, path):
    """Write ``learner`` to ``path`` atomically; see the module docstring for the format."""
    path = os.fspath(path)
    from .base import accepts_unlabeled

    state = dict(vars(learner))
    estimator = state.pop("estimator_")
    if not accepts_unlabeled(learner.estimator):
        # Only models that train on unlabeled rows (WAAL) need the pool in teach.
        state["_X_pool"] = None
    arrays, sparse = {}, {}
    for name in _ARRAYS:
        value = state.get(name)
        if value is None or (not sp.issparse(value) and np.asarray(value).dtype == object):
            continue  # object arrays (labels of mixed types) stay in the pickle
        state.pop(name)
        (sparse if sp.issparse(value) else arrays)[name] = value
    skorch = _is_skorch(estimator)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "skal_version": _version(),
        "estimator": "skorch" if skorch else "pickle",
        "pipeline_step": _step_name(estimator) if skorch else None,
    }
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".skal-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("manifest.json", json.dumps(manifest, indent=1))
                zf.writestr("learner.pkl", pickle.dumps(state))
                buf = io.BytesIO()
                np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
                zf.writestr("arrays.npz", buf.getvalue())
                for name, value in sparse.items():
                    buf = io.BytesIO()
                    sp.save_npz(buf, value.tocsr())
                    zf.writestr(f"sparse_{name}.npz", buf.getvalue())
                if skorch:
                    _write_net(zf, estimator)
                else:
                    zf.writestr("estimator.pkl", pickle.dumps(estimator))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _step_name(estimator):
    return estimator.steps[-1][0] if hasattr(estimator, "steps") else None


def load_learner(path, cls):
    """Read a learner written by :func:`save_learner`."""
    path = os.fspath(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(
            f"{path} is not a complete skal learner file (truncated or corrupted): {exc}"
        ) from None
    with zf:
        try:
            bad = zf.testzip()
            manifest = json.loads(zf.read("manifest.json"))
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as exc:
            raise ValueError(
                f"{path} is not a complete skal learner file (truncated or corrupted): {exc}"
            ) from None
        if bad is not None:
            raise ValueError(f"{path} is corrupted: member {bad} fails its CRC check.")
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{path} is not a skal ActiveLearner file.")
        if manifest.get("skal_version") != _version() or (
            manifest.get("format_version") != FORMAT_VERSION
        ):
            raise ValueError(
                f"{path} was saved by skal {manifest.get('skal_version')} (file format "
                f"{manifest.get('format_version')}), but this is skal {_version()} (format "
                f"{FORMAT_VERSION}); load it with skal {manifest.get('skal_version')}, or refit "
                "from its labeled set."
            )
        learner = cls.__new__(cls)
        learner.__dict__.update(pickle.loads(zf.read("learner.pkl")))
        with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
            for name in npz.files:
                setattr(learner, name, npz[name])
        for member in zf.namelist():
            if member.startswith("sparse_"):
                setattr(learner, member[len("sparse_"):-len(".npz")],
                        sp.load_npz(io.BytesIO(zf.read(member))))
        for name in ("pending_query_", "_X_pool"):
            if not hasattr(learner, name):
                setattr(learner, name, None)
        if manifest["estimator"] == "skorch":
            estimator = _read_net(zf, manifest.get("pipeline_step"))
        else:
            estimator = pickle.loads(zf.read("estimator.pkl"))
        learner.estimator_ = estimator
    return learner
