"""The optional HTTP listener: ``/healthz``, ``/metrics`` and the history pages, on the
daemon's own loop.

Off unless the config has ``http: {listen: HOST:PORT}``.  ``/healthz`` answers 200 with a
small JSON body while every watch had a successful cycle within 3 intervals and the
delivery loop runs, else 503 with the reasons (:attr:`Sources.problems`); a standby (another
instance leads, see :mod:`watcher.leadership`) answers 200 with status ``standby``.  Failing, stopped
or dead-lettering targets are listed under ``warnings`` (status ``degraded``) and keep it
200: it is a liveness check.  ``/metrics`` is the Prometheus text format of the daemon's
own registry.  Neither shows a secret: reasons pass through the log redactor, and no URL or
key is part of either answer.  The change page, the model pages, the Atom feed and the JSON
API come from :mod:`watcher.web.routes`.  The daemon is known here only by the
:class:`Sources` it hands over.

The listener shares the process (and its file descriptors) with the polls, so clients
that connect and never finish a request must not starve them (1,100 connections trickling
headers once exhausted the descriptors: polls failed with "Too many open files").  aiohttp
has no deadline for a request head, so :class:`ConnectionGuard` adds one, and a cap:

=======================================  ============================================
a connection opens, below the cap        admitted; its request head must arrive within
                                         ``http.header_timeout``, else it is closed
a request head arrived                   served; the deadline starts again when the
                                         handler returns (an idle keep-alive counts)
a connection opens at the cap            the connection waiting longest for a request
                                         head is closed to make room; if every one is
                                         being served, the new one gets 503 and is closed
=======================================  ============================================

The cap is ``http.max_connections``, lowered at start to leave :data:`RESERVED_FDS`
descriptors of ``RLIMIT_NOFILE`` for the polls, the database and the notifications.  asyncio
accepts up to ``backlog`` connections in one go before any of them reaches the guard, so the
backlog is the cap too, and the cap is at most half of what is left: open connections plus
one burst never take more than that.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson
from aiohttp import web

from watcher import __version__, log
from watcher.config import Http, Settings
from watcher.errors import StateError, WatcherError
from watcher.metrics import Metrics
from watcher.store import Store
from watcher.web.routes import register as register_pages


class TargetHealth(Protocol):
    """How the notification targets fare (the daemon's :class:`~watcher.notify.deliver.Deliverer`)."""

    def warnings(self) -> list[str]: ...
    def failing(self) -> set[str]: ...


@dataclass(frozen=True)
class Sources:
    """What the listener shows of the running daemon; the callables are asked on every
    request, so the answers follow the polls and a reloaded config."""

    store: Store
    settings: Callable[[], Settings]
    problems: Callable[[], list[str]]  # why the daemon is unhealthy (empty while it is not)
    watches: Callable[[], Mapping[str, object]]  # each watch's poll state, JSON-ready
    targets: TargetHealth
    metrics: Metrics
    account: Callable[[], Mapping[str, Sequence[str]]]  # ids each account watch cannot use
    role: Callable[[], str] = lambda: "leader"  # "standby" while another instance leads


APP_KEY = web.AppKey("watcher", Sources)
RESERVED_FDS = 128   # descriptors the listener leaves to the rest of the daemon
MIN_CONNECTIONS = 8
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n"
         b"Retry-After: 1\r\n\r\n")


