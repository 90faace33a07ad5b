"""The state: snapshots, checks, events and the notification outbox.

SQLite by default: one file in ``state_dir``, WAL mode.  Or PostgreSQL (``state:
postgresql://...``): the same SQL and schema through :mod:`watcher.pgstate`, which speaks
this module's SQLite dialect to the server; what is SQLite's own here (the file, its lock,
PRAGMAs, the write-ahead log) is done for SQLite only, and several processes may open one
PostgreSQL state (which of them writes is the leader's election, not this module's).

A snapshot is stored only when its content changes, as the model versions that changed
(see :mod:`watcher.versions`).  Everything a poll cycle learns is written in one
transaction, so a crash leaves either all of it or none.

A database that cannot be opened or fails its integrity check raises
:class:`StateError`: it is never treated as empty, which would report every model as new.

How a new database is told from a damaged one: a state directory without the file is new.
The file is then built whole under a temporary name (schema, version and instance id),
synced and renamed into place, so this program never leaves a half-made database where
state belongs.  A file that is there but empty (0 bytes: truncated, or left by a SQLite
that crashed before writing its header) is therefore an error like any other unreadable
database, not a fresh start that would forget the baseline and the pending alerts.

A writer locks the state *directory* (``flock`` on its file descriptor), not a file in it:
a lock file can be deleted from under a running daemon, and a second writer would then
take a lock of its own and send from the same outbox.  The directory cannot be replaced
while the daemon holds it open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

import orjson

from watcher import log, snapshot, versions
from watcher.clock import iso
from watcher.config import Database, Retention
from watcher.errors import BackendError, StateError, StateInUseError, WatcherError
from watcher.events import Event

if TYPE_CHECKING:
    from watcher.notify.templates import Template

# What a statement may raise on either backend (pgstate turns psycopg's errors into
# BackendError, so this module never imports psycopg).
DB_ERRORS = (sqlite3.Error, BackendError)

DB_NAME = "openrouter-watcher.sqlite3"
# 8: the usage table (issue 15); 9: outbox templates (issue 13); 10: outbox claims (issue
# 14, engineer leader); 11: provider_stats (issue 15 item 3); the integrator
# may renumber
SCHEMA_VERSION = 11
SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id       INTEGER PRIMARY KEY,
    watch    TEXT NOT NULL,
    digest   TEXT NOT NULL,               -- Snapshot.digest: the whole list's content
    taken_at TEXT NOT NULL,
    models   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_watch ON snapshots(watch, id);
CREATE TABLE IF NOT EXISTS zdicts (
    id   INTEGER PRIMARY KEY,
    data BLOB NOT NULL                    -- a zlib preset dictionary (see watcher.versions)
);
CREATE TABLE IF NOT EXISTS versions (
    digest BLOB PRIMARY KEY,              -- versions.version_digest of the model's JSON
    zdict  INTEGER REFERENCES zdicts(id), -- the dictionary it was compressed with
    data   BLOB NOT NULL                  -- zlib of that JSON, or (zdict NULL) the JSON
                                          -- itself, not packed yet (versions.pack)
) WITHOUT ROWID;
-- In (watch, model, first_snap) order: one model's spans are neighbours (schema 7).
CREATE TABLE IF NOT EXISTS spans (
    watch      TEXT NOT NULL,
    model      TEXT NOT NULL,
    first_snap INTEGER NOT NULL REFERENCES snapshots(id),  -- listed from this snapshot on
    last_snap  INTEGER REFERENCES snapshots(id),           -- until before this one, NULL: now
    version    BLOB NOT NULL REFERENCES versions(digest),
    first_at   TEXT NOT NULL,             -- taken_at of first_snap
    brief      BLOB NOT NULL,             -- versions.brief() of the version: what a timeline reads
    PRIMARY KEY (watch, model, first_snap)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS versions_unpacked ON versions(digest) WHERE zdict IS NULL;
CREATE INDEX IF NOT EXISTS spans_open ON spans(watch, model) WHERE last_snap IS NULL;
CREATE TABLE IF NOT EXISTS checks (
    id      INTEGER PRIMARY KEY,
    watch   TEXT NOT NULL,
    at      TEXT NOT NULL,
    outcome TEXT NOT NULL,                -- baseline | unchanged | changed | failed | held | crashed
    events  INTEGER NOT NULL DEFAULT 0,
    error   TEXT,
    digest  TEXT                          -- of the list a 'held' check held
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
-- A model's events of one watch, in order (its timeline): by (model) alone, SQLite chose
-- events_watch for the order and read every event of the watch.
CREATE INDEX IF NOT EXISTS events_model ON events(model, watch, id);
CREATE INDEX IF NOT EXISTS events_watch ON events(watch, id);
CREATE INDEX IF NOT EXISTS events_type ON events(type, id);
-- Deleting a check (retention) looks up the rows that refer to it: without these, every
-- pruned check scanned all events and outbox rows (700 ms per batch at 2,000 changed polls).
CREATE INDEX IF NOT EXISTS events_check ON events(check_id);
CREATE TABLE IF NOT EXISTS outbox (
    id           INTEGER PRIMARY KEY,
    check_id     INTEGER NOT NULL REFERENCES checks(id),
    event_id     INTEGER NOT NULL REFERENCES events(id),
    target       TEXT NOT NULL,
    rule         TEXT NOT NULL,
    grp          TEXT NOT NULL DEFAULT '',   -- rows of one (check, target, grp) make one message
    state        TEXT NOT NULL,              -- pending | sent | dead | cancelled | duplicate
    created_at   REAL NOT NULL,
    due_at       REAL NOT NULL,              -- not before: settle window, then retry backoff
    settle_until REAL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    first_failed_at REAL,
    last_error   TEXT,
    done_at      REAL,
    scope        TEXT,                       -- the API host of the watch (schema 3)
    change_key   TEXT,                       -- events.change_key: the same change, any watch
    dup_of       INTEGER REFERENCES outbox(id), -- a 'duplicate': that row carries the change
    title_tpl    TEXT,                       -- the rule's title and body template sources at
    body_tpl     TEXT,                       -- enqueue time (schema 9), NULL: none
    claimed_by   TEXT,                       -- the instance sending it (Store.claim, schema 10)
    claim_until  REAL,                       -- ... until then (wall clock): then anyone may
    claim_session INTEGER                    -- ... or once this PostgreSQL session is gone
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, due_at);
CREATE INDEX IF NOT EXISTS outbox_change ON outbox(target, change_key);
CREATE INDEX IF NOT EXISTS outbox_event ON outbox(event_id);
CREATE INDEX IF NOT EXISTS outbox_dup ON outbox(dup_of) WHERE dup_of IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_check ON outbox(check_id);
CREATE TABLE IF NOT EXISTS account_gaps (
    watch TEXT NOT NULL,                  -- a /models/user watch
    model TEXT NOT NULL,                  -- listed by OpenRouter, not in the account's list
    PRIMARY KEY (watch, model)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS account_watches (
    watch TEXT PRIMARY KEY                -- its gaps are known (possibly none)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reminders (
    watch           TEXT NOT NULL,
    model           TEXT NOT NULL,
    expiration_date TEXT NOT NULL,
    days            INTEGER NOT NULL,
    PRIMARY KEY (watch, model, expiration_date, days)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notices (
    subject TEXT NOT NULL,                -- a watch's name, or "target NAME"
    kind    TEXT NOT NULL,                -- auth | held | crashed | dead_letters | ...
    since   REAL NOT NULL,                -- when the problem was first told (wall clock)
    told_at REAL NOT NULL,                -- when it was last told (wall clock)
    PRIMARY KEY (subject, kind)
) WITHOUT ROWID;
-- Schema 8 (issue 15): the account's usage, one row per UTC day and model endpoint, as
-- GET /api/v1/activity gives it (watcher.usage).  A day is final once stored, retention.usage
-- prunes by date.  meta 'usage_through' is the newest day fetched (days without use have no rows).
CREATE TABLE IF NOT EXISTS usage (
    date                 TEXT NOT NULL,   -- YYYY-MM-DD, UTC
    model                TEXT NOT NULL,
    model_permaslug      TEXT,
    endpoint_id          TEXT NOT NULL,
    provider_name        TEXT,
    usage                REAL NOT NULL,   -- USD
    byok_usage_inference REAL NOT NULL,
    requests             INTEGER NOT NULL,
    prompt_tokens        INTEGER NOT NULL,
    completion_tokens    INTEGER NOT NULL,
    reasoning_tokens     INTEGER NOT NULL,
    PRIMARY KEY (date, model, endpoint_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_model ON usage(model, date);
-- Schema 11 (issue 15 item 3, watcher.providers): the latest record of each provider
-- endpoint a kind: endpoints watch reads, with its volatile figures (uptime, latency,
-- throughput) for the pages.  Rewritten per model on every poll, never an event.
CREATE TABLE IF NOT EXISTS provider_stats (
    watch         TEXT NOT NULL,
    model         TEXT NOT NULL,
    endpoint      TEXT NOT NULL,        -- watcher.providers.endpoint_key
    provider_name TEXT NOT NULL,
    tag           TEXT NOT NULL,
    at            TEXT NOT NULL,        -- the poll that read it, ISO 8601 UTC
    data          TEXT NOT NULL,        -- JSON: the record and its figures
    PRIMARY KEY (watch, model, endpoint)
);
CREATE INDEX IF NOT EXISTS provider_stats_model ON provider_stats(model);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                   -- instance: a random UUID naming this database
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Alert:
    """An event selected by a rule for a target: one outbox row."""

    event: Event          # the event it is about: one of the events committed with it
    rule: str
    target: str
    group: str = ""       # rules with their own templates get messages of their own
    settle: float | None = None
    scope: str | None = None       # the API host the event came from
    change_key: str | None = None  # events.change_key: one message per change and target
    title: Template | None = None  # the rule's templates (a group of its own): the outbox
    body: Template | None = None   # keeps their sources, rendered from there


@dataclass(frozen=True)
class Group:
    """Due outbox rows that make one message: one check, one target, one group."""

    target: str
    group: str
    check_id: int
    rows: tuple[int, ...]
    events: tuple[Event, ...]
    rules: tuple[str, ...]
    created_at: float
    attempts: int
    title_tpl: str | None = None  # the rule's template sources, as queued (grp: its name)
    body_tpl: str | None = None

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt at this message, so receivers can drop repeats."""
        import hashlib  # noqa: PLC0415 - not at every start (cli.py)

        ids = ",".join(str(r) for r in sorted(self.rows))
        return hashlib.sha256(f"{self.target}|{ids}".encode()).hexdigest()[:32]


