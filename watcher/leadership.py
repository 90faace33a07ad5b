"""Who polls and delivers: one leader per state, the other instances stand by.

==========================================  ===============================================
what happens                                this instance
==========================================  ===============================================
a SQLite state (a state directory)          always the leader: the directory lock already
                                            keeps a second writer out (``Store.open``)
PostgreSQL, the advisory lock is free       takes it, on a connection of its own: leader
PostgreSQL, another session holds it        standby; asks again every ``CHECK_EVERY`` s
leader, the lock's connection answers       stays the leader (asked every ``CHECK_EVERY`` s)
leader, the connection fails, or does not   steps down at once, before the server can have
answer within ``CHECK_TIMEOUT``             ended its session; then as a standby
the database refuses or drops connections   standby; logged once, retried with backoff up
                                            to ``RETRY_CAP``, logged once when it answers
==========================================  ===============================================

The server ends a dead leader's session, and so frees the lock: at once when its process
dies (the kernel closes the socket), and within ``SERVER_GIVES_UP`` (11 s) when its host or
network is gone (server-side TCP keepalives: 5 s idle, then 3 probes 2 s apart; and
``tcp_user_timeout`` for data never acknowledged).  A standby asking every 2 s takes over
within 15 s.  A leader that cannot reach the server stops leading after at most
``CHECK_EVERY + CHECK_TIMEOUT`` (7 s), before the server can have freed the lock, so two
instances do not lead at once while the timeouts hold.  They may not: a store call on a
silent network holds the daemon's loop (the store is synchronous) for up to 10 s
(``tcp_user_timeout``), and the check waits behind it; such a leader can write nothing
meanwhile, and every send needs its claim written first (:meth:`watcher.store.Store.claim`),
so a message is never sent twice.  What is not fenced: a cycle the old leader commits in
the moment its network comes back, before its next check (see the README).

psycopg is imported only here, and only for a PostgreSQL state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import TYPE_CHECKING, Any, Protocol, cast

from watcher import log
from watcher.backoff import backoff

if TYPE_CHECKING:
    import psycopg

    from watcher.config import Database

CHECK_EVERY = 2.0      # seconds between two checks, leader or standby
CHECK_TIMEOUT = 5.0    # a check (or a connection attempt) not answered by then has failed
RETRY_CAP = 10.0       # the longest wait between two connection attempts
SERVER_GIVES_UP = 11   # the server-side keepalive settings below end a lost session in this
# The session settings of the lock's connection: the server gives up on a silent client
# after 5 + 3 * 2 s, a statement never runs long, and our own end gives up likewise.
SESSION_OPTIONS = ("-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 "
                   "-c tcp_keepalives_count=3 -c tcp_user_timeout=10000 "
                   "-c statement_timeout=5000 -c idle_in_transaction_session_timeout=10000")
CLIENT_OPTIONS = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                  "keepalives_count": 3, "tcp_user_timeout": 10000, "connect_timeout": 5}
# One lock per database: every watcher sharing a database shares its outbox.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"openrouter-watcher leader").digest()[:8], "big",
                          signed=True)



class Leadership(Protocol):
    """Whether this instance leads; :meth:`run` keeps it up to date."""

    leading: bool
    lost: str | None  # why the leadership was last lost to database trouble (None: it was not)
    reachable: bool   # whether the database answered the last check
    session: int | None  # the backend pid holding the lock (Store.fence), None: no lock

    async def start(self) -> None:
        """The first try, before the daemon starts: a leader polls at once."""

    async def run(self, stop: asyncio.Event, changed: asyncio.Event) -> None:
        """Check every few seconds until ``stop``; set ``changed`` on every change."""

    async def close(self) -> None:
        """Give the leadership back (a standby takes over at its next check)."""


class Sole:
    """The only instance there can be (a SQLite state): always the leader."""

    leading: bool = True
    lost: str | None = None
    reachable: bool = True
    session: int | None = None

    async def start(self) -> None:
        return

    async def run(self, stop: asyncio.Event, changed: asyncio.Event) -> None:  # noqa: ARG002
        await stop.wait()

    async def close(self) -> None:
        return


class AdvisoryLock:
    """The leader holds ``pg_try_advisory_lock(LOCK_KEY)`` on a connection of its own."""

    def __init__(self, database: Database, *, check_every: float = CHECK_EVERY,
                 check_timeout: float = CHECK_TIMEOUT) -> None:
        self._database = database
        self.check_every = check_every
        self.check_timeout = check_timeout
        self.leading = False
        self.lost: str | None = None
        self.reachable = True
        self.session: int | None = None
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._failures = 0  # connection attempts failed in a row
        self.log = log.get()

    async def start(self) -> None:
        await self._try()
        if not self.leading and self._failures == 0:
            self.log.info("leader.standby", note="another instance leads; this one serves "
                          "the pages and takes over when it is gone")

    async def run(self, stop: asyncio.Event, changed: asyncio.Event) -> None:
        while not stop.is_set():
            wait = (self.check_every if self._failures == 0
                    else max(self.check_every, backoff(self.check_every, RETRY_CAP,
                                                       self._failures - 1)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
            if stop.is_set():
                return
            if self.leading:
                reason = await self._check()
                if reason is not None:
                    self.leading, self.lost, self.reachable = False, reason, False
                    self.log.error("leader.lost", reason=reason,
                                   note="polling and delivery stop; another instance may lead")
                    changed.set()  # before the close, which may wait for the dead network
                    await self.close()
            else:
                was_reachable = self.reachable
                if await self._try() or self.reachable != was_reachable:
                    changed.set()

    async def close(self) -> None:
        """Closing the session frees the lock (a session the network lost is freed by the
        server's keepalives)."""
        conn, self._conn = self._conn, None
        self.leading, self.session = False, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=1.0)

    async def _try(self) -> bool:
        """Try to take the lock (connecting first when need be); True when taken."""
        try:
            async with asyncio.timeout(self.check_timeout * 2):
                if self._conn is None or self._conn.closed:
                    self._conn = await self._connect()
                cursor = await self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (LOCK_KEY,))
                row = await cursor.fetchone()
        except Exception as exc:  # every failure means: not now, try again
            await self._failed(exc)
            return False
        if self._failures:
            self.log.info("leader.database_reachable", after_attempts=self._failures)
            self._failures = 0
        self.reachable = True
        self.leading = bool(row and row[0])
        self.session = cast("int", row[1]) if row and row[0] else None
        if self.leading:
            self.log.info("leader.elected", note="this instance polls and delivers")
        return self.leading

    async def _check(self) -> str | None:
        """None while the lock's session answers; else why it is lost.

        The probe is not cancelled when it takes too long, only left behind: psycopg answers
        a cancellation by asking the server to cancel the query, over a new connection that
        a lost network also swallows, which held the step-down back by 11 s."""
        assert self._conn is not None  # a leader has its connection
        probe = asyncio.ensure_future(self._conn.execute("SELECT 1"))
        probe.add_done_callback(_quietly)
        done, _ = await asyncio.wait({probe}, timeout=self.check_timeout)
        if not done:
            return "the state database did not answer in time"
        exc = probe.exception()
        return None if exc is None else _reason(exc)

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        import psycopg  # noqa: PLC0415 - only a PostgreSQL state needs it
        from psycopg.conninfo import make_conninfo  # noqa: PLC0415

        password = self._database.password
        # The password joins the URL here only, never a message: libpq quotes none.
        conninfo = make_conninfo(self._database.url, options=SESSION_OPTIONS,
                                 application_name="openrouter-watcher leader lock",
                                 **CLIENT_OPTIONS,
                                 **({"password": password.reveal()} if password else {}))
        return await psycopg.AsyncConnection.connect(conninfo, autocommit=True)

    async def _failed(self, exc: BaseException) -> None:
        await self.close()
        self.reachable = False
        if self._failures == 0:
            self.log.error("leader.database_unreachable", reason=_reason(exc),
                           note="standing by; retried with backoff")
        self._failures += 1


def _quietly(task: asyncio.Future[Any]) -> None:
    """Fetch a probe's outcome that nobody waits for any more (else asyncio logs it)."""
    if not task.cancelled():
        task.exception()


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line without a secret (the redactor knows the password)."""
    if isinstance(exc, TimeoutError):
        return "the state database did not answer in time"
    text = " ".join(str(exc).split())[:300] or type(exc).__name__
    return log.redactor.text(f"{type(exc).__name__}: {text}")


def for_state(database: Database | None) -> Leadership:
    """The leadership of a state: :class:`Sole` for SQLite (no ``database``), else the
    advisory lock in the PostgreSQL ``database``."""
    return Sole() if database is None else AdvisoryLock(database)
