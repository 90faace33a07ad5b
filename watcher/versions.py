"""Stored history as model versions: each distinct model object once, and when it was listed.

A model's *version* is its canonical JSON (the bytes :attr:`Snapshot.fingerprints` holds),
stored once under its BLAKE2b digest.  Model objects are small (~1.4 KB) and alike:
compressed alone they shrink to ~700 bytes, with a preset dictionary of model JSON to ~320
(measured on the real catalogue).  Each database makes that dictionary once, from the
first versions it packs, and keeps it (``zdicts``), so it never changes under stored data.
A *span* says that a watch listed one version of one model from one stored snapshot up to
(not including) another, or until now.  A stored snapshot of a watch is then the versions
of the spans open at it, and nothing of a model that did not change is written again::

    snapshots  id 7 (models, 2026-01-04T13:27Z)   id 9 (models, 2026-01-04T19:13Z)
    spans      z-ai/glm-4.7  first 7  last 9     v=3f2a..
               z-ai/glm-4.7  first 9  last NULL  v=9c41..  <- the price moved at 9
               openai/gpt-4o first 7  last NULL  v=77e0..  <- unchanged: one row, ever

So a changed poll writes the versions that changed, a span for each and the end of the
spans they replace; a model page reads the spans of one model; the next diff reads the
open spans (the watch's latest snapshot).  Spans are stored in (watch, model, first_snap)
order (a table WITHOUT ROWID), so one model's spans are a run of neighbouring rows, not one
page read each.

A poll writes its new versions as they are (``zdict`` NULL): compressing costs ~50 us a
version, the most of a commit when a step rewrites hundreds of models, and the poll is
where a change waits to be told.  :func:`pack` compresses them later, a batch at a time,
in the store's daily housekeeping (``prune``), at the end of ``once`` and of a migration.

Each span carries its version's *brief*: the few fields a model's timeline draws (name,
pricing, context length, expiration date) as plain JSON, and the time its first snapshot
was taken, so that a model page with thousands of versions reads that run of spans and
nothing else: no version is decompressed (inflating one costs ~20 us) nor looked up
(finding each version's brief among the versions cost ~10 us a span, 27 ms of a busy
model's 52 ms, schema 6).

Functions take the caller's connection (and transaction): :class:`watcher.store.Store`
decides when to commit.
"""

from __future__ import annotations

import functools
import sqlite3
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from watcher.errors import StateError
from watcher.snapshot import Snapshot, data_of, from_items

if TYPE_CHECKING:
    from watcher.events import Event

ZLIB_LEVEL = 6
ZDICT_BYTES = 32 * 1024  # zlib's window: more dictionary than this is never used
# What a timeline reads of a model (watch.timeline and events.summary): kept uncompressed.
BRIEF_KEYS = ("name", "pricing", "context_length", "expiration_date")


def version_digest(data: bytes) -> bytes:
    """The address of one model version: BLAKE2b-128 of its canonical JSON."""
    import hashlib  # noqa: PLC0415 - not at every start (cli.py)

    return hashlib.blake2b(data, digest_size=16).digest()


def brief(item: Mapping[str, Any]) -> bytes:
    """The fields of ``item`` a timeline reads, as JSON (absent keys stay absent)."""
    return orjson.dumps({key: item[key] for key in BRIEF_KEYS if key in item})


