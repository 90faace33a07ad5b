"""Real servers on 127.0.0.1 for tests: a fake OpenRouter that replays real snapshots."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from aiohttp import web

DATA = Path(__file__).parent / "data"


def snapshot_path(number: int) -> Path:
    """tests/data/NNN_*.json.gz for NNN = ``number``."""
    (path,) = DATA.glob(f"{number:03d}_*.json.gz")
    return path


def snapshot_bytes(number: int) -> bytes:
    return gzip.decompress(snapshot_path(number).read_bytes())


@dataclass
class Reply:
    """One scripted answer of the fake server."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"


class ModelsServer:
    """An aiohttp server on 127.0.0.1, in its own thread and loop (so it serves
    subprocesses and in-process clients alike), answering ``/api/v1/models`` and
    ``/api/v1/models/user`` with the subclass's ``_models``."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _models(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/models", self._models)
        app.router.add_get("/api/v1/models/user", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class FakeOpenRouter(ModelsServer):
    """An aiohttp server on 127.0.0.1 serving ``/api/v1/models`` from a script.

    ``script`` is a list of Replies (or snapshot numbers); each request takes the next,
    and the last one repeats.  ``requests`` records the headers of every request.
    Runs in its own thread with its own loop, so it serves subprocesses and in-process
    clients alike.
    """

    def __init__(self, script: list[Reply | int] | None = None) -> None:
        self.script: list[Reply | int] = list(script or [])
        self.requests: list[dict[str, str]] = []
        self.served = 0
        super().__init__()
        self.user_reply: Reply | None = None  # when set, /models/user answers this instead

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/models"

    def set_script(self, script: list[Reply | int]) -> None:
        self.script = list(script)
        self.served = 0

    def _next(self) -> Reply:
        if not self.script:
            return Reply(status=500, body=b"no script")
        item = self.script[min(self.served, len(self.script) - 1)]
        self.served += 1
        return Reply(body=snapshot_bytes(item)) if isinstance(item, int) else item

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        if request.path.endswith("/user") and self.user_reply is not None:
            reply = self.user_reply
        else:
            reply = self._next()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers,
                            content_type=reply.content_type)



def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CatalogueSteps(ModelsServer):
    """A fake OpenRouter whose public and account lists move together, at one moment.

    ``/api/v1/models`` serves the real snapshot of the current step; ``/api/v1/models/user``
    serves the same list less ``hidden(step)`` (the models the account cannot use).  The
    test moves ``step``; both lists change with it, as one catalogue does.
    """

    def __init__(self, steps: list[int], hidden: Callable[[int], set[str]]) -> None:
        import orjson

        self.docs = {n: orjson.loads(snapshot_bytes(n)) for n in steps}
        self.hidden = hidden
        self.step = steps[0]
        self.requests: list[tuple[str, int]] = []  # (path, step served)
        super().__init__()
        self._bodies: dict[tuple[int, bool], bytes] = {}
        # (n, step): once n requests were served, the catalogue moves to ``step``
        self.switch: tuple[int, int] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/models"

    def body(self, step: int, *, account: bool) -> bytes:
        import orjson

        if (step, account) not in self._bodies:
            doc = self.docs[step]
            if account:
                gone = self.hidden(step)
                doc = {**doc, "data": [m for m in doc["data"] if m["id"] not in gone]}
            self._bodies[step, account] = orjson.dumps(doc)
        return self._bodies[step, account]

    async def _models(self, request: web.Request) -> web.Response:
        step = self.step
        account = request.path.endswith("/user")
        self.requests.append((request.path, step))
        if self.switch is not None and len(self.requests) >= self.switch[0]:
            self.step, self.switch = self.switch[1], None
        return web.Response(body=self.body(step, account=account), content_type="application/json")