# The events of a model's own fields: what its history tells between two of its versions.
FIELD_EVENTS = frozenset({"price_changed", "expiration_set", "expiration_changed",
                          "expiration_cleared", "context_length_changed", "field_changed"})
PRUNE_BATCH = 250  # rows per prune transaction: ~15 ms of CPU at most, so a poll never waits long
PACK_BATCH = 100   # versions per packing transaction: compressing one takes ~50-100 us


@dataclass
class Pruned:
    """What one prune removed (or, dry, would remove), by kind."""

    unchanged_checks: int = 0
    messages: int = 0
    dead_letters: int = 0
    events: int = 0
    versions_packed: int = 0  # not removed: compressed (see versions.pack)
    usage: int = 0            # usage rows (days older than retention.usage)

    def total(self) -> int:
        return (self.unchanged_checks + self.messages + self.dead_letters + self.events
                + self.usage)


@dataclass(frozen=True)
class Pending:
    """When a pending outbox row falls due, as stored (wall-clock Unix times)."""

    id: int
    target: str
    created_at: float
    due_at: float
    settle_until: float | None
    attempts: int
    claimed_by: str | None = None    # the instance sending it (Store.claim) ...
    claim_until: float | None = None  # ... until then


class _NotLeading(Exception):  # noqa: N818 - becomes a StateError in Store.transaction
    """The fence's lock is not held: the transaction is rolled back."""


class _Unclaimed(Exception):  # noqa: N818 - not an error: rolls a partial claim back
    """Some row of a claim was not free: the claim takes none of them."""


