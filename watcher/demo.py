"""``openrouter-watcher demo``: the real pipeline over bundled real snapshots, offline.

A loopback aiohttp server answers ``/api/v1/models`` with the next of four real responses
recorded in January 2026 (new models, price changes, expiration dates being set).  The
watcher polls it like it would poll openrouter.ai, with a throwaway state directory, and
prints what it found and what the shipped default rules would send.
"""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from aiohttp import web

from watcher.config import Settings, Target, Watch, packaged_config
from watcher.rules.load import load_rule_files
from watcher.secret import Secret


def taken_at(name: str) -> datetime:
    """When a bundled snapshot was taken, from its name (``NNN_YYYYMMDDTHHMM.json.gz``)."""
    return datetime.strptime(name.split("_", 1)[1][:13], "%Y%m%dT%H%M").replace(tzinfo=UTC)


def bundled_snapshots() -> list[tuple[str, bytes]]:
    """(name, body) of each bundled response, oldest first."""
    folder = resources.files("watcher") / "demo"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".json.gz"))
    return [(n, gzip.decompress((folder / n).read_bytes())) for n in names]


@asynccontextmanager
async def replay_server(bodies: list[bytes]) -> AsyncIterator[str]:
    """A loopback server that answers each GET with the next body (the last one repeats)."""
    served = {"n": 0}

    async def models(_request: web.Request) -> web.Response:
        body = bodies[min(served["n"], len(bodies) - 1)]
        served["n"] += 1
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/models", models)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/api/v1/models"
    finally:
        await runner.cleanup()


def demo_settings(url: str, state_dir: Path) -> Settings:
    """The packaged default config, pointed at the replay server."""
    targets = {"console": Target("console", Secret("console://"))}
    rules_file = packaged_config().parent / "rules" / "default.yaml"
    return Settings(
        path=packaged_config(), state_dir=state_dir,
        watches=(Watch(name="models", url=url, interval=1.0),),
        targets=targets,
        rules=load_rule_files([rules_file], targets=set(targets), watches={"models"}),
        rule_files=(rules_file,),
    )


def temp_state() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="openrouter-watcher-demo-")
