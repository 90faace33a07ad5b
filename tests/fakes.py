"""Real servers on 127.0.0.1 for tests: a fake OpenRouter that replays real snapshots."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
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
        self.endpoints = Endpoints()

    async def _models(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def _activity(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=404)

    async def _endpoints(self, request: web.Request) -> web.StreamResponse:
        return await self.endpoints.answer(request)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/models", self._models)
        app.router.add_get("/api/v1/models/user", self._models)
        app.router.add_get("/api/v1/activity", self._activity)
        app.router.add_get("/api/v1/models/{author}/{slug}/endpoints", self._endpoints)
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
        self.activity = Activity()

    async def _activity(self, request: web.Request) -> web.StreamResponse:
        return self.activity.answer(request)

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



# /api/v1/activity, as tests/data/ACTIVITY.md describes it: per completed UTC day of the
# last 30 and per model endpoint.  The usage is deterministic, so that tests can compute the
# impact by hand: per day,
#   z-ai/glm-4.7, two endpoints: 1,200,000 + 300,000 prompt, 400,000 + 100,000 completion,
#       80,000 + 20,000 reasoning tokens, 150 + 50 requests (every day)
#   openai/gpt-4o-search-preview: 400 requests, 100,000 prompt, 50,000 completion tokens,
#       on the days whose ordinal is even: 15 of any 30 consecutive days
#   deepseek/deepseek-v3.2: 2,000,000 prompt, 1,000,000 completion tokens, 1,000 requests
#   moonshotai/kimi-k2-thinking: 10,000 prompt, 5,000 completion, 3 requests (every day)
# 30-day totals, as the tests use them:
GLM_PROMPT_30D = 45_000_000
GLM_COMPLETION_AND_REASONING_30D = 18_000_000
GLM_REQUESTS_30D = 6_000
SEARCH_REQUESTS_PER_DAY = 400
DEEPSEEK_REQUESTS_30D = 30_000


def activity_rows(day: date) -> list[dict[str, object]]:
    """The activity rows of one day, in the documented shape."""
    iso_day = day.isoformat()

    def row(model: str, slug: str, endpoint: str, provider: str, requests: int, prompt: int,
            completion: int, reasoning: int, usd: float) -> dict[str, object]:
        return {"date": iso_day, "model": model, "model_permaslug": slug,
                "endpoint_id": endpoint, "provider_name": provider, "usage": usd,
                "byok_usage_inference": 0, "requests": requests, "prompt_tokens": prompt,
                "completion_tokens": completion, "reasoning_tokens": reasoning}

    rows = [
        row("z-ai/glm-4.7", "z-ai/glm-4.7-20251222", "3f1c2a4e-glm-a", "Z.AI", 150, 1_200_000,
            400_000, 80_000, 1.02),
        row("z-ai/glm-4.7", "z-ai/glm-4.7-20251222", "3f1c2a4e-glm-b", "Novita", 50, 300_000,
            100_000, 20_000, 0.26),
        row("deepseek/deepseek-v3.2", "deepseek/deepseek-v3.2-exp", "77d0-ds", "DeepSeek", 1_000,
            2_000_000, 1_000_000, 0, 0.87),
        row("moonshotai/kimi-k2-thinking", "moonshotai/kimi-k2-thinking-20251106", "9a2e-kimi",
            "Moonshot AI", 3, 10_000, 5_000, 2_000, 0.02),
    ]
    if day.toordinal() % 2 == 0:
        rows.append(row("openai/gpt-4o-search-preview", "openai/gpt-4o-search-preview-2025-03-11",
                        "5b7e-search", "OpenAI", SEARCH_REQUESTS_PER_DAY, 100_000, 50_000, 0,
                        14.75))
    return rows


class Activity:
    """The fake's ``/api/v1/activity``: 200 for a key in ``management_keys``, 403 "Only
    management keys can fetch activity" for any other key, 401 without one; ``?date=``
    filters to one day, and a day outside the window (or no date at all) is a 400.

    The window is the 30 completed UTC days before ``today`` (default: the real date).
    """

    def __init__(self) -> None:
        self.management_keys: set[str] = set()
        self.today: date | None = None
        self.requests: list[dict[str, str]] = []  # query and Authorization of each request
        self.reply: Reply | None = None          # when set, answered instead

    def window(self) -> list[date]:
        today = self.today or datetime.now(UTC).date()
        return [today - timedelta(days=n) for n in range(30, 0, -1)]

    def answer(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.requests.append({"query": request.query_string, "authorization": auth})
        if self.reply is not None:
            return web.Response(status=self.reply.status, body=self.reply.body,
                                headers=self.reply.headers, content_type="application/json")
        key = auth.removeprefix("Bearer ")
        if not key:
            return _error(401, "No auth credentials found")
        if key not in self.management_keys:
            return _error(403, "Only management keys can fetch activity")
        days = self.window()
        if "date" in request.query:
            try:
                wanted = date.fromisoformat(request.query["date"])
            except ValueError:
                return _error(400, "Invalid date format, expected YYYY-MM-DD")
            if wanted not in days:
                return _error(400, "Date must be within the last 30 (completed) UTC days")
            days = [wanted]
        import orjson

        data = [r for day in days for r in activity_rows(day)]
        return web.Response(body=orjson.dumps({"data": data}), content_type="application/json")


# /api/v1/models/{author}/{slug}/endpoints, as tests/data/ENDPOINTS.md describes it.  Each
# model of the bundled list has 2-5 providers, built from the hand-written sample
# (tests/data/endpoints_deepseek-v3.2.json) with the model's own catalogue prices; tests
# move them by editing ``Endpoints.data`` between polls.
PROVIDERS = (("DeepInfra", "deepinfra/fp8", "fp8"), ("Together", "together", "fp16"),
             ("Fireworks", "fireworks", "fp8"), ("Novita", "novita/bf16", "bf16"),
             ("Parasail", "parasail/fp4", "fp4"))


def endpoints_of(model: dict[str, object]) -> list[dict[str, object]]:
    """2-5 endpoints of one catalogue model (how many by the length of its id)."""
    import orjson

    sample = orjson.loads((DATA / "endpoints_deepseek-v3.2.json").read_bytes())
    template = sample["data"]["endpoints"][0]
    model_id = str(model["id"])
    pricing = model.get("pricing") if isinstance(model.get("pricing"), dict) else {}
    out = []
    for name, tag, quant in PROVIDERS[: 2 + len(model_id) % 4]:
        out.append({**template, "name": f"{name} | {model_id}", "model_id": model_id,
                    "model_name": model.get("name"), "context_length": model.get("context_length"),
                    "pricing": dict(pricing or {}), "provider_name": name, "tag": tag,
                    "quantization": quant, "status": 0, "uptime_last_30m": 99.5,
                    "uptime_last_5m": 100, "uptime_last_1d": 99.7})
    return out


class Endpoints:
    """The fake's endpoints route.  ``data`` maps a model id to its endpoint list (a model
    not in it is a 404); ``queue`` holds Replies answered first, one per request (429 with
    Retry-After ...).  It measures what a pacer must bound: the start time of each request
    (``starts``, monotonic) and the most requests it had in flight at once (``peak``)."""

    def __init__(self) -> None:
        self.data: dict[str, list[dict[str, object]]] = {}
        self.queue: list[Reply] = []
        self.delay = 0.0
        self.starts: list[float] = []
        self.paths: list[str] = []
        self.authorization: list[str] = []
        self.in_flight = 0
        self.peak = 0

    def fill(self, models: list[dict[str, object]]) -> None:
        for model in models:
            self.data[str(model["id"])] = endpoints_of(model)

    async def answer(self, request: web.Request) -> web.StreamResponse:
        import time

        import orjson

        self.starts.append(time.monotonic())
        self.paths.append(request.path)
        self.authorization.append(request.headers.get("Authorization", ""))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.queue:
                reply = self.queue.pop(0)
                return web.Response(status=reply.status, body=reply.body, headers=reply.headers,
                                    content_type=reply.content_type)
            model = f"{request.match_info['author']}/{request.match_info['slug']}"
            if model not in self.data:
                return _error(404, f"model {model} not found")
            doc = {"data": {"id": model, "name": model, "endpoints": self.data[model]}}
            return web.Response(body=orjson.dumps(doc), content_type="application/json")
        finally:
            self.in_flight -= 1


def _error(status: int, message: str) -> web.Response:
    import orjson

    return web.Response(status=status, content_type="application/json",
                        body=orjson.dumps({"error": {"code": status, "message": message}}))


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

