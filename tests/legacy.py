"""Databases as openrouter-watcher 0.1.0 wrote them (schema 2), at any size.

tests/data/state-schema2.sqlite3.gz is a real one, written by 0.1.0 itself; this writes
the same tables (DDL as in 0.1.0's store.py) for histories too large to keep as files.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterable
from pathlib import Path

import orjson

from watcher import snapshot
from watcher.store import DB_NAME

SCHEMA_2 = """
CREATE TABLE blobs (digest TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE snapshots (id INTEGER PRIMARY KEY, watch TEXT NOT NULL,
    digest TEXT NOT NULL REFERENCES blobs(digest), taken_at TEXT NOT NULL, models INTEGER NOT NULL);
CREATE INDEX snapshots_watch ON snapshots(watch, id);
CREATE TABLE checks (id INTEGER PRIMARY KEY, watch TEXT NOT NULL, at TEXT NOT NULL,
    outcome TEXT NOT NULL, events INTEGER NOT NULL DEFAULT 0, error TEXT, digest TEXT);
CREATE INDEX checks_watch ON checks(watch, id);
CREATE TABLE events (id INTEGER PRIMARY KEY, check_id INTEGER NOT NULL REFERENCES checks(id),
    watch TEXT NOT NULL, type TEXT NOT NULL, model TEXT NOT NULL, detected_at TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX events_time ON events(detected_at);
CREATE INDEX events_model ON events(model);
CREATE TABLE outbox (id INTEGER PRIMARY KEY, check_id INTEGER NOT NULL REFERENCES checks(id),
    event_id INTEGER NOT NULL REFERENCES events(id), target TEXT NOT NULL, rule TEXT NOT NULL,
    grp TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, created_at REAL NOT NULL,
    due_at REAL NOT NULL, settle_until REAL, attempts INTEGER NOT NULL DEFAULT 0,
    first_failed_at REAL, last_error TEXT, done_at REAL);
CREATE INDEX outbox_due ON outbox(state, due_at);
CREATE TABLE reminders (watch TEXT NOT NULL, model TEXT NOT NULL, expiration_date TEXT NOT NULL,
    days INTEGER NOT NULL, PRIMARY KEY (watch, model, expiration_date, days)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
PRAGMA user_version=2;
"""


def write_schema2(state_dir: Path, history: Iterable[tuple[str, str, snapshot.Snapshot]]) -> Path:
    """A schema-2 database holding ``history`` ((watch, taken_at, snapshot), oldest first),
    with a check per snapshot and one event per snapshot after a watch's first."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / DB_NAME
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_2)
    seen: set[str] = set()
    with conn:
        for watch, taken_at, snap in history:
            digest = snap.digest
            conn.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)",
                         (digest, zlib.compress(snap.encode(), 6)))
            conn.execute("INSERT INTO snapshots (watch, digest, taken_at, models) VALUES (?,?,?,?)",
                         (watch, digest, taken_at, len(snap.models)))
            outcome = "changed" if watch in seen else "baseline"
            check = conn.execute("INSERT INTO checks (watch, at, outcome, events) VALUES (?,?,?,?)",
                                 (watch, taken_at, outcome, int(watch in seen))).lastrowid
            if watch in seen:
                event = {"watch": watch, "type": "field_changed", "model": snap.ids[0],
                         "detected_at": taken_at}
                conn.execute("INSERT INTO events (check_id, watch, type, model, detected_at, body) "
                             "VALUES (?,?,?,?,?,?)", (check, watch, "field_changed", snap.ids[0],
                                                      taken_at, orjson.dumps(event).decode()))
            seen.add(watch)
    conn.close()
    return path
