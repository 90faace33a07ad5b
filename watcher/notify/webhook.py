"""The JSON webhook: Apprise's ``json://`` plugin, POSTing our event document as the body.

Apprise's own ``json://`` wraps every body in its envelope (``{"version", "title",
"message", "type", ...}``), so the document would arrive as a JSON *string* inside it.
:class:`RawJSON` is that plugin with one change: the body is the request's payload.
Everything else stays Apprise's: the URL options (``+Header=value``, ``-param=value``,
``method=``, user:password, ``verify=``, timeouts, redirects), the throttling, the logging
that the deliverer captures for its error messages.  ``:key=value`` payload extras are
added to the document as top-level keys it does not already have.
"""

from __future__ import annotations

import logging
from typing import Any

import apprise
import orjson
import requests
from apprise.plugins.custom_json import NotifyJSON

RAW_SCHEMES = frozenset({"json", "jsons"})


class RawJSON(NotifyJSON):
    """``json://``/``jsons://`` whose body is the JSON document sent."""

    def send(self, body: str, title: str = "",  # noqa: ARG002 - the title is in the document
             notify_type: apprise.NotifyType = apprise.NotifyType.INFO,  # noqa: ARG002
             attach: Any = None, **kwargs: Any) -> bool:  # noqa: ARG002
        payload = body
        extras = {k: v for k, v in self.payload_extras.items() if v}
        if extras:
            document = orjson.loads(body)
            if isinstance(document, dict):
                payload = orjson.dumps({**extras, **document}).decode()
        headers = {"User-Agent": self.app_id, "Content-Type": "application/json",
                   **self.headers}
        auth = (str(self.user), str(self.password or "")) if self.user else None
        url = f"{'https' if self.secure else 'http'}://{self.host}"
        if isinstance(self.port, int):
            url += f":{self.port}"
        url += self.fullpath
        self.throttle()  # type: ignore[no-untyped-call]
        try:
            reply = requests.request(str(self.method), url, data=payload.encode(), params=self.params,
                                     headers=headers, auth=auth, verify=self.verify_certificate,
                                     timeout=self.request_timeout,
                                     allow_redirects=getattr(self, "redirects", True))
        except requests.RequestException as exc:
            self.logger.warning("A connection error occurred sending the JSON webhook to %s: %s",
                                self.host, type(exc).__name__)
            return False
        if not 200 <= reply.status_code < 300:
            status = NotifyJSON.http_response_code_lookup(  # type: ignore[no-untyped-call]
                reply.status_code)
            self.logger.warning("Failed to send JSON %s notification: %s%serror=%s.",
                                self.method, status, ", " if status else "", reply.status_code)
            return False
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info("Sent JSON %s notification.", self.method)
        return True


def server(url: str) -> apprise.NotifyBase | str | None:
    """What to ``Apprise.add`` for a JSON-format message to ``url``: a :class:`RawJSON`
    for ``json(s)://``, the URL itself for other schemes, None for a URL Apprise refuses."""
    if url.split("://", 1)[0].lower() not in RAW_SCHEMES:
        return url
    results = NotifyJSON.parse_url(url)  # type: ignore[no-untyped-call]
    if not results:
        return None
    try:
        return RawJSON(**results)  # type: ignore[no-untyped-call]
    except TypeError:
        return None
