"""ActiveLearner.save / ActiveLearner.load: one atomic file, resumable between query and teach."""

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression

import skal
from skal import BALD, ActiveLearner, RandomSampling, UncertaintySampling
from skal.nets import cnn_classifier


def _net_learner(X, y):
    net = cnn_classifier("digits", 10, max_epochs=1, random_state=0)
    return ActiveLearner(net, BALD(n_passes=3), random_state=0).fit(X, y)


def test_crash_between_query_and_teach_loses_nothing(digits_split, tmp_path):
    X, y, X_test, _ = digits_split
    pool = X[100:400]
    learner = _net_learner(X[:40], y[:40])
    idx = learner.query(pool, 5)
    path = learner.save(tmp_path / "learner.skal")
    # "Crash": only the file is left.
    restored = ActiveLearner.load(path)
    np.testing.assert_array_equal(restored.pending_query_, idx)
    np.testing.assert_array_equal(restored.X_training, learner.X_training)
    np.testing.assert_allclose(restored.predict_proba(X_test[:20]),
                               learner.predict_proba(X_test[:20]), atol=1e-6)
    # The annotator's labels for the pending query arrive after the restart.
    learner.teach(pool[idx], y[100:400][idx])
    restored.teach(pool[restored.pending_query_], y[100:400][restored.pending_query_])
    assert restored.pending_query_ is None
    # Same strategy state (its RandomState), same model: same next queries.
    np.testing.assert_array_equal(restored.query(X[400:700], 5), learner.query(X[400:700], 5))
    assert list(tmp_path.iterdir()) == [tmp_path / "learner.skal"]  # no temp files left


def test_file_is_a_zip_with_a_manifest_and_skorch_params(digits_split, tmp_path):
    X, y, _, _ = digits_split
    path = _net_learner(X[:30], y[:30]).save(tmp_path / "l.skal")
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist())
    assert manifest["skal_version"] == skal.__version__ and manifest["estimator"] == "skorch"
    assert {"net_module.pt", "net_optimizer.pt", "net_history.json", "arrays.npz"} <= names
    assert "estimator.pkl" not in names  # the net goes through skorch's save_params


def test_non_skorch_estimator_and_sparse_labeled_set(tmp_path):
    rng = np.random.RandomState(0)
    X = sp.random(50, 20, density=0.3, format="csr", random_state=0)
    y = np.array(["spam", "ham"])[rng.randint(2, size=50)]
    learner = ActiveLearner(LogisticRegression(), UncertaintySampling(), random_state=0)
    learner.fit(X[:10], y[:10])
    learner.query(X[10:], 3)
    path = learner.save(os.fspath(tmp_path / "text.skal"))
    with zipfile.ZipFile(path) as zf:
        assert "sparse__X_pool.npz" not in zf.namelist()  # the pool is the caller's
    restored = ActiveLearner.load(path)
    assert sp.issparse(restored.X_training)
    assert (restored.X_training != learner.X_training).nnz == 0
    np.testing.assert_array_equal(restored.predict(X), learner.predict(X))
    np.testing.assert_array_equal(restored.classes_, ["ham", "spam"])


def test_save_is_atomic(tmp_path, monkeypatch):
    X, y = np.random.RandomState(0).randn(20, 2), np.arange(20) % 2
    learner = ActiveLearner(LogisticRegression(), RandomSampling(), random_state=0).fit(X, y)
    path = tmp_path / "l.skal"
    learner.save(path)
    good = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        learner.teach(X[:2], y[:2]).save(path)
    assert path.read_bytes() == good  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.skal"]


def test_truncated_and_foreign_version_files_give_clear_errors(tmp_path):
    X, y = np.random.RandomState(0).randn(20, 2), np.arange(20) % 2
    learner = ActiveLearner(LogisticRegression(), RandomSampling(), random_state=0).fit(X, y)
    path = tmp_path / "l.skal"
    learner.save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.skal"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        ActiveLearner.load(truncated)
    old = tmp_path / "old.skal"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            content = src.read(item)
            if item.filename == "manifest.json":
                manifest = json.loads(content)
                manifest["skal_version"] = "0.0.1"
                content = json.dumps(manifest)
            dst.writestr(item, content)
    with pytest.raises(ValueError, match=r"saved by skal 0\.0\.1 .* this is skal"):
        ActiveLearner.load(old)
    not_skal = tmp_path / "other.zip"
    with zipfile.ZipFile(not_skal, "w") as zf:
        zf.writestr("manifest.json", "{}")
    with pytest.raises(ValueError, match="not a skal ActiveLearner file"):
        ActiveLearner.load(not_skal)


def test_pickle_keeps_working(digits_split):
    X, y, X_test, _ = digits_split
    learner = _net_learner(X[:30], y[:30])
    idx = learner.query(X[100:300], 4)
    restored = pickle.loads(pickle.dumps(learner))
    np.testing.assert_array_equal(restored.pending_query_, idx)
    np.testing.assert_array_equal(restored.predict(X_test[:20]), learner.predict(X_test[:20]))
    assert torch.equal(next(restored.estimator_.module_.parameters()),
                       next(learner.estimator_.module_.parameters()))


def test_waal_learner_round_trip_keeps_critic_and_pool(digits_split, tmp_path):
    from skal.nets import DigitsCNN

    X, y, X_test, _ = digits_split
    pool = X[100:260]
    net = skal.WAALClassifier(DigitsCNN, module__n_classes=10, max_epochs=1, random_state=0,
                              verbose=0)
    learner = ActiveLearner(net, skal.WAAL(random_state=0), classes=np.arange(10),
                            random_state=0).fit(X[:30], y[:30], X_unlabeled=pool)
    idx = learner.query(pool, 4)
    restored = ActiveLearner.load(learner.save(tmp_path / "waal.skal"))
    critic = restored.estimator_.critic_
    assert torch.equal(next(critic.parameters()), next(learner.estimator_.critic_.parameters()))
    assert restored.estimator_.label_weight_ == learner.estimator_.label_weight_
    np.testing.assert_array_equal(restored._X_pool, pool)  # WAAL trains on the pool
    np.testing.assert_array_equal(restored.query(pool, 4), idx)
    learner.teach(pool[idx], y[100:260][idx])
    restored.teach(pool[idx], y[100:260][idx])
    np.testing.assert_allclose(restored.predict_proba(X_test[:10]),
                               learner.predict_proba(X_test[:10]), atol=1e-5)
