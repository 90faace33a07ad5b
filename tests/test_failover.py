"""Two real daemons on one PostgreSQL state over a real replay (issue 14): the leader killed
with SIGKILL mid-replay, twice, and PostgreSQL stopped for 20 s; every expected alert
arrives, and no alert arrives in two messages (receivers drop repeats by idempotency key).

The replay advances a step only once the state recorded two checks after it was set, so
that every step is seen whatever happens to the instance polling it: the expected alerts
are then those of the same steps replayed in process on SQLite, one cycle each.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import pg
from tests.daemon import Daemon, wait_for
from tests.fakes import FakeOpenRouter, _free_port
from tests.sinks import WebhookSink
from tests.test_cli import cli
from tests.test_history import replay
from watcher.config import Database

STEPS = list(range(14))  # ~300 events in 13 changed cycles
TYPES = ["model_added", "model_removed", "price_changed", "expiration_set", "expiration_changed",
         "expiration_cleared", "context_length_changed", "field_changed"]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
Identity = tuple[Any, ...]


def identity(event: dict[str, Any]) -> Identity:
    """An event without the time it was seen (that differs between the two replays)."""
    return (event["type"], event["model"], event.get("field"), json.dumps(event.get("old")),
            json.dumps(event.get("new")))


def write_config(folder: Path, state: Path | Database, server: FakeOpenRouter,
                 hook: WebhookSink | None, port: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.yaml").write_text(
        f"rules:\n  - {{name: every, on: [{', '.join(TYPES)}], notify: [hook]}}\n")
    target = hook.url() if hook else "console://"
    http = f"http: {{listen: '127.0.0.1:{port}'}}\n" if port else ""
    path = folder / "config.yaml"
    path.write_text(pg.state_yaml(state, folder) + f"""
watches:
  - {{name: models, url: "{server.url}", interval: 1s, timeout: 5s}}
targets:
  hook: {target}
  ops: console://
operator: {{notify: [ops]}}
rules: [rules.yaml]
expiring_soon_days: []
delivery: {{retry_backoff: 0.2s, max_backoff: 1s, stop_grace: 1s}}
{http}""")
    return path


def expected_alerts(folder: Path, server: FakeOpenRouter) -> Counter[Identity]:
    """The alerts of the steps replayed in process on SQLite, one cycle each."""
    path = write_config(folder, folder / "state", server, None)
    expected = Counter(identity(dict(e)) for e in asyncio.run(replay(path, server, STEPS)))
    assert sum(expected.values()) > 200
    return expected


def delivered_alerts(hook: WebhookSink) -> Counter[Identity]:
    """What arrived, each idempotency key counted once; the same key always carried the
    same alerts."""
    by_key: dict[str, list[Identity]] = {}
    for received in hook.delivered:
        message = received.message
        alerts = sorted(identity(e) for e in message["events"])
        key = received.headers["Idempotency-Key"]
        assert by_key.setdefault(key, alerts) == alerts, "one key, two different messages"
    return Counter(a for alerts in by_key.values() for a in alerts)


def health(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        with NO_PROXY.open(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def role(port: int) -> str | None:
    answer = health(port)
    return None if answer is None else str(answer[1]["role"])


class Pair:
    """Two daemons on one state, each with its /healthz."""

    def __init__(self, root: Path, state: Database, server: FakeOpenRouter,
                 hook: WebhookSink) -> None:
        self.ports = [_free_port(), _free_port()]
        self.daemons = [Daemon(write_config(root / name, state, server, hook, port))
                        for name, port in zip("ab", self.ports, strict=True)]

    def start(self) -> None:
        for daemon in self.daemons:
            daemon.start().wait_started()

    def leader(self) -> int:
        """The index of the one daemon that leads (waiting for one to)."""
        found: list[int] = []

        def one() -> bool:
            found[:] = [i for i, port in enumerate(self.ports) if role(port) == "leader"]
            return len(found) == 1

        wait_for(one, 60, what="one leader")
        return found[0]

    def stop(self) -> None:
        for daemon in self.daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.kill()


def checks(database: Database) -> int | None:
    """How many checks the state has recorded (None while PostgreSQL is away)."""
    import psycopg

    password = database.password.reveal() if database.password else None
    try:
        with psycopg.connect(database.url, password=password, connect_timeout=2) as conn:
            row = conn.execute("SELECT COUNT(*) FROM checks").fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else 0


def seen_twice(database: Database, before: int | None) -> bool:
    now = checks(database)
    return now is not None and now >= (before or 0) + 2


def wait_all_arrived(hook: WebhookSink, expected: Counter[Identity]) -> None:
    wait_for(lambda: delivered_alerts(hook) >= expected, 180, what="every expected alert")
    time.sleep(3)  # anything sent twice under two keys would arrive by now
    assert delivered_alerts(hook) == expected


@pytest.fixture
def hook() -> Iterator[WebhookSink]:
    sink = WebhookSink().start()
    try:
        yield sink
    finally:
        sink.stop()


def test_the_leader_killed_twice_mid_replay_loses_and_repeats_no_alert(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, pg_database: Database,
        hook: WebhookSink) -> None:
    rng = random.Random(14)
    kills = dict.fromkeys(sorted(rng.sample(STEPS[2:-1], 2)), 0.0)
    for step in kills:
        kills[step] = rng.uniform(0.0, 2.0)  # seconds into the step
    expected = expected_alerts(tmp_path / "oracle", fake_openrouter)
    pair = Pair(tmp_path, pg_database, fake_openrouter, hook)
    fake_openrouter.set_script([STEPS[0]])
    try:
        pair.start()
        first = pair.leader()
        answer = health(pair.ports[1 - first])
        assert answer is not None
        assert answer[0] == 200
        assert (answer[1]["status"], answer[1]["role"], answer[1]["problems"]) == (
            "standby", "standby", [])
        for step in STEPS:
            before = checks(pg_database)
            fake_openrouter.set_script([step])
            if step in kills:
                time.sleep(kills[step])
                leader = pair.daemons[pair.leader()]
                leader.kill()
                leader.start().wait_started()  # back, as the standby
            wait_for(lambda b=before: seen_twice(pg_database, b), 90, what=f"step {step}")
        wait_all_arrived(hook, expected)
        leader = pair.leader()
        taken = [d.logs().count('"leader.elected"') for d in pair.daemons]
        assert sum(taken) >= 3  # the first leader, and one after each kill
        metrics = NO_PROXY.open(f"http://127.0.0.1:{pair.ports[1 - leader]}/metrics").read()
        assert b"openrouter_watcher_leader 0.0" in metrics
        assert pg.PASSWORD not in "".join(d.logs() + d.output() for d in pair.daemons)
    finally:
        pair.stop()


def _pg_ctl(server: pg.PgServer, *args: str) -> None:
    subprocess.run([str(server.bin / "pg_ctl"), "-D", str(server.root / "data"), "-w", "-t",
                    "60", *args], check=True, capture_output=True, user=server.user, timeout=120)


def stop_postgresql(server: pg.PgServer) -> None:
    _pg_ctl(server, "-m", "fast", "stop")


def start_postgresql(server: pg.PgServer) -> None:
    options = (f"-h 127.0.0.1 -p {server.port} -k {server.socket_dir} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    _pg_ctl(server, "-l", str(server.root / "log"), "-o", options, "start")


@pytest.fixture
def own_pg_server() -> Iterator[pg.PgServer]:
    """A server of this test's own: it is stopped and started again."""
    server = pg.PgServer.start()
    try:
        yield server
    finally:
        server.stop()


