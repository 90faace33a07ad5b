"""What the daemon serves over HTTP: health, metrics, and the history as pages, a feed and a
JSON API.

``listener`` is the HTTP server the daemon runs (``/healthz``, ``/metrics``, the connection
guard) and mounts ``routes``, the aiohttp handlers of the pages; ``routes.register`` mounts
them on any ``aiohttp.web.Application``::

    from watcher.web import routes
    routes.register(server, store=store, settings=lambda: settings)

``filters``, ``atom``, ``chart`` and ``pages`` are pure (values in, text out).  This file
imports none of them, so ``history`` can parse its filters without loading aiohttp.
"""
