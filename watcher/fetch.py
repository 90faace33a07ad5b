"""HTTP: one GET of a models endpoint (all pages), with retries, as raw bytes.

The outcome table:

=====================================  ==============================================
2xx                                    the body (and the next pages, if ``links.next``)
408, 429, 5xx, timeout, connection     retried with exponential backoff and jitter,
                                       honouring ``Retry-After`` (see below); then
                                       FetchError
401, 402, 403                          AuthError at once: a person must act
other 4xx                              FetchError at once (not retryable)
all pages together over the cap        FetchError at once, not retried: the same
(``max_body_mb``)                      response would come again, and the poll is
                                       only as big as it is allowed to be
more than ``max_pages`` pages, a       FetchError at once, not retried (as above)
``links.next`` seen before, or one
to another origin
=====================================  ==============================================

``Retry-After`` is read strictly (RFC 9110): whole seconds as ASCII digits, or an
HTTP-date.  The wait is clamped to ``[0, max_retry_after]``: a date in the past waits 0 s, a
huge number or a far date waits ``max_retry_after``.  Anything else (``nan``, ``inf``,
``-5``, ``1.5``, garbage) is ignored and the usual backoff applies, so no value from the
server can reach the event loop's timers as a non-finite or negative delay.

``aiohttp`` errors never leave this module: they are translated into
:class:`~watcher.errors.FetchError` with messages that carry no request headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from watcher import __version__, log, yamldoc
from watcher.backoff import backoff
from watcher.config import MAX_SECRET_BYTES, RetryPolicy, Watch
from watcher.errors import AuthError, FetchError
from watcher.secret import Secret

USER_AGENT = f"openrouter-watcher/{__version__} (+https://github.com/openrouter-watcher)"
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 402, 403})
Sleep = Callable[[float], Awaitable[None]]


def new_session() -> aiohttp.ClientSession:
    """The process's one HTTP session."""
    return aiohttp.ClientSession(headers={"User-Agent": USER_AGENT, "Accept": "application/json"})


async def fetch(session: aiohttp.ClientSession, watch: Watch, *,
                policy: RetryPolicy | None = None, sleep: Sleep = asyncio.sleep) -> list[bytes]:
    """Every page of ``watch.url``; retries transient failures, raises FetchError.

    ``watch.max_body_bytes`` caps all pages together, not each one: memory is bounded by
    the cap whatever the page count.
    """
    policy = policy or watch.retry
    watch = with_current_key(watch)
    pages: list[bytes] = []
    url: str | None = watch.url
    seen: set[str] = set()
    left = watch.max_body_bytes
    while url is not None:
        if url in seen:
            raise FetchError(f"pagination of {_safe(watch.url)} does not end (links.next "
                             "points to a page already read)", retryable=False)
        if len(pages) >= watch.max_pages:
            raise FetchError(f"{_safe(watch.url)}: more than {watch.max_pages} pages "
                             "(max_pages)", retryable=False)
        seen.add(url)
        body = await fetch_page(session, watch, url, policy=policy, sleep=sleep,
                                limit=left, pages=len(pages))
        left -= len(body)
        pages.append(body)
        url = _next_page(body, url)
        if url is not None and _origin(url) != _origin(watch.url):
            # The key goes with every page: never to another scheme, host or port.
            raise FetchError(f"{_safe(watch.url)}: links.next points to another origin "
                             f"({_safe(url)}); not followed", retryable=False)
    return pages


def with_current_key(watch: Watch) -> Watch:
    """``watch`` with its ``api_key_file`` read again: a rotated key works without a restart,
    and is a secret the logs mask from its first use."""
    if watch.api_key_file is None:
        return watch
    try:  # as at load: a small regular file, so /dev/zero or a FIFO cannot wedge the poll
        key = yamldoc.read_file(watch.api_key_file, MAX_SECRET_BYTES).decode("utf-8").strip()
    except yamldoc.UnreadableFileError as exc:
        raise FetchError(f"cannot read api_key_file {watch.api_key_file}: {exc}",
                         retryable=False) from None
    except OSError as exc:
        raise FetchError(f"cannot read api_key_file {watch.api_key_file}: {exc.strerror}",
                         retryable=False) from None
    except UnicodeDecodeError:
        raise FetchError(f"cannot read api_key_file {watch.api_key_file}: not UTF-8 text",
                         retryable=False) from None
    if not key:
        raise FetchError(f"api_key_file {watch.api_key_file} is empty", retryable=False)
    if watch.api_key != key:
        log.redactor.add(key)
    return replace(watch, api_key=Secret(key))


