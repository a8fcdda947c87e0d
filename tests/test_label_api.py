"""skal label's JSON API and page through Starlette's TestClient (no real server)."""

import csv
import io
import json
import sys
import warnings

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytest.importorskip("PIL")

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient but still works with httpx.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from test_label_store import CLASSES, make_pool

from skal.label.app import create_app
from skal.label.cli import build_parser, setup
from skal.label.pool import open_pool
from skal.label.store import Store
from skal.label.worker import Worker


@pytest.fixture
def env(tmp_path):
    truth = make_pool(tmp_path / "pool", n=20, folders=2)
    pool = open_pool(tmp_path / "pool")
    store = Store(tmp_path / "labels.sqlite")
    store.add_many(pool.folder_labels(CLASSES), who="t", source="folder")
    worker = Worker(store, pool, CLASSES, batch_size=4, retrain_every=2, cv=2)
    while worker.step():
        pass
    # No worker thread: the tests step it by hand, so every answer is deterministic.
    client = TestClient(create_app(store, pool, CLASSES, None, default_who="tester"))
    return client, store, worker, truth


def test_batch_and_label(env):
    client, store, _worker, truth = env
    batch = client.get("/api/batch").json()
    assert batch["classes"] == CLASSES and len(batch["items"]) == 4
    item = batch["items"][0]
    assert client.get(item["url"]).headers["content-type"] == "image/png"
    r = client.post("/api/labels", json={"id": item["id"], "label": truth[item["id"]]})
    assert r.status_code == 200 and r.json()["stored"] is True
    assert r.json()["annotation"]["who"] == "tester"
    assert store.labels()[item["id"]] == truth[item["id"]]
    assert item["id"] not in [i["id"] for i in client.get("/api/batch").json()["items"]]


def test_same_post_twice_stores_one_label(env):
    client, store, _worker, _truth = env
    item = store.batch()[0]
    body = {"id": item, "label": "dog", "who": "tab1"}
    first = client.post("/api/labels", json=body)
    second = client.post("/api/labels", json={**body, "who": "tab2"})
    assert first.json()["stored"] and not second.json()["stored"]
    assert second.status_code == 200
    assert [a["item_id"] for a in store.annotations(include_undone=True)].count(item) == 1
    other = client.post("/api/labels", json={"id": item, "label": "cat"})
    assert other.status_code == 409 and "already labeled 'dog'" in other.json()["detail"]


def test_unknown_class_is_422_with_the_class_list(env):
    client, store, _worker, _truth = env
    item = store.batch()[0]
    r = client.post("/api/labels", json={"id": item, "label": "horse"})
    assert r.status_code == 422
    assert r.json()["detail"] == "Unknown class 'horse'; the classes are: cat, dog."
    assert store.annotation(item) is None


