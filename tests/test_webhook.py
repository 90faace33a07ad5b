"""The JSON webhook: the event document is the request body, sent by Apprise's json:// plugin."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.sinks import WebhookSink
from watcher.config import Target
from watcher.errors import DeliveryError
from watcher.notify.deliver import AppriseSender
from watcher.notify.render import compose

EVENT = {"watch": "models", "type": "model_removed", "model": "a/b", "name": "A", "field": None,
         "old": None, "new": None, "change_pct": None, "detected_at": "2026-01-04T19:13:29Z"}


def send(target: Target, events: list[dict[str, object]], key: str = "key-1") -> None:
    with ThreadPoolExecutor(1) as executor:
        asyncio.run(AppriseSender(target, executor).send(compose(target, events, key=key)))


def test_the_body_is_the_event_document_with_headers_and_extras(webhook: WebhookSink) -> None:
    url = webhook.url() + "?+X-Team=core&:source=watcher&-q=1"
    send(Target("hook", url), [EVENT])
    (got,) = webhook.delivered
    assert got.payload == {"source": "watcher", "idempotency_key": "key-1",
                           "title": "OpenRouter models: 1 removed", "events": [EVENT], "more": 0}
    assert got.headers["Idempotency-Key"] == "key-1"
    assert got.headers["X-Team"] == "core"
    assert got.headers["Content-Type"] == "application/json"


def test_other_formats_keep_apprises_envelope_with_the_notify_type(webhook: WebhookSink) -> None:
    send(Target("hook", webhook.url(), format="text"), [EVENT])
    (got,) = webhook.delivered
    assert got.payload["type"] == "failure"
    assert got.payload["title"] == "OpenRouter models: 1 removed"
    assert "a/b" in got.payload["message"]


def test_a_refused_post_is_a_delivery_error(webhook: WebhookSink) -> None:
    webhook.fail_first = 1
    with pytest.raises(DeliveryError, match="error=500"):
        send(Target("hook", webhook.url()), [EVENT])
    assert len(webhook.requests) == 1
