"""History you can see: the change page, a page per model, an Atom feed and a JSON API.

Mount it on any ``aiohttp.web.Application`` with one call::

    from watcher import web
    web.register(server, store=app.store, settings=lambda: app.settings,
                 account=lambda: unavailable_to_account(app))

``filters``, ``atom``, ``chart`` and ``pages`` are pure (values in, text out);
``routes`` holds the aiohttp handlers.
"""

from watcher.web.routes import STATE, WebState, register

__all__ = ["STATE", "WebState", "register"]
