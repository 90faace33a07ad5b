"""aiohttp handlers for the pages, the feed and the JSON API; everything else is pure.

Reads of events are cheap indexed queries and run on the loop with the daemon's own
store.  A model's timeline decompresses and parses every stored snapshot of each watch,
so it runs in a worker thread on a read-only connection of its own, one at a time, and
never holds up the poll loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from watcher.clock import iso
from watcher.config import Settings
from watcher.links import model_path
from watcher.store import Store
from watcher.timeline import timeline
from watcher.web import atom, pages
from watcher.web.filters import FilterError, Filters, by_impact

Account = Callable[[], Mapping[str, Sequence[str]]]

PAGE_LIMIT = 100
FEED_LIMIT = 50
API_LIMIT = 1000
# No script may run and nothing is loaded from anywhere: a missed escape still cannot act.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass
class WebState:
    """What the handlers read: the daemon's store, its settings and the account view."""

    store: Store
    settings: Callable[[], Settings]
    account: Account | None
    instance: uuid.UUID
    prefix: str = ""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    timelines: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    def watches(self) -> list[str]:
        """Watches to offer in the filter form: configured ones, then any the database has."""
        names = [w.name for w in self.settings().watches]
        return names + [w for w in self.store.watches() if w not in names]

    def account_view(self) -> dict[str, list[str]]:
        return {w: list(m) for w, m in (self.account() if self.account else {}).items()}


STATE = web.AppKey("watcher.web", WebState)


def register(app: web.Application, *, store: Store, settings: Settings | Callable[[], Settings],
             account: Account | None = None, prefix: str = "",
             clock: Callable[[], datetime] | None = None) -> None:
    """Add ``/``, ``/models/{id}``, ``/feed.atom``, ``/api/events``, ``/api/models/{id}``,
    ``/api/account`` and ``/api/usage`` (under ``prefix``) to ``app``.

    ``settings`` may be a callable, so pages follow a reloaded config; ``account`` returns
    the ids each account watch cannot use (``watcher.app.unavailable_to_account``).  Call
    it on the loop that owns ``store``'s connection.
    """
    getter = settings if callable(settings) else (lambda: settings)
    state = WebState(store=store, settings=getter, account=account,
                     instance=store.instance_id(), prefix=prefix.rstrip("/"))
    if clock is not None:
        state.clock = clock
    app[STATE] = state
    base = state.prefix
    app.router.add_get(f"{base}/", index)
    app.router.add_get(f"{base}/feed.atom", feed)
    app.router.add_get(f"{base}/models/{{id:.+}}", model)
    app.router.add_get(f"{base}/api/events", api_events)
    app.router.add_get(f"{base}/api/models/{{id:.+}}", api_model)
    app.router.add_get(f"{base}/api/account", api_account)
    app.router.add_get(f"{base}/api/usage", api_usage)