def test_postgresql_stopped_for_20_s_mid_replay_loses_and_repeats_no_alert(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, own_pg_server: pg.PgServer,
        hook: WebhookSink) -> None:
    database = Database(url=own_pg_server.url(own_pg_server.database()), password=pg.PASSWORD)
    rng = random.Random(20)
    outage_step = rng.choice(STEPS[3:-2])
    outage_at = rng.uniform(0.0, 1.5)
    expected = expected_alerts(tmp_path / "oracle", fake_openrouter)
    pair = Pair(tmp_path, database, fake_openrouter, hook)
    fake_openrouter.set_script([STEPS[0]])
    try:
        pair.start()
        first = pair.leader()
        for step in STEPS:
            before = checks(database)
            fake_openrouter.set_script([step])
            if step == outage_step:
                time.sleep(outage_at)
                stop_postgresql(own_pg_server)
                time.sleep(20)
                start_postgresql(own_pg_server)
            wait_for(lambda b=before: seen_twice(database, b), 120, what=f"step {step}")
        wait_all_arrived(hook, expected)
        assert all(d.proc is not None and d.proc.poll() is None for d in pair.daemons), \
            "a daemon exited: it must ride the outage out"
        logs = pair.daemons[first].logs()
        assert logs.count('"leader.lost"') == 1
        assert logs.count('"leader.database_unreachable"') == 1
        assert logs.count('"leader.database_reachable"') == 1
        told = pair.daemons[first].output()
        assert "openrouter-watcher: state database: problem" in told
        assert "openrouter-watcher: state database: recovered" in told
        pair.leader()  # one leads again
    finally:
        pair.stop()


def test_a_standby_is_ready_and_healthy_and_leads_once_the_lock_is_free(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, pg_database: Database,
        hook: WebhookSink) -> None:
    """systemd gets READY=1 (and the watchdog its pings) from a standby; it fetches
    nothing until the lock is free, then leads."""
    import psycopg

    from tests.test_sdnotify import WATCHDOG_USEC, NotifySocket
    from watcher.leadership import LOCK_KEY

    sock = NotifySocket(f"@openrouter-watcher-failover-{time.monotonic_ns()}")
    port = _free_port()
    path = write_config(tmp_path / "a", pg_database, fake_openrouter, hook, port)
    fake_openrouter.set_script([STEPS[0]])
    password = pg_database.password.reveal() if pg_database.password else None
    daemon = Daemon(path, env={"NOTIFY_SOCKET": sock.address,
                               "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    try:
        with psycopg.connect(pg_database.url, password=password, autocommit=True) as other:
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone() == (
                True,)
            daemon.start().wait_started()
            wait_for(lambda: sock.fields("READY"), what="READY=1 from the standby")
            wait_for(lambda: len(sock.fields("WATCHDOG")) >= 3, what="watchdog pings")
            assert any(s.startswith("standby") for _, s in sock.fields("STATUS"))
            answer = health(port)
            assert answer is not None
            assert answer[0] == 200
            assert answer[1]["status"] == "standby"
            metrics = NO_PROXY.open(f"http://127.0.0.1:{port}/metrics").read()
            assert b"openrouter_watcher_leader 0.0" in metrics
            assert fake_openrouter.requests == []  # a standby polls nothing
            refused = cli("once", "--config", str(path))  # nor does `once` beside a leader
            assert refused.returncode == 1
            assert "is led by another openrouter-watcher" in refused.stderr
            assert "Traceback" not in refused.stderr
            assert fake_openrouter.requests == []
        # The other session ended: its lock is free.
        wait_for(lambda: role(port) == "leader", 30, what="the standby leading")
        wait_for(lambda: fake_openrouter.requests, 30, what="its first poll")
        metrics = NO_PROXY.open(f"http://127.0.0.1:{port}/metrics").read()
        assert b"openrouter_watcher_leader 1.0" in metrics
        assert daemon.stop() == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        sock.close()
