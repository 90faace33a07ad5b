"""The state in PostgreSQL: a connection that speaks the store's SQLite dialect.

:class:`watcher.store.Store` is written against ``sqlite3``'s connection (``execute``,
``executemany``, cursors with ``lastrowid``, ``?`` placeholders, explicit ``BEGIN`` and
``COMMIT`` on an autocommit connection).  :class:`Connection` offers the same few methods
over a psycopg 3 connection and translates each statement once (cached), so that the
store's SQL is one text for both backends:

=================================  ===========================================
the store writes (SQLite)          PostgreSQL is sent
=================================  ===========================================
``?``                              ``%s`` (a literal ``%`` becomes ``%%``)
``INSERT OR IGNORE INTO t ...``    ``INSERT INTO t ... ON CONFLICT DO NOTHING``
``INSERT INTO t`` (t with an id)   ``... RETURNING id``: the cursor's ``lastrowid``
``INDEXED BY name``                (dropped: the planner chooses)
``+o.state`` (no index, please)    ``o.state``
``group_concat(x)``                ``string_agg((x)::text, ',')``
``x GLOB ?``                       ``x ~ ?`` (the store passes :func:`glob_regex`)
``BEGIN IMMEDIATE``                ``BEGIN``
=================================  ===========================================

The schema is the store's SQLite ``SCHEMA``, its types mapped (:func:`schema`): INTEGER ->
BIGINT (ids: identities), REAL -> DOUBLE PRECISION, BLOB -> BYTEA, no ``WITHOUT ROWID``.
The schema version is the one row of ``watcher_schema`` (SQLite: ``PRAGMA user_version``).

psycopg is imported here only, and this module only for a ``postgresql://`` state (the
store imports it where it opens one), so the SQLite commands never load the driver.
Its errors become :class:`BackendError` (the store catches both, as ``DB_ERRORS``).
Connecting fails with :class:`ConfigError` when the server says the user, password or
database is wrong (a person must fix the config), :class:`StateError` when it cannot be
reached.  No message carries the password:
libpq never quotes it, and it is passed apart from the URL.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus

from watcher.errors import BackendError, ConfigError, StateError

if TYPE_CHECKING:
    from watcher.config import Database

# The store's tables with an ``id INTEGER PRIMARY KEY``: an INSERT into one returns it.
ID_TABLES = frozenset({"snapshots", "zdicts", "checks", "events", "outbox"})
VERSION_TABLE = "CREATE TABLE IF NOT EXISTS watcher_schema (version BIGINT NOT NULL)"
SCHEMA_LOCK = 0x6F72_7700_0001  # pg_advisory_xact_lock key: one instance creates or upgrades
# A network that goes silent (a cut cable, a host gone) ends a statement, not the daemon's
# loop: libpq gives up on data the server does not acknowledge within 10 s, and on an idle
# connection after 5 s + 3 probes 2 s apart; the server likewise ends the session of a
# client gone silent (issue 14 item 4; watcher.leadership does the same for its lock).
CLIENT_KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                                     "keepalives_count": 3, "tcp_user_timeout": 10000}
SESSION_KEEPALIVES = ("-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 "
                      "-c tcp_keepalives_count=3 -c tcp_user_timeout=10000")
# What the server says when the config is wrong, not the network (libpq gives no SQLSTATE
# for a refused connection, only its text).
_CONFIG_FAULTS = ("password authentication failed", "no password supplied", "does not exist",
                  "pg_hba.conf", "authentication failed", "permission denied for database")


def connect(database: Database, *, readonly: bool = False, timeout: float = 10) -> Connection:
    """A connection to ``database``; ConfigError for a wrong user, password or database
    name, StateError when the server cannot be reached."""
    password = database.password.reveal() if database.password is not None else None
    options = SESSION_KEEPALIVES + (" -c default_transaction_read_only=on" if readonly else "")
    try:
        conn = psycopg.connect(database.url, password=password, autocommit=True,
                               connect_timeout=max(1, int(timeout)), options=options,
                               application_name="openrouter-watcher", **CLIENT_KEEPALIVES)
    except psycopg.Error as exc:
        reason = _reason(exc)
        if any(fault in reason for fault in _CONFIG_FAULTS):
            raise ConfigError(f"state: {database.url}: {reason}") from None
        raise StateError(f"{database.url}: cannot connect to PostgreSQL: {reason}") from None
    except ValueError as exc:  # a malformed URL (the config checked its shape only)
        raise ConfigError(f"state: {database.url}: {exc}") from None
    return Connection(conn)


def _reason(exc: Exception) -> str:
    """The server's or libpq's words, on one line, without the "connection failed:" frame."""
    text = " ".join(str(exc).split())
    return re.sub(r"^connection failed: ", "", text)


class Cursor:
    """The rows of one statement, and the id an INSERT made (``sqlite3.Cursor`` alike)."""

    __slots__ = ("_cursor", "lastrowid")

    def __init__(self, cursor: Any, lastrowid: int | None = None) -> None:
        self._cursor = cursor
        self.lastrowid = lastrowid

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())

    def fetchmany(self, size: int) -> list[Any]:
        return list(self._cursor.fetchmany(size))

    @property
    def description(self) -> Any:
        return self._cursor.description

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)


class Connection:
    """A psycopg connection (autocommit: transactions are the store's ``BEGIN``/``COMMIT``)
    with the methods of ``sqlite3.Connection`` the store uses."""

    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        query, returns_id = translate(sql)
        try:
            cursor = self._conn.execute(query, _params(args) or None)
            if returns_id:
                return Cursor(cursor, int(cursor.fetchone()[0]))
            return Cursor(cursor)
        except Exception as exc:
            raise _translated(exc) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        query, _ = translate(sql, returning=False)
        batch = [_params(row) for row in rows]
        if not batch:
            return
        try:
            with self._conn.cursor() as cursor:
                cursor.executemany(query, batch)
        except Exception as exc:
            raise _translated(exc) from None

    @property
    def in_transaction(self) -> bool:
        return bool(self._conn.info.transaction_status != TransactionStatus.IDLE)

    def close(self) -> None:
        self._conn.close()

    @property
    def broken(self) -> bool:
        """Whether the server is gone (the connection is closed or lost)."""
        return bool(self._conn.closed or self._conn.broken)


def _params(args: Sequence[Any]) -> tuple[Any, ...]:
    """The parameters as PostgreSQL takes them: its text cannot hold NUL, which a hostile
    catalogue may put in a model id (SQLite stores it).  It becomes U+FFFD, the
    replacement character: a write that failed would stop the daemon at every poll of that
    catalogue, where this costs the one model's id its NUL (after a restart, that model
    reads back under the replaced id: one removal and one addition, once)."""
    return tuple(arg.replace("\x00", "\ufffd") if type(arg) is str and "\x00" in arg else arg
                 for arg in args)


def _translated(exc: Exception) -> Exception:
    if isinstance(exc, psycopg.Error):
        return BackendError(_reason(exc))
    return exc


_PLACEHOLDER = re.compile(r"'[^']*'|\?|%")
_INSERT_INTO = re.compile(r"^\s*INSERT\s+(?:OR\s+IGNORE\s+)?INTO\s+(\w+)", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def translate(sql: str, *, returning: bool = True) -> tuple[str, bool]:
    """``sql`` in PostgreSQL's words, and whether it returns the id it inserted."""
    text = re.sub(r"\s+INDEXED BY \w+", "", sql)
    text = re.sub(r"(?<=[\s(,])\+(?=[A-Za-z_])", "", text)
    text = re.sub(r"\bgroup_concat\(([^()]*)\)", r"string_agg((\1)::text, ',')", text)
    text = re.sub(r"\bGLOB\b", "~", text)
    if re.match(r"^\s*BEGIN IMMEDIATE\s*$", text):
        return "BEGIN", False
    # Placeholders outside string literals; with parameters, psycopg reads every "%" as
    # the start of one, so a literal % (in a LIKE pattern, say) is doubled.
    marked = _PLACEHOLDER.sub(lambda m: "%s" if m.group(0) == "?" else m.group(0).replace(
        "%", "%%"), text)
    if _PLACEHOLDER.sub(lambda m: "?" if m.group(0) == "?" else "", text).count("?"):
        text = marked
    returns_id = False
    insert = _INSERT_INTO.match(text)
    if insert:
        ignore = re.match(r"^\s*INSERT\s+OR\s+IGNORE", text, re.IGNORECASE) is not None
        if ignore:
            text = re.sub(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO", "INSERT INTO", text,
                          flags=re.IGNORECASE) + " ON CONFLICT DO NOTHING"
        if (returning and not ignore and insert.group(1) in ID_TABLES
                and "RETURNING" not in text.upper()):
            text += " RETURNING id"
            returns_id = True
    return text, returns_id


def schema(sqlite_schema: str) -> list[str]:
    """The statements of the store's SQLite schema, in PostgreSQL's types."""
    text = re.sub(r"--[^\n]*", "", sqlite_schema)
    text = re.sub(r"\bINTEGER PRIMARY KEY\b",
                  "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", text)
    text = re.sub(r"\bINTEGER\b", "BIGINT", text)
    text = re.sub(r"\bREAL\b", "DOUBLE PRECISION", text)
    text = re.sub(r"\bBLOB\b", "BYTEA", text)
    text = re.sub(r"\)\s*WITHOUT ROWID", ")", text)
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def glob_regex(pattern: str) -> str:
    """SQLite's GLOB ``pattern`` (``*``, ``?``, ``[...]``, case-sensitive, whole string) as
    a PostgreSQL regular expression."""
    out, k = ["^"], 0
    while k < len(pattern):
        char = pattern[k]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and "]" in pattern[k + 2:]:
            end = pattern.index("]", k + 2)
            body = pattern[k + 1:end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            k = end
        else:
            out.append(re.sub(r"([^\w\s])", r"\\\1", char))
        k += 1
    return "".join(out) + "$"