def connection_cap(configured: int) -> int:
    """``configured``, lowered to leave :data:`RESERVED_FDS` of the soft RLIMIT_NOFILE free
    (counting one accept burst, see the module docstring)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(MIN_CONNECTIONS, min(configured, (soft - RESERVED_FDS) // 2))


class ConnectionGuard:
    """The cap and the deadlines in the module docstring, around aiohttp's protocol.

    :meth:`protocols` wraps aiohttp's protocol factory; :meth:`middleware` tells the guard
    when a request head has arrived.
    """

    def __init__(self, *, limit: int, header_timeout: float) -> None:
        self.limit = limit
        self.header_timeout = header_timeout
        self._open: set[asyncio.BaseTransport] = set()
        # Connections waiting for a request head, oldest first, with their deadlines.
        self._waiting: dict[asyncio.BaseTransport, asyncio.TimerHandle] = {}

    @property
    def open(self) -> int:
        return len(self._open)

    def protocols(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server``: ``inner``'s protocols, guarded."""
        return lambda: _Guarded(self, inner())

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Whether a new connection may be served; makes room or answers 503."""
        if len(self._open) >= self.limit:
            if not self._waiting:
                if isinstance(transport, asyncio.WriteTransport):
                    transport.write(_BUSY)
                transport.close()
                return False
            self._drop(next(iter(self._waiting)))
        self._open.add(transport)
        self._wait(transport)
        return True

    def closed(self, transport: asyncio.BaseTransport) -> None:
        handle = self._waiting.pop(transport, None)
        if handle is not None:
            handle.cancel()
        self._open.discard(transport)

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        transport = request.transport
        handle = self._waiting.pop(transport, None) if transport is not None else None
        if handle is not None:
            handle.cancel()
        try:
            return await handler(request)
        finally:
            if transport is not None and transport in self._open and not transport.is_closing():
                self._wait(transport)

    def _wait(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        self._waiting[transport] = loop.call_later(self.header_timeout, self._drop, transport)

    def _drop(self, transport: asyncio.BaseTransport) -> None:
        self.closed(transport)
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        else:
            transport.close()


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, told nothing unless the guard admits it."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._guard.admit(transport):
            self._transport = transport
            self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._transport is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._guard.closed(self._transport)
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._inner.resume_writing()


@dataclass
class Listener:
    """The running listener: what :func:`start` returns, to be cleaned up at the end."""

    runner: web.AppRunner
    server: asyncio.Server
    guard: ConnectionGuard

    async def cleanup(self) -> None:
        self.server.close()
        await self.runner.cleanup()  # closes the connections that are still open
        await self.server.wait_closed()


async def start(sources: Sources, listen: Http) -> Listener:
    """Serve the health, metrics and pages of ``sources`` on ``listen``; WatcherError if it
    cannot bind."""
    limit = connection_cap(listen.max_connections)
    guard = ConnectionGuard(limit=limit, header_timeout=listen.header_timeout)
    server = web.Application(middlewares=[guard.middleware])
    server[APP_KEY] = sources
    server.router.add_get("/healthz", healthz)
    server.router.add_get("/metrics", metrics)
    register_pages(server, store=sources.store, settings=sources.settings,
                   account=sources.account)
    try:
        listener = await serve(server, guard, listen.host, listen.port)
    except OSError as exc:
        raise WatcherError(f"http.listen: cannot listen on {listen.host}:{listen.port}: "
                           f"{exc.strerror or exc}") from None
    if limit < listen.max_connections:
        log.get().warning("http.connections_capped", max_connections=limit,
                          configured=listen.max_connections,
                          rlimit_nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                          note=f"{RESERVED_FDS} file descriptors are kept for the polls")
    log.get().info("http.listening", url=listen.url, max_connections=limit,
                   header_timeout=listen.header_timeout,
                   paths=["/", "/healthz", "/metrics", "/feed.atom", "/api/events"])
    return listener


async def serve(server: web.Application, guard: ConnectionGuard, host: str, port: int
                ) -> Listener:
    """Serve ``server`` (made with ``guard.middleware``) on ``host:port``, guarded.

    OSError when it cannot bind.
    """
    runner = web.AppRunner(server, access_log=None, handle_signals=False)
    await runner.setup()
    assert runner.server is not None  # set by setup()
    try:
        sockets = await asyncio.get_running_loop().create_server(
            guard.protocols(runner.server), host, port, backlog=min(guard.limit, 128))
    except OSError:
        await runner.cleanup()
        raise
    return Listener(runner=runner, server=sockets, guard=guard)


async def healthz(request: web.Request) -> web.Response:
    sources = request.app[APP_KEY]
    problems = [log.redactor.text(p) for p in sources.problems()]
    warnings = [log.redactor.text(w) for w in delivery_warnings(sources.targets, sources.store)]
    role = sources.role()
    status = ("standby" if role == "standby" else "unhealthy" if problems
              else "degraded" if warnings else "ok")
    body = {"status": status, "role": role, "problems": problems, "warnings": warnings,
            "version": __version__, "time": time.time(), "watches": sources.watches()}
    return web.Response(status=503 if problems else 200, body=orjson.dumps(body),
                        content_type="application/json")


def delivery_warnings(targets: TargetHealth, store: Store) -> list[str]:
    """Targets that fail, are stopped or have dead letters waiting.

    ``/healthz`` lists them but still answers 200: it is a liveness check, and restarting
    the daemon mends no Slack outage (nor a full disk: see :mod:`watcher.notify.deliver`).
    """
    warnings = targets.warnings()
    try:
        outbox = store.outbox_status()
    except WatcherError as exc:
        return [*warnings, f"the outbox cannot be read: {exc}"]
    return warnings + [f"target {name}: {entry['dead']} dead letter(s) wait; "
                       f"`openrouter-watcher resend {name}` sends them again"
                       for name, entry in sorted(outbox.items()) if entry["dead"]]


async def metrics(request: web.Request) -> web.Response:
    sources = request.app[APP_KEY]
    registry = sources.metrics
    registry.targets(sources.settings().targets, failing=sources.targets.failing())
    try:
        outbox = sources.store.outbox_status()
        registry.notifications_pending({t: int(e["pending"]) for t, e in outbox.items()})
        registry.notifications_dead({t: int(e["dead"]) for t, e in outbox.items()})
    except StateError as exc:  # the rest of the metrics are still worth a scrape
        log.get().warning("http.pending_unreadable", reason=log.redactor.text(str(exc)))
    body, content_type = registry.render()
    return web.Response(body=body, headers={"Content-Type": content_type})