def empty_target_status() -> dict[str, Any]:
    """A target's :meth:`Store.outbox_status` entry before anything was queued for it."""
    return {"sent": 0, "pending": 0, "dead": 0, "cancelled": 0, "dropped": 0,
            "failing_since": None, "last_error": None, "last_dead_at": None}


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

    def __init__(self, conn: sqlite3.Connection, path: Path | None, *,
                 database: Database | None = None) -> None:
        self._conn = conn
        self.path = path                # the SQLite file; None on PostgreSQL
        self.database = database        # the PostgreSQL state; None on SQLite
        self.where = str(database) if database is not None else str(path)  # for messages
        self._lock: int | None = None  # the state directory's lock, held by a writer
        self._readonly = False         # PostgreSQL: how to connect again (see _revive)
        self._revive_at = 0.0          # ... not before then (monotonic) ...
        self._revive_failures = 0      # ... after this many failed attempts in a row
        self._fence: tuple[int, int] | None = None  # PostgreSQL: see fence()
        # The latest stored snapshot of each watch, as this connection last wrote or read
        # it: a changed commit then writes the models whose bytes differ from it without
        # reading the open spans or hashing the rest (one writer per database: the lock).
        self._latest: dict[str, snapshot.Snapshot] = {}

    @classmethod
    def open(cls, state_dir: Path | Database, *, readonly: bool = False) -> Store:
        """Open (or create) the database in ``state_dir``, or the PostgreSQL ``Database``;
        :class:`StateError` if unusable.

        A SQLite writer holds a lock on the state directory for as long as it is open: two
        processes sending from one outbox would send its messages twice.  ``readonly``
        (``status``, ``history``, ``show``, ``once --dry-run``) takes no lock and writes
        nothing, so it works beside a running daemon.
        """
        if isinstance(state_dir, Database):
            return cls._open_postgresql(state_dir, readonly=readonly)
        path = state_dir / DB_NAME
        if readonly:
            if not path.is_file():
                raise StateError(f"{path}: no state yet: `once` or `run` records it")
            _refuse_empty(path)
            reader = cls.open_reader(path)
            (version,) = reader._read("PRAGMA user_version")[0]  # noqa: SLF001 - its own class
            if version != SCHEMA_VERSION:
                reader.close()
                age = "an older" if version < SCHEMA_VERSION else "a newer"
                raise StateError(
                    f"{path}: written by {age} openrouter-watcher (schema {version}, this one "
                    f"knows {SCHEMA_VERSION})" + (": `run` or `once` upgrades it in place, "
                    "keeping its history; a reader never changes it" if version < SCHEMA_VERSION
                    else ""))
            return reader
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create state directory {state_dir}: {exc.strerror}") from None
        lock = _lock(state_dir)
        try:
            if not path.exists():
                _create(path, lock)
            _refuse_empty(path)
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
            if version < SCHEMA_VERSION:
                _upgrade(conn, version, path)
        except (sqlite3.Error, OSError) as exc:
            os.close(lock)
            reason = exc.strerror if isinstance(exc, OSError) else exc
            full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or (
                isinstance(exc, sqlite3.Error) and _hint(exc))
            advice = ("Is its disk full? Free some space and start again; the database is not "
                      "the problem, keep it." if full else _ASIDE)
            raise StateError(f"{path}: cannot use the state database: {reason}. {advice}") from None
        except StateError:
            os.close(lock)
            raise
        store = cls(conn, path)
        store._lock = lock
        return store

    @classmethod
    def _open_postgresql(cls, database: Database, *, readonly: bool) -> Store:
        """The state in PostgreSQL: created in its (empty) database by the first writer
        that opens it, refused when a newer release wrote it."""
        from watcher import pgstate  # noqa: PLC0415 - imports psycopg: PostgreSQL states only

        conn = pgstate.connect(database, readonly=readonly)
        store = cls(cast("sqlite3.Connection", conn), None, database=database)
        store._readonly = readonly
        store._SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"  # see Store.claim
        store._CLAIM_LIVE = store._PG_CLAIM_LIVE
        try:
            version = store._pg_version()
            if readonly and version == 0:
                raise StateError(f"{database}: no state yet: `once` or `run` records it")
            if version > SCHEMA_VERSION or (readonly and version < SCHEMA_VERSION):
                age = "an older" if version < SCHEMA_VERSION else "a newer"
                raise StateError(f"{database}: written by {age} openrouter-watcher (schema "
                                 f"{version}, this one knows {SCHEMA_VERSION})")
            if version < SCHEMA_VERSION:
                _upgrade(store._conn, version, Path(str(database)))
        except DB_ERRORS as exc:
            conn.close()
            raise StateError(f"{database}: cannot use the state database: {exc}") from None
        except StateError:
            conn.close()
            raise
        return store

    def _pg_version(self) -> int:
        """The schema version of a PostgreSQL state; 0 for an empty database."""
        (table,) = self._conn.execute("SELECT to_regclass('watcher_schema')").fetchone()
        if table is None:
            return 0
        row = self._conn.execute("SELECT MAX(version) FROM watcher_schema").fetchone()
        return int(row[0] or 0)

    def reader(self) -> Store:
        """Another read-only store on the same state, for a reader in another thread (a
        connection serves one thread)."""
        if self.database is not None:
            return Store.open(self.database, readonly=True)
        assert self.path is not None  # one of the two is set
        return Store.open_reader(self.path)

    @classmethod
    def open_reader(cls, path: Path) -> Store:
        """A read-only connection to the existing database at ``path``, for a reader in
        another thread (the web pages build timelines off the daemon's loop) or process.

        It leaves no file behind: a WAL reader creates ``-wal`` and ``-shm`` files when they
        are missing and does not remove them, and root reading a ``DynamicUser=`` service's
        state would leave files the service cannot write.  They are missing only when no
        writer has the database open (the last one to close removes them), and then the
        database file alone is the whole state: it is opened ``immutable`` (no lock, no
        side file).  A writer that starts while such a reader reads may make it fail
        (never the writer); the reader's command is simply run again.
        """
        quiet = not Path(f"{path}-wal").exists()
        uri = f"{path.resolve().as_uri()}?mode=ro{'&immutable=1' if quiet else ''}"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot read the state database: {exc}") from None
        return cls(conn, path)

    @classmethod
    def open_beside_writer(cls, state_dir: Path | Database) -> Store:
        """A connection that may write beside the process holding the writer lock, for
        ``resend`` next to a running daemon: it only moves dead letters back to pending in
        one transaction (SQLite serialises it with the daemon's writes), and the daemon,
        the one sender, picks them up.  Nothing else may write through it."""
        if isinstance(state_dir, Database):
            return cls.open(state_dir)  # PostgreSQL has no writer lock to step around
        path = state_dir / DB_NAME
        if not path.is_file():
            raise StateError(f"{path}: no state yet: `once` or `run` records it")
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot open the state database: {exc}") from None
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def forget_cached(self) -> None:
        """Read everything from the database again: another instance may have written it
        (a new leader takes over the state; see watcher.leadership)."""
        self._latest.clear()

    def instance_id(self) -> uuid.UUID:
        """A random UUID made once per database: what tells this database's event ids from
        another's (a state directory started afresh counts events from 1 again)."""
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?)",
                       (str(uuid.uuid4()),))
            (value,) = tx.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()
        return uuid.UUID(value)

    # --- reconnecting to PostgreSQL (issue 14 item 4, engineer leader) ----------------------

    def _revive(self) -> None:
        """Connect again when the PostgreSQL server dropped the connection (a restart, a
        network cut): at most once per backoff step (1 s doubling to 30 s), so that a
        server that is away costs each caller a StateError, not a connection timeout."""
        if self.database is None or not getattr(self._conn, "broken", False):
            return
        from watcher import pgstate  # noqa: PLC0415 - imports psycopg: PostgreSQL states only
        from watcher.backoff import ceiling  # noqa: PLC0415 - random: not every command's

        now = time.monotonic()
        if now < self._revive_at:
            raise StateError(f"{self.where}: the connection to PostgreSQL is lost; "
                             f"connecting again in {self._revive_at - now:.0f}s")
        try:
            conn = pgstate.connect(self.database, readonly=self._readonly, timeout=5)
        except WatcherError as exc:
            self._revive_failures += 1
            self._revive_at = now + ceiling(1.0, 30.0, self._revive_failures - 1)
            raise StateError(str(exc)) from None
        with contextlib.suppress(Exception):
            self._conn.close()
        self._conn = cast("sqlite3.Connection", conn)
        self._revive_failures = 0
        self._latest.clear()  # another instance may have written meanwhile

    # --- end of reconnecting ---------------------------------------------------------------

    def fence(self, session: int | None, key: int = 0) -> None:
        """Write only while the PostgreSQL session ``session`` (a backend pid) holds the
        advisory lock ``key`` (the leader's, watcher.leadership): a leader that lost it,
        and has not noticed yet, then commits nothing.  None: no fence."""
        self._fence = None if session is None else (session, key)

    def _fenced(self) -> None:
        """Inside a write transaction: StateError unless the fence's lock is held."""
        if self._fence is None:
            return
        pid, key = self._fence
        unsigned = key & 0xFFFF_FFFF_FFFF_FFFF  # pg_locks splits a bigint key in two oids
        (held,) = self._conn.execute(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
            "pid = ? AND classid = ? AND objid = ? AND objsubid = 1",
            (pid, unsigned >> 32, unsigned & 0xFFFF_FFFF)).fetchone()
        if not held:
            raise _NotLeading

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; everything in it is committed together or not at all
        (and, behind a :meth:`fence`, only while this instance leads)."""
        self._revive()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._fenced()
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                # A COMMIT that failed (a full disk) may leave the transaction open: end
                # it, or every later write would fail even once there is room again.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except DB_ERRORS as exc:
            raise StateError(f"{self.where}: write failed: {exc}{_hint(exc)}") from None
        except _NotLeading:
            raise StateError(f"{self.where}: not written: this instance no longer holds the "
                             "leader's lock (another instance may lead)") from None

    def latest_snapshot(self, watch: str) -> snapshot.Snapshot | None:
        """The baseline of ``watch``: its newest stored snapshot, or None before the first."""
        with self._reading(f"baseline of {watch!r}"):
            latest = versions.latest(self._conn, watch)
        if latest is not None:
            self._latest[watch] = latest
        return latest

    def first_snapshot(self, watch: str) -> snapshot.Snapshot | None:
        """The oldest stored snapshot of ``watch`` (its first baseline), or None."""
        rows = self._read("SELECT MIN(id) FROM snapshots WHERE watch = ?", (watch,))
        if rows[0][0] is None:
            return None
        return self.rebuild_snapshot(int(rows[0][0]))

    def models_ever(self, watch: str) -> set[str]:
        """Every model id ``watch`` ever listed: one seek per model in the spans' order
        (DISTINCT read every span of the watch, briefs and all: 117 ms warm, 2 s cold, on
        a two-year history, at every start and reload)."""
        return {r[0] for r in self._read(
            "WITH RECURSIVE m(name) AS (SELECT MIN(model) FROM spans WHERE watch = ? "
            "UNION ALL SELECT (SELECT MIN(model) FROM spans WHERE watch = ? AND model > m.name) "
            "FROM m WHERE m.name IS NOT NULL) SELECT name FROM m WHERE name IS NOT NULL",
            (watch, watch))}

    def model_states(self, watch: str, model: str) -> versions.ModelStates:
        """Every stored state of ``model`` in ``watch``, oldest first, with the field events
        recorded when it changed (its rows only)."""
        what = f"history of {model!r} in {watch!r}"
        with self._reading(what):
            states = versions.model_states(self._conn, watch, model)
        marks = ",".join("?" * len(FIELD_EVENTS))
        rows = self._read(
            f"SELECT body FROM events WHERE model = ? AND watch = ? AND type IN ({marks}) "  # noqa: S608
            "ORDER BY id", (model, watch, *sorted(FIELD_EVENTS)), what=what)
        return dataclasses.replace(states, events=tuple(orjson.loads(r[0]) for r in rows))

    def stored_snapshots(self, watch: str) -> list[tuple[int, str, str]]:
        """(id, taken_at, digest) of every stored snapshot of ``watch``, oldest first."""
        return [(r[0], r[1], r[2]) for r in self._read(
            "SELECT id, taken_at, digest FROM snapshots WHERE watch = ? ORDER BY id", (watch,))]

    def rebuild_snapshot(self, snapshot_id: int) -> snapshot.Snapshot:
        """Stored snapshot ``snapshot_id`` as it was polled."""
        with self._reading(f"snapshot {snapshot_id}"):
            return versions.rebuild(self._conn, snapshot_id)

    def watches(self) -> list[str]:
        """Every watch the database has snapshots of.

        One index seek per watch (the next name after the last): DISTINCT read the whole
        index, every snapshot of every watch (~10 ms a model page at 100,000 snapshots)."""
        return [r[0] for r in self._read(
            "WITH RECURSIVE w(name) AS (SELECT MIN(watch) FROM snapshots UNION ALL "
            "SELECT (SELECT MIN(watch) FROM snapshots WHERE watch > w.name) FROM w "
            "WHERE w.name IS NOT NULL) SELECT name FROM w WHERE name IS NOT NULL")]

    def record_check(self, watch: str, at: str, outcome: str, error: str | None = None, *,
                     digest: str | None = None, gaps: frozenset[str] | None = None) -> int:
        """A check that stored nothing else (unchanged, failed, held), and the account
        watch's ``gaps`` when they moved."""
        with self.transaction() as tx:
            if gaps is not None:
                _write_gaps(tx, watch, gaps)
            return _insert_check(tx, watch, at, outcome, 0, error, digest)

    def account_gaps(self, watch: str) -> frozenset[str] | None:
        """The models OpenRouter listed that account watch ``watch`` lacked at its last
        check (both lists of one cycle); None before any such check."""
        if not self._read("SELECT 1 FROM account_watches WHERE watch = ?", (watch,)):
            return None
        return frozenset(r[0] for r in self._read(
            "SELECT model FROM account_gaps WHERE watch = ?", (watch,)))

    def held_streak(self, watch: str, digest: str) -> int:
        """How many of the latest checks of ``watch`` held this very list, in a row
        (failed polls in between saw no list and do not break the row)."""
        streak = 0
        for outcome, held in self._read(
                "SELECT outcome, digest FROM checks WHERE watch = ? AND outcome != 'failed' "
                "ORDER BY id DESC LIMIT 1000", (watch,)):
            if outcome != "held" or held != digest:
                break
            streak += 1
        return streak

    def _read(self, sql: str, args: Sequence[Any] = (), *, what: str = "the state database"
              ) -> list[Any]:
        """Rows of a query, read as :meth:`_reading` ``what`` reads them."""
        with self._reading(what):
            return self._conn.execute(sql, args).fetchall()

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Every read of this module goes through here, so that its callers catch only
        StateError: sqlite3 errors become one ("cannot read ``what``"), and so does a
        stored row that ``versions`` cannot rebuild ("stored ``what`` is damaged")."""
        self._revive()
        try:
            yield
        except DB_ERRORS as exc:
            raise StateError(f"{self.where}: cannot read {what}: {exc}") from None
        except StateError as exc:
            raise StateError(f"{self.where}: stored {what} is damaged: {exc}") from None

    def commit_cycle(self, watch: str, at: str, snap: snapshot.Snapshot | None, outcome: str,
                     events: Sequence[Event], alerts: Sequence[Alert] = (), *,
                     now: float = 0.0, reminders: Sequence[tuple[str, str, int]] = (),
                     error: str | None = None, gaps: frozenset[str] | None = None,
                     same_change_window: float = 0.0) -> tuple[int, list[int]]:
        """Store what one cycle learned in one transaction: the new snapshot (if any), the
        check, its events, one outbox row per alert, the reminders it sent, and the account
        watch's ``gaps`` when given.

        An alert for a change that another watch of the same host already queued for the
        same target (within ``same_change_window`` seconds) is stored as a ``duplicate`` of
        that row: each target hears of a change once, however many watches saw it.
        An alert of a rule with ``settle`` that reverts a change still settling cancels
        both: a price that flaps back within the window sends nothing.
        Returns the check id and the event ids, in the order of ``events``.
        """
        with self.transaction() as tx:
            if gaps is not None:
                _write_gaps(tx, watch, gaps)
            if snap is not None:
                snapshot_id = _lastrowid(tx.execute(
                    "INSERT INTO snapshots (watch, digest, taken_at, models) VALUES (?,?,?,?)",
                    (watch, snap.digest, at, len(snap.models))))
                versions.write(tx, watch, snapshot_id, at, snap, self._latest.get(watch),
                               packed=outcome == "baseline")
            check_id = _insert_check(tx, watch, at, outcome, len(events), error)
            ids = [
                _lastrowid(tx.execute(
                    "INSERT INTO events (check_id, watch, type, model, detected_at, body) "
                    "VALUES (?,?,?,?,?,?)",
                    (check_id, e["watch"], e["type"], e["model"], e["detected_at"],
                     orjson.dumps(e).decode())))
                for e in events
            ]
            row_of = {id(e): event_id for e, event_id in zip(events, ids, strict=True)}
            for alert in alerts:
                event = alert.event
                if id(event) not in row_of:
                    raise ValueError("an alert's event is not among the events committed with it")
                state = "pending"
                dup_of = _same_change(tx, alert, watch, now - same_change_window)
                if dup_of is not None:
                    state = "duplicate"
                elif alert.settle and _cancel_reverted(tx, alert, event, now):
                    state = "cancelled"
                settle_until = now + alert.settle if alert.settle and state == "pending" else None
                tx.execute(
                    "INSERT INTO outbox (check_id, event_id, target, rule, grp, state, created_at, "
                    "due_at, settle_until, done_at, scope, change_key, dup_of, title_tpl, "
                    "body_tpl) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (check_id, row_of[id(event)], alert.target, alert.rule, alert.group, state, now,
                     settle_until or now, settle_until, None if state == "pending" else now,
                     alert.scope, alert.change_key, dup_of,
                     alert.title.source if alert.title else None,
                     alert.body.source if alert.body else None))
            tx.executemany("INSERT OR IGNORE INTO reminders (watch, model, expiration_date, days) "
                           "VALUES (?,?,?,?)", [(watch, m, d, n) for m, d, n in reminders])
        if snap is not None:
            self._latest[watch] = snap  # committed: the open spans are now this snapshot's
        return check_id, ids

    def sent_reminders(self, watch: str) -> set[tuple[str, str, int]]:
        """(model, expiration_date, days) of every reminder already recorded for ``watch``."""
        rows = self._read(
            "SELECT model, expiration_date, days FROM reminders WHERE watch = ?", (watch,))
        return {(r[0], r[1], r[2]) for r in rows}

    # The outbox.

    def pending(self) -> list[Pending]:
        """The schedule of every pending row; the deliverer decides which are due."""
        return [Pending(*row) for row in self._read(
            "SELECT id, target, created_at, due_at, settle_until, attempts, claimed_by, "  # noqa: S608
            f"CASE WHEN {self._CLAIM_LIVE} THEN claim_until END FROM outbox "
            "WHERE state = 'pending' ORDER BY id")]

    # How a claim skips rows another transaction is claiming right now: PostgreSQL's row
    # locks (the backend sets it); SQLite's write transactions run one at a time anyway.
    _SKIP_LOCKED = ""
    # Whether a claim's instance may still be sending: on PostgreSQL, while the session
    # of its leader's lock holds the lock (a killed leader's ends at once, and the next
    # leader, holding the lock now, need not wait for the lease); elsewhere until the
    # lease ends.
    _CLAIM_LIVE = "1 = 1"
    _PG_CLAIM_LIVE = ("(claim_session IS NULL OR EXISTS (SELECT 1 FROM pg_locks l WHERE "
                      "l.locktype = 'advisory' AND l.granted AND l.pid = outbox.claim_session))")

    @property
    def sole_writer(self) -> bool:
        """Whether no other process can write this state (SQLite: the directory lock): a
        claim another process made is then one of a process that is gone."""
        return self._lock is not None

    def claim(self, rows: Sequence[int], owner: str, now: float, until: float) -> bool:
        """Claim every one of the pending ``rows`` for ``owner`` (an instance) until
        ``until``, or none of them: False when one is sent, claimed by another instance
        whose claim has not expired, or being claimed right now.

        A message is sent only by the instance holding the claim on all its rows, so two
        instances (two leaders by mistake) never send it both; a claim of an instance that
        died expires, and the next sends the rows again, with the same idempotency key
        (at once for the :attr:`sole_writer`, and on PostgreSQL once the session of the
        claimer's lock is gone: see :meth:`fence`).  Wall-clock times: the instances' clocks must
        agree to well within the lease.
        """
        wanted = sorted(set(rows))
        marks = ",".join("?" * len(wanted))  # only "?" placeholders are formatted in
        free = ("" if self.sole_writer else " AND (claimed_by IS NULL OR claimed_by = ? OR "
                f"claim_until < ? OR NOT {self._CLAIM_LIVE})")
        args = [] if self.sole_writer else [owner, now]
        session = self._fence[0] if self._fence is not None else None
        try:
            with self.transaction() as tx:
                claimed = tx.execute(
                    "UPDATE outbox SET claimed_by = ?, claim_until = ?, claim_session = ? "  # noqa: S608
                    f"WHERE id IN (SELECT id FROM outbox WHERE id IN ({marks}) AND "
                    f"state = 'pending'{free}{self._SKIP_LOCKED}) RETURNING id",
                    [owner, until, session, *wanted, *args]).fetchall()
                if len(claimed) != len(wanted):
                    raise _Unclaimed
        except _Unclaimed:
            return False
        return True

    def release_claims(self, owner: str) -> None:
        """End every claim of ``owner`` on rows still pending (it stops sending): the next
        leader need not wait for them to expire."""
        with self.transaction() as tx:
            tx.execute("UPDATE outbox SET claimed_by = NULL, claim_until = NULL "
                       "WHERE claimed_by = ? AND state = 'pending'", (owner,))

    def groups(self, rows: Sequence[int]) -> tuple[list[Group], list[tuple[int, str]]]:
        """The pending ``rows`` as one group per message, and the rows whose stored event
        cannot be read, each with the reason (they can never be sent)."""
        found: list[Any] = []
        for start in range(0, len(rows), 500):  # SQLite's limit on bound parameters
            chunk = list(rows[start:start + 500])
            marks = ",".join("?" * len(chunk))  # only "?" placeholders are formatted in
            found += self._read(
                "SELECT o.id, o.check_id, o.target, o.grp, o.rule, o.created_at, o.attempts, "  # noqa: S608
                "e.body, o.title_tpl, o.body_tpl FROM outbox o JOIN events e ON e.id = o.event_id "
                f"WHERE o.state = 'pending' AND o.id IN ({marks})", chunk)
        members: dict[tuple[str, int, str], list[tuple[Any, Event]]] = {}
        broken: list[tuple[int, str]] = []
        for row in sorted(found):
            try:
                event = orjson.loads(row[7])
            except orjson.JSONDecodeError as exc:
                broken.append((row[0], f"the stored event is not valid JSON: {exc}"))
                continue
            if not isinstance(event, dict):
                broken.append((row[0], "the stored event is not a JSON object"))
                continue
            members.setdefault((row[2], row[1], row[3]), []).append((row, cast("Event", event)))
        groups = [
            Group(target=target, group=grp, check_id=check_id,
                  rows=tuple(r[0] for r, _ in items), events=tuple(e for _, e in items),
                  rules=tuple(dict.fromkeys(r[4] for r, _ in items)),
                  created_at=min(r[5] for r, _ in items), attempts=max(r[6] for r, _ in items),
                  title_tpl=items[0][0][8], body_tpl=items[0][0][9])
            for (target, check_id, grp), items in members.items()
        ]
        return groups, broken

    def mark_sent(self, rows: Sequence[int], now: float) -> None:
        with self.transaction() as tx:
            tx.executemany("UPDATE outbox SET state = 'sent', done_at = ?, last_error = NULL "
                           "WHERE id = ? AND state = 'pending'", [(now, r) for r in rows])

    def mark_retry(self, rows: Sequence[int], now: float, due_at: float, error: str) -> None:
        with self.transaction() as tx:
            tx.executemany(  # the claim ends: the next try claims again (it may be another's)
                "UPDATE outbox SET attempts = attempts + 1, due_at = ?, last_error = ?, "
                "first_failed_at = COALESCE(first_failed_at, ?), claimed_by = NULL, "
                "claim_until = NULL WHERE id = ? AND state = 'pending'",
                [(due_at, error, now, r) for r in rows])

    def mark_dead(self, rows: Sequence[int], now: float, error: str) -> None:
        with self.transaction() as tx:
            tx.executemany(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, done_at = ?, "
                "last_error = ?, first_failed_at = COALESCE(first_failed_at, ?) "
                "WHERE id = ? AND state = 'pending'", [(now, error, now, r) for r in rows])

    def requeue_dead(self, now: float, *, targets: Iterable[str], since: float | None = None,
                     drop: bool = False) -> dict[str, int]:
        """Dead letters of ``targets`` (queued at or after ``since``) back to pending, due
        now; or, with ``drop``, given up on for good.  Per target, how many.

        A requeued row keeps its id, so its message keeps its idempotency key: a receiver
        that did take it once while answering an error can tell the repeat.  It also keeps
        its ``created_at``: past ``delivery.max_age`` already, one more failure dead-letters
        it again.
        """
        names = sorted(set(targets))
        if not names:
            return {}
        where = (f"state = 'dead' AND target IN ({','.join('?' * len(names))})"
                 + (" AND created_at >= ?" if since is not None else ""))
        args: list[Any] = [*names, *([since] if since is not None else [])]
        with self.transaction() as tx:
            counts = dict(tx.execute(
                f"SELECT target, COUNT(*) FROM outbox WHERE {where} GROUP BY target",  # noqa: S608
                args))
            if drop:
                tx.execute(f"UPDATE outbox SET state = 'dropped', done_at = ? WHERE {where}",  # noqa: S608
                           [now, *args])
            else:
                tx.execute("UPDATE outbox SET state = 'pending', due_at = ?, done_at = NULL, "  # noqa: S608
                           "first_failed_at = NULL, claimed_by = NULL, claim_until = NULL "
                           f"WHERE {where}", [now, *args])
        return counts

    def outbox_status(self) -> dict[str, dict[str, Any]]:
        """Per target: sent, pending, dead, cancelled and dropped counts; failing since (the
        oldest first failure of a pending row); the last error of its own newest failed
        row, pending or dead; when it last dead-lettered."""
        out: dict[str, dict[str, Any]] = {}
        for target, state, count in self._read(
                "SELECT target, state, COUNT(*) FROM outbox GROUP BY target, state"):
            entry = out.setdefault(target, empty_target_status())
            entry[state] = count
        for target, since in self._read(
                "SELECT target, MIN(first_failed_at) FROM outbox WHERE state = 'pending' "
                "GROUP BY target"):
            out[target]["failing_since"] = since
        for target, dead_at in self._read(
                "SELECT target, MAX(done_at) FROM outbox WHERE state = 'dead' GROUP BY target"):
            out[target]["last_dead_at"] = dead_at
        for target, error in self._read(
                "SELECT o.target, o.last_error FROM outbox o WHERE o.id IN (SELECT MAX(id) "
                "FROM outbox WHERE state IN ('pending', 'dead') AND last_error IS NOT NULL "
                "GROUP BY target)"):
            out[target]["last_error"] = error
        return out

    def events(self, query: EventQuery = EventQuery()) -> list[Event]:
        """Stored events matching ``query``, oldest first."""
        return [event for _, event in self.event_rows(query)]

    def event_rows(self, query: EventQuery = EventQuery()) -> list[tuple[int, Event]]:
        """Like :meth:`events`, each with its row id (stable: the feed's entry ids)."""
        where, args = [], []
        if query.watch:
            where.append("watch = ?")
            args.append(query.watch)
        if query.type:
            where.append("type = ?")
            args.append(query.type)
        if query.model_glob:
            where.append("model GLOB ?")  # pgstate: "~", a regular expression
            args.append(query.model_glob if self.database is None
                        else _glob_regex(query.model_glob))
        if query.since:
            # Events are stored as they are detected, so ids grow with detected_at: the
            # first id at or after ``since`` (found in the time index) bounds the scan.
            where.append("detected_at >= ? AND id >= (SELECT MIN(id) FROM events "
                         "INDEXED BY events_time WHERE detected_at >= ?)")
            args += [query.since, query.since]
        sql = "SELECT id, body FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if query.limit:
            sql += f" LIMIT {int(query.limit)}"
        rows = self._read(sql, args, what="events")
        return [(r[0], orjson.loads(r[1])) for r in reversed(rows)]

    # Operator notices: what is being told, so that `once` runs tell like the daemon.

    def notices(self) -> dict[tuple[str, str], tuple[float, float]]:
        """Every problem being told: (subject, kind) -> (since, told at), wall clock."""
        return {(r[0], r[1]): (float(r[2]), float(r[3])) for r in self._read(
            "SELECT subject, kind, since, told_at FROM notices")}

    def notice_told(self, subject: str, kind: str, told_at: float) -> None:
        """A problem of ``subject`` was told at ``told_at`` (its start, the first time)."""
        with self.transaction() as tx:
            tx.execute("INSERT INTO notices (subject, kind, since, told_at) VALUES (?,?,?,?) "
                       "ON CONFLICT (subject, kind) DO UPDATE SET told_at = excluded.told_at",
                       (subject, kind, told_at, told_at))

    def notice_resolved(self, subject: str, kind: str) -> None:
        with self.transaction() as tx:
            tx.execute("DELETE FROM notices WHERE subject = ? AND kind = ?", (subject, kind))

    # Usage (watcher.usage): days of GET /api/v1/activity, final once stored.

    def usage_through(self) -> str | None:
        """The newest day of usage fetched (None: never fetched)."""
        rows = self._read("SELECT value FROM meta WHERE key = 'usage_through'", what="usage")
        return str(rows[0][0]) if rows else None

    def store_usage(self, rows: Sequence[Any], through: str) -> int:
        """Store the rows (``watcher.usage.Row``) of the days not stored yet, and record
        ``through`` as fetched; how many rows were written.  Days already stored are kept as
        they are: a completed day does not change."""
        known = {r[0] for r in self._read("SELECT DISTINCT date FROM usage", what="usage")}
        fresh = [r for r in rows if r.date not in known and r.date <= through]
        with self.transaction() as tx:
            tx.executemany(
                "INSERT OR IGNORE INTO usage (date, model, model_permaslug, endpoint_id, "
                "provider_name, usage, byok_usage_inference, requests, prompt_tokens, "
                "completion_tokens, reasoning_tokens) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(r.date, r.model, r.model_permaslug, r.endpoint_id, r.provider_name, r.usage,
                  r.byok_usage_inference, r.requests, r.prompt_tokens, r.completion_tokens,
                  r.reasoning_tokens) for r in fresh])
            tx.execute("INSERT INTO meta (key, value) VALUES ('usage_through', ?) ON CONFLICT "
                       "(key) DO UPDATE SET value = CASE WHEN excluded.value > meta.value THEN "
                       "excluded.value ELSE meta.value END", (through,))
        return len(fresh)

    def usage_rows(self, *, since: str | None = None, model: str | None = None
                   ) -> list[tuple[Any, ...]]:
        """Stored usage rows (in ``watcher.usage.Row`` field order), by date then model;
        from day ``since`` on, of ``model`` (its id or permaslug) only."""
        where, args = [], []
        if since is not None:
            where.append("date >= ?")
            args.append(since)
        if model is not None:
            where.append("(model = ? OR model_permaslug = ?)")
            args += [model, model]
        sql = ("SELECT date, model, model_permaslug, endpoint_id, provider_name, usage, "
               "byok_usage_inference, requests, prompt_tokens, completion_tokens, "
               "reasoning_tokens FROM usage")
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [tuple(r) for r in self._read(sql + " ORDER BY date, model, endpoint_id", args,
                                             what="usage")]

    # ---- Provider endpoints (issue 15 item 3, watcher.providers): the pages' figures. ----

    def record_provider_stats(self, watch: str, at: str, watched: frozenset[str],
                              stats: Sequence[Any]) -> None:
        """The latest figures (``watcher.providers.Stats``) of the models read by this poll
        of ``watch``; the rows of models it no longer watches go.  A model it tried and
        failed to read keeps its rows (``watched`` holds it, ``stats`` has none of it)."""
        read = sorted({s.model for s in stats})
        with self.transaction() as tx:
            stored = {r[0] for r in tx.execute(
                "SELECT DISTINCT model FROM provider_stats WHERE watch = ?", (watch,))}
            gone = (stored - watched) | set(read)
            tx.executemany("DELETE FROM provider_stats WHERE watch = ? AND model = ?",
                           [(watch, model) for model in sorted(gone)])
            tx.executemany(
                "INSERT INTO provider_stats (watch, model, endpoint, provider_name, tag, at, "
                "data) VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                [(watch, s.model, s.key, s.provider_name, s.tag, at,
                  orjson.dumps(s.data).decode()) for s in stats])

    def provider_stats(self, model: str) -> list[dict[str, Any]]:
        """The providers of ``model`` as the endpoints watches last read them: each row's
        record with ``watch`` and ``at``, by provider name and tag."""
        rows = self._read("SELECT watch, at, data FROM provider_stats WHERE model = ? "
                          "ORDER BY provider_name, tag, watch", (model,), what="providers")
        return [{**orjson.loads(data), "watch": watch, "at": at} for watch, at, data in rows]

    # ---- end of provider endpoints ----

    # Retention.

    def prune(self, retention: Retention, now: float, *, dry_run: bool = False
              ) -> Iterator[Pruned]:
        """Remove what ``retention`` says is old, a batch per transaction; yields the running
        totals after each batch (``dry_run``: counts what would go and writes nothing).

        What goes: unchanged checks older than ``unchanged_checks`` but the last of each
        watch and UTC day; sent, cancelled, dropped and duplicate outbox rows done before
        ``messages`` (never a row another still points at); dead letters older than
        ``dead_letters``; events older than ``events`` that no remaining outbox row needs.
        Snapshots, model versions and spans, pending rows and reminders are never pruned:
        the next diff, the pending alerts and the model pages need them.  Each batch reads
        and deletes at most a few thousand rows, so the caller can let polls run between.
        Last, the model versions polls wrote uncompressed are packed (versions.pack).
        """
        done = Pruned()
        gone: set[int] = set()  # outbox rows removed (or, dry, that would be) so far
        plans: list[tuple[str, float | None, Callable[[float], Iterator[list[int]]], str]] = [
            ("unchanged_checks", retention.unchanged_checks, self._old_unchanged_checks,
             "DELETE FROM checks WHERE id = ?"),
            # Duplicates first: the rows they point at can go only once they have gone.
            ("messages", retention.messages, lambda cutoff: self._old_messages(
                cutoff, ("duplicate",), gone), "DELETE FROM outbox WHERE id = ?"),
            ("messages", retention.messages, lambda cutoff: self._old_messages(
                cutoff, ("sent", "cancelled", "dropped"), gone), "DELETE FROM outbox WHERE id = ?"),
            ("dead_letters", retention.dead_letters, lambda cutoff: self._old_messages(
                cutoff, ("dead",), gone), "DELETE FROM outbox WHERE id = ?"),
            ("events", retention.events, lambda cutoff: self._old_events(cutoff, gone),
             "DELETE FROM events WHERE id = ?"),
        ]
        if retention.usage is not None:
            # A day per transaction: a day is the account's endpoints of that day (dozens of
            # rows), so each stays small even when a shorter retention drops a year at once.
            cutoff = iso(now - retention.usage)[:10]
            for day, rows in self._read("SELECT date, COUNT(*) FROM usage WHERE date < ? "
                                        "GROUP BY date ORDER BY date", (cutoff,), what="usage"):
                if not dry_run:
                    with self.transaction() as tx:
                        tx.execute("DELETE FROM usage WHERE date = ?", (day,))
                done.usage += int(rows)
                yield done
        for kind, age, find, delete in plans:
            if age is None:
                continue
            for batch in find(now - age):
                if batch and not dry_run:
                    with self.transaction() as tx:
                        tx.executemany(delete, [(i,) for i in batch])
                if delete.startswith("DELETE FROM outbox"):
                    gone.update(batch)
                setattr(done, kind, getattr(done, kind) + len(batch))
                yield done
        if dry_run:
            done.versions_packed = versions.unpacked(self._conn)
        else:
            while packed := self.pack_versions(PACK_BATCH):
                done.versions_packed += packed
                yield done
        yield done

    def pack_versions(self, limit: int | None = None) -> int:
        """Compress the model versions polls wrote as they were: up to ``limit`` in one
        transaction, or (None) all of them, PACK_BATCH per transaction; how many."""
        total = 0
        while True:
            with self.transaction() as tx:
                packed = versions.pack(tx, limit or PACK_BATCH)
            total += packed
            if limit is not None or packed < PACK_BATCH:
                return total

    def _windows(self, table: str, sql: str, args: Sequence[Any]) -> Iterator[list[Any]]:
        """The rows of ``sql`` over ``table`` (``sql`` selects ``id`` first, takes ``id > ?
        AND id <= ?`` as its last parameters and orders by id), PRUNE_BATCH * 10 ids at a
        time, each window's rows (maybe none) in turn.

        Each read is then bounded by the window, however few of its rows match: a read
        that ran until it found enough matches walked the whole table when none did, and
        one that let an index on the state pick the rows sorted them all on every read
        (80 ms at 10,000 changed polls, more as the outbox grows).
        """
        ((top,),) = self._read(f"SELECT MAX(id) FROM {table}")  # noqa: S608 - our table names
        span = PRUNE_BATCH * 10
        for after in range(0, top or 0, span):
            yield self._read(sql, (*args, after, after + span))

    def _old_unchanged_checks(self, cutoff: float) -> Iterator[list[int]]:
        """Unchanged checks before ``cutoff`` but the newest of each watch and UTC day."""
        newest: dict[tuple[str, str], int] = {}
        for rows in self._windows(
                "checks", "SELECT id, watch, substr(at, 1, 10) FROM checks WHERE "
                "outcome = 'unchanged' AND events = 0 AND at < ? AND id > ? AND id <= ? "
                "ORDER BY id", (iso(cutoff),)):
            drop: list[int] = []
            for row_id, watch, day in rows:  # ids grow with time: a later row of a day wins
                earlier = newest.get((watch, day))
                if earlier is not None:
                    drop.append(earlier)
                newest[watch, day] = row_id
            yield from _batches(drop)

    def _old_messages(self, cutoff: float, states: tuple[str, ...], gone: set[int]
                      ) -> Iterator[list[int]]:
        """Outbox rows in ``states`` done before ``cutoff`` that no row but those ``gone``
        points at."""
        marks = ",".join("?" * len(states))
        # "+o.state": walk the window by id, not every row in those states by their index.
        for rows in self._windows(
                "outbox",
                "SELECT o.id, (SELECT group_concat(d.id) FROM outbox d WHERE d.dup_of = o.id) "  # noqa: S608
                f"FROM outbox o WHERE +o.state IN ({marks}) AND o.done_at < ? AND o.id > ? "
                "AND o.id <= ? ORDER BY o.id", (*states, cutoff)):
            yield from _batches([row_id for row_id, dups in rows if _all_in(dups, gone)])

    def _old_events(self, cutoff: float, gone: set[int]) -> Iterator[list[int]]:
        """Events before ``cutoff`` that no outbox row but those ``gone`` refers to."""
        for rows in self._windows(
                "events",
                "SELECT e.id, (SELECT group_concat(o.id) FROM outbox o WHERE o.event_id = e.id) "
                "FROM events e WHERE e.detected_at < ? AND e.id > ? AND e.id <= ? ORDER BY e.id",
                (iso(cutoff),)):
            yield from _batches([row_id for row_id, refs in rows if _all_in(refs, gone)])

    def checkpoint(self) -> None:
        """Copy what the write-ahead log holds into the database, on a connection of its
        own, so that a worker thread can do it while this one goes on writing (PASSIVE: it
        waits for no reader or writer).  SQLite does it by itself in the commit that crosses
        1,000 log pages: copying them and syncing took that commit past 50 ms, which the
        daemon's loop, pruning in many small transactions, must not wait for.  PostgreSQL
        checkpoints by itself: nothing to do."""
        if self.path is None:
            return
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=0)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: checkpoint failed: {exc}{_hint(exc)}") from None

    def vacuum(self) -> tuple[int, int]:
        """Give the free pages back to the file system; its size (bytes) before and after.

        On PostgreSQL: VACUUM (ANALYZE), which makes dead rows' room reusable and updates
        the planner's statistics without locking out the other instances (VACUUM FULL would,
        table by table); the database's size before and after."""
        if self.path is None:
            size = "SELECT pg_database_size(current_database())"
            try:
                (before,) = self._conn.execute(size).fetchone()
                self._conn.execute("VACUUM (ANALYZE)")
                (after,) = self._conn.execute(size).fetchone()
            except DB_ERRORS as exc:
                raise StateError(f"{self.where}: vacuum failed: {exc}") from None
            return int(before), int(after)
        before = self.path.stat().st_size
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: vacuum failed: {exc}") from None
        return before, self.path.stat().st_size

    def copy_to(self, target: Store, *, batch: int = 2000) -> dict[str, int]:
        """Copy this whole state into ``target``, a new one (its schema, no rows), in one
        transaction of the target, read from one snapshot of this one: rows, ids and the
        database's instance id as they are here, so the events, feeds and idempotency
        keys go on as before.  Rows copied per table.  StateError when ``target`` holds
        anything already (a copy never merges two histories).

        The tables are SCHEMA's, in its order, which is also the order their references
        need (an outbox row's ``dup_of``: an earlier row, so rows go in id order)."""
        tables = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA)
        for table in tables:
            if table != "meta" and target._read(f"SELECT 1 FROM {table} LIMIT 1"):  # noqa: S608
                raise StateError(f"{target.where} is not empty (its {table} table has rows): "
                                 "migrate-state copies into a new state only")
        counts: dict[str, int] = {}
        with self._reading("the state to copy"):  # one snapshot of it, whatever writes meanwhile
            self._conn.execute("BEGIN" if self.database is None
                               else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            with target.transaction() as tx:
                tx.execute("DELETE FROM meta")  # the new state's own instance id: replaced
                for table in tables:
                    counts[table] = _copy_table(self._conn, tx, table, batch)
                if target.database is not None:  # identities go on after the copied ids
                    from watcher import pgstate  # noqa: PLC0415 - imports psycopg

                    for table in sorted(pgstate.ID_TABLES):
                        tx.execute(  # our table names
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE("  # noqa: S608
                            f"(SELECT MAX(id) FROM {table}), 0) + 1, false)")
        finally:
            with self._reading("the state to copy"):
                self._conn.execute("ROLLBACK")  # a read: nothing to commit
        target._latest.clear()
        return counts

    def last_checks(self) -> dict[str, dict[str, Any]]:
        """The newest check of every watch."""
        # One index seek per watch (a skip scan over checks_watch for the watches), not a
        # walk over every check: the table holds a row per poll.
        rows = self._read(
            "WITH RECURSIVE w(watch) AS (SELECT MIN(watch) FROM checks UNION ALL "
            "SELECT (SELECT MIN(watch) FROM checks WHERE watch > w.watch) FROM w "
            "WHERE w.watch IS NOT NULL) "
            "SELECT c.watch, c.at, c.outcome, c.events, c.error FROM w JOIN checks c ON c.id = "
            "(SELECT MAX(id) FROM checks WHERE watch = w.watch) WHERE w.watch IS NOT NULL")
        return {r[0]: {"at": r[1], "outcome": r[2], "events": r[3], "error": r[4]} for r in rows}


def _cancel_reverted(tx: sqlite3.Connection, alert: Alert, event: Event, now: float) -> bool:
    """Cancel a settling alert that ``event`` reverts; True when one was cancelled."""
    if event.get("field") is None:
        return False
    rows = tx.execute(
        "SELECT o.id, o.scope, e.body FROM outbox o JOIN events e ON e.id = o.event_id "
        "WHERE o.state = 'pending' AND o.settle_until > ? AND o.target = ? AND o.rule = ? "
        "AND e.model = ? ORDER BY o.id DESC", (now, alert.target, alert.rule, event["model"]))
    for row_id, scope, body in rows.fetchall():
        earlier = orjson.loads(body)
        if earlier.get("field") != event["field"]:
            continue
        # The same host's watches see one catalogue: a flap seen half by one watch and half
        # by another is still a flap.
        same_host = scope is not None and scope == alert.scope
        if not same_host and earlier.get("watch") != event["watch"]:
            continue
        if earlier.get("old") == event.get("new") and earlier.get("new") == event.get("old"):
            tx.execute("UPDATE outbox SET state = 'cancelled', done_at = ? WHERE id = ?",
                       (now, row_id))
            return True
        return False  # the newest settling change of this field is not reverted by this one
    return False


def _same_change(tx: sqlite3.Connection, alert: Alert, watch: str, since: float) -> int | None:
    """The outbox row through which another watch of the same host already queued this
    change for this target, if any; None otherwise.

    Rows pair one to one: a row that carries a change for ``watch`` already (it has a
    duplicate from ``watch``) is not taken again, so a price that goes up, down and up
    again is told each time, once.
    """
    if alert.change_key is None:
        return None
    row = tx.execute(
        "SELECT o.id FROM outbox o JOIN events e ON e.id = o.event_id "
        "WHERE o.target = ? AND o.change_key = ? AND o.dup_of IS NULL AND o.created_at >= ? "
        "AND e.watch != ? AND NOT EXISTS (SELECT 1 FROM outbox d JOIN events de "
        "ON de.id = d.event_id WHERE d.dup_of = o.id AND de.watch = ?) "
        "ORDER BY o.id LIMIT 1", (alert.target, alert.change_key, since, watch, watch)).fetchone()
    return None if row is None else int(row[0])


def _copy_table(source: sqlite3.Connection, tx: sqlite3.Connection, table: str, batch: int
                ) -> int:
    """Every row of ``table`` from ``source`` into ``tx``, ``batch`` at a time (in id order
    where it has ids); how many."""
    cursor = source.execute(f"SELECT * FROM {table} LIMIT 0")  # noqa: S608 - SCHEMA's names
    columns = [d[0] for d in cursor.description]
    order = " ORDER BY id" if "id" in columns else ""
    rows = source.execute(f"SELECT {', '.join(columns)} FROM {table}{order}")  # noqa: S608
    insert = (f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
              f"VALUES ({', '.join('?' * len(columns))})")
    done = 0
    while chunk := rows.fetchmany(batch):
        tx.executemany(insert, chunk)
        done += len(chunk)
    return done


def _write_gaps(tx: sqlite3.Connection, watch: str, gaps: frozenset[str]) -> None:
    tx.execute("INSERT OR IGNORE INTO account_watches (watch) VALUES (?)", (watch,))
    tx.execute("DELETE FROM account_gaps WHERE watch = ?", (watch,))
    tx.executemany("INSERT INTO account_gaps (watch, model) VALUES (?, ?)",
                   [(watch, model) for model in sorted(gaps)])


def _upgrade(conn: sqlite3.Connection, version: int, path: Path) -> None:
    """Create the schema, or bring a database of an earlier release (``version``) to this
    one, in one transaction: a crash or a kill leaves the old database as it was, and the
    next start migrates again."""
    logger = log.get()
    postgresql = not isinstance(conn, sqlite3.Connection)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if postgresql:  # instances starting together: one creates (or upgrades), the rest wait
            from watcher import pgstate  # noqa: PLC0415 - imports psycopg

            conn.execute(f"SELECT pg_advisory_xact_lock({pgstate.SCHEMA_LOCK})")
            conn.execute(pgstate.VERSION_TABLE)
            (done,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM watcher_schema"
                                   ).fetchone()
            if done >= SCHEMA_VERSION:
                conn.execute("COMMIT")
                return
        # The steps from schema 1-8 are SQLite's: PostgreSQL states begin at schema 9.
        if version == 1:  # 1 -> 2: checks.digest, for holds that outlive the process
            conn.execute("ALTER TABLE checks ADD COLUMN digest TEXT")
        if 1 <= version < 3:  # 2 -> 3: one alert per change across the watches of a host
            for column in ("scope TEXT", "change_key TEXT", "dup_of INTEGER REFERENCES outbox(id)"):
                conn.execute(f"ALTER TABLE outbox ADD COLUMN {column}")
        if 1 <= version < 4:  # 3 -> 4: whole snapshots become model versions and spans
            conn.execute("ALTER TABLE snapshots RENAME TO snapshots_v3")
            conn.execute("DROP INDEX IF EXISTS snapshots_watch")
        if 4 <= version < 7:  # 6 -> 7: spans in model order, with their briefs and times
            conn.execute("ALTER TABLE spans RENAME TO spans_v6")
            for index in ("spans_model", "spans_open"):
                conn.execute(f"DROP INDEX IF EXISTS {index}")
        if version == 6:  # 6 -> 7: the briefs move to the spans (a table copy: SQLite's DROP
            # COLUMN cannot rewrite a CREATE TABLE whose last column ends in a comment)
            conn.execute("ALTER TABLE versions RENAME TO versions_v6")
            conn.execute("DROP INDEX versions_unpacked")
        if 1 <= version < 6:  # 5 -> 6: a model's events by (model, watch, id)
            conn.execute("DROP INDEX IF EXISTS events_model")
        # 7 -> 8 (issue 15): the usage table and its index, created by SCHEMA below; no
        # existing row changes.
        # 10 -> 11 (issue 15 item 3): the provider_stats table, created by SCHEMA below.
        if 1 <= version < 9:  # 8 -> 9: the outbox keeps the rule's templates it renders with
            for column in ("title_tpl TEXT", "body_tpl TEXT"):
                conn.execute(f"ALTER TABLE outbox ADD COLUMN {column}")
        # --- schema step "outbox claims" (issue 14, engineer leader): 9 -> 10 -------------
        if 1 <= version < 10:  # who is sending a row, until when (Store.claim)
            for column in ("claimed_by TEXT", "claim_until REAL", "claim_session INTEGER"):
                conn.execute(f"ALTER TABLE outbox ADD COLUMN {column}")
        # --- end of schema step "outbox claims" -------------------------------------------
        statements = pgstate.schema(SCHEMA) if postgresql else SCHEMA.split(";")
        for statement in statements:  # executescript would commit first (no ";" in comments)
            if statement.strip():
                conn.execute(statement)
        if 1 <= version < 4:
            (total,) = conn.execute("SELECT COUNT(*) FROM snapshots_v3").fetchone()
            logger.info("state.migrating", path=str(path), snapshots=total,
                        from_schema=version, to_schema=SCHEMA_VERSION)
            for done, _ in enumerate(versions.migrate_snapshots(conn, "snapshots_v3"), start=1):
                if done % 1000 == 0:
                    logger.info("state.migrating", done=done, snapshots=total)
            conn.execute("DROP TABLE snapshots_v3")
            conn.execute("DROP TABLE blobs")
            logger.info("state.migrated", snapshots=total, schema=SCHEMA_VERSION)
        if version == 6:
            conn.execute("INSERT INTO versions (digest, zdict, data) "
                         "SELECT digest, zdict, data FROM versions_v6")
        if 4 <= version < 7:
            spans = versions.copy_spans(conn, "spans_v6",
                                        briefs="versions_v6" if version == 6 else None)
            conn.execute("DROP TABLE spans_v6")
            conn.execute("DROP TABLE IF EXISTS versions_v6")
            logger.info("state.migrated", spans=spans, schema=SCHEMA_VERSION)
        while versions.pack(conn, PACK_BATCH):  # what the migrated snapshots wrote
            pass
        if postgresql:
            conn.execute("DELETE FROM watcher_schema")
            conn.execute("INSERT INTO watcher_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?)",
                         (str(uuid.uuid4()),))
        else:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


_ASIDE = ("It is not treated as empty; move it aside to start afresh (every watch then "
          "records a new baseline).")


def _lock(state_dir: Path) -> int:
    """An exclusive, non-blocking lock on ``state_dir`` itself (released when the fd closes)."""
    try:
        fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StateError(f"cannot open state directory {state_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateInUseError(f"{state_dir} is in use by another openrouter-watcher (a "
                              "running daemon?): `run` and `once` need it to themselves; "
                              "`status`, `history`, `show`, `once --dry-run` and `resend` "
                              "work beside it") from None
    except OSError as exc:  # a file system without flock on directories
        os.close(fd)
        raise StateError(f"cannot lock state directory {state_dir}: {exc.strerror}") from None
    return fd


def _all_in(ids: str | None, gone: set[int]) -> bool:
    """Whether every id of a ``group_concat`` list (None: none) is in ``gone``."""
    return ids is None or all(int(i) in gone for i in ids.split(","))


def _hint(exc: Exception) -> str:
    """What a person can do about a write that failed for want of space."""
    text = str(exc).lower()
    if "full" in text or "disk i/o" in text:
        return (" (is the disk of the state directory full? Nothing is lost: what could not be "
                "written is found again by the next poll once there is room)")
    return ""


def _glob_regex(pattern: str) -> str:
    from watcher import pgstate  # noqa: PLC0415 - imports psycopg: PostgreSQL states only

    return pgstate.glob_regex(pattern)


def _batches(ids: list[int]) -> Iterator[list[int]]:
    """``ids`` PRUNE_BATCH at a time; one empty batch when there are none (a window read
    that found nothing is still a step of its own)."""
    for k in range(0, max(1, len(ids)), PRUNE_BATCH):
        yield ids[k:k + PRUNE_BATCH]


def _create(path: Path, directory: int) -> None:
    """A new, complete database at ``path``: built aside, synced, then renamed into place.

    ``directory`` is the state directory's fd, synced so that the rename is durable.  A
    ``.new`` file left by a crash here is only ever a draft, and is built again.
    """
    draft = path.with_name(path.name + ".new")
    for leftover in (draft, draft.with_name(draft.name + "-journal")):
        leftover.unlink(missing_ok=True)
    conn = sqlite3.connect(draft, isolation_level=None)
    try:
        _upgrade(conn, 0, draft)
        conn.execute("INSERT INTO meta (key, value) VALUES ('instance', ?)", (str(uuid.uuid4()),))
    finally:
        conn.close()
    fd = os.open(draft, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    draft.rename(path)
    os.fsync(directory)


def _refuse_empty(path: Path) -> None:
    """StateError for a database file of 0 bytes (see the module docstring)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise StateError(f"{path}: cannot use the state database: {exc.strerror}") from None
    if size == 0:
        raise StateError(f"{path}: the file is empty (0 bytes), and a state database this "
                         f"program made never is (truncated?). {_ASIDE}")


def _insert_check(tx: sqlite3.Connection, watch: str, at: str, outcome: str, events: int,
                  error: str | None, digest: str | None = None) -> int:
    return _lastrowid(tx.execute(
        "INSERT INTO checks (watch, at, outcome, events, error, digest) VALUES (?,?,?,?,?,?)",
        (watch, at, outcome, events, error, digest)))


def _lastrowid(cursor: sqlite3.Cursor) -> int:
    rowid = cursor.lastrowid
    if rowid is None:  # pragma: no cover - sqlite always sets it after an INSERT
        raise StateError("insert returned no row id")
    return rowid
