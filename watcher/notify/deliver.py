"""Deliver the outbox: one message per (cycle, target), retried until it is sent or too old.

Every target drains in its own task, so a dead or slow target neither blocks nor
duplicates the others.  A row is marked sent only after its target accepted the message;
a crash in between resends that one message on restart (with the same idempotency key).
Apprise is synchronous: it runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Protocol, TextIO
from urllib.parse import urlsplit, urlunsplit

import apprise
import orjson

from watcher import escape, log
from watcher.clock import iso, utcnow
from watcher.config import Settings, Target
from watcher.errors import DeliveryError, WatcherError
from watcher.metrics import Metrics
from watcher.notify import webhook
from watcher.notify.render import JSON_SCHEMES, Message, body_format, compose
from watcher.notify.templates import TemplateRefused
from watcher.store import Group, Store

APPRISE_FORMATS = {"text": apprise.NotifyFormat.TEXT, "markdown": apprise.NotifyFormat.MARKDOWN,
                   "html": apprise.NotifyFormat.HTML, "json": apprise.NotifyFormat.TEXT}


class Sender(Protocol):
    async def send(self, message: Message) -> None: ...


class ConsoleSender:
    """``console://``: the message as text on ``stream``.

    Without a stream (the daemon) it goes to stdout: as text on a terminal, and as one JSON
    object per line otherwise, like the log (``"event": "notify.console"``), so that
    ``docker logs`` and journald keep one JSON object per line whatever the catalogue says.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    async def send(self, message: Message) -> None:
        out = self.stream or sys.stdout
        if self.stream is None and not out.isatty():
            record = {"timestamp": iso(utcnow()),
                      "level": "info", "event": "notify.console", "title": message.title,
                      "body": message.body}
            out.write(escape.json_line(orjson.dumps(record).decode()) + "\n")
        else:
            out.write(escape.printable(f"\n=== {message.title} ===\n{message.body}") + "\n")
        out.flush()


class AppriseSender:
    """Any Apprise URL, sent from a worker thread."""

    def __init__(self, target: Target, executor: ThreadPoolExecutor) -> None:
        self.target = target
        self.executor = executor

    async def send(self, message: Message) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._send, message)

    def _send(self, message: Message) -> None:
        sender = apprise.Apprise()
        url = with_idempotency_key(self.target, message.key)
        # A JSON message to json:// is the request's body, not a string in Apprise's envelope.
        server = webhook.server(url) if message.format == "json" else url
        if server is None or not sender.add(server):
            raise DeliveryError(f"target {self.target.name!r} ({self.target.source}) is not a "
                                 "URL Apprise can send to")
        with apprise.LogCapture(level=logging.WARNING) as captured:  # type: ignore[no-untyped-call]
            ok = sender.notify(body=message.body, title=message.title,
                               body_format=APPRISE_FORMATS[message.format],
                               notify_type=apprise.NotifyType(message.notify_type))
        if not ok:
            detail = " ".join(captured.getvalue().split())[-300:] or "the target refused it"
            raise DeliveryError(log.redactor.text(detail))


