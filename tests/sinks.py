"""Real receivers on 127.0.0.1: a webhook sink (aiohttp) and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import orjson
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.fakes import _free_port


@dataclass
class Received:
    """One request that reached the webhook sink."""

    headers: dict[str, str]
    payload: dict[str, Any]
    status: int
    at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> dict[str, Any]:
        """The JSON document the watcher sent: the request body itself for a json://
        message, else the JSON in the ``message`` field of Apprise's envelope."""
        if "idempotency_key" in self.payload and "message" not in self.payload:
            return self.payload
        return orjson.loads(self.payload["message"])


class WebhookSink:
    """Answers POST /hook; ``fail_first`` requests get ``fail_status``; ``stall`` hangs."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.stall = False
        self.requests: list[Received] = []
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._closing = False

    def url(self, scheme: str = "json", path: str = "hook") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{path}"

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.requests if r.status == 200]

    async def _hook(self, request: web.Request) -> web.Response:
        payload = await request.json()
        if self.stall:
            self.requests.append(Received(dict(request.headers), payload, 0))
            while not self._closing:  # hang until the sink stops
                await asyncio.sleep(0.05)
            return web.Response(status=503)
        status = self.fail_status if len(self.requests) < self.fail_first else 200
        self.requests.append(Received(dict(request.headers), payload, status))
        return web.Response(status=status, text="ok" if status == 200 else "nope")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> WebhookSink:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        self._closing = True
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.reject = False

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        if self.reject:
            return "554 5.7.1 Message rejected"
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


class SMTPServer:
    """aiosmtpd on loopback; with ``password`` set, AUTH is required and checked."""

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.user, self.password = user, password
        self.inbox = _Inbox()
        self.port = _free_port()
        self.logins: list[str] = []
        kwargs: dict[str, Any] = {}
        if password is not None:
            kwargs = {"authenticator": self._authenticate, "auth_required": True,
                      "auth_require_tls": False}
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(self, _server: Any, _session: Any, _envelope: Any, _mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.user
              and auth_data.password.decode() == self.password)
        if ok:
            self.logins.append(self.user or "")
        return AuthResult(success=ok)

    def url(self, to: str = "team@example.com") -> str:
        auth = f"{self.user}:{self.password}@" if self.password is not None else ""
        return (f"mailto://{auth}127.0.0.1:{self.port}?smtp=127.0.0.1&to={to}"
                "&from=watcher@example.com")

    @property
    def messages(self) -> list[Message]:
        return self.inbox.messages

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def mail_text(message: Message) -> str:
    """Every text part of a received mail, decoded."""
    parts = [p for p in message.walk() if p.get_content_maintype() == "text"]
    return "\n".join(str(p.get_payload(decode=True).decode()) for p in parts)  # type: ignore[union-attr]
