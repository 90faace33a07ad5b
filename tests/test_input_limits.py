"""Hostile sizes and shapes of input give clear errors: no traceback, no MemoryError, no hang.

Config mistakes exit 2 naming the file (and line and key where there is one), a query that
makes no sense is a 400, and a response we cannot use is a failed check with its reason.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.fakes import FakeOpenRouter, Reply
from tests.test_cli import cli
from watcher.store import Store
from watcher.web import routes as web_routes

WATCH = "watches: [{{name: models, url: '{url}', interval: 1h{extra}}}]\n"


def config_file(tmp_path: Path, url: str = "http://127.0.0.1:9/m", extra: str = "",
                tail: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("state_dir: state\n" + WATCH.format(url=url, extra=extra) + tail)
    return path


def assert_config_error(proc: object, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr  # type: ignore[attr-defined]
    stderr: str = proc.stderr  # type: ignore[attr-defined]
    assert stderr.startswith("openrouter-watcher: config error: "), stderr
    for needle in needles:
        assert needle in stderr
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1


def test_yaml_nested_5000_deep_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("watches: " + "[" * 5000 + "]" * 5000 + "\n")
    proc = cli("check", "--config", str(path))
    assert_config_error(proc, f"{path}:1: ")
    # Our composer's bound, or libyaml's own (its scanner reads a flow line ahead).
    assert re.search(r"YAML nested more than 64 deep|invalid YAML: exceeded maximum nesting",
                     proc.stderr), proc.stderr


def test_a_rule_file_nested_deep_is_a_config_error_naming_it(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n" + "".join("  " * i + "- x:\n" for i in range(1, 200)))
    path = config_file(tmp_path, tail="rules: [rules.yaml]\n")
    assert_config_error(cli("check", "--config", str(path)), f"{rules}:", "nested more than")


def test_api_key_file_dev_zero_is_a_config_error(tmp_path: Path) -> None:
    path = config_file(tmp_path, extra=", api_key_file: /dev/zero")
    assert_config_error(cli("check", "--config", str(path), timeout=30),
                        f"{path}:2: watches[0].api_key_file: /dev/zero: not a regular file")


def test_api_key_file_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "key")
    path = config_file(tmp_path, extra=", api_key_file: key")
    assert_config_error(cli("check", "--config", str(path), timeout=30), "not a regular file")


def test_a_huge_api_key_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(b"k" * (1 << 20))
    path = config_file(tmp_path, extra=", api_key_file: key")
    assert_config_error(cli("check", "--config", str(path)), "api_key_file", "file is too large")


def test_a_url_file_that_is_a_device_is_a_config_error(tmp_path: Path) -> None:
    path = config_file(tmp_path, tail="targets: {t: {url_file: /dev/urandom}}\n")
    assert_config_error(cli("check", "--config", str(path), timeout=30),
                        "targets.t.url_file: /dev/urandom: not a regular file")


@pytest.mark.parametrize("pattern", ["/dev/zer*", "/dev/std*"])
def test_a_rule_glob_matching_devices_is_a_config_error(tmp_path: Path, pattern: str) -> None:
    path = config_file(tmp_path, tail=f"rules: ['{pattern}']\n")
    assert_config_error(cli("check", "--config", str(path), timeout=30),
                        f"{path}:3: rules[0]: '{pattern}' matches /dev/", "not a regular file")


def test_a_rule_path_that_is_a_device_is_a_config_error(tmp_path: Path) -> None:
    path = config_file(tmp_path, tail="rules: [/dev/zero]\n")
    assert_config_error(cli("check", "--config", str(path), timeout=30),
                        "rule file /dev/zero is not a regular file")


def test_a_config_that_is_a_device_is_a_config_error() -> None:
    assert_config_error(cli("check", "--config", "/dev/zero", timeout=30),
                        "/dev/zero: not a regular file")


@pytest.fixture
def state(tmp_path: Path, fake_openrouter: FakeOpenRouter) -> Path:
    """A config whose state has one baseline and one change with hostile text."""
    path = config_file(tmp_path, url=fake_openrouter.url)
    models = [{"id": "a/plain", "name": "Plain", "pricing": {"prompt": "0.000001"}}]
    hostile = [
        {"id": "=evil/cmd", "name": '=HYPERLINK("http://x.invalid","click")',
         "pricing": {"prompt": "=1+1"}},
        {"id": "b/plus", "name": "+cmd|' /C calc'!A0", "pricing": {"prompt": "-1"}},
        {"id": "c/at", "name": "@SUM(1+1)*cmd|' /C calc'!A0"},
        {"id": "d/minus", "name": "-2+3+cmd|' /C calc'!A0"},
        {"id": "e/tab", "name": "\t=1+1"},
        {"id": "f/cr", "name": "\r=1+1"},
    ]
    changed = [{**models[0], "pricing": {"prompt": "0.0000004"}}, *hostile]
    fake_openrouter.set_script([Reply(body=json.dumps({"data": models}).encode()),
                                Reply(body=json.dumps({"data": changed}).encode())])
    assert cli("once", "--config", str(path)).returncode == 0
    assert cli("once", "--config", str(path)).returncode == 0
    return path


def test_csv_cells_that_would_be_formulas_are_neutralised(state: Path) -> None:
    # Bytes, not text mode: universal newlines would turn the CR in a cell into LF.
    proc = subprocess.run([sys.executable, "-m", "watcher", "history", "--format", "csv",
                           "--config", str(state)], capture_output=True, timeout=60, check=True)
    rows = list(csv.DictReader(io.StringIO(proc.stdout.decode(), newline="")))
    names = {r["model"]: r["name"] for r in rows}
    assert names["'=evil/cmd"] == "'=HYPERLINK(\"http://x.invalid\",\"click\")"
    assert names["b/plus"] == "'+cmd|' /C calc'!A0"
    assert names["c/at"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert names["d/minus"] == "'-2+3+cmd|' /C calc'!A0"
    # Neutralised first, then the control character is shown as a space (escape.plain).
    assert names["e/tab"] == "' =1+1"
    assert names["f/cr"] == "' =1+1"
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), row
            assert not cell.startswith("-") or cell.replace(".", "").lstrip("-").isdigit(), row
    # Numbers stay numbers: a negative change, and the variable price "-1".
    price = next(r for r in rows if r["model"] == "a/plain")
    assert (price["old"], price["new"], price["change_pct"]) == ("0.000001", "0.0000004", "-60.0")
    plus = json.loads(next(r for r in rows if r["model"] == "b/plus")["new"])
    assert plus["pricing"]["prompt"] == "-1"
    # JSON is the data as it came: nothing is rewritten there.
    events = [json.loads(line) for line in
              cli("history", "--format", "json", "--config", str(state)).stdout.splitlines()]
    assert "=evil/cmd" in {e["model"] for e in events}


@pytest.mark.parametrize("age", ["99999999999d", "9" * 400 + "s", "36501d"])
def test_history_since_out_of_range_exits_2(state: Path, age: str) -> None:
    assert_config_error(cli("history", "--since", age, "--config", str(state)),
                        "--since: ")


def test_history_since_a_century_works(state: Path) -> None:
    proc = cli("history", "--since", "36500d", "--format", "json", "--config", str(state))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) >= 7


@pytest.fixture
async def client(state: Path) -> AsyncIterator[TestClient]:
    store = Store.open(state.parent / "state")
    from watcher import config

    app = web.Application()
    web_routes.register(app, store=store, settings=config.load(state))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        store.close()


@pytest.mark.parametrize("path", ["/", "/feed.atom", "/api/events"])
@pytest.mark.parametrize("query", ["since=99999999999d", "since=" + "9" * 400 + "d",
                                   "limit=" + "9" * 5000, "limit=%D9%A3"])
async def test_pages_answer_400_to_queries_out_of_range(client: TestClient, path: str,
                                                        query: str) -> None:
    resp = await client.get(f"{path}?{query}")
    assert resp.status == 400
    text = await resp.text()
    assert "Traceback" not in text
    assert ("since" in text) or ("limit" in text)


def test_a_response_nested_1000_deep_is_a_failed_check_with_its_reason(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    path = config_file(tmp_path, url=fake_openrouter.url)
    deep = b'{"data": [{"id": "a", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}]}"
    fake_openrouter.set_script([Reply(body=deep)])
    proc = cli("once", "--config", str(path))
    assert proc.returncode == 1
    assert "models: FAILED: model 'a' cannot be stored" in proc.stdout
    assert "nested more than 254 deep" in proc.stdout
    assert "CRASHED" not in proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    status = cli("status", "--config", str(path), "--format", "json")
    assert json.loads(status.stdout)["watches"]["models"]["outcome"] == "failed"
