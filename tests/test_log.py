"""Logs off a terminal: one JSON object per line, third-party records included, redacted."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
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


FIRST_RECORD = """
import io, json, logging, sys
from watcher import log
log.redactor.update(["sk-or-v1-canary"])
log.configure("info", stream=sys.stdout, json=True)
assert "structlog" not in sys.modules  # configure only keeps the settings
logging.getLogger("aiohttp.client").warning("refused %s", "sk-or-v1-canary")
assert "structlog" in sys.modules
log.get().info("cycle.changed", watch="models")
"""


def test_a_third_party_record_before_any_log_line_sets_structlog_up_and_is_redacted() -> None:
    # structlog is set up on first use (watcher.log): a stdlib record that comes first must
    # still leave as one redacted JSON object, never as Python's plain last-resort text.
    proc = subprocess.run([sys.executable, "-c", FIRST_RECORD], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["event"], r.get("logger"), r["level"]) for r in records] == [
        ("refused ***", "aiohttp.client", "warning"), ("cycle.changed", None, "info")]
