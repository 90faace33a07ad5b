from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeOpenRouter


@pytest.fixture
def fake_openrouter() -> Iterator[FakeOpenRouter]:
    server = FakeOpenRouter().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a config file (and the default rules next to it) and return its path."""

    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENROUTER_WATCHER_CONFIG", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("NO_COLOR", "1")


# Property tests run on slow CI machines too: no per-example deadline.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("default", deadline=None)
_hypothesis_settings.load_profile("default")


@pytest.fixture
def webhook():
    from tests.sinks import WebhookSink

    sink = WebhookSink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def smtp():
    from tests.sinks import SMTPServer

    server = SMTPServer().start()
    try:
        yield server
    finally:
        server.stop()