async def index(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        filters = Filters.parse(request.query, default_limit=PAGE_LIMIT)
    except FilterError as exc:
        return _html(pages.error_page(status=400, heading="Bad filter", message=str(exc),
                                      prefix=state.prefix), status=400)
    now = state.clock()
    rows = state.store.event_rows(filters.event_query(now))
    events = [e for _, e in reversed(rows)]
    if filters.sort == "impact":
        events = by_impact(events)
    body = pages.index_page(
        events=events, filters=filters, watches=state.watches(),
        account=state.account_view(), today=now.date(), prefix=state.prefix,
        more=len(rows) >= filters.limit)
    return _html(body)


async def model(request: web.Request) -> web.Response:
    state = request.app[STATE]
    model_id = request.match_info["id"]
    stories = await _stories(state, model_id, request.query.get("watch"))
    if not stories:
        return _html(pages.error_page(
            status=404, heading="No such model", prefix=state.prefix,
            message=f"No stored snapshot has a model {model_id!r}."), status=404)
    unavailable = [w for w, ids in state.account_view().items() if model_id in ids]
    async with state.timelines:  # a long history takes a while to render: not on the loop
        body = await asyncio.to_thread(
            pages.model_page, model=model_id, stories=stories, unavailable_in=unavailable,
            today=state.clock().date(), prefix=state.prefix,
            every=request.query.get("all") == "1", watch=request.query.get("watch"))
    return _html(body)


async def feed(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        filters = Filters.parse(request.query, default_limit=FEED_LIMIT)
    except FilterError as exc:
        return _error(400, str(exc))
    now = state.clock()
    rows = state.store.event_rows(filters.event_query(now))
    base = _base_url(request, state)
    query = filters.query_string(limit=False)
    suffix = f"?{query}" if query else ""
    described = filters.describe()
    info = atom.FeedInfo(
        id=atom.feed_id(state.instance, query),
        title="OpenRouter changes" + (f": {described}" if described else ""),
        self_url=f"{base}/feed.atom{_query(filters, FEED_LIMIT)}",
        page_url=f"{base}/{suffix}",
        updated=rows[-1][1]["detected_at"] if rows else iso(now))
    entries = [(atom.entry_id(state.instance, row), model_path(base, event["model"]), event)
               for row, event in reversed(rows)]
    body = atom.render(info, entries, today=now.date())
    return _cached(request, body, "application/atom+xml")


def _base_url(request: web.Request, state: WebState) -> str:
    """Where the feed's links point: ``http.public_url`` when it is set, else the address
    this connection reached, with the prefix.

    Never the ``Host`` header: the client writes it, and a feed whose links go wherever a
    request said is a feed a proxy cache can poison.
    """
    http = state.settings().http
    if http is not None and http.public_url:
        return http.public_url
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = str(sockname[0]), int(sockname[1])
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    else:  # not a TCP socket (a test transport): the configured address
        where = http.url.removeprefix("http://") if http is not None else "localhost"
    return f"http://{where}{state.prefix}"


async def api_events(request: web.Request) -> web.Response:
    """Stored events as a JSON array, oldest first: what ``history --format json`` prints."""
    state = request.app[STATE]
    try:
        filters = Filters.parse(request.query, default_limit=API_LIMIT)
    except FilterError as exc:
        return _error(400, str(exc))
    events = state.store.events(filters.event_query(state.clock()))
    return _json(events)


async def api_model(request: web.Request) -> web.Response:
    """A JSON array of the model's timelines, one per watch: what ``show --format json``
    prints, one per line."""
    state = request.app[STATE]
    model_id = request.match_info["id"]
    stories = await _stories(state, model_id, request.query.get("watch"))
    if not stories:
        return _error(404, f"no stored snapshot has a model {model_id!r}")
    return _json(stories)


async def api_account(request: web.Request) -> web.Response:
    """Per account watch, the ids OpenRouter lists that the account cannot use."""
    return _json(request.app[STATE].account_view())


async def api_usage(request: web.Request) -> web.Response:
    """The stored usage rows (GET /api/v1/activity's days): those of the 30 days up to the
    newest fetched day, or from ``?since=YYYY-MM-DD``; ``?model=`` one model's only."""
    from watcher import usage  # noqa: PLC0415 - the pages need it only here

    state = request.app[STATE]
    through = state.store.usage_through()
    since = request.query.get("since")
    if since is not None and not usage.is_day(since):
        return _error(400, "since: expected a date such as 2026-01-04")
    if since is None and through is not None:
        since = usage.window_start(through)
    rows = state.store.usage_rows(since=since, model=request.query.get("model")) if through else []
    names = usage.ROW_FIELDS
    return _json({"through": through, "since": since,
                  "rows": [dict(zip(names, row, strict=True)) for row in rows]})


async def _stories(state: WebState, model_id: str, watch: str | None) -> list[dict[str, Any]]:
    watches = [watch] if watch else state.store.watches()
    async with state.timelines:
        return await asyncio.to_thread(_read_stories, state.store.reader, model_id, watches)


def _read_stories(open_reader: Callable[[], Store], model_id: str, watches: list[str]
                  ) -> list[dict[str, Any]]:
    from watcher.usage import usage_30d, usage_days  # noqa: PLC0415 - the pages need it only here

    with open_reader() as reader:
        stories = [timeline(model_id, reader.model_states(w, model_id), watch=w) for w in watches]
        spent = usage_30d(reader, model_id)
        daily = usage_days(reader, model_id)
        found = reader.provider_stats(model_id)
    # As `show MODEL --format json` prints them, with the daily usage and the providers.
    return [{**s, "usage_30d": spent, "usage_days": daily, "providers": found}
            for s in stories if s["first_seen"] is not None]


def _query(filters: Filters, default_limit: int) -> str:
    """``?...`` for a link to the same listing; ``limit`` only when it is not the default."""
    query = filters.query_string(limit=filters.limit != default_limit)
    return f"?{query}" if query else ""


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers=HEADERS)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status,
                        content_type="application/json", headers=HEADERS)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _cached(request: web.Request, body: bytes, content_type: str) -> web.Response:
    """Feed readers poll: answer 304 when they already have this exact document."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {**HEADERS, "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)


__all__ = ["STATE", "WebState", "register"]
