"""Slow clients on the listener: a cap on connections, a deadline for each request head,
and file descriptors kept for the polls.  Real sockets on loopback, a real daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.daemon import wait_for
from tests.fakes import FakeOpenRouter, _free_port
from tests.test_http import get, samples, value
from watcher.web import listener as http

HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


class Tricklers:
    """``count`` sockets that send a request head one byte at a time and never finish it."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets: list[socket.socket] = []
        for _ in range(count):
            # A full accept queue drops SYNs, which the client sends again: a long timeout.
            sock = socket.create_connection(("127.0.0.1", port), timeout=20)
            sock.sendall(HEAD)
            self.sockets.append(sock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(0.2):
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.send(b"X")

    def closed_by_server(self) -> int:
        """How many of the sockets the server has closed (EOF or reset)."""
        closed = 0
        for sock in self.sockets:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                try:
                    closed += sock.recv(1 << 16) == b""
                except OSError:
                    closed += 1
        return closed

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def listener_config(tmp_path: Path, server: FakeOpenRouter, port: int, http_extra: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{server.url}", interval: 1s, timeout: 5s, retries: 0}}
targets: {{out: "console://"}}
rules: []
http: {{listen: "127.0.0.1:{port}", {http_extra}}}
""")
    return path


@contextlib.contextmanager
def daemon_with_nofile(config: Path, soft: int) -> Iterator[subprocess.Popen[bytes]]:
    """``run`` with a soft RLIMIT_NOFILE of ``soft``, stderr to ``daemon.stderr``."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with (config.parent / "daemon.stderr").open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                preexec_fn=limit)  # noqa: PLW1509 - only setrlimit, no threads
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def up(base: str) -> bool:
    try:
        return get(f"{base}/healthz")[0] == 200
    except OSError:
        return False


def cycles(base: str) -> float:
    metrics = samples(base)
    return sum(value(metrics, "openrouter_watcher_cycles_total", watch="models", outcome=o) or 0
               for o in ("baseline", "unchanged"))


def test_slow_clients_do_not_starve_healthz_or_the_polls(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    """100 sockets trickling headers at a daemon allowed 110 file descriptors: without the
    cap its polls fail with "Too many open files"; with it, they and /healthz go on."""
    fake_openrouter.set_script([24])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    config = listener_config(tmp_path, fake_openrouter, port,
                             "max_connections: 1000, header_timeout: 60s")
    with daemon_with_nofile(config, soft=110) as proc:
        wait_for(lambda: up(base), what="the listener")
        logs = (tmp_path / "daemon.stderr").read_text()
        capped = [json.loads(line) for line in logs.splitlines()
                  if '"http.connections_capped"' in line]
        assert [(c["max_connections"], c["configured"], c["rlimit_nofile"]) for c in capped] == [
            (http.MIN_CONNECTIONS, 1000, 110)]
        before = open_fds(proc.pid)
        slow = Tricklers(port, 100)
        try:
            start = cycles(base)
            fds: list[int] = []
            for n in range(1, 4):  # polls go on while the slow clients hold their sockets
                wait_for(lambda n=n: cycles(base) >= start + n, timeout=20, what="another poll")
                fds.append(open_fds(proc.pid))
                status, body, _ = get(f"{base}/healthz")
                assert status == 200, body
            assert max(fds) <= before + http.MIN_CONNECTIONS + 4
            assert slow.closed_by_server() >= 100 - http.MIN_CONNECTIONS
        finally:
            slow.close()
        assert proc.poll() is None
    logs = (tmp_path / "daemon.stderr").read_text()
    assert "Too many open files" not in logs
    assert "Traceback" not in logs
    assert "watch.failing" not in logs


def test_a_request_head_that_does_not_arrive_in_time_is_closed(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([24])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    config = listener_config(tmp_path, fake_openrouter, port, "header_timeout: 1s")
    with daemon_with_nofile(config, soft=resource.getrlimit(resource.RLIMIT_NOFILE)[0]):
        wait_for(lambda: up(base), what="the listener")
        slow = Tricklers(port, 5)
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            # A keep-alive connection served once and then left idle is closed too.
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert idle.recv(1 << 16).startswith(b"HTTP/1.1 200 ")
            wait_for(lambda: slow.closed_by_server() == 5, timeout=15,
                     what="the slow heads closed")
            idle.settimeout(15)
            with contextlib.suppress(ConnectionResetError):
                # The rest of the answer may come in more segments (aiohttp 3.9 writes the
                # head and the body apart); then the close. Never closed: recv times out.
                while idle.recv(1 << 16):
                    pass
            assert up(base)  # and a client that sends its request at once is served
        finally:
            slow.close()
            idle.close()


async def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503() -> None:
    release = asyncio.Event()
    started = 0

    async def slow(_: web.Request) -> web.Response:
        nonlocal started
        started += 1
        await release.wait()
        return web.Response(text="done")

    guard = http.ConnectionGuard(limit=2, header_timeout=30)
    app = web.Application(middlewares=[guard.middleware])
    app.router.add_get("/slow", slow)
    port = _free_port()
    listener = await http.serve(app, guard, "127.0.0.1", port)
    try:
        busy = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for _, writer in busy:
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
        for _ in range(100):
            if started == 2:
                break
            await asyncio.sleep(0.05)
        assert started == 2
        assert guard.open == 2
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = await asyncio.wait_for(reader.read(), 10)  # the server closes it
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        writer.close()
        release.set()
        for reader, writer in busy:
            assert (await asyncio.wait_for(reader.readuntil(b"done"), 10)).startswith(
                b"HTTP/1.1 200 OK")
            writer.close()
    finally:
        await listener.cleanup()


@pytest.mark.parametrize(("soft", "configured", "expected"), [
    (1024, 100, 100), (1024, 5000, (1024 - http.RESERVED_FDS) // 2),
    (100, 100, http.MIN_CONNECTIONS)])
def test_the_cap_leaves_descriptors_for_the_polls(soft: int, configured: int,
                                                   expected: int) -> None:
    code = ("import resource; from watcher.web import listener as http; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, "
            "resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
            f"print(http.connection_cap({configured}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert int(out) == expected


def test_listener_limits_are_config_keys(tmp_path: Path) -> None:
    from watcher import config

    path = tmp_path / "config.yaml"
    path.write_text("watches: [{name: m, url: 'http://127.0.0.1:1/m', interval: 1m}]\n"
                    "http: {listen: '127.0.0.1:9464', max_connections: 50, header_timeout: 5s}\n")
    settings = config.load(path).http
    assert settings is not None
    assert (settings.max_connections, settings.header_timeout) == (50, 5.0)
