"""Deliver the outbox: one message per (cycle, target), retried until it is sent or too old.

Every target drains in its own task, so a dead or slow target neither blocks nor
duplicates the others.  A message is sent only once its rows are claimed for this instance
(:meth:`watcher.store.Store.claim`, for ``CLAIM_LEASE``), so two instances never send it both;
a row is marked sent only after its target accepted the message; a crash in between
resends that one message on restart, or from the next leader once the claim expired (with
the same idempotency key).
Apprise is synchronous: it runs in worker threads, never on the event loop.

What happens to one message (the rows of one check, target and group):

=========================================  ==============================  ======================
what happened                              its rows                        its target
=========================================  ==============================  ======================
the target accepted it                     sent                            goes on
the send failed, younger than max_age      retried with backoff + jitter   logged once failing
the send failed, max_age old               dead, with the reason           operator notice to
                                                                           the other operators
a stored event cannot be parsed or         that row dead at once (it can   goes on
rendered                                   never render)
sent, but the state cannot record it       remembered here as sent: never  stopped, loudly; the
                                           sent again by this process      write is retried with
                                                                           backoff, then it goes on
a retry or dead letter cannot be recorded  as they were                    stopped likewise
the outbox cannot be read                  as they were                    waits with backoff
another instance claimed a row of it       as they were: tried again when  goes on
                                           the claim expires
=========================================  ==============================  ======================

A stopped target is not a reason for ``/healthz`` to answer 503: a restart frees no disk
space and forgets which message was sent, so an orchestrator restarting on 503 would turn
one unrecorded message into one duplicate per restart.  It is listed there, logged as an
error, told to the operator targets and shown in ``/metrics``.

Time: due times are stored as wall-clock Unix times (they outlive the process, and
``status`` shows them), but waits run on the monotonic clock.  Each pending row's due time
becomes a monotonic deadline when this process first sees it, never further ahead than
the policy can have set it (``max_backoff`` for a retry, the row's own settle window for a
new alert), and the wall clock is not asked again for it; ages (``max_age``) count the
same way.  So a wall clock stepped back or forward moves no deadline of a running daemon,
and a restart after a step back delays no row by more than its backoff or settle window.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, TextIO
from urllib.parse import urlsplit, urlunsplit

import apprise
import orjson

from watcher import escape, log
from watcher.backoff import backoff
from watcher.clock import iso, utcnow
from watcher.config import Settings, Target
from watcher.errors import DeliveryError, StateError, TemplateRefused, WatcherError
from watcher.metrics import Metrics
from watcher.notify import webhook
from watcher.notify.render import JSON_SCHEMES, Message, Queued, body_format, compose
from watcher.notify.templates import Template
from watcher.store import Group, Store

if TYPE_CHECKING:
    from watcher.rules.model import Rule

# The longest the delivery loop sleeps with nothing due: it then reads the outbox again,
# so that dead letters `resend` put back beside a running daemon go out within this.
IDLE = 10.0
# State writes that failed are retried at least this often, whatever max_backoff says:
# a write is cheap, and a stopped target should go on soon after the disk has room.
STATE_RETRY_CAP = 60.0
# How long a claim keeps other instances off a message: well past one send (Apprise's HTTP
# timeouts are 4 s to connect and 4 s to read, SMTP's 15 s) and its record, also when the
# send waits for a free worker thread.  A leader killed mid-send delays that one message by
# this much: the next leader sends it once the claim expired.
CLAIM_LEASE = 60.0

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
        with _SendLog() as captured:
            ok = sender.notify(body=message.body, title=message.title,
                               body_format=APPRISE_FORMATS[message.format],
                               notify_type=apprise.NotifyType(message.notify_type))
        if not ok:
            detail = " ".join(captured.getvalue().split())[-300:] or "the target refused it"
            raise DeliveryError(log.redactor.text(detail))


_current_send: contextvars.ContextVar[_SendLog | None] = contextvars.ContextVar(
    "watcher_current_send", default=None)


class _SendLog(logging.Handler):
    """Apprise's warnings and errors about one send, as text.

    Not ``apprise.LogCapture``: its handler takes every record of the ``apprise`` logger,
    so sends running at once in the thread pool read each other's failures (one target's
    ``Unparseable URL`` became the reason shown for another).  This one keeps only the
    records logged in the context of its own send; Apprise runs its own worker threads in
    a copy of the caller's context, so their records are kept too.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.buffer = io.StringIO()
        self._token: contextvars.Token[_SendLog | None] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if _current_send.get() is self:
            try:
                text = record.getMessage()
            except (TypeError, ValueError):  # a plugin's bad format string
                text = str(record.msg)
            self.buffer.write(text + "\n")

    def __enter__(self) -> io.StringIO:
        self._token = _current_send.set(self)
        logging.getLogger("apprise").addHandler(self)
        return self.buffer

    def __exit__(self, *_exc: object) -> None:
        logging.getLogger("apprise").removeHandler(self)
        if self._token is not None:
            _current_send.reset(self._token)