def with_idempotency_key(target: Target, key: str) -> str:
    """Webhook URLs get the key as an ``Idempotency-Key`` header and a payload field."""
    if target.scheme not in JSON_SCHEMES:  # the webhook schemes
        return target.url
    parts = urlsplit(target.url)
    extra = f"+Idempotency-Key={key}&:idempotency_key={key}"
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def privacy_url(url: str) -> str:
    """How a target may appear in output and logs: scheme and host, nothing that may be a token."""
    if url.startswith("console://"):
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}/***" if host else f"{parts.scheme}://***"


def build_senders(settings: Settings, executor: ThreadPoolExecutor, *,
                  console: TextIO | None = None) -> dict[str, Sender]:
    senders: dict[str, Sender] = {}
    for name, target in settings.targets.items():
        senders[name] = (ConsoleSender(console) if target.scheme == "console"
                         else AppriseSender(target, executor))
    return senders


class Deliverer:
    """Drains the outbox, one task per target."""

    def __init__(self, settings: Settings, store: Store, senders: Mapping[str, Sender], *,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.store = store
        self.senders = senders
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.wake = asyncio.Event()
        self.log = log.get()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._failing: set[str] = set()
        self.last_pass = 0.0

    def start_due(self) -> None:
        """Start a drain task for every target with due messages and none running."""
        self.last_pass = self.clock()
        for target in self.store.due_targets(self.clock()):
            task = self._inflight.get(target)
            if task is None or task.done():
                self._inflight[target] = asyncio.create_task(self._drain_target(target),
                                                             name=f"deliver:{target}")

    async def drain(self) -> None:
        """Send everything due now and wait for it (``once`` and tests)."""
        self.start_due()
        await self.wait_inflight()

    async def wait_inflight(self) -> None:
        tasks = [t for t in self._inflight.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Drain whenever something is due or a cycle wakes us, until ``stop``."""
        while not stop.is_set():
            next_due = None
            try:
                self.start_due()
                # Targets with a drain in flight are left out: it picks up what falls due
                # meanwhile, and wakes this loop when it ends.
                busy = [t for t, task in self._inflight.items() if not task.done()]
                next_due = self.store.next_due(exclude=busy)
            except WatcherError as exc:
                self.log.error("notify.outbox_unreadable", reason=str(exc))  # noqa: TRY400
            delay = 60.0 if next_due is None else min(60.0, max(0.05, next_due - self.clock()))
            waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            self.wake.clear()

    async def _drain_target(self, target: str) -> None:
        """Send ``target``'s due messages, including those that fall due meanwhile."""
        try:
            while groups := self.store.due_groups(self.clock(), target):
                for group in groups:
                    await self._send_group(group)
        finally:
            self.wake.set()  # the loop works out again what falls due next

    async def _send_group(self, group: Group) -> None:
        sender = self.senders.get(group.target)
        target = self.settings.targets.get(group.target)
        now = self.clock()
        if sender is None or target is None:
            self.store.mark_dead(group.rows, now, f"target {group.target!r} is no longer configured")
            self.metrics.notification_dead_lettered(group.target, len(group.rows))
            self.log.error("notify.dead_lettered", target=group.target, rows=len(group.rows),
                           reason="target no longer configured")
            return
        rule = next((r for r in self.settings.rules if r.name == group.group), None)
        try:
            message = compose(target, list(group.events), key=group.idempotency_key,
                              today=datetime.fromtimestamp(now, UTC).date(), rule=rule,
                              public_url=self.settings.http.public_url if self.settings.http
                              else None)
            await sender.send(message)
        except (DeliveryError, TemplateRefused) as exc:
            self._failed(group, str(exc))
            return
        except Exception as exc:  # a plugin bug must not kill the delivery loop
            self._failed(group, log.redactor.text(f"{type(exc).__name__}: {exc}"))
            return
        self.store.mark_sent(group.rows, self.clock())
        self.metrics.notification_sent(group.target)
        if group.target in self._failing:
            self._failing.discard(group.target)
            self.log.info("notify.recovered", target=group.target)
        self.log.info("notify.sent", target=group.target, alerts=len(group.rows),
                      attempts=group.attempts + 1, key=group.idempotency_key)

    def _failed(self, group: Group, reason: str) -> None:
        now = self.clock()
        policy = self.settings.delivery
        self.metrics.notification_failed(group.target)
        if now - group.created_at >= policy.max_age:
            self.store.mark_dead(group.rows, now, reason)
            self.metrics.notification_dead_lettered(group.target, len(group.rows))
            self.log.error("notify.dead_lettered", target=group.target, alerts=len(group.rows),
                           attempts=group.attempts + 1, reason=reason)
            return
        cap = min(policy.max_backoff, policy.retry_backoff * 2 ** group.attempts)
        due = now + random.uniform(cap / 2, cap)
        self.store.mark_retry(group.rows, now, due, reason)
        if group.target not in self._failing:
            self._failing.add(group.target)
            self.log.warning("notify.failing", target=group.target, reason=reason)
        else:
            self.log.debug("notify.retry_scheduled", target=group.target, reason=reason,
                           attempts=group.attempts + 1, in_seconds=round(due - now, 1))


class OperatorNotices:
    """The watcher's own trouble, told to the ``operator`` targets.

    A problem (the key refused, a suspect response held) is told when it starts and again
    at most every ``repeat_interval`` while it lasts; its end is told once.  Notices are
    sent straight away in the background, outside the outbox: they repeat while the
    problem lasts, and the log has every one of them.
    """

    def __init__(self, settings: Settings, senders: Mapping[str, Sender], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.senders = senders
        self.clock = clock
        self.log = log.get()
        self._active: dict[tuple[str, str], float] = {}  # (watch, kind) -> last told
        self._tasks: set[asyncio.Task[None]] = set()

    def problem(self, watch: str, kind: str, text: str) -> None:
        now = self.clock()
        last = self._active.get((watch, kind))
        if last is not None and now - last < self.settings.operator.repeat_interval:
            return
        self._active[watch, kind] = now
        self.log.warning("operator.problem", watch=watch, kind=kind, message=text)
        self._tell(f"openrouter-watcher: {watch}: problem", text)

    def resolved(self, watch: str, kind: str, text: str) -> None:
        if self._active.pop((watch, kind), None) is None:
            return
        self.log.info("operator.resolved", watch=watch, kind=kind, message=text)
        self._tell(f"openrouter-watcher: {watch}: recovered", text)

    def _tell(self, title: str, text: str) -> None:
        key = f"operator-{self.clock():.0f}"
        for name in self.settings.operator.notify:
            sender = self.senders.get(name)
            if sender is not None:
                task = asyncio.create_task(self._send(name, sender, title, text, key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _send(self, name: str, sender: Sender, title: str, text: str, key: str) -> None:
        target = self.settings.targets[name]
        fmt = body_format(target)
        body = (orjson.dumps({"idempotency_key": key, "title": title, "operator": text}).decode()
                if fmt == "json" else text)
        try:
            await sender.send(Message(title=title, body=body, format=fmt, key=key))
        except Exception as exc:
            self.log.error("operator.notice_failed", target=name,  # noqa: TRY400
                           reason=log.redactor.text(f"{type(exc).__name__}: {exc}"))

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
