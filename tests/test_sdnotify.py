"""sd_notify against the real daemon: READY, STATUS, WATCHDOG pings that stop when it hangs."""

from __future__ import annotations

import itertools
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon, wait_for
from tests.fakes import FakeOpenRouter, Reply, snapshot_bytes
from watcher import sdnotify

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s


class NotifySocket:
    """The test's end of $NOTIFY_SOCKET: a datagram socket recording what arrives, and when."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def fields(self, name: str, since: float = 0.0) -> list[tuple[float, str]]:
        """Every ``NAME=value`` received at or after ``since``, with its arrival time."""
        return [(at, line.split("=", 1)[1]) for at, message in list(self.messages) if at >= since
                for line in message.splitlines() if line.startswith(f"{name}=")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # The abstract namespace: no path length limit, nothing left on disk.
    sock = NotifySocket(f"@openrouter-watcher-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        yield sock
    finally:
        sock.close()


def config(tmp_path: Path, server: FakeOpenRouter, timeout: str = "5s") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{server.url}", interval: 1s, timeout: {timeout}, retries: 0}}
""")
    return path


def start(path: Path, sock: NotifySocket) -> Daemon:
    return Daemon(path, env={"NOTIFY_SOCKET": sock.address,
                             "WATCHDOG_USEC": str(WATCHDOG_USEC)}).start()


def stopped(daemon: Daemon) -> None:
    if daemon.proc and daemon.proc.poll() is None:
        daemon.kill()


def test_ready_status_and_watchdog_pings_then_stopping(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, notify_socket: NotifySocket) -> None:
    fake_openrouter.set_script([24, 25])
    daemon = start(config(tmp_path, fake_openrouter), notify_socket)
    try:
        wait_for(lambda: notify_socket.fields("READY"), what="READY=1")
        ready_at = notify_socket.fields("READY")[0][0]
        wait_for(lambda: len(notify_socket.fields("WATCHDOG", since=ready_at)) >= 5,
                 what="five watchdog pings")
        wait_for(lambda: any("last change" in s for _, s in notify_socket.fields("STATUS")),
                 what="a STATUS= line after the first change")
        assert daemon.stop() == 0
    finally:
        stopped(daemon)
    assert notify_socket.fields("READY") == [(ready_at, "1")]
    statuses = [s for _, s in notify_socket.fields("STATUS")]
    assert statuses[0].startswith("1 watch, ")
    assert any(s.startswith("1 watch, last change ") and s.endswith(", 0 pending")
               for s in statuses), statuses
    pings = [at for at, _ in notify_socket.fields("WATCHDOG")]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    # About half the watchdog interval apart: systemd never waits the whole of it.
    assert max(gaps) < WATCHDOG_USEC / 1e6 * 0.9, gaps
    assert min(gaps) > WATCHDOG_USEC / 1e6 * 0.3, gaps
    assert notify_socket.fields("STOPPING") == [(notify_socket.fields("STOPPING")[0][0], "1")]


def test_pings_stop_while_the_daemon_is_blocked_and_resume_after(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, notify_socket: NotifySocket) -> None:
    """Someone holds the state database's write lock (a backup, a person in ``sqlite3``):
    the daemon's next write waits in SQLite's busy handler, its event loop is stuck, and
    systemd must hear no more pings until it is free again."""
    fake_openrouter.set_script([24])
    path = config(tmp_path, fake_openrouter)
    daemon = start(path, notify_socket)
    lock = None
    try:
        wait_for(lambda: len(notify_socket.fields("WATCHDOG")) >= 3, what="watchdog pings")
        lock = sqlite3.connect(tmp_path / "state" / "openrouter-watcher.sqlite3",
                               isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        # The next cycle (1 s interval) blocks on the lock; from then on, silence.  The
        # daemon's busy timeout is 10 s: within it, the daemon is waiting, not failing.
        def silent_for(seconds: float) -> bool:
            pings = notify_socket.fields("WATCHDOG")
            return bool(pings) and time.monotonic() - pings[-1][0] > seconds
        wait_for(lambda: silent_for(1.5), timeout=6, what="the pings to stop")
        silent_since = notify_socket.fields("WATCHDOG")[-1][0]
        time.sleep(1.5)
        during = notify_socket.fields("WATCHDOG", since=silent_since + 0.001)
        lock.execute("ROLLBACK")
        released_at = time.monotonic()
        wait_for(lambda: len(notify_socket.fields("WATCHDOG", since=released_at)) >= 3,
                 what="pings after the lock is released")
        assert daemon.proc is not None
        assert daemon.proc.poll() is None, "the daemon must survive a short lock"
        assert daemon.stop() == 0
    finally:
        if lock is not None:
            lock.close()
        stopped(daemon)
    assert during == []


def test_a_cycle_running_past_its_timeouts_withholds_pings(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, notify_socket: NotifySocket) -> None:
    """A cycle that goes on longer than its own timeouts allow (here: an endpoint that keeps
    paginating, each page inside the 1 s timeout) is stuck; the event loop itself is fine,
    so only the progress check can tell systemd."""
    base = snapshot_bytes(24)
    assert base.startswith(b"{")
    pages: list[Reply | int] = [
        Reply(body=b'{"links": {"next": "?page=%d"}, ' % (n + 2) + base[1:], delay=0.4)
        for n in range(100)]
    fake_openrouter.set_script(pages)
    daemon = start(config(tmp_path, fake_openrouter, timeout="1s"), notify_socket)
    try:
        wait_for(lambda: notify_socket.fields("READY"), what="READY=1")
        wait_for(lambda: any(s.startswith("stuck: watch models: a cycle has been running")
                             for _, s in notify_socket.fields("STATUS")),
                 timeout=30, what="STATUS=stuck: ...")
        stuck_at = next(at for at, s in notify_socket.fields("STATUS") if s.startswith("stuck"))
        time.sleep(1.0)
        after = notify_socket.fields("WATCHDOG", since=stuck_at)
        before = notify_socket.fields("WATCHDOG")
    finally:
        stopped(daemon)
    assert before, "pings while the cycle was within its budget"
    assert after == []
    assert fake_openrouter.served < 100, "the cycle was still paginating"
    assert "watchdog.withheld" in daemon.logs()


def test_notifier_sends_to_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    if len(str(path)) > 100:  # sun_path is 108 bytes
        pytest.skip("tmp_path too long for a socket path")
    sock = NotifySocket(str(path))
    try:
        notifier = sdnotify.Notifier.from_env({"NOTIFY_SOCKET": str(path)})
        assert notifier is not None
        assert notifier.send("READY=1", "STATUS=hello")
        notifier.close()
        wait_for(lambda: sock.messages, timeout=5, what="the datagram")
        assert sock.messages[0][1] == "READY=1\nSTATUS=hello"
    finally:
        sock.close()


def test_no_notify_socket_no_notifier_and_watchdog_for_another_pid() -> None:
    assert sdnotify.Notifier.from_env({}) is None
    assert sdnotify.Notifier.from_env({"NOTIFY_SOCKET": "relative"}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "2000000"}) == 2.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "2000000",
                                       "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert sdnotify.watchdog_interval({}) is None