def with_idempotency_key(target: Target, key: str) -> str:
    """Webhook URLs get the key as an ``Idempotency-Key`` header and a payload field."""
    url = target.url.reveal()  # what Apprise sends to
    if target.scheme not in JSON_SCHEMES:  # the webhook schemes
        return url
    parts = urlsplit(url)
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


@dataclass
class Hold:
    """A target stopped because the state database failed it: nothing is sent to it
    until every one of ``writes`` (the records still to be made) succeeded."""

    reason: str
    since: float                               # wall clock, for people
    until: float                               # monotonic: the next try
    attempts: int = 0
    writes: list[Callable[[], None]] = field(default_factory=list)


class Deliverer:
    """Drains the outbox, one task per target (the module docstring has the outcomes)."""

    def __init__(self, settings: Settings, store: Store, senders: Mapping[str, Sender], *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 metrics: Metrics | None = None, operator: OperatorNotices | None = None) -> None:
        self.settings = settings
        self.store = store
        self.senders = senders
        self.clock = clock            # wall: what is stored and shown
        self.monotonic = monotonic    # what waits and ages are measured on
        self.metrics = metrics or Metrics()
        self.operator = operator
        self._wake = asyncio.Event()
        self.log = log.get()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._failing: dict[str, tuple[float, str]] = {}  # target -> (wall since, last reason)
        self._holds: dict[str, Hold] = {}
        self._templates: dict[str, Template] = {}  # queued template source -> compiled
        self._deadlines: dict[int, tuple[float, float]] = {}  # row -> (stored due_at, monotonic)
        self._born: dict[int, float] = {}     # row -> its creation, on the monotonic clock
        self._sent: set[int] = set()          # rows sent whose record the state refused
        # Who this instance is, in the outbox's claims (the host and pid are for people).
        self.owner = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def configure(self, settings: Settings, senders: Mapping[str, Sender]) -> None:
        """Deliver with a reloaded config from now on; what is in flight finishes as it is."""
        self.settings, self.senders = settings, senders

    def poke(self) -> None:
        """New alerts were committed: the loop reads the outbox again now, not at its next
        deadline."""
        self._wake.set()

    # Scheduling ----------------------------------------------------------------------

    def _schedule(self) -> dict[str, list[tuple[float, int]]]:
        """Per target, (monotonic deadline, row) of every pending row not already sent."""
        rows = self.store.pending()
        wall, now = self.clock(), self.monotonic()
        policy = self.settings.delivery
        out: dict[str, list[tuple[float, int]]] = {}
        for row in rows:
            due_at, claimed = row.due_at, False
            if (row.claimed_by not in (None, self.owner) and row.claim_until is not None
                    and not self.store.sole_writer):
                # Another instance is sending it: not before its claim expires.
                claimed = row.claim_until > due_at
                due_at = max(due_at, row.claim_until)
            known = self._deadlines.get(row.id)
            if known is None or known[0] != due_at:
                # How far ahead this row can rightly be: a due time further away than that
                # was stored before the wall clock stepped back, and is not waited for.
                limit = (CLAIM_LEASE if claimed else policy.max_backoff if row.attempts else
                         max(row.settle_until - row.created_at, 0.0) if row.settle_until else 0.0)
                known = (due_at, now + min(max(due_at - wall, 0.0), limit))
                self._deadlines[row.id] = known
            self._born.setdefault(row.id, now - max(wall - row.created_at, 0.0))
            if row.id not in self._sent:
                out.setdefault(row.target, []).append((known[1], row.id))
        pending = {row.id for row in rows}
        for table in (self._deadlines, self._born):
            for gone in table.keys() - pending:
                del table[gone]
        self._sent &= pending  # a row no longer pending was recorded
        return out

    def start_due(self) -> float | None:
        """Start a drain task for every target with due messages and none running; return
        when (monotonic) the next falls due, leaving out the targets being drained: a
        drain picks up what falls due meanwhile, and wakes the loop when it ends."""
        schedule = self._schedule()
        now = self.monotonic()
        next_at: float | None = None
        for target in schedule.keys() | self._holds.keys():
            task = self._inflight.get(target)
            if task is not None and not task.done():
                continue
            hold = self._holds.get(target)
            first = hold.until if hold else min(deadline for deadline, _ in schedule[target])
            if first <= now:
                self._inflight[target] = asyncio.create_task(self._drain_target(target),
                                                             name=f"deliver:{target}")
            elif next_at is None or first < next_at:
                next_at = first
        return next_at

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
        unreadable = False
        while not stop.is_set():
            next_at = None
            try:
                next_at = self.start_due()
            except WatcherError as exc:
                if not unreadable:  # once when it starts, once when it ends
                    self.log.error("notify.outbox_unreadable", reason=str(exc))  # noqa: TRY400
                unreadable = True
            else:
                if unreadable:
                    self.log.info("notify.outbox_readable")
                unreadable = False
            delay = IDLE if next_at is None else min(IDLE, max(0.05, next_at - self.monotonic()))
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            self._wake.clear()

    # One target ----------------------------------------------------------------------

    async def _drain_target(self, target: str) -> None:
        """Send ``target``'s due messages, including those that fall due meanwhile."""
        try:
            while self._resume(target):
                now = self.monotonic()
                due = [row for deadline, row in self._schedule().get(target, ()) if deadline <= now]
                if not due:
                    return
                groups, broken = self.store.groups(due)
                for row, reason in broken:
                    self._dead(target, (row,), reason, attempts=1)
                for group in groups:
                    if target in self._holds:
                        break
                    await self._send_group(group)
        except StateError as exc:
            self._hold(target, f"cannot read the outbox: {exc}")
        except Exception as exc:  # a bug here must stop this target, never spin or kill the loop
            self.log.exception("notify.drain_crashed", target=target)
            self._hold(target, log.redactor.text(f"delivery crashed: {type(exc).__name__}: {exc}"))
        finally:
            self._wake.set()  # the loop works out again what falls due next

    async def _send_group(self, group: Group) -> None:
        sender = self.senders.get(group.target)
        target = self.settings.targets.get(group.target)
        if sender is None or target is None:
            self._dead(group.target, group.rows, f"target {group.target!r} is no longer "
                       "configured", attempts=group.attempts + 1)
            return
        message = self._render(group, target)
        if message is None:
            return
        wall = self.clock()
        if not self.store.claim(group.rows, self.owner, wall, wall + CLAIM_LEASE):
            self.log.info("notify.claimed_elsewhere", target=group.target,
                          key=group.idempotency_key, note="another instance sends it")
            return
        try:
            await sender.send(message)
        except DeliveryError as exc:
            self._failed(group, str(exc))
            return
        except Exception as exc:  # a plugin bug must not kill the delivery loop
            self._failed(group, log.redactor.text(f"{type(exc).__name__}: {exc}"))
            return
        self._sent.update(group.rows)
        self.metrics.notification_sent(group.target)
        self.log.info("notify.sent", target=group.target, alerts=len(group.rows),
                      attempts=group.attempts + 1, key=group.idempotency_key)
        if group.target in self._failing:
            del self._failing[group.target]
            self.log.info("notify.recovered", target=group.target)
            self._resolved(group.target, "dead_letter", f"target {group.target} delivers again")
        sent_at = self.clock()
        self._record(group.target, f"message {group.idempotency_key} was sent but cannot be "
                     "recorded",
                     lambda: self.store.mark_sent(group.rows, sent_at))

    def _render(self, group: Group, target: Target) -> Message | None:
        """The message for ``group``; None when rows that can never render were
        dead-lettered instead (the rest of the group goes in the next message)."""
        try:
            rule = self._queued_templates(group)
        except TemplateRefused as exc:  # it would be refused on every attempt
            self._dead(group.target, group.rows, log.redactor.text(
                f"cannot render the message: the template of rule {group.group!r}, as queued, "
                f"is refused: {exc}"), attempts=group.attempts + 1)
            return None
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        public_url = self.settings.http.public_url if self.settings.http else None
        try:
            return compose(target, list(group.events), key=group.idempotency_key, today=today,
                           rule=rule, public_url=public_url)
        except Exception as whole:  # rendering is pure: trying again cannot help
            broken: list[tuple[int, Exception]] = []
            for row, event in zip(group.rows, group.events, strict=True):
                try:
                    compose(target, [event], key=group.idempotency_key, today=today, rule=rule,
                            public_url=public_url)
                except Exception as alone:
                    broken.append((row, alone))
            for row, error in broken or [(r, whole) for r in group.rows]:
                self._dead(group.target, (row,), log.redactor.text(
                    f"cannot render the message: {type(error).__name__}: {error}"),
                    attempts=group.attempts + 1)
            return None

    def _queued_templates(self, group: Group) -> Queued | Rule | None:
        """The rule templates ``group`` was queued with (compiled once per source).

        A row queued before the outbox kept them (schema 8) has a group but no sources:
        its rule is found by name, as it was then.
        """
        if not group.group:
            return None
        if group.title_tpl is None and group.body_tpl is None:
            return next((r for r in self.settings.rules if r.name == group.group), None)
        return Queued(group.group, title=self._template(group.title_tpl),
                      body=self._template(group.body_tpl))

    def _template(self, source: str | None) -> Template | None:
        if source is None:
            return None
        if source not in self._templates:
            if len(self._templates) >= 64:
                self._templates.clear()
            self._templates[source] = Template(source)
        return self._templates[source]

    def _failed(self, group: Group, reason: str) -> None:
        wall, now = self.clock(), self.monotonic()
        policy = self.settings.delivery
        self.metrics.notification_failed(group.target)
        age = now - min(self._born.get(row, now) for row in group.rows)
        since = self._failing.get(group.target, (wall, ""))[0]
        if group.target not in self._failing:
            self.log.warning("notify.failing", target=group.target, reason=reason)
        self._failing[group.target] = (since, reason)
        if age >= policy.max_age:
            self._dead(group.target, group.rows, reason, attempts=group.attempts + 1)
            return
        delay = backoff(policy.retry_backoff, policy.max_backoff, group.attempts)
        due = wall + delay
        for row in group.rows:
            self._deadlines[row] = (due, now + delay)
        self.log.debug("notify.retry_scheduled", target=group.target, reason=reason,
                       attempts=group.attempts + 1, in_seconds=round(delay, 1))
        self._record(group.target, "a failed send cannot be recorded",
                     lambda: self.store.mark_retry(group.rows, wall, due, reason))

    def _dead(self, target: str, rows: Sequence[int], reason: str, *, attempts: int) -> None:
        """Give up on ``rows``: dead letters, kept for ``status`` and ``resend``."""
        self.metrics.notification_dead_lettered(target, len(rows))
        self.log.error("notify.dead_lettered", target=target, alerts=len(rows),
                       attempts=attempts, reason=reason)
        if self.operator is not None:
            self.operator.problem(
                f"target {target}", "dead_letter",
                f"{len(rows)} alert(s) for target {target} were dead-lettered after "
                f"{attempts} attempt(s): {reason}. `openrouter-watcher status` lists the "
                f"dead letters; `openrouter-watcher resend {target}` sends them again.",
                exclude={target})
        now = self.clock()
        self._record(target, "a dead letter cannot be recorded",
                     lambda: self.store.mark_dead(rows, now, reason))

    def _resolved(self, target: str, kind: str, text: str) -> None:
        if self.operator is not None:
            self.operator.resolved(f"target {target}", kind, text)

    # The state refusing writes ---------------------------------------------------------

    def _record(self, target: str, what: str, write: Callable[[], None]) -> None:
        """Make a record in the outbox; if the state refuses it, stop ``target`` until the
        write succeeds (retried with backoff).  Behind a stopped target's own records, a
        record waits its turn."""
        held = self._holds.get(target)
        if held is not None and held.writes:
            held.writes.append(write)
            return
        try:
            write()
        except StateError as exc:
            self._hold(target, f"{what}: {exc}", write)

    def _hold(self, target: str, reason: str, write: Callable[[], None] | None = None) -> None:
        held = self._holds.get(target)
        attempts = held.attempts + 1 if held else 0
        policy = self.settings.delivery
        delay = backoff(policy.retry_backoff, min(policy.max_backoff, STATE_RETRY_CAP), attempts)
        writes = held.writes if held else []
        if write is not None:
            writes.append(write)
        self._holds[target] = Hold(reason=held.reason if held else reason,  # the cause
                                   since=held.since if held else self.clock(),
                                   until=self.monotonic() + delay, attempts=attempts,
                                   writes=writes)
        self.metrics.target_stopped(target, stopped=True)
        if held is None:
            text = (f"target {target} is stopped: {reason}. Nothing more is sent to it until "
                    f"the state database can be written again (retried every "
                    f"{min(policy.max_backoff, STATE_RETRY_CAP):g}s at most).")
            self.log.error("notify.target_stopped", target=target, reason=reason,
                           retry_in_seconds=round(delay, 1))
            if self.operator is not None:
                self.operator.problem(f"target {target}", "state", text)
        else:
            self.log.debug("notify.still_stopped", target=target, reason=reason,
                           attempts=attempts, retry_in_seconds=round(delay, 1))

    def _resume(self, target: str) -> bool:
        """Whether ``target`` may send now: not stopped, or its pending record was made."""
        held = self._holds.get(target)
        if held is None:
            return True
        if held.until > self.monotonic():
            return False
        while held.writes:
            try:
                held.writes[0]()
            except StateError as exc:
                self._hold(target, f"the state database still refuses writes: {exc}")
                return False
            held.writes.pop(0)
        del self._holds[target]
        self.metrics.target_stopped(target, stopped=False)
        self.log.info("notify.target_resumed", target=target, stopped_for_seconds=round(
            self.clock() - held.since, 1))
        self._resolved(target, "state", f"target {target} goes on: the state database "
                       "records its messages again")
        return True

    def release_claims(self) -> None:
        """Give back the claims of messages not sent (this instance stops sending): the
        next leader sends them without waiting for ``CLAIM_LEASE``.  A state that cannot
        be written keeps them until they expire."""
        try:
            self.store.release_claims(self.owner)
        except StateError as exc:
            self.log.warning("notify.claims_kept", reason=str(exc),
                             note=f"other instances send them once they expire ({CLAIM_LEASE:g}s)")

    # What /healthz and /metrics show ---------------------------------------------------

    def failing(self) -> set[str]:
        """Configured targets whose last send failed."""
        return set(self._failing) & set(self.settings.targets)

    def stopped(self) -> set[str]:
        """Targets stopped because the state database failed them."""
        return set(self._holds)

    def warnings(self) -> list[str]:
        """Failing and stopped targets, for ``/healthz`` (which stays 200 for them)."""
        out = []
        for target, held in sorted(self._holds.items()):
            out.append(f"target {target}: stopped since {iso(held.since)}: {held.reason}")
        for target, (since, reason) in sorted(self._failing.items()):
            if target in self.settings.targets:  # not one a reload removed
                out.append(f"target {target}: failing since {iso(since)}: {reason}")
        return [log.redactor.text(text) for text in out]


