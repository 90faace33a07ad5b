"""SQLite state: snapshots, checks, events (and, later, the notification outbox).

One file in ``state_dir``, WAL mode.  Snapshots are stored only when their content
changes, zlib-compressed and addressed by content digest.  Everything a poll cycle learns
is written in one transaction, so a crash leaves either all of it or none of it.

A database that cannot be opened or fails its integrity check raises
:class:`StateError`: it is never treated as empty, which would report every model as new.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from watcher import snapshot
from watcher.errors import SnapshotError, StateError
from watcher.events import Event

DB_NAME = "openrouter-watcher.sqlite3"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,
    data   BLOB NOT NULL                  -- zlib(Snapshot.encode())
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    id       INTEGER PRIMARY KEY,
    watch    TEXT NOT NULL,
    digest   TEXT NOT NULL REFERENCES blobs(digest),
    taken_at TEXT NOT NULL,
    models   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_watch ON snapshots(watch, id);
CREATE TABLE IF NOT EXISTS checks (
    id      INTEGER PRIMARY KEY,
    watch   TEXT NOT NULL,
    at      TEXT NOT NULL,
    outcome TEXT NOT NULL,                -- baseline | unchanged | changed | failed | held
    events  INTEGER NOT NULL DEFAULT 0,
    error   TEXT
);
CREATE INDEX IF NOT EXISTS checks_watch ON checks(watch, id);
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    check_id    INTEGER NOT NULL REFERENCES checks(id),
    watch       TEXT NOT NULL,
    type        TEXT NOT NULL,
    model       TEXT NOT NULL,
    detected_at TEXT NOT NULL,
    body        TEXT NOT NULL             -- the event's JSON, as published
);
CREATE INDEX IF NOT EXISTS events_time ON events(detected_at);
CREATE INDEX IF NOT EXISTS events_model ON events(model);
"""


@dataclass(frozen=True)
class EventQuery:
    """Filters for :meth:`Store.events`; None means any."""

    watch: str | None = None
    model_glob: str | None = None
    type: str | None = None
    since: str | None = None  # ISO time; events detected at or after it
    limit: int | None = None  # the newest ``limit`` events


class Store:
    """The state database of one daemon."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, state_dir: Path) -> Store:
        """Open (or create) the database in ``state_dir``; :class:`StateError` if unusable."""
        path = state_dir / DB_NAME
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create state directory {state_dir}: {exc.strerror}") from None
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StateError(f"{path}: integrity check failed: {check}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(f"{path}: written by a newer openrouter-watcher "
                                 f"(schema {version}, this one knows {SCHEMA_VERSION})")
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot use the state database: {exc}. It is not "
                             "treated as empty; move it aside to start afresh (every watch "
                             "then records a new baseline).") from None
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; everything in it is committed together or not at all."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: write failed: {exc}") from None

    def latest_snapshot(self, watch: str) -> snapshot.Snapshot | None:
        """The baseline of ``watch``: its newest stored snapshot, or None before the first."""
        try:
            row = self._conn.execute(
                "SELECT b.data FROM snapshots s JOIN blobs b ON b.digest = s.digest "
                "WHERE s.watch = ? ORDER BY s.id DESC LIMIT 1", (watch,)).fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot read the baseline of {watch!r}: {exc}") from None
        if row is None:
            return None
        try:
            return snapshot.parse(zlib.decompress(row[0]))
        except (zlib.error, SnapshotError) as exc:
            raise StateError(f"{self.path}: stored baseline of {watch!r} is damaged: {exc}") from None

    def record_check(self, watch: str, at: str, outcome: str, error: str | None = None) -> int:
        """A check that stored nothing else (unchanged, failed, held)."""
        with self.transaction() as tx:
            return _insert_check(tx, watch, at, outcome, 0, error)

    def commit_cycle(self, watch: str, at: str, snap: snapshot.Snapshot, outcome: str,
                     events: Sequence[Event]) -> tuple[int, list[int]]:
        """Store a new snapshot, its check and its events in one transaction.

        Returns the check id and the event ids, in the order of ``events``.
        """
        digest = snap.digest
        with self.transaction() as tx:
            if tx.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone() is None:
                tx.execute("INSERT INTO blobs (digest, data) VALUES (?, ?)",
                           (digest, zlib.compress(snap.encode(), 6)))
            tx.execute("INSERT INTO snapshots (watch, digest, taken_at, models) VALUES (?,?,?,?)",
                       (watch, digest, at, len(snap.models)))
            check_id = _insert_check(tx, watch, at, outcome, len(events), None)
            ids = [
                _lastrowid(tx.execute(
                    "INSERT INTO events (check_id, watch, type, model, detected_at, body) "
                    "VALUES (?,?,?,?,?,?)",
                    (check_id, e["watch"], e["type"], e["model"], e["detected_at"],
                     orjson.dumps(e).decode())))
                for e in events
            ]
        return check_id, ids

    def events(self, query: EventQuery = EventQuery()) -> list[Event]:
        """Stored events matching ``query``, oldest first."""
        where, args = [], []
        if query.watch:
            where.append("watch = ?")
            args.append(query.watch)
        if query.type:
            where.append("type = ?")
            args.append(query.type)
        if query.model_glob:
            where.append("model GLOB ?")
            args.append(query.model_glob)
        if query.since:
            where.append("detected_at >= ?")
            args.append(query.since)
        sql = "SELECT body FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if query.limit:
            sql += f" LIMIT {int(query.limit)}"
        try:
            rows = self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot read events: {exc}") from None
        return [orjson.loads(r[0]) for r in reversed(rows)]

    def last_checks(self) -> dict[str, dict[str, Any]]:
        """The newest check of every watch."""
        rows = self._conn.execute(
            "SELECT watch, at, outcome, events, error FROM checks WHERE id IN "
            "(SELECT MAX(id) FROM checks GROUP BY watch)").fetchall()
        return {r[0]: {"at": r[1], "outcome": r[2], "events": r[3], "error": r[4]} for r in rows}


def _insert_check(tx: sqlite3.Connection, watch: str, at: str, outcome: str, events: int,
                  error: str | None) -> int:
    return _lastrowid(tx.execute(
        "INSERT INTO checks (watch, at, outcome, events, error) VALUES (?,?,?,?,?)",
        (watch, at, outcome, events, error)))


def _lastrowid(cursor: sqlite3.Cursor) -> int:
    rowid = cursor.lastrowid
    if rowid is None:  # pragma: no cover - sqlite always sets it after an INSERT
        raise StateError("insert returned no row id")
    return rowid
