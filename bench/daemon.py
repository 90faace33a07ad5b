"""Peak RSS of a real ``openrouter-watcher run`` daemon over 1,000 cycles, sampled over time.

A loopback aiohttp server (in this process, in its own thread) replays the real snapshots
of tests/data: each watch gets its own path and walks the 40 responses in order (wrapping
around), and every response is followed by ``repeats - 1`` polls of the same models in a
freshly shuffled order, like most real polls.  The config's minimum interval is 1 s, so
several watches poll the same server to reach 1,000 cycles in minutes; each watch keeps
its own baseline in memory, so the figure is an upper bound for a one- or two-watch setup.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

import orjson
from aiohttp import web

from bench.catalogue import real_body, real_numbers
from watcher.store import DB_NAME

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackServer:
    """An aiohttp server on 127.0.0.1 in its own thread; subclasses add the routes."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def _start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class ReplayServer(LoopbackServer):
    """Serves ``/w/<watch>/api/v1/models``: each watch its own walk through the snapshots."""

    def __init__(self, repeats: int, seed: int = 6) -> None:
        super().__init__()
        self.repeats = repeats
        self.bodies = [real_body(n) for n in real_numbers()]
        self.items = [orjson.loads(b)["data"] for b in self.bodies]
        self.served: dict[str, int] = {}
        self.rnd = random.Random(seed)

    def url(self, watch: str) -> str:
        return f"http://127.0.0.1:{self.port}/w/{watch}/api/v1/models"

    @property
    def total(self) -> int:
        return sum(self.served.values())

    async def _models(self, request: web.Request) -> web.Response:
        watch = request.match_info["watch"]
        n = self.served.get(watch, 0)
        self.served[watch] = n + 1
        # Watches start at different snapshots, so together they cover all of them.
        start = int(watch.lstrip("w") or 0) * 7
        index = (start + n // self.repeats) % len(self.bodies)
        if n % self.repeats == 0:
            body = self.bodies[index]
        else:
            items = list(self.items[index])
            self.rnd.shuffle(items)
            body = orjson.dumps({"data": items})
        return web.Response(body=body, content_type="application/json")

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/w/{watch}/api/v1/models", self._models)


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _config(tmp: Path, server: ReplayServer, watches: int) -> Path:
    shutil.copy(ROOT / "rules" / "default.yaml", tmp / "default.yaml")
    lines = ["state_dir: state", "log_level: info", "targets:", "  console: console://",
             "rules: [default.yaml]", "watches:"]
    for i in range(watches):
        lines += [f"  - name: w{i}", f"    url: {server.url(f'w{i}')}", "    interval: 1s"]
    path = tmp / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def slope_kb_per_100(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of RSS (KB) against cycles, per 100 cycles."""
    n = len(points)
    mx = sum(c for c, _ in points) / n
    my = sum(r for _, r in points) / n
    sxx = sum((c - mx) ** 2 for c, _ in points)
    sxy = sum((c - mx) * (r - my) for c, r in points)
    return 100 * sxy / sxx if sxx else 0.0


def measure(cycles: int = 1000, watches: int = 5, repeats: int = 4, every: float = 0.5,
            warmup: float = 0.2) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("openrouter-watcher")
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp_name, \
            ReplayServer(repeats) as server:
        tmp = Path(tmp_name)
        config = _config(tmp, server, watches)
        env = {**os.environ, "NO_COLOR": "1"}
        with (tmp / "stdout").open("wb") as out, (tmp / "stderr").open("wb") as err:
            proc = subprocess.Popen([str(exe), "run", "--config", str(config)], stdout=out,
                                    stderr=err, env=env, cwd=tmp)
            samples: list[dict[str, Any]] = []
            started = time.monotonic()
            try:
                while server.total < cycles:
                    if proc.poll() is not None:
                        raise RuntimeError(f"daemon exited with {proc.returncode}: "
                                           f"{(tmp / 'stderr').read_text()[-2000:]}")
                    time.sleep(every)
                    kb = _status_kb(proc.pid)
                    samples.append({"t": round(time.monotonic() - started, 2),
                                    "cycles": server.total, "rss_kb": kb["VmRSS"],
                                    "hwm_kb": kb["VmHWM"]})
                peak_kb = _status_kb(proc.pid)["VmHWM"]
            finally:
                proc.send_signal(signal.SIGTERM)
                returncode = proc.wait(30)
        elapsed = time.monotonic() - started
        conn = sqlite3.connect(tmp / "state" / DB_NAME)
        outcomes = dict(conn.execute("SELECT outcome, COUNT(*) FROM checks GROUP BY outcome"))
        conn.close()
        crashed = (tmp / "stderr").read_text().count("cycle.crashed")

    after = [(s["cycles"], s["rss_kb"]) for s in samples if s["cycles"] >= warmup * cycles]
    quarter = max(1, len(after) // 4)
    return {
        "cycles": server.total, "watches": watches, "seconds": round(elapsed, 1),
        "exit_code": returncode, "checks": outcomes, "crashed_cycles": crashed,
        "peak_rss_mb": peak_kb / 1024,
        "rss_after_warmup_mb": after[0][1] / 1024,
        "rss_end_mb": samples[-1]["rss_kb"] / 1024,
        "first_quarter_mean_mb": sum(r for _, r in after[:quarter]) / quarter / 1024,
        "last_quarter_mean_mb": sum(r for _, r in after[-quarter:]) / quarter / 1024,
        "slope_kb_per_100_cycles": slope_kb_per_100(after),
        "samples": samples,
    }