def write(tx: sqlite3.Connection, watch: str, snapshot_id: int, taken_at: str, snap: Snapshot,
          previous: Snapshot | None = None, *, packed: bool = False) -> int:
    """Record ``snap`` as stored snapshot ``snapshot_id`` of ``watch``, taken at
    ``taken_at``; the versions written.

    ``previous`` is the watch's latest stored snapshot when the caller knows it (the store
    keeps the one it last wrote or read): the models whose bytes are those of ``previous``
    keep their open spans, so only the changed ones are hashed and looked up.  Without it
    the open spans are read to find out.  ``packed`` compresses the new versions now (a
    baseline: a whole catalogue, no alert waiting, and four times the bytes raw, which a
    small disk may not hold twice over with its log).
    """
    fingerprints = snap.fingerprints
    if previous is None:
        listed = dict(tx.execute(
            "SELECT model, version FROM spans INDEXED BY spans_open "
            "WHERE watch = ? AND last_snap IS NULL", (watch,)))
        current = {model: version_digest(data) for model, data in fingerprints.items()}
        new = [(model, version) for model, version in current.items()
               if listed.get(model) != version]
        ended = [model for model, version in listed.items() if current.get(model) != version]
    else:
        before = previous.fingerprints
        new = [(model, version_digest(data)) for model, data in fingerprints.items()
               if before.get(model) != data]
        ended = [model for model, data in before.items() if fingerprints.get(model) != data]
    # INDEXED BY: the table's own order would walk every span of the model to find it.
    tx.executemany("UPDATE spans INDEXED BY spans_open SET last_snap = ? "
                   "WHERE watch = ? AND model = ? AND last_snap IS NULL",
                   [(snapshot_id, watch, model) for model in ended])
    known = _known(tx, [version for _, version in new])
    unknown = [(model, version) for model, version in new if version not in known]
    if packed and unknown:
        zdict_id, zdict = _dictionary(tx, fingerprints)
        pack_one: Any = _packer(zdict)
    else:
        zdict_id, pack_one = None, None
    tx.executemany("INSERT OR IGNORE INTO versions (digest, zdict, data) VALUES (?, ?, ?)",
                   [(version, zdict_id,
                     pack_one(fingerprints[model]) if pack_one else fingerprints[model])
                    for model, version in unknown])
    tx.executemany("INSERT INTO spans (watch, model, first_snap, version, first_at, brief) "
                   "VALUES (?,?,?,?,?,?)",
                   [(watch, model, snapshot_id, version, taken_at, brief(snap.models[model]))
                    for model, version in new])
    return len(unknown)


def pack(tx: sqlite3.Connection, limit: int) -> int:
    """Compress up to ``limit`` versions written as they were polled; how many.

    The first call makes the database's dictionary from the versions it packs (the first
    catalogue stored, when the watch started)."""
    rows = tx.execute("SELECT digest, data FROM versions WHERE zdict IS NULL LIMIT ?",
                      (limit,)).fetchall()
    if not rows:
        return 0
    zdict_id, zdict = _dictionary(tx, {bytes(digest).hex(): bytes(data) for digest, data in rows})
    packer = _packer(zdict)
    tx.executemany("UPDATE versions SET zdict = ?, data = ? WHERE digest = ?",
                   [(zdict_id, packer(bytes(data)), digest) for digest, data in rows])
    return len(rows)


def unpacked(conn: sqlite3.Connection) -> int:
    """How many versions :func:`pack` has still to compress."""
    return int(conn.execute("SELECT COUNT(*) FROM versions WHERE zdict IS NULL").fetchone()[0])


def _known(tx: sqlite3.Connection, versions: list[bytes]) -> set[bytes]:
    known: set[bytes] = set()
    for k in range(0, len(versions), 500):  # SQLite's limit on host parameters
        batch = versions[k:k + 500]
        marks = ",".join("?" * len(batch))
        known.update(r[0] for r in tx.execute(
            f"SELECT digest FROM versions WHERE digest IN ({marks})", batch))  # noqa: S608
    return known


