"""One leader, never two senders (issue 14): the advisory lock on a real PostgreSQL server,
and the outbox claims on both backends.  The daemons themselves: tests/test_failover.py."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.fakes import snapshot_bytes
from watcher import snapshot
from watcher.config import Database
from watcher.events import Event
from watcher.leadership import AdvisoryLock, Sole, for_state
from watcher.store import Alert, Store

FAST = {"check_every": 0.05, "check_timeout": 5.0}


async def wait_changed(changed: asyncio.Event) -> None:
    """Until the leadership loop says something changed (bounded, so a bug fails the test
    rather than hanging it)."""
    await asyncio.wait_for(changed.wait(), timeout=30)
    changed.clear()


async def test_one_instance_leads_and_another_takes_over_when_it_lets_go(
        pg_database: Database) -> None:
    first, second = AdvisoryLock(pg_database, **FAST), AdvisoryLock(pg_database, **FAST)
    stop, changed = asyncio.Event(), asyncio.Event()
    try:
        await first.start()
        await second.start()
        assert (first.leading, second.leading) == (True, False)
        standing_by = asyncio.create_task(second.run(stop, changed))
        await asyncio.sleep(0.3)  # several checks: the lock is still held by the first
        assert not changed.is_set()
        assert not second.leading
        await first.close()  # its session ends: the lock is free
        await wait_changed(changed)
        assert second.leading
        assert second.lost is None
        stop.set()
        await standing_by
    finally:
        await first.close()
        await second.close()


async def test_a_leader_whose_session_ends_steps_down_then_leads_again(
        pg_server: Any, pg_database: Database) -> None:
    """The server ending the session (an admin, a restart, a network cut seen by the
    server): the leader stops leading at its next check, and takes the lock again."""
    leader = AdvisoryLock(pg_database, **FAST)
    stop, changed = asyncio.Event(), asyncio.Event()
    try:
        await leader.start()
        assert leader.leading
        running = asyncio.create_task(leader.run(stop, changed))
        name = pg_database.url.rsplit("/", 1)[1]
        pg_server.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                        f"datname = '{name}' AND application_name = 'openrouter-watcher leader lock'")
        await wait_changed(changed)
        assert not leader.leading
        assert leader.lost is not None
        await wait_changed(changed)  # it connects again, and the lock is free
        assert leader.leading
        stop.set()
        await running
    finally:
        await leader.close()


def _refusing_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


async def test_an_unreachable_database_is_logged_once_and_retried_with_backoff() -> None:
    database = Database(url=f"postgresql://watcher@127.0.0.1:{_refusing_port()}/watcher",
                        password="s3cret-leader-canary")
    lock = AdvisoryLock(database, check_every=0.01)
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        await lock.start()
        running = asyncio.create_task(lock.run(stop, asyncio.Event()))
        while lock._failures < 4:
            await asyncio.sleep(0.01)
        stop.set()
        await running
    assert not lock.leading
    told = [entry for entry in logs if entry["event"] == "leader.database_unreachable"]
    assert len(told) == 1
    assert "s3cret-leader-canary" not in repr(logs)
    assert "refused" in told[0]["reason"].lower() or "connect" in told[0]["reason"].lower()


def test_a_sqlite_state_is_always_its_own_leader() -> None:
    assert isinstance(for_state(None), Sole)
    assert Sole().leading


# Claims ----------------------------------------------------------------------------------


def _event(model: str) -> Event:
    return {"watch": "models", "type": "model_added", "model": model,  # type: ignore[typeddict-item]
            "detected_at": "2026-01-02T00:00:00Z"}


def queue(store: Store, models: list[str], *, at: float = 1000.0) -> list[int]:
    """A baseline and one change with an alert per model; the outbox row ids."""
    store.commit_cycle("models", "2026-01-01T00:00:00Z", snapshot.parse(snapshot_bytes(24)),
                       "baseline", [])
    events = [_event(m) for m in models]
    store.commit_cycle("models", "2026-01-02T00:00:00Z", snapshot.parse(snapshot_bytes(25)),
                       "changed", events, [Alert(event=e, rule="r", target="hook") for e in events],
                       now=at)
    return [p.id for p in store.pending()]


@pytest.fixture
def two_stores(state: Path | Database) -> Iterator[tuple[Store, Store]]:
    """Two writers on one state that does not keep the other out (PostgreSQL; SQLite: the
    daemon and a second connection beside it), as two leaders by mistake would be."""
    if isinstance(state, Path):
        Store.open(state).close()  # created
        pair = (Store.open_beside_writer(state), Store.open_beside_writer(state))
    else:
        pair = (Store.open(state), Store.open(state))
    try:
        yield pair
    finally:
        for store in pair:
            store.close()


def test_a_claimed_message_cannot_be_claimed_by_another_until_the_claim_expires(
        two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    rows = queue(a, ["x/one", "x/two"])
    assert len(rows) == 2
    assert a.claim(rows, "A", 1000.0, 1060.0)
    assert not b.claim(rows, "B", 1001.0, 1061.0)
    assert not b.claim(rows[:1], "B", 1001.0, 1061.0)
    assert a.claim(rows, "A", 1002.0, 1062.0)  # its own claim: renewed
    assert {(p.claimed_by, p.claim_until) for p in b.pending()} == {("A", 1062.0)}
    assert b.claim(rows, "B", 1063.0, 1123.0)  # A's claim expired: A died
    assert not a.claim(rows, "A", 1064.0, 1124.0)


def test_a_claim_takes_every_row_of_a_message_or_none(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    rows = queue(a, ["x/one", "x/two", "x/three"])
    assert b.claim(rows[1:2], "B", 1000.0, 1060.0)
    assert not a.claim(rows, "A", 1000.0, 1060.0)
    owners = {p.id: p.claimed_by for p in a.pending()}
    assert owners == {rows[0]: None, rows[1]: "B", rows[2]: None}


def test_sent_rows_are_not_claimed_and_a_retry_ends_the_claim(
        two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    first, second = queue(a, ["x/one", "x/two"])
    assert a.claim([first, second], "A", 1000.0, 1060.0)
    a.mark_sent([first], 1001.0)
    a.mark_retry([second], 1001.0, 1005.0, "refused")
    assert not b.claim([first], "B", 2000.0, 2060.0)  # sent: nobody sends it again
    assert b.claim([second], "B", 1002.0, 1062.0)     # retried: anyone may take it


def test_the_sole_writer_takes_over_claims_of_a_process_that_is_gone(tmp_path: Path) -> None:
    """SQLite: the directory lock says the process that claimed is gone (its lock was
    released), so its claims are not waited for: a restart resends at once."""
    state = tmp_path / "state"
    with Store.open(state) as store:
        rows = queue(store, ["x/one"])
        assert store.claim(rows, "gone", 1000.0, 99999.0)
    with Store.open(state) as store:
        assert store.sole_writer
        assert store.claim(rows, "restarted", 1001.0, 1061.0)


def test_a_claim_on_postgresql_skips_rows_another_transaction_has_locked(
        pg_database: Database) -> None:
    """FOR UPDATE SKIP LOCKED: a claim does not wait for (nor take) a row that another
    instance's claim is taking at this very moment."""
    import psycopg

    with Store.open(pg_database) as store:
        rows = queue(store, ["x/one"])
        password = pg_database.password.reveal() if pg_database.password else None
        with psycopg.connect(pg_database.url, password=password) as other:
            other.execute("SELECT id FROM outbox WHERE id = %s FOR UPDATE", (rows[0],))
            outcome: list[bool] = []
            claiming = threading.Thread(
                target=lambda: outcome.append(store.claim(rows, "B", 1000.0, 1060.0)))
            claiming.start()
            claiming.join(30)
            done = not claiming.is_alive()
            other.rollback()
            claiming.join(30)
        assert done, "the claim waited for the other transaction's row lock"
        assert outcome == [False]
        assert store.claim(rows, "B", 1000.0, 1060.0)  # free again