class NoticeMemory(Protocol):
    """Where the problems being told are kept between processes (the state database)."""

    def notices(self) -> dict[tuple[str, str], tuple[float, float]]: ...
    def notice_told(self, subject: str, kind: str, told_at: float) -> None: ...
    def notice_resolved(self, subject: str, kind: str) -> None: ...


class OperatorNotices:
    """The watcher's own trouble, told to the ``operator`` targets.

    A problem (the key refused, a suspect response held, a target dead-lettering) is told
    when it starts and again at most every ``repeat_interval`` while it lasts; its end is
    told once.  Notices are sent straight away in the background, outside the outbox (so
    they go out even when the state cannot be written): they repeat while the problem
    lasts, and the log has every one of them.

    With a ``memory`` (the state database), what is being told outlives the process: a
    ``once`` run from a timer tells a lasting problem once per ``repeat_interval`` and its
    end once, as the daemon does.  Within a process the monotonic clock times the repeats;
    across processes the stored wall-clock time does.  A memory that cannot be written is
    logged and the notices go out all the same.
    """

    def __init__(self, settings: Settings, senders: Mapping[str, Sender], *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 memory: NoticeMemory | None = None) -> None:
        self.settings = settings
        self.senders = senders
        self.clock = clock
        self.monotonic = monotonic
        self.memory = memory
        self.log = log.get()
        self._active: dict[tuple[str, str], float] = {}  # (subject, kind) -> last told
        self._tasks: set[asyncio.Task[None]] = set()
        if memory is not None:
            try:
                stored = memory.notices()
            except WatcherError as exc:
                self.log.error("operator.memory_unreadable", reason=str(exc))  # noqa: TRY400
                stored = {}
            now, wall = self.monotonic(), self.clock()
            for key, (_since, told_at) in stored.items():
                # As long ago, on this process's clock, as the stored time says (a stored
                # time in the future counts as now).
                self._active[key] = now - max(0.0, wall - told_at)

    def configure(self, settings: Settings, senders: Mapping[str, Sender]) -> None:
        """Tell with a reloaded config from now on (its operator targets, its repeat interval)."""
        self.settings, self.senders = settings, senders

    def problem(self, subject: str, kind: str, text: str, *, exclude: Iterable[str] = ()) -> None:
        """``subject`` (a watch's name, or ``target NAME``) has a problem of ``kind``;
        ``exclude`` names operator targets not to tell (the failing target itself)."""
        now = self.monotonic()
        last = self._active.get((subject, kind))
        if last is not None and now - last < self.settings.operator.repeat_interval:
            return
        self._active[subject, kind] = now
        self._remember(lambda memory: memory.notice_told(subject, kind, self.clock()))
        self.log.warning("operator.problem", subject=subject, kind=kind, message=text)
        self._tell(f"openrouter-watcher: {subject}: problem", text, exclude)

    def resolved(self, subject: str, kind: str, text: str) -> None:
        if self._active.pop((subject, kind), None) is None:
            return
        self._remember(lambda memory: memory.notice_resolved(subject, kind))
        self.log.info("operator.resolved", subject=subject, kind=kind, message=text)
        self._tell(f"openrouter-watcher: {subject}: recovered", text, ())

    def _remember(self, write: Callable[[NoticeMemory], None]) -> None:
        if self.memory is None:
            return
        try:
            write(self.memory)
        except WatcherError as exc:
            self.log.error("operator.memory_unwritable", reason=str(exc),  # noqa: TRY400
                           note="the notice is sent; a later `once` may repeat it")

    def _tell(self, title: str, text: str, exclude: Iterable[str]) -> None:
        key = f"operator-{self.clock():.0f}"
        skip = set(exclude)
        for name in self.settings.operator.notify:
            sender = self.senders.get(name)
            if sender is not None and name not in skip:
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
