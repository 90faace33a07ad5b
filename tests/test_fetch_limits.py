"""Limits of one poll: the body cap over all pages, the page cap, hostile Retry-After values."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from tests.fakes import FakeOpenRouter, Reply, snapshot_bytes
from watcher import config, fetch
from watcher.app import App
from watcher.config import RetryPolicy, Watch
from watcher.errors import FetchError
from watcher.store import Store


def page(number: int, size: int, *, last: bool = False) -> Reply:
    """A page of about ``size`` bytes whose links.next is page ``number + 1``."""
    models = [{"id": f"m{number}-{i}", "pad": "x" * 900} for i in range(size // 920)]
    nxt = None if last else f"/api/v1/models?page={number + 1}"
    return Reply(body=json.dumps({"data": models, "links": {"next": nxt}}).encode())


async def fetch_with(watch: Watch, sleeps: list[float] | None = None) -> list[bytes]:
    async def sleep(seconds: float) -> None:
        (sleeps if sleeps is not None else []).append(seconds)

    async with fetch.new_session() as session:
        return await fetch.fetch(session, watch, sleep=sleep)


def watch_of(server: FakeOpenRouter, **kwargs: object) -> Watch:
    options: dict[str, object] = {"timeout": 2, "retry": RetryPolicy(attempts=1)}
    return Watch(name="models", url=server.url, interval=60, **{**options, **kwargs})  # type: ignore[arg-type]


async def test_the_body_cap_is_for_all_pages_together(fake_openrouter: FakeOpenRouter) -> None:
    # Each page is well under the 1 MB cap; the third one takes the poll over it.
    fake_openrouter.set_script([page(n, 400_000) for n in range(1, 100)])
    with pytest.raises(FetchError) as caught:
        await fetch_with(watch_of(fake_openrouter, max_body_bytes=1 << 20))
    assert "larger than the 1048576 byte cap (with the 2 pages before it)" in str(caught.value)
    assert not caught.value.retryable
    assert fake_openrouter.served == 3


async def test_pages_under_the_cap_together_are_all_read(fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([page(1, 300_000), page(2, 300_000), page(3, 300_000, last=True)])
    pages = await fetch_with(watch_of(fake_openrouter, max_body_bytes=1 << 20))
    assert len(pages) == 3


async def test_the_page_count_is_capped(fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([page(n, 1000) for n in range(1, 50)])
    with pytest.raises(FetchError, match=r"more than 5 pages \(max_pages\)") as caught:
        await fetch_with(watch_of(fake_openrouter, max_pages=5))
    assert not caught.value.retryable
    assert fake_openrouter.served == 5


def test_max_pages_is_a_config_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("watches: [{name: m, url: 'http://127.0.0.1:1/m', interval: 1m, "
                    "max_pages: 3}]\n")
    assert config.load(path).watches[0].max_pages == 3
    path.write_text("watches: [{name: m, url: 'http://127.0.0.1:1/m', interval: 1m}]\n")
    assert config.load(path).watches[0].max_pages == 100


def http_date(delta: timedelta) -> str:
    return format_datetime(datetime.now(UTC) + delta, usegmt=True)


@pytest.mark.parametrize(("header", "expected"), [
    ("2", (2.0, 2.0)),
    ("0", (0.0, 0.0)),
    ("3600", (5.0, 5.0)),                       # clamped to max_retry_after
    ("9" * 5000, (5.0, 5.0)),                   # huge: clamped, no ValueError
    (timedelta(days=-3), (0.0, 0.0)),           # an HTTP-date in the past: at once
    (timedelta(days=30), (5.0, 5.0)),           # far ahead: clamped
    (timedelta(seconds=4), (1.0, 4.0)),         # soon: until then
])
async def test_retry_after_values_are_read_and_clamped(
        fake_openrouter: FakeOpenRouter, header: str | timedelta,
        expected: tuple[float, float]) -> None:
    # Dates are made here, not at collection: the suite may run long after that.
    value = http_date(header) if isinstance(header, timedelta) else header
    fake_openrouter.set_script([Reply(status=503, headers={"Retry-After": value}), 3])
    sleeps: list[float] = []
    watch = watch_of(fake_openrouter, retry=RetryPolicy(attempts=2, backoff=0.01,
                                                         max_retry_after=5))
    (body,) = await fetch_with(watch, sleeps)
    assert body == snapshot_bytes(3)
    (slept,) = sleeps
    assert expected[0] <= slept <= expected[1]


@pytest.mark.parametrize("header", ["nan", "NaN", "inf", "-inf", "-5", "1.5", "1e9", "soon",
                                    "Thu, 99 Zzz 2026 99:99:99 GMT", "\u0661\u0662"])
async def test_a_retry_after_that_is_not_one_is_ignored_for_the_backoff(
        fake_openrouter: FakeOpenRouter, header: str) -> None:
    fake_openrouter.set_script([Reply(status=429, headers={"Retry-After": header}), 3])
    sleeps: list[float] = []
    watch = watch_of(fake_openrouter, retry=RetryPolicy(attempts=2, backoff=0.01,
                                                         max_retry_after=5))
    await fetch_with(watch, sleeps)
    (slept,) = sleeps
    assert 0.005 <= slept <= 0.01  # the first backoff step, with jitter


async def test_a_hostile_retry_after_does_not_stall_a_healthy_watch(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    """Two watches on one loop: the one answered 503 + ``Retry-After: nan`` keeps failing,
    the other keeps polling every second."""
    fake_openrouter.set_script([3])
    fake_openrouter.user_reply = Reply(status=503, headers={"Retry-After": "nan"})
    path = tmp_path / "config.yaml"
    path.write_text(f"""