def test_an_instance_that_stops_sending_gives_its_claims_back(
        two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    first, second = queue(a, ["x/one", "x/two"])
    assert a.claim([first], "A", 1000.0, 1060.0)
    assert b.claim([second], "B", 1000.0, 1060.0)
    a.release_claims("A")
    assert {p.id: p.claimed_by for p in b.pending()} == {first: None, second: "B"}
    assert b.claim([first], "B", 1001.0, 1061.0)  # at once, not after the lease


class SilentProxy:
    """A TCP relay on loopback to the PostgreSQL server that can be cut as a network is:
    the server's side is closed (its session ends, as its keepalives would end it), and
    the client's side stays open and silent (what a leader sees when its network is gone)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.cut = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._upstreams: list[asyncio.StreamWriter] = []
        self._clients: list[asyncio.StreamWriter] = []

    async def start(self) -> SilentProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.append(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self._upstreams.append(up_writer)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                if self.cut.is_set():
                    continue  # swallowed: nothing reaches the other side any more
                sink.write(data)
                await sink.drain()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer),
                             return_exceptions=True)

    def cut_off(self) -> None:
        self.cut.set()
        for writer in self._upstreams:
            writer.close()

    async def close(self) -> None:
        for writer in self._clients + self._upstreams:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_leader_cut_off_from_the_database_steps_down_and_another_takes_over(
        pg_server: Any, pg_database: Database) -> None:
    proxy = await SilentProxy(pg_server.port).start()
    via = Database(url=pg_database.url.replace(f":{pg_server.port}/", f":{proxy.port}/"),
                   password=pg_database.password)
    leader = AdvisoryLock(via, check_every=0.05, check_timeout=1.0)
    other = AdvisoryLock(pg_database, **FAST)
    stop, lost, taken = asyncio.Event(), asyncio.Event(), asyncio.Event()
    try:
        await leader.start()
        await other.start()
        assert (leader.leading, other.leading) == (True, False)
        tasks = [asyncio.create_task(leader.run(stop, lost)),
                 asyncio.create_task(other.run(stop, taken))]
        await asyncio.sleep(0.3)
        assert leader.leading  # the relay works: its checks are answered
        proxy.cut_off()
        await wait_changed(lost)
        assert not leader.leading
        assert leader.lost == "the state database did not answer in time"
        await wait_changed(taken)
        assert other.leading
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        await leader.close()
        await other.close()
        await proxy.close()


async def test_a_fenced_store_writes_only_while_its_lock_is_held(
        pg_server: Any, pg_database: Database) -> None:
    """A leader that lost the lock and has not noticed yet (its next check is up to 2 s
    away) commits nothing: the store's fence asks the server who holds the lock."""
    from watcher.errors import StateError
    from watcher.leadership import LOCK_KEY

    lock = AdvisoryLock(pg_database, **FAST)
    try:
        await lock.start()
        assert lock.leading
        assert lock.session is not None
        with Store.open(pg_database) as store:
            store.fence(lock.session, LOCK_KEY)
            queue(store, ["x/one"])  # held: written
            pg_server.admin(f"SELECT pg_terminate_backend({lock.session})")
            with pytest.raises(StateError, match="no longer holds the leader's lock"):
                store.commit_cycle("models", "2026-01-03T00:00:00Z", None, "unchanged", [])
            assert len(store.pending()) == 1  # nothing of the refused write
            store.fence(None)
            store.commit_cycle("models", "2026-01-03T00:00:00Z", None, "unchanged", [])
    finally:
        await lock.close()


async def test_a_claim_of_a_leader_whose_session_is_gone_is_free_at_once(
        pg_server: Any, pg_database: Database) -> None:
    """A leader killed mid-send: its lock's session ends with it, and so does its claim;
    the next leader does not wait for the lease."""
    from watcher.leadership import LOCK_KEY

    lock, successor = AdvisoryLock(pg_database, **FAST), AdvisoryLock(pg_database, **FAST)
    stop, changed = asyncio.Event(), asyncio.Event()
    try:
        await lock.start()
        await successor.start()
        with Store.open(pg_database) as killed, Store.open(pg_database) as next_leader:
            killed.fence(lock.session, LOCK_KEY)
            rows = queue(killed, ["x/one"])
            assert killed.claim(rows, "killed", 1000.0, 1060.0)
            assert not next_leader.claim(rows, "next", 1001.0, 1061.0)  # its session lives
            assert [p.claim_until for p in next_leader.pending()] == [1060.0]
            waiting = asyncio.create_task(successor.run(stop, changed))
            await lock.close()  # the session ends, as a killed process's does
            await wait_changed(changed)
            assert successor.leading  # the next leader holds the lock now
            assert [p.claim_until for p in next_leader.pending()] == [None]
            assert next_leader.claim(rows, "next", 1002.0, 1062.0)
            stop.set()
            await waiting
    finally:
        await lock.close()
        await successor.close()