def _dictionary(tx: sqlite3.Connection, fingerprints: Mapping[str, bytes]) -> tuple[int, bytes]:
    """The database's compression dictionary, made from ``fingerprints`` if it has none:
    versions spread over the whole key range, up to zlib's window."""
    row = tx.execute("SELECT id, data FROM zdicts ORDER BY id DESC LIMIT 1").fetchone()
    if row is not None:
        return int(row[0]), bytes(row[1])
    ids = sorted(fingerprints)
    total = sum(len(fingerprints[i]) for i in ids)
    every = max(1, -(-total // ZDICT_BYTES))
    zdict = b"".join(fingerprints[i] for i in ids[::every])[-ZDICT_BYTES:]
    cursor = tx.execute("INSERT INTO zdicts (data) VALUES (?)", (zdict,))
    return int(cursor.lastrowid or 0), zdict


@functools.lru_cache(maxsize=4)
def _packer(zdict: bytes) -> Any:
    """A compressor of model versions primed with ``zdict``, made once per dictionary:
    priming hashes the whole dictionary, copying a primed one costs half as much."""
    primed = zlib.compressobj(ZLIB_LEVEL, zdict=zdict) if zdict else zlib.compressobj(ZLIB_LEVEL)

    def pack(data: bytes) -> bytes:
        packer = primed.copy()
        return packer.compress(data) + packer.flush()

    return pack


def _dictionaries(conn: sqlite3.Connection) -> dict[int, Any]:
    """A decompressor primed with each dictionary: copying one costs half of priming anew."""
    return {int(r[0]): zlib.decompressobj(zdict=bytes(r[1]))
            for r in conn.execute("SELECT id, data FROM zdicts")}


def latest(conn: sqlite3.Connection, watch: str) -> Snapshot | None:
    """The newest stored snapshot of ``watch`` (its open spans); None before the first."""
    if conn.execute("SELECT 1 FROM snapshots WHERE watch = ? LIMIT 1", (watch,)).fetchone() is None:
        return None
    zdicts = _dictionaries(conn)
    rows = conn.execute(
        "SELECT s.model, v.zdict, v.data FROM spans s INDEXED BY spans_open "
        "JOIN versions v ON v.digest = s.version WHERE s.watch = ? AND s.last_snap IS NULL",
        (watch,))
    return Snapshot(models={model: _load(model, data, zdicts, z) for model, z, data in rows})


def rebuild(conn: sqlite3.Connection, snapshot_id: int) -> Snapshot:
    """Stored snapshot ``snapshot_id`` as it was polled (for tests and migrations)."""
    row = conn.execute("SELECT watch FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
    if row is None:
        raise StateError(f"no stored snapshot {snapshot_id}")
    zdicts = _dictionaries(conn)
    rows = conn.execute(
        "SELECT s.model, v.zdict, v.data FROM spans s JOIN versions v ON v.digest = s.version "
        "WHERE s.watch = ? AND s.first_snap <= ? AND (s.last_snap IS NULL OR s.last_snap > ?)",
        (row[0], snapshot_id, snapshot_id))
    return Snapshot(models={model: _load(model, data, zdicts, z) for model, z, data in rows})


@dataclass(frozen=True)
class ModelStates:
    """One model in one watch's stored history: each state it was in, from when."""

    # (taken_at, the model's brief, or None while it was not listed), in order
    states: list[tuple[str, dict[str, Any] | None]]
    in_first_snapshot: bool   # listed when the watch started
    last_seen: str | None     # taken_at of the newest stored snapshot that listed it
    # The field events recorded when its versions changed (Store.model_states fills them).
    events: tuple[Event, ...] = ()


def model_states(conn: sqlite3.Connection, watch: str, model: str) -> ModelStates:
    """The stored states of ``model`` in ``watch`` (each version's brief): reads that
    model's run of spans, and decompresses nothing."""
    spans = conn.execute(
        "SELECT first_snap, last_snap, first_at, brief FROM spans "
        "WHERE watch = ? AND model = ? ORDER BY first_snap", (watch, model)).fetchall()
    if not spans:
        return ModelStates(states=[], in_first_snapshot=False, last_seen=None)
    # When it was not listed any more: the time of the snapshot that ended a span, where
    # no span of it starts (a removal; rare, so looked up one by one).
    starts = {first for first, _, _, _ in spans}
    removed = {last: _taken_at(conn, last) for _, last, _, _ in spans
               if last is not None and last not in starts}
    states: list[tuple[str, dict[str, Any] | None]] = []
    for _, last, first_at, data in spans:
        states.append((first_at, _brief(model, data)))
        if last in removed:
            states.append((removed[last], None))
    last = spans[-1][1]
    if last is not None:
        seen = conn.execute("SELECT taken_at FROM snapshots WHERE watch = ? AND id < ? "
                            "ORDER BY id DESC LIMIT 1", (watch, last)).fetchone()
    else:
        seen = conn.execute("SELECT taken_at FROM snapshots WHERE watch = ? "
                            "ORDER BY id DESC LIMIT 1", (watch,)).fetchone()
    (start,) = conn.execute("SELECT MIN(id) FROM snapshots WHERE watch = ?", (watch,)).fetchone()
    return ModelStates(states=states, in_first_snapshot=spans[0][0] == start,
                       last_seen=seen[0] if seen else None)


def _taken_at(conn: sqlite3.Connection, snapshot_id: int) -> str:
    row = conn.execute("SELECT taken_at FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
    if row is None:
        raise StateError(f"a span ends at snapshot {snapshot_id}, which is not stored")
    return str(row[0])


def migrate_snapshots(tx: sqlite3.Connection, old_table: str) -> Iterator[int]:
    """Turn whole stored snapshots (``old_table`` + ``blobs``, schema 3 and older) into
    versions and spans, oldest first, keeping every snapshot's id; yields each id done.

    Reads one snapshot at a time (and keeps each watch's previous one, to write only what
    changed), so memory stays that of a catalogue per watch.
    """
    rows = tx.execute(f"SELECT s.id, s.watch, s.digest, s.taken_at, s.models, b.data "  # noqa: S608
                      f"FROM {old_table} s JOIN blobs b ON b.digest = s.digest ORDER BY s.id")
    previous: dict[str, Snapshot] = {}
    for snapshot_id, watch, digest, taken_at, models, data in rows:
        # Read back as stored (validated and serialised when it was polled): without
        # snapshot.parse's serialising of the whole list, which write() does not read.
        snap = from_items(data_of(zlib.decompress(data)))
        tx.execute("INSERT INTO snapshots (id, watch, digest, taken_at, models) VALUES (?,?,?,?,?)",
                   (snapshot_id, watch, digest, taken_at, models))
        write(tx, watch, snapshot_id, taken_at, snap, previous.get(watch))
        previous[watch] = snap
        yield snapshot_id


def copy_spans(tx: sqlite3.Connection, old_table: str, *, briefs: str | None,
               batch: int = 5000) -> int:
    """Fill ``spans`` from the spans of schema 4-6 (``old_table``), with each span's first
    time and brief; how many.  ``briefs``: the table of schema-6 versions, which hold their
    briefs; without (schema 4-5), each version is decompressed once to make its brief."""
    zdicts = _dictionaries(tx)
    made: dict[bytes, bytes] = {}
    done, after = 0, -1
    brief_column = "b.brief" if briefs else "NULL"
    join_briefs = f"LEFT JOIN {briefs} b ON b.digest = s.version " if briefs else ""
    while rows := tx.execute(
            f"SELECT s.id, s.watch, s.model, s.first_snap, s.last_snap, s.version, f.taken_at, "  # noqa: S608
            f"{brief_column}, v.zdict, CASE WHEN {brief_column} IS NULL THEN v.data END "
            f"FROM {old_table} s JOIN versions v ON v.digest = s.version {join_briefs}"
            "JOIN snapshots f ON f.id = s.first_snap WHERE s.id > ? ORDER BY s.id LIMIT ?",
            (after, batch)).fetchall():
        spans = []
        for _, watch, model, first, last, version, first_at, stored, zdict, data in rows:
            made_brief = stored or made.get(version)
            if made_brief is None:
                made_brief = made[version] = brief(_load(model, data, zdicts, zdict))
            spans.append((watch, model, first, last, version, first_at, made_brief))
        tx.executemany("INSERT INTO spans (watch, model, first_snap, last_snap, version, "
                       "first_at, brief) VALUES (?,?,?,?,?,?,?)", spans)
        done += len(rows)
        after = rows[-1][0]
    return done


def _brief(model: str, data: bytes | None) -> dict[str, Any]:
    try:
        item = orjson.loads(data) if data is not None else None
    except orjson.JSONDecodeError as exc:
        raise StateError(f"the stored brief of {model!r} is damaged: {exc}") from None
    if not isinstance(item, dict):
        raise StateError(f"the stored brief of {model!r} is missing or not an object")
    return item


def _load(model: str, data: bytes, primed: Mapping[int, Any], zdict: int | None
          ) -> dict[str, Any]:
    """One stored version: compressed with dictionary ``zdict``, or (NULL) not packed yet."""
    try:
        if zdict is None:
            item = orjson.loads(data)
        else:
            unpacker = primed[zdict].copy()
            item = orjson.loads(unpacker.decompress(data) + unpacker.flush())
    except (KeyError, zlib.error, orjson.JSONDecodeError) as exc:
        raise StateError(f"the stored version of {model!r} is damaged: {exc}") from None
    if not isinstance(item, dict):
        raise StateError(f"the stored version of {model!r} is not an object")
    return item