state_dir: state
watches:
  - {{name: good, url: "{fake_openrouter.url}", interval: 1s, timeout: 5s}}
  - {{name: bad, url: "{fake_openrouter.url}/user", interval: 1s, timeout: 5s, retries: 3,
     retry_backoff: 10ms}}
""")
    settings = config.load(path)
    with Store.open(settings.state_dir) as store:
        async with fetch.new_session() as session:
            app = App(settings, store, session)
            stop = asyncio.Event()
            task = asyncio.create_task(app.run(stop))

            def checks(watch: str) -> list[str]:
                return [r[0] for r in store._read(
                    "SELECT outcome FROM checks WHERE watch = ? ORDER BY id", (watch,))]

            # Liveness, not speed: 4 cycles of a 1 s watch within 20 s of wall time (a nan
            # slept on corrupted the loop's timers and stalled it for ~30 s at a time).
            deadline = time.monotonic() + 20
            try:
                while time.monotonic() < deadline:
                    if len(checks("good")) >= 4 and len(checks("bad")) >= 2:
                        break
                    await asyncio.sleep(0.1)
            finally:
                stop.set()
                await task
        assert len(checks("good")) >= 4
        assert set(checks("good")) <= {"baseline", "unchanged"}
        assert set(checks("bad")) == {"failed"}
        (error,) = {r[0] for r in store._read("SELECT error FROM checks WHERE watch = 'bad'")}
        assert "HTTP 503 (after 4 attempts)" in error


async def test_an_api_key_file_replaced_by_a_device_fails_the_poll_clearly(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    """The key file is read again before every poll: a FIFO or a device put in its place
    later fails that poll with a reason, and neither hangs it nor fills the memory."""
    fifo = tmp_path / "key"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        watch = watch_of(fake_openrouter, api_key="sk-or-v1-OLDKEY0001", api_key_file=path)
        with pytest.raises(FetchError, match=f"cannot read api_key_file {path}: not a regular "
                                             "file") as caught:
            await asyncio.wait_for(fetch_with(watch), 10)
        assert not caught.value.retryable
    assert fake_openrouter.served == 0