async def fetch_page(session: aiohttp.ClientSession, watch: Watch, url: str, *,
                     policy: RetryPolicy, sleep: Sleep, limit: int, pages: int) -> bytes:
    """One page of at most ``limit`` bytes (what the cap leaves after ``pages`` pages),
    retried per the outcome table."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _get(session, watch, url, limit=limit, pages=pages)
        except FetchError as exc:
            if not exc.retryable or attempt >= policy.attempts:
                if attempt > 1:
                    raise FetchError(f"{exc} (after {attempt} attempts)", retryable=exc.retryable,
                                     status=exc.status) from None
                raise
            await sleep(_delay(attempt, exc.retry_after, policy))


def _delay(attempt: int, retry_after: float | None, policy: RetryPolicy) -> float:
    """Seconds to wait before ``attempt + 1``; a Retry-After within ``[0, max_retry_after]``."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), policy.max_retry_after)
    return backoff(policy.backoff, policy.max_backoff, attempt - 1)


async def _get(session: aiohttp.ClientSession, watch: Watch, url: str, *, limit: int,
               pages: int) -> bytes:
    headers = {"Authorization": f"Bearer {watch.api_key.reveal()}"} if watch.api_key else {}
    timeout = aiohttp.ClientTimeout(total=watch.timeout, connect=min(10.0, watch.timeout))
    where = _safe(url)
    try:
        async with session.get(url, headers=headers, timeout=timeout,
                               allow_redirects=True) as resp:
            status = resp.status
            if status in AUTH_STATUS:
                raise AuthError(f"{where}: HTTP {status}: the API key or the account was "
                                "refused", status=status)
            if status in RETRYABLE_STATUS:
                raise FetchError(f"{where}: HTTP {status}", retryable=True, status=status,
                                 retry_after=_retry_after(resp.headers.get("Retry-After")))
            if not 200 <= status < 300:
                raise FetchError(f"{where}: HTTP {status}", retryable=False, status=status)
            if resp.content_length is not None and resp.content_length > limit:
                raise _too_large(where, watch, pages)
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > limit:
                    raise _too_large(where, watch, pages)
                chunks.append(chunk)
            return b"".join(chunks)
    except FetchError:
        raise
    except TimeoutError:
        raise FetchError(f"{where}: timed out after {watch.timeout:g}s", retryable=True) from None
    except aiohttp.ClientPayloadError:
        raise FetchError(f"{where}: the response was cut off", retryable=True) from None
    except aiohttp.ClientConnectionError as exc:
        # str(exc) of connection errors names host and OS error, never headers.
        raise FetchError(f"{where}: connection failed: {type(exc).__name__}: {exc}",
                         retryable=True) from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"{where}: HTTP client error: {type(exc).__name__}",
                         retryable=True) from None


def _too_large(where: str, watch: Watch, pages: int) -> FetchError:
    together = f" (with the {pages} pages before it)" if pages else ""
    return FetchError(f"{where}: response is larger than the {watch.max_body_bytes} byte cap"
                      f"{together} (max_body_mb)", retryable=False)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header, or None when it is not one (see the docstring)."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        # float(), not int(): a 5,000-digit value is inf here, not a ValueError.
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _next_page(body: bytes, url: str) -> str | None:
    if b'"links"' not in body:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # snapshot parsing reports it
    links = doc.get("links") if isinstance(doc, dict) else None
    nxt = links.get("next") if isinstance(links, dict) else None
    return urljoin(url, nxt) if isinstance(nxt, str) and nxt else None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


def _safe(url: str) -> str:
    """The URL without query string or user info, for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
