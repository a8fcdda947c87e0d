"""skal label in a real browser: Debian's chromium, headless, driven by Playwright,
against a real ``skal label`` server (a uvicorn subprocess on a free port)."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

# Imported after the skips above: only then is the browser set-up known to be there.
from test_label_store import CLASSES, make_pool  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = {c: str(i + 1) for i, c in enumerate(CLASSES)}
ROOT = Path(__file__).resolve().parents[1]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


class Server:
    """``skal label`` in a subprocess; ``kill()`` is SIGKILL, ``start()`` restarts it."""

    def __init__(self, pool, db, batch_size=4, retrain_every=100):
        self.args = [sys.executable, "-m", "skal", "label", str(pool), "--classes",
                     ",".join(CLASSES), "--db", str(db), "--batch-size", str(batch_size),
                     "--retrain-every", str(retrain_every), "--cv", "2", "--user", "browser"]
        self.db = db
        self.proc = None

    def start(self):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(self.args + ["--port", str(self.port)], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"skal label exited: {self.proc.stderr.read().decode()}")
            try:
                if _get(self.url + "/api/batch")["items"]:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("skal label did not serve a batch within 90 s")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def rows(self, sql, args=()):
        con = sqlite3.connect(self.db)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("label")
    truth = make_pool(root / "pool", n=40, folders=2, size=8)
    server = Server(root / "pool", root / "labels.sqlite").start()
    yield server, truth
    server.stop()


def _open(browser, server):
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector(".tile.current")
    return page


def _label_current(page, truth):
    """Press the class key of the highlighted tile; wait until it has left the grid."""
    item = page.get_attribute(".tile.current", "data-id")
    page.keyboard.press(KEY[truth[item]])
    page.wait_for_selector(f'.tile[data-id="{item}"]', state="detached")
    return item


def test_keyboard_labels_kept_after_reload(browser, served):
    server, truth = served
    page = _open(browser, server)
    n = len(page.query_selector_all(".tile"))
    done = [_label_current(page, truth) for _ in range(n)]
    page.reload()
    page.wait_for_selector(".tile.current")
    stored = dict(server.rows("SELECT item_id, label FROM annotations WHERE undone_at IS NULL "
                              "AND source = 'user'"))
    assert {i: stored[i] for i in done} == {i: truth[i] for i in done}
    page.wait_for_function(f"document.querySelectorAll('#recent li').length >= {n}")
    recent = page.inner_text("#recent")
    for item in done:
        assert f"{item}: {truth[item]} (browser)" in recent
    shown = {t.get_attribute("data-id") for t in page.query_selector_all(".tile")}
    assert not shown & set(done)
    page.close()


def test_two_tabs_same_item_one_label(browser, served):
    server, truth = served
    tab1, tab2 = _open(browser, server), _open(browser, server)
    item = tab1.get_attribute(".tile.current", "data-id")
    assert tab2.get_attribute(".tile.current", "data-id") == item
    _label_current(tab1, truth)
    _label_current(tab2, truth)  # the second tab still showed it: posts the same label
    assert "already labeled" in tab2.inner_text("#message")
    assert server.rows("SELECT COUNT(*) FROM annotations WHERE item_id = ?", (item,)) == [(1,)]
    tab1.close()
    tab2.close()


def test_corrupt_image_shown_unreadable_and_skipped(browser, served, tmp_path):
    server, truth = served
    # broken.png was unreadable from the start: listed, never queried.
    page = _open(browser, server)
    page.wait_for_selector('#unreadable li[data-id="broken.png"]')
    assert "broken.png: unreadable, skipped" in page.inner_text("#unreadable")
    # A file of the current batch that breaks while the server runs.
    batch = _get(server.url + "/api/batch")["items"]
    victim = batch[0]["id"]
    pool_file = Path(server.args[4]) / victim
    original = pool_file.read_bytes()
    pool_file.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    try:
        page.reload()
        tile = page.wait_for_selector(f'.tile.unreadable[data-id="{victim}"]')
        assert "unreadable, skipped" in tile.inner_text()
        assert page.get_attribute(".tile.current", "data-id") != victim
        deadline = time.time() + 10
        while time.time() < deadline and not server.rows(
                "SELECT kind FROM annotations WHERE item_id = ?", (victim,)):
            time.sleep(0.05)
        assert server.rows("SELECT kind FROM annotations WHERE item_id = ? AND undone_at IS NULL",
                           (victim,)) == [("unreadable",)]
        # labeling goes on with the next tile
        _label_current(page, truth)
    finally:
        pool_file.write_bytes(original)
    page.close()


def test_unknown_class_is_422(browser, served):
    server, _truth = served
    page = _open(browser, server)
    item = page.get_attribute(".tile.current", "data-id")
    status, detail = page.evaluate(
        """async (id) => {
            const r = await fetch('/api/labels', {method: 'POST',
                headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({id: id, label: 'horse'})});
            return [r.status, (await r.json()).detail];
        }""", item)
    assert status == 422
    assert detail == "Unknown class 'horse'; the classes are: cat, dog."
    assert server.rows("SELECT COUNT(*) FROM annotations WHERE item_id = ?", (item,)) == [(0,)]
    page.close()


def test_sigkill_mid_batch_loses_nothing(browser, served):
    # Last in the module: it kills the shared server (and restarts it).
    server, truth = served
    page = _open(browser, server)
    while len(page.query_selector_all(".tile:not(.unreadable)")) < 3:
        _label_current(page, truth)  # finish the batch: the worker queries a fresh one
        page.wait_for_selector(".tile.current")
    before = [t.get_attribute("data-id") for t in page.query_selector_all(".tile")]
    for _ in range(2):
        _label_current(page, truth)
    page.close()
    labels = server.rows("SELECT seq, item_id, kind, label, who, at, undone_at FROM annotations "
                         "ORDER BY seq")
    n_labeled = _get(server.url + "/api/status")["n_labeled"]
    server.kill()
    server.start()
    assert server.rows("SELECT seq, item_id, kind, label, who, at, undone_at FROM annotations "
                       "ORDER BY seq") == labels
    assert [i["id"] for i in _get(server.url + "/api/batch")["items"]] == before[2:]
    assert _get(server.url + "/api/status")["n_labeled"] == n_labeled
    page = _open(browser, server)
    assert [t.get_attribute("data-id") for t in page.query_selector_all(".tile")] == before[2:]
    _label_current(page, truth)  # and labeling goes on
    page.close()
