"""The SQLite store of ``skal label``: the one source of truth.

Every annotation (a label, a skip, an unreadable file) is one row written in its
own transaction, with who and when; undo marks a row undone instead of deleting
it, so the table is also the audit log. The pending query batch and the learning
curve (one row per retraining round) live here too, so a process killed with
``kill -9`` restarts in the same state. The database runs in WAL mode: the page
reads while the worker writes.

Only one *active* (not undone) annotation per item is allowed (a partial unique
index): posting the same label twice, from two tabs, stores it once.
"""

import json
import sqlite3
import threading
import time

__all__ = ["Conflict", "Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS annotations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('label', 'skip', 'unreadable')),
    label TEXT,
    who TEXT NOT NULL,
    source TEXT NOT NULL,
    at REAL NOT NULL,
    note TEXT,
    undone_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_per_item
    ON annotations (item_id) WHERE undone_at IS NULL;
CREATE TABLE IF NOT EXISTS batch (
    item_id TEXT PRIMARY KEY,
    rank INTEGER NOT NULL,
    round INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY,
    n_labeled INTEGER NOT NULL,
    cv_accuracy REAL,
    at REAL NOT NULL,
    strategy TEXT,
    stopping TEXT
);
"""


class Conflict(ValueError):
    """The item already carries a different active annotation."""


class Store:
    """Annotations, the pending batch and the learning curve in one SQLite file.

    Each call opens its own short-lived connection, so the store can be used
    from the web server's threads and the worker thread at once.

    Parameters
    ----------
    path : str or path-like
        The database file (created if missing).

    Examples
    --------
    >>> import os, tempfile
    >>> store = Store(os.path.join(tempfile.mkdtemp(), "labels.sqlite"))
    >>> store.add_label("img1.png", "cat", who="ann")["stored"]
    True
    >>> store.add_label("img1.png", "cat", who="bob")["stored"]  # same label again: kept once
    False
    >>> store.labels()
    {'img1.png': 'cat'}
    """

    def __init__(self, path):
        self.path = str(path)
        self._lock = threading.Lock()  # serialises writers inside one process
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    def _connect(self):
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA synchronous=FULL")  # a label acknowledged is a label on disk
        return _Closing(con)

    def _write(self, fn):
        with self._lock, self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                out = fn(con)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            return out

    # -- meta -----------------------------------------------------------
    def get_meta(self, key, default=None):
        with self._connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def set_meta(self, key, value):
        self._write(lambda con: con.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        ))

    # -- annotations ----------------------------------------------------
    def _annotate(self, item_id, kind, label, who, source, note=None):
        def tx(con):
            row = con.execute(
                "SELECT * FROM annotations WHERE item_id = ? AND undone_at IS NULL", (item_id,)
            ).fetchone()
            if row is not None:
                if row["kind"] == kind and row["label"] == label:
                    return {"stored": False, "annotation": dict(row)}
                raise Conflict(
                    f"Item {item_id!r} is already "
                    + (f"labeled {row['label']!r}" if row["kind"] == "label" else row["kind"])
                    + "; undo it first to change it."
                )
            cur = con.execute(
                "INSERT INTO annotations (item_id, kind, label, who, source, at, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (item_id, kind, label, who, source, time.time(), note),
            )
            con.execute("DELETE FROM batch WHERE item_id = ?", (item_id,))
            row = con.execute("SELECT * FROM annotations WHERE seq = ?",
                              (cur.lastrowid,)).fetchone()
            return {"stored": True, "annotation": dict(row)}

        return self._write(tx)

    def add_label(self, item_id, label, *, who="anonymous", source="user"):
        """Store a label; ``{"stored": False}`` if the item already has this label.

        Raises :class:`Conflict` if the item has another active annotation.
        """
        return self._annotate(item_id, "label", str(label), who, source)

    def add_skip(self, item_id, *, who="anonymous", source="user", reason=None):
        """Take the item out of the queries (undoable)."""
        return self._annotate(item_id, "skip", None, who, source, note=reason)

    def add_unreadable(self, item_id, reason, *, who="skal"):
        """Record that the item's file cannot be decoded (never queried again)."""
        return self._annotate(item_id, "unreadable", None, who, "system", note=reason)

    def add_many(self, labels, *, who, source):
        """Seed labels ``{id: label}`` in one transaction; items already annotated are
        left as they are. Returns the number stored."""
        def tx(con):
            now, n = time.time(), 0
            for item_id, label in labels.items():
                cur = con.execute(
                    "INSERT OR IGNORE INTO annotations (item_id, kind, label, who, source, at) "
                    "VALUES (?, 'label', ?, ?, ?, ?)",
                    (item_id, str(label), who, source, now),
                )
                n += cur.rowcount
                con.execute("DELETE FROM batch WHERE item_id = ?", (item_id,))
            return n

        return self._write(tx)

    def undo(self, *, item_id=None, who=None):
        """Undo the newest active user annotation (of ``item_id``, or by ``who``).

        The item goes back to the front of the pending batch. Returns the undone
        annotation, or None if there was nothing to undo.
        """
        def tx(con):
            sql = "SELECT * FROM annotations WHERE undone_at IS NULL AND source = 'user'"
            args = []
            if item_id is not None:
                sql += " AND item_id = ?"
                args.append(item_id)
            if who is not None:
                sql += " AND who = ?"
                args.append(who)
            row = con.execute(sql + " ORDER BY seq DESC LIMIT 1", args).fetchone()
            if row is None:
                return None
            con.execute("UPDATE annotations SET undone_at = ? WHERE seq = ?",
                        (time.time(), row["seq"]))
            top = con.execute("SELECT MIN(rank) AS r FROM batch").fetchone()
            rank = (top["r"] if top["r"] is not None else 0) - 1
            gen = con.execute("SELECT value FROM meta WHERE key = 'batch_generation'").fetchone()
            con.execute("INSERT OR REPLACE INTO batch (item_id, rank, round) VALUES (?, ?, ?)",
                        (row["item_id"], rank, json.loads(gen[0]) if gen else 0))
            return dict(row)

        return self._write(tx)

    def annotation(self, item_id):
        """The item's active annotation as a dict, or None."""
        with self._connect() as con:
            row = con.execute(
                "SELECT * FROM annotations WHERE item_id = ? AND undone_at IS NULL", (item_id,)
            ).fetchone()
        return dict(row) if row else None

    def annotations(self, *, kind=None, include_undone=False):
        """Annotations in the order they were made."""
        sql, args = "SELECT * FROM annotations WHERE 1 = 1", []
        if not include_undone:
            sql += " AND undone_at IS NULL"
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        with self._connect() as con:
            return [dict(r) for r in con.execute(sql + " ORDER BY seq", args)]

    def labels(self):
        """``{id: label}`` of the active labels, oldest first."""
        return {a["item_id"]: a["label"] for a in self.annotations(kind="label")}

    def annotated_ids(self):
        """Ids with any active annotation (labeled, skipped or unreadable)."""
        with self._connect() as con:
            return {r[0] for r in con.execute(
                "SELECT item_id FROM annotations WHERE undone_at IS NULL")}

    def counts(self):
        """Active annotations per kind."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT kind, COUNT(*) FROM annotations WHERE undone_at IS NULL GROUP BY kind"
            ).fetchall()
        out = {"label": 0, "skip": 0, "unreadable": 0}
        out.update({k: n for k, n in rows})
        return out

    def recent(self, n=20):
        """The newest ``n`` active user annotations, newest first."""
        with self._connect() as con:
            return [dict(r) for r in con.execute(
                "SELECT * FROM annotations WHERE undone_at IS NULL AND source = 'user' "
                "ORDER BY seq DESC LIMIT ?", (n,))]

    # -- the pending batch ----------------------------------------------
    def set_batch(self, item_ids, model_round=None):
        """Replace the pending batch (ids best first) in one transaction; items that
        meanwhile got an annotation are left out. ``model_round`` is the round of
        the model that chose it (None: drawn at random). Returns the batch's
        generation number (it grows with every new batch)."""
        def tx(con):
            row = con.execute("SELECT value FROM meta WHERE key = 'batch_generation'").fetchone()
            generation = (json.loads(row[0]) if row else 0) + 1
            con.execute("DELETE FROM batch")
            done = {r[0] for r in con.execute(
                "SELECT item_id FROM annotations WHERE undone_at IS NULL")}
            for rank, item_id in enumerate(i for i in item_ids if i not in done):
                con.execute("INSERT INTO batch (item_id, rank, round) VALUES (?, ?, ?)",
                            (item_id, rank, generation))
            meta = (("batch_generation", generation), ("batch_model_round", model_round))
            for key, value in meta:
                con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                            (key, json.dumps(value)))
            return generation

        return self._write(tx)

    def batch(self):
        """The pending batch: ids not yet annotated, in query order."""
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT item_id FROM batch ORDER BY rank")]

    def batch_info(self):
        """``{"generation", "model_round"}`` of the newest batch (0 and None before any)."""
        return {
            "generation": self.get_meta("batch_generation", 0),
            "model_round": self.get_meta("batch_model_round", None),
        }

    # -- the learning curve ---------------------------------------------
    @staticmethod
    def _last_round(con):
        row = con.execute("SELECT MAX(round) FROM rounds").fetchone()
        return row[0] if row[0] is not None else -1

    def add_round(self, n_labeled, cv_accuracy, *, strategy=None, stopping=None):
        """Append a retraining round; returns its number."""
        def tx(con):
            round_ = self._last_round(con) + 1
            con.execute(
                "INSERT INTO rounds (round, n_labeled, cv_accuracy, at, strategy, stopping) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (round_, int(n_labeled), cv_accuracy, time.time(), strategy,
                 json.dumps(stopping) if stopping is not None else None),
            )
            return round_

        return self._write(tx)

    def rounds(self):
        with self._connect() as con:
            rows = [dict(r) for r in con.execute("SELECT * FROM rounds ORDER BY round")]
        for r in rows:
            r["stopping"] = json.loads(r["stopping"]) if r["stopping"] else None
        return rows


class _Closing:
    """``with`` for a sqlite3 connection that closes it (sqlite3's own ``with``
    only commits)."""

    def __init__(self, con):
        self.con = con

    def __enter__(self):
        return self.con

    def __exit__(self, *exc):
        self.con.close()
        return False
