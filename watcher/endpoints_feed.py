"""The I/O of a ``kind: endpoints`` watch: which models, then their endpoints, paced.

One poll (:meth:`EndpointsFeed.poll`)::

    models  = globs over the host's public list (the models watch's baseline, else one
              GET {url}/models), or the models with requests in the last used_within of
              the stored usage; at most max_models (a warning names how many were cut)
    fetched = GET {url}/models/{author}/{slug}/endpoints of each, through a Pacer
    poll    = watcher.providers.settle(fetched, failed, baseline)    (pure)

The outcome table, per model:

=====================================  ==============================================
2xx                                    its endpoints (watcher.providers.parse)
404                                    the model is gone: not watched this poll (the
                                       catalogue watch reports model_removed)
429 (+ Retry-After), 408, 5xx,         retried; a Retry-After pauses the whole pacer,
timeout, connection                    not only this request; then the model's
                                       records are carried over unchanged
401, 402, 403                          AuthError: the poll fails (the operator notice)
every model failing                    the poll fails with the first error
=====================================  ==============================================
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from watcher import fetch, log, providers, snapshot, usage
from watcher.backoff import backoff
from watcher.config import RetryPolicy, Watch
from watcher.cycle import Poll
from watcher.errors import AuthError, FetchError, SnapshotError

if TYPE_CHECKING:
    import aiohttp

    from watcher.config import Settings
    from watcher.store import Store


class Pacer:
    """At most ``concurrency`` requests at once, their starts at least ``1/rate`` apart; a
    :meth:`pause` (a Retry-After) holds every start back until it has passed."""

    def __init__(self, rate: float, concurrency: int, *,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rate, self.concurrency = rate, concurrency
        self._gap = 1.0 / rate
        self._slots = asyncio.Semaphore(concurrency)
        self._next = 0.0
        self._clock, self._sleep = monotonic, sleep

    def pause(self, seconds: float) -> None:
        self._next = max(self._next, self._clock() + seconds)

    async def __aenter__(self) -> None:
        await self._slots.acquire()
        try:
            while (wait := self._next - self._clock()) > 0:
                await self._sleep(wait)
            self._next = max(self._next, self._clock()) + self._gap
        except BaseException:
            self._slots.release()
            raise

    async def __aexit__(self, *_exc: object) -> None:
        self._slots.release()


class EndpointsFeed:
    """Polls the endpoints watches; one pacer per watch, kept across polls."""

    def __init__(self, settings: Callable[[], Settings], store: Store,
                 session: aiohttp.ClientSession, *,
                 baseline: Callable[[str], snapshot.Snapshot | None],
                 retry: RetryPolicy | None = None) -> None:
        self._settings = settings
        self._store = store
        self._session = session
        self._baseline = baseline   # App's cache of each watch's latest snapshot
        self._retry = retry
        self._pacers: dict[str, Pacer] = {}
        self._capped: dict[str, int] = {}
        self._log = log.get()

    def pacer(self, watch: Watch) -> Pacer:
        pacer = self._pacers.get(watch.name)
        if pacer is None or (pacer.rate, pacer.concurrency) != (watch.requests_per_second,
                                                                watch.concurrency):
            pacer = self._pacers[watch.name] = Pacer(watch.requests_per_second, watch.concurrency)
        return pacer

    async def poll(self, watch: Watch, baseline: snapshot.Snapshot | None) -> Poll:
        """This poll of ``watch``: the settled snapshot and the figures, or a FetchError."""
        pacer = self.pacer(watch)
        models = await self.models(watch, pacer)
        results = await asyncio.gather(*(self._endpoints(watch, pacer, m) for m in models))
        fetched: dict[str, list[dict[str, Any]]] = {}
        failed: list[str] = []
        errors: list[FetchError | SnapshotError] = []
        for model, result in zip(models, results, strict=True):
            if isinstance(result, AuthError):
                raise result
            if isinstance(result, (FetchError, SnapshotError)):
                failed.append(model)
                errors.append(result)
            elif result is not None:
                fetched[model] = result
        if errors and not fetched:
            raise errors[0]
        if errors:
            self._log.warning("endpoints.partial", watch=watch.name, failed=len(failed),
                              reason=log.redactor.text(str(errors[0])),
                              note="their providers are kept as they were")
        current, stats = providers.settle(fetched, failed, baseline, watch)
        return Poll(current, stats=tuple(stats), watched=frozenset(fetched) | frozenset(failed))

    async def models(self, watch: Watch, pacer: Pacer) -> list[str]:
        """The models this poll reads, capped at ``max_models`` (a warning when cut)."""
        if watch.used_within is not None:
            through = self._store.usage_through()
            rows = self._store.usage_rows(since=usage.window_start(through)) if through else []
            since = _days_before(through, watch.used_within) if through else ""
            chosen, found = providers.used_models(rows, since, watch.max_models)
        else:
            chosen, found = providers.select(watch.models, await self._catalogue(watch, pacer),
                                             watch.max_models)
        if found > len(chosen) and self._capped.get(watch.name) != found:
            self._log.warning("endpoints.capped", watch=watch.name, matched=found,
                              max_models=watch.max_models,
                              note="the others are not watched; raise max_models to watch them")
        self._capped[watch.name] = found
        return chosen

    async def _catalogue(self, watch: Watch, pacer: Pacer) -> list[str]:
        """The host's public model ids: the models watch's baseline, else one fetch."""
        base = watch.url.rstrip("/")
        for other in self._settings().watches:
            if other.kind == "models" and other.url.rstrip("/") == f"{base}/models":
                known = self._baseline(other.name)
                if known is not None:
                    return list(known.models)
        public = replace(watch, url=f"{base}/models", kind="models")
        async with pacer:
            pages = await fetch.fetch(self._session, public, policy=self._retry)
        return list(snapshot.parse_pages(pages).models)

    async def _endpoints(self, watch: Watch, pacer: Pacer, model: str
                         ) -> list[dict[str, Any]] | FetchError | SnapshotError | None:
        """One model's records; None when the model is gone (404); its error otherwise."""
        path = providers.endpoints_path(model)
        if path is None:
            return None
        url = f"{watch.url.rstrip('/')}/{path}"
        policy = self._retry or watch.retry
        keyed = fetch.with_current_key(watch)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with pacer:
                    body = await fetch.fetch_page(self._session, keyed, url,
                                                  policy=RetryPolicy(attempts=1),
                                                  sleep=asyncio.sleep,
                                                  limit=watch.max_body_bytes, pages=0)
                return providers.parse(body, model)
            except SnapshotError as exc:
                return exc
            except FetchError as exc:
                if exc.status == 404:
                    return None
                if isinstance(exc, AuthError) or not exc.retryable or attempt >= policy.attempts:
                    return exc
                if exc.retry_after is not None:
                    pacer.pause(min(max(exc.retry_after, 0.0), policy.max_retry_after))
                else:
                    await asyncio.sleep(backoff(policy.backoff, policy.max_backoff, attempt - 1))


def _days_before(through: str, seconds: float) -> str:
    """The first day of the ``seconds`` (whole days) that end on day ``through``."""
    days = max(1, round(seconds / 86400))
    return (date.fromisoformat(through) - timedelta(days=days - 1)).isoformat()
