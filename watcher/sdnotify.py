"""systemd's notify protocol: datagrams to ``$NOTIFY_SOCKET``, no library needed.

``READY=1`` once the first polls are scheduled, ``STATUS=`` whenever the summary line
changes, ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` while every poll loop makes progress,
and ``STOPPING=1`` on the way out.  The pings come from a task on the daemon's own event
loop, so a blocked loop stops them as surely as a stuck poll does; systemd then kills the
daemon and ``Restart=on-failure`` starts it again.  The daemon is known here only by the
two callables :func:`supervise` is given.

Without ``$NOTIFY_SOCKET`` (a terminal, Docker) nothing here runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Mapping

from watcher import log

STATUS_REFRESH = 10.0  # seconds between STATUS= checks when there is no watchdog


class Notifier:
    """Sends notify messages to one socket; a send that fails is logged, never raised."""

    def __init__(self, address: str) -> None:
        # "@name" is Linux's abstract namespace: a leading NUL byte on the wire.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(0.0)  # non-blocking: never stall the event loop
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notifier | None:
        address = env.get("NOTIFY_SOCKET", "")
        return cls(address) if address.startswith(("/", "@")) else None

    def send(self, *fields: str) -> bool:
        message = "\n".join(fields).encode()
        try:
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.get().warning("sdnotify.send_failed", reason=exc.strerror or str(exc))
            return False
        self._warned = False
        return True

    def close(self) -> None:
        self._sock.close()


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """``$WATCHDOG_USEC`` in seconds, when it is meant for this process; else None."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000


async def supervise(notifier: Notifier, stop: asyncio.Event, *,
                    stuck: Callable[[], list[str]], status_line: Callable[[], str],
                    watchdog: float | None) -> None:
    """Tell systemd we are ready, keep ``STATUS=`` current, ping the watchdog while every
    poll loop progresses; say ``STOPPING=1`` when ``stop`` is set (or on cancellation).

    ``stuck`` says why the daemon makes no progress (empty while it does), ``status_line``
    is the one-line summary for ``STATUS=``: both are asked every period.
    """
    logger = log.get()
    period = min(watchdog / 2, STATUS_REFRESH) if watchdog else STATUS_REFRESH
    last_status = status_line()
    notifier.send("READY=1", f"STATUS={last_status}")
    logger.info("sdnotify.ready", watchdog_seconds=watchdog)
    withheld = False
    try:
        while not stop.is_set():
            reasons = stuck()
            if watchdog is not None:
                if not reasons:
                    notifier.send("WATCHDOG=1")
                    if withheld:
                        logger.info("watchdog.resumed")
                elif not withheld:
                    logger.error("watchdog.withheld", reasons=reasons,
                                 note="systemd restarts the daemon if this lasts")
                withheld = bool(reasons)
            line = f"stuck: {reasons[0]}" if reasons else status_line()
            if line != last_status:
                notifier.send(f"STATUS={line}")
                last_status = line
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=period)
    finally:
        notifier.send("STOPPING=1", "STATUS=stopping")
