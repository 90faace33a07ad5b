"""The optional HTTP listener: ``/healthz``, ``/metrics`` and the history pages, on the
daemon's own loop.

Off unless the config has ``http: {listen: HOST:PORT}``.  ``/healthz`` answers 200 with a
small JSON body while every watch had a successful cycle within 3 intervals and the
delivery loop runs, else 503 with the reasons (``App.problems``).  ``/metrics`` is the
Prometheus text format of the app's own registry.  Neither shows a secret: reasons pass
through the log redactor, and no URL or key is part of either answer.  The change page, the
model pages, the Atom feed and the JSON API come from :mod:`watcher.web`.
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from watcher import __version__, log
from watcher.app import App, unavailable_to_account
from watcher.config import Http
from watcher.errors import WatcherError
from watcher.web import register as register_pages

APP_KEY = web.AppKey("watcher", App)


async def start(app: App, listen: Http) -> web.AppRunner:
    """Serve ``app``'s health and metrics on ``listen``; WatcherError if it cannot bind."""
    server = web.Application()
    server[APP_KEY] = app
    server.router.add_get("/healthz", healthz)
    server.router.add_get("/metrics", metrics)
    register_pages(server, store=app.store, settings=lambda: app.settings,
                   account=lambda: unavailable_to_account(app))
    runner = web.AppRunner(server, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, listen.host, listen.port).start()
    except OSError as exc:
        await runner.cleanup()
        raise WatcherError(f"http.listen: cannot listen on {listen.host}:{listen.port}: "
                           f"{exc.strerror or exc}") from None
    log.get().info("http.listening", url=listen.url,
                   paths=["/", "/healthz", "/metrics", "/feed.atom", "/api/events"])
    return runner


async def healthz(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    problems = [log.redactor.text(p) for p in app.problems()]
    body = {"status": "unhealthy" if problems else "ok", "problems": problems,
            "version": __version__, "time": time.time(), "watches": app.status.snapshot()}
    return web.Response(status=503 if problems else 200, body=orjson.dumps(body),
                        content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    try:
        app.metrics.notifications_pending(app.pending())
    except Exception as exc:  # the rest of the metrics are still worth a scrape
        log.get().warning("http.pending_unreadable", reason=log.redactor.text(str(exc)))
    body, content_type = app.metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})