def test_bad_requests(env):
    client, _store, _worker, _truth = env
    assert client.post("/api/labels", json={"id": "nope.png", "label": "cat"}).status_code == 404
    assert client.post("/api/labels", json={"label": "cat"}).status_code == 422
    r = client.post("/api/labels", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    assert client.post("/api/labels", json=[1, 2]).status_code == 400
    assert client.get("/api/export?format=xml").status_code == 422
    assert client.get("/image/nope.png").status_code == 404
    assert client.post("/api/undo", json={}).status_code == 404  # nothing of the user's yet


def test_skip_undo(env):
    client, store, _worker, truth = env
    a, b = store.batch()[:2]
    assert client.post("/api/skip", json={"id": a}).json()["annotation"]["kind"] == "skip"
    client.post("/api/labels", json={"id": b, "label": truth[b]})
    assert client.post("/api/undo", json={}).json()["undone"]["item_id"] == b
    assert client.post("/api/undo", json={}).json()["undone"]["item_id"] == a
    assert [i["id"] for i in client.get("/api/batch").json()["items"]][:2] == [a, b]


def test_unreadable_image(env):
    client, store, worker, _truth = env
    r = client.get("/image/broken.png")
    assert r.status_code == 415 and "Unreadable image" in r.json()["detail"]
    status = client.get("/api/status").json()
    assert status["n_unreadable"] == 1 and status["unreadable"][0]["item_id"] == "broken.png"
    # An image that breaks after the pool was read: the page reports it, the server checks.
    item = store.batch()[0]
    pool_root = worker.pool.root
    (pool_root / item).write_bytes(b"garbage")
    r = client.post("/api/skip", json={"id": item, "reason": "unreadable"})
    assert r.json()["annotation"]["kind"] == "unreadable"
    # ... but a readable one asked to be skipped as unreadable is only skipped
    ok = store.batch()[0]
    assert client.post("/api/skip", json={"id": ok, "reason": "unreadable"}).json()[
        "annotation"]["kind"] == "skip"


def test_status_progress_and_curve(env):
    client, store, worker, truth = env
    for item in store.batch()[:2]:
        client.post("/api/labels", json={"id": item, "label": truth[item]})
    while worker.step():
        pass
    s = client.get("/api/status").json()
    assert s["n_pool"] == 21 and s["n_labeled"] == 6 and s["n_unlabeled"] == 21 - 6 - 1
    assert s["per_class"]["cat"] + s["per_class"]["dog"] == 6
    assert [p["n_labeled"] for p in s["curve"]] == [4, 6]
    assert s["cv_accuracy"] == 1.0
    assert set(s["stopping"]) == {"stabilizing predictions", "max uncertainty",
                                  "overall uncertainty"}
    assert s["stopping"]["stabilizing predictions"]["kappa"] is not None
    assert [a["item_id"] for a in s["recent"]] == [a["item_id"] for a in store.recent()]
    svg = client.get("/curve.svg").text
    assert svg.startswith("<svg") and svg.count("<circle") == 2


def test_page_renders_batch_and_classes(env):
    client, store, _worker, _truth = env
    page = client.get("/").text
    for item in store.batch():
        assert f'data-id="{item}"' in page
    assert 'data-label="cat" data-key="1"' in page and 'data-key="2"' in page
    assert client.get("/static/label.js").status_code == 200
    assert client.get("/static/../store.py").status_code == 404


def test_export_csv_and_labelstudio(env):
    client, store, _worker, truth = env
    item = store.batch()[0]
    client.post("/api/labels", json={"id": item, "label": truth[item], "who": "ann"})
    rows = list(csv.DictReader(io.StringIO(client.get("/api/export?format=csv").text)))
    assert {r["id"]: r["label"] for r in rows} == store.labels()
    assert [r["who"] for r in rows if r["id"] == item] == ["ann"]
    tasks = client.get("/api/export?format=labelstudio").json()
    assert {t["data"]["image"]: t["annotations"][0]["result"][0]["value"]["choices"][0]
            for t in tasks} == store.labels()


def test_cli_setup_imports_seeds_and_checks_classes(tmp_path):
    make_pool(tmp_path / "pool", n=6, folders=1)
    (tmp_path / "seed.json").write_text(json.dumps(
        [{"data": {"image": "/data/upload/1/abcdef12-img004.png"},
          "annotations": [{"result": [{"value": {"choices": ["cat"]}}]}]}]))
    db = str(tmp_path / "l.sqlite")
    args = build_parser().parse_args([str(tmp_path / "pool"), "--classes", "cat,dog", "--db", db,
                                      "--seed-labels", str(tmp_path / "seed.json")])
    store, _pool, _worker = setup(args)
    assert store.labels() == {"cat/img000.png": "cat", "dog/img001.png": "dog",
                              "img004.png": "cat"}
    assert {a["source"] for a in store.annotations()} == {"folder", "seed"}
    setup(args)  # a restart imports nothing twice
    assert len(store.annotations(include_undone=True)) == 3
    args = build_parser().parse_args([str(tmp_path / "pool"), "--classes", "bird,dog", "--db", db])
    with pytest.raises(ValueError, match=r"classes \['cat'\] that are not in --classes"):
        setup(args)
    with pytest.raises(SystemExit):
        build_parser().parse_args([str(tmp_path / "pool"), "--classes", "cat"])


def test_skal_label_dispatch(monkeypatch):
    import skal.label

    seen = {}
    monkeypatch.setattr(skal.label, "main", lambda argv: seen.setdefault("argv", argv) and 0)
    from skal.cli import main

    main(["label", "pool/", "--classes", "a,b"])
    assert seen["argv"] == ["pool/", "--classes", "a,b"]


def test_import_skal_does_not_import_starlette():
    import subprocess

    code = ("import sys, skal; "
            "print([m for m in ('starlette', 'uvicorn', 'skal.label') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_worker_thread_with_the_app(tmp_path):
    """The lifespan starts the worker; a label wakes it and the next batch follows."""
    import time

    truth = make_pool(tmp_path / "pool", n=12, folders=1)
    pool = open_pool(tmp_path / "pool")
    store = Store(tmp_path / "labels.sqlite")
    store.add_many(pool.folder_labels(CLASSES), who="t", source="folder")
    worker = Worker(store, pool, CLASSES, batch_size=2, retrain_every=1, cv=0)
    with TestClient(create_app(store, pool, CLASSES, worker)) as client:
        deadline = time.time() + 30
        while not client.get("/api/batch").json()["items"] and time.time() < deadline:
            time.sleep(0.05)
        item = client.get("/api/batch").json()["items"][0]["id"]
        client.post("/api/labels", json={"id": item, "label": truth[item]})
        while len(store.rounds()) < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert [r["n_labeled"] for r in store.rounds()] == [2, 3]
    assert not worker._thread.is_alive()
