"""skal label without a server: the SQLite store, the pool, exports and the worker."""

import json
import sqlite3
import threading

import numpy as np
import pytest

pytest.importorskip("PIL")

from skal.label.exchange import from_labelstudio, read_seed_labels, to_csv, to_labelstudio
from skal.label.pool import ArrayPool, FolderPool, UnreadableImage, open_pool
from skal.label.store import Conflict, Store
from skal.label.worker import Worker

CLASSES = ["cat", "dog"]


def make_pool(root, n=24, *, folders=2, broken=("broken.png",), size=10, seed=0):
    """A tiny pool: dark images are cats, bright ones dogs; the first ``folders``
    of each class sit in a class sub-folder (initial labels)."""
    from PIL import Image

    rng = np.random.RandomState(seed)
    root.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(n):
        cls = CLASSES[i % 2]
        a = (rng.rand(size, size, 3) * 60 + (0 if cls == "cat" else 180)).astype(np.uint8)
        sub = f"{cls}/" if i // 2 < folders else ""
        (root / sub).mkdir(exist_ok=True)
        Image.fromarray(a).save(root / f"{sub}img{i:03d}.png")
        truth[f"{sub}img{i:03d}.png"] = cls
    for name in broken:
        (root / name).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return truth


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "labels.sqlite")


def test_store_is_wal_and_persists(tmp_path):
    path = tmp_path / "db.sqlite"
    s = Store(path)
    s.add_label("a", "cat", who="ann")
    s.set_batch(["b", "c"], model_round=None)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    again = Store(path)  # a new process would see the same
    assert again.labels() == {"a": "cat"} and again.batch() == ["b", "c"]
    ann = again.annotation("a")
    assert ann["who"] == "ann" and ann["at"] > 0 and ann["source"] == "user"


def test_same_label_twice_is_stored_once(store):
    assert store.add_label("a", "cat", who="ann")["stored"]
    again = store.add_label("a", "cat", who="bob")
    assert not again["stored"] and again["annotation"]["who"] == "ann"
    assert len(store.annotations(include_undone=True)) == 1
    with pytest.raises(Conflict, match="already labeled 'cat'"):
        store.add_label("a", "dog")


