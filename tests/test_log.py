"""Logs off a terminal: one JSON object per line, third-party records included, redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from watcher import log


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    log.redactor.update(["sk-or-v1-canary"])
    log.configure("info", stream=out)
    try:
        yield out
    finally:
        log.redactor.update([])
        log.configure("info")


def test_our_and_third_party_records_are_json_lines_with_secrets_masked(stream: io.StringIO) -> None:
    log.get().info("cycle.changed", watch="models", note="key sk-or-v1-canary")
    logging.getLogger("aiohttp.client").warning("refused %s", "sk-or-v1-canary")
    try:
        raise ValueError("with sk-or-v1-canary inside")
    except ValueError:
        logging.getLogger("asyncio").exception("task failed")
    text = stream.getvalue()
    assert "sk-or-v1-canary" not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["event"] for r in records] == ["cycle.changed", "refused ***", "task failed"]
    assert records[1]["logger"] == "aiohttp.client"
    assert records[1]["level"] == "warning"
    assert "ValueError: with *** inside" in records[2]["exception"]


def test_a_terminal_gets_readable_lines() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    log.configure("info", stream=out)
    try:
        log.get().info("cycle.changed", watch="models")
    finally:
        log.configure("info")
    assert not out.getvalue().startswith("{")
    assert "cycle.changed" in out.getvalue()