def test_concurrent_posts_of_one_item_store_one_label(store):
    results = []

    def post(who):
        results.append(store.add_label("x", "dog", who=who)["stored"])

    threads = [threading.Thread(target=post, args=(f"tab{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert len(store.annotations(include_undone=True)) == 1


def test_database_refuses_two_active_annotations(store):
    store.add_label("a", "cat")
    con = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO annotations (item_id, kind, label, who, source, at) "
                    "VALUES ('a', 'label', 'dog', 'x', 'user', 0)")
    con.close()


def test_label_leaves_batch_and_undo_puts_it_back_first(store):
    gen = store.set_batch(["a", "b", "c"], model_round=0)
    store.add_label("a", "cat")
    store.add_skip("b")
    assert store.batch() == ["c"]
    undone = store.undo()
    assert undone["item_id"] == "b" and undone["kind"] == "skip"
    assert store.batch() == ["b", "c"]
    assert store.undo()["item_id"] == "a"
    assert store.batch() == ["a", "b", "c"] and store.labels() == {}
    assert store.undo() is None
    assert store.batch_info() == {"generation": gen, "model_round": 0}
    # the audit log keeps the undone rows
    assert len(store.annotations(include_undone=True)) == 2
    store.add_label("a", "dog")  # after undo another label is fine
    assert store.labels() == {"a": "dog"}


def test_set_batch_leaves_out_annotated_items_and_counts_generations(store):
    store.add_label("b", "cat")
    g1 = store.set_batch(["a", "b", "c"])
    g2 = store.set_batch(["c", "b", "d"], model_round=3)
    assert (g1, g2) == (1, 2)
    assert store.batch() == ["c", "d"]
    assert store.batch_info()["model_round"] == 3


def test_add_many_keeps_existing_annotations(store):
    store.add_label("a", "dog", who="ann")
    n = store.add_many({"a": "cat", "b": "cat"}, who="seed", source="seed")
    assert n == 1 and store.labels() == {"a": "dog", "b": "cat"}
    assert store.add_many({"b": "cat"}, who="seed", source="seed") == 0
    assert store.undo() is not None  # only the user's label is undoable
    assert store.undo() is None


def test_rounds(store):
    assert store.add_round(4, 0.5, stopping={"x": {"should_stop": False}}) == 0
    assert store.add_round(8, None) == 1
    rounds = store.rounds()
    assert [r["n_labeled"] for r in rounds] == [4, 8]
    assert rounds[0]["stopping"] == {"x": {"should_stop": False}}


def test_folder_pool(tmp_path):
    truth = make_pool(tmp_path / "pool", n=8, folders=1)
    pool = open_pool(tmp_path / "pool")
    assert len(pool) == 9 and "broken.png" in pool
    assert pool.folder_labels(CLASSES) == {"cat/img000.png": "cat", "dog/img001.png": "dog"}
    f = pool.features("img002.png", size=4)
    assert f.shape == (3, 4, 4) and f.dtype == np.float32 and 0 <= f.min() <= f.max() <= 1
    assert pool.png("img003.png")[:4] == b"\x89PNG"
    with pytest.raises(UnreadableImage, match="broken.png"):
        pool.png("broken.png")
    assert set(truth) < set(pool.ids)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no image files"):
        FolderPool(tmp_path / "empty")
    with pytest.raises(ValueError, match="does not exist"):
        FolderPool(tmp_path / "missing")


def test_array_pool(tmp_path):
    a = np.random.RandomState(0).rand(5, 6, 6).astype(np.float32)
    np.save(tmp_path / "x.npy", a)
    pool = open_pool(tmp_path / "x.npy")
    assert pool.ids == ["0", "1", "2", "3", "4"] and "4" in pool and "5" not in pool
    assert pool.features("2", size=6, mode="gray")[0] == pytest.approx(
        (a[2] * 255).astype(np.uint8) / 255.0, abs=1 / 255)
    assert pool.source("3") == "x.npy#3"
    np.save(tmp_path / "bad.npy", np.zeros((3, 4)))
    with pytest.raises(ValueError, match="expected images"):
        ArrayPool(tmp_path / "bad.npy")
    with pytest.raises(ValueError, match="image folder or a .npy"):
        open_pool(tmp_path / "nothing.txt")


def test_csv_and_labelstudio_round_trip(tmp_path, store):
    make_pool(tmp_path / "pool", n=6, folders=0)
    pool = open_pool(tmp_path / "pool")
    store.add_label("img000.png", "cat", who="ann")
    store.add_label("img001.png", "dog", who="bob")
    anns = store.annotations(kind="label")
    text = to_csv(anns, pool)
    assert text.splitlines()[0] == "id,label,who,at,source"
    (tmp_path / "seed.csv").write_text(text)
    assert read_seed_labels(tmp_path / "seed.csv", pool, CLASSES) == (
        {"img000.png": "cat", "img001.png": "dog"}, [])
    tasks = to_labelstudio(anns, pool)
    assert tasks[1]["data"]["image"] == "img001.png"
    assert tasks[1]["annotations"][0]["result"][0]["value"]["choices"] == ["dog"]
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    assert read_seed_labels(tmp_path / "ls.json", pool, CLASSES)[0] == {
        "img000.png": "cat", "img001.png": "dog"}


def test_labelstudio_import_matches_uploads_and_skips_cancelled(tmp_path):
    make_pool(tmp_path / "pool", n=4, folders=1)
    pool = open_pool(tmp_path / "pool")
    tasks = [
        {"data": {"image": "/data/upload/3/0a1b2c3d-img002.png"},
         "annotations": [
             {"result": [{"value": {"choices": ["dog"]}}], "created_at": "2024-01-01"},
             {"result": [{"value": {"choices": ["cat"]}}], "created_at": "2024-01-02"}]},
        {"data": {"image": "/data/local-files/?d=photos/cat/img000.png"},
         "annotations": [{"result": [{"value": {"choices": ["cat"]}}]}]},
        {"data": {"image": "img003.png"},
         "annotations": [{"was_cancelled": True, "result": [{"value": {"choices": ["dog"]}}]}]},
        {"image": "/data/upload/1/elsewhere.png", "choice": "dog"},  # JSON-MIN, no such item
    ]
    labels, unmatched = from_labelstudio(tasks, pool, CLASSES)
    assert labels == {"img002.png": "cat", "cat/img000.png": "cat"}
    assert unmatched == ["/data/upload/1/elsewhere.png"]
    with pytest.raises(ValueError, match="'bird', which is not one of --classes"):
        from_labelstudio([{"image": "img002.png", "choice": "bird"}], pool, CLASSES)


def test_seed_csv_errors_name_the_row(tmp_path):
    make_pool(tmp_path / "pool", n=4, folders=0)
    pool = open_pool(tmp_path / "pool")
    (tmp_path / "s.csv").write_text("id,label\nimg000.png,cat\nimg001.png,horse\n")
    with pytest.raises(ValueError, match="row 2 has class 'horse'"):
        read_seed_labels(tmp_path / "s.csv", pool, CLASSES)


# -- the worker -------------------------------------------------------------

def _worker(tmp_path, **kw):
    truth = make_pool(tmp_path / "pool", n=kw.pop("n", 24), folders=kw.pop("folders", 2))
    pool = open_pool(tmp_path / "pool")
    store = Store(tmp_path / "labels.sqlite")
    store.add_many(pool.folder_labels(CLASSES), who="t", source="folder")
    kw.setdefault("batch_size", 4)
    kw.setdefault("retrain_every", 3)
    kw.setdefault("cv", 2)
    return Worker(store, pool, CLASSES, **kw), store, truth


def _settle(worker):
    while worker.step():
        pass


def test_worker_first_batch_from_the_model(tmp_path):
    worker, store, _truth = _worker(tmp_path)
    _settle(worker)
    assert [a["item_id"] for a in store.annotations(kind="unreadable")] == ["broken.png"]
    batch = store.batch()
    assert len(batch) == 4 and len(set(batch)) == 4
    assert not set(batch) & (store.annotated_ids())
    rounds = store.rounds()
    assert len(rounds) == 1 and rounds[0]["n_labeled"] == 4
    assert rounds[0]["cv_accuracy"] == 1.0  # dark vs bright: separable
    assert store.batch_info()["model_round"] == 0
    # margin on a logistic regression: the batch is the pool's most uncertain items
    ids = worker._candidates()
    proba = worker.learner.predict_proba(worker._X(ids))
    margin = np.abs(proba[:, 0] - proba[:, 1])
    assert set(batch) == {ids[i] for i in np.argsort(margin, kind="stable")[:4]}


def test_worker_retrains_every_n_labels(tmp_path):
    worker, store, truth = _worker(tmp_path)
    _settle(worker)
    first = store.batch()
    for item in first[:2]:
        store.add_label(item, truth[item])
    _settle(worker)
    assert len(store.rounds()) == 1 and store.batch() == first[2:]  # 2 < retrain_every
    store.add_label(first[2], truth[first[2]])
    _settle(worker)
    assert [r["n_labeled"] for r in store.rounds()] == [4, 7]
    assert len(store.batch()) == 4 and store.batch_info()["model_round"] == 1
    assert worker.criteria["stabilizing predictions"].state()["kappa"] is not None


def test_worker_cold_start_is_random_and_seeded(tmp_path):
    a, store_a, _ = _worker(tmp_path / "a", folders=0)
    b, store_b, _ = _worker(tmp_path / "b", folders=0)
    _settle(a)
    _settle(b)
    assert store_a.batch() == store_b.batch() and len(store_a.batch()) == 4
    assert store_a.batch_info()["model_round"] is None and store_a.rounds() == []


def test_worker_restart_keeps_the_pending_batch(tmp_path):
    worker, store, truth = _worker(tmp_path)
    _settle(worker)
    batch = store.batch()
    store.add_label(batch[0], truth[batch[0]])
    # a new process: new worker on the same database
    again = Worker(store, open_pool(tmp_path / "pool"), CLASSES, batch_size=4, retrain_every=3,
                   cv=2)
    _settle(again)
    assert store.batch() == batch[1:]
    assert len(store.rounds()) == 1 and again.learner is not None


def test_worker_skipped_items_are_not_queried(tmp_path):
    worker, store, truth = _worker(tmp_path, batch_size=30)
    _settle(worker)
    first = store.batch()
    store.add_skip(first[0])
    for item in first[1:4]:
        store.add_label(item, truth[item])
    _settle(worker)
    assert first[0] not in store.batch() and len(store.batch()) == len(first) - 4


def test_worker_bad_parameters(tmp_path):
    make_pool(tmp_path / "pool", n=4)
    pool = open_pool(tmp_path / "pool")
    store = Store(tmp_path / "db.sqlite")
    with pytest.raises(ValueError, match="retrain_every"):
        Worker(store, pool, CLASSES, retrain_every=0)
    with pytest.raises(ValueError, match="Unknown strategy"):
        Worker(store, pool, CLASSES, strategy="nope")
    with pytest.raises(ValueError, match="at least two classes"):
        Worker(store, pool, ["cat"])


def test_worker_strategy_that_does_not_fit_the_model_falls_back_to_random(tmp_path):
    worker, store, _ = _worker(tmp_path, strategy="bald")  # BALD needs a net, logreg is none
    _settle(worker)
    assert "bald failed on the logreg model" in worker.error and "random" in worker.error
    assert len(store.batch()) == 4 and store.batch_info()["model_round"] is None


def test_worker_with_the_lenet5_model(tmp_path):
    # The CV estimate of a skorch net needs integer targets, not class names.
    worker, store, _ = _worker(tmp_path, n=12, model="lenet5", strategy="bald", cv=2)
    _settle(worker)
    assert worker.error is None and store.rounds()[0]["cv_accuracy"] is not None
    assert len(store.batch()) == 4 and store.batch_info()["model_round"] == 0
