"""Faults and bad input: the HTTP outcome table, suspect responses, operator notices.

The schedule test replays real snapshots through a loopback server that also answers
500, 503, 429 with Retry-After, 401, HTML, truncated JSON, an empty list, half the list,
a stalled response and an oversized body: the events recorded and the notifications
received must equal those of the clean replay.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes import FakeOpenRouter, Reply, snapshot_bytes
from tests.sinks import WebhookSink
from watcher import config, fetch
from watcher.app import App
from watcher.config import RetryPolicy, Watch
from watcher.errors import AuthError, FetchError
from watcher.store import Store


def write(tmp_path: Path, server: FakeOpenRouter, hook: WebhookSink, ops: WebhookSink) -> Path:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: all\n    on: [model_added, model_removed, price_changed, expiration_set,"
        " expiration_changed, expiration_cleared, context_length_changed, field_changed]\n"
        "    notify: [hook]\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"""
state_dir: state
watches:
  - name: models
    url: "{server.url}"
    interval: 1m
    timeout: 1s
    retries: 2
    retry_backoff: 10ms
    max_body_mb: 1
targets:
  hook: {hook.url()}
  ops: {ops.url()}
operator: {{notify: [ops], repeat_interval: 1h}}
rules: [rules.yaml]
expiring_soon_days: []
""")
    return path


def half(number: int) -> bytes:
    data = json.loads(snapshot_bytes(number))["data"]
    return json.dumps({"data": data[: len(data) // 2]}).encode()


STEPS = [10, 11, 12, 13, 14, 15, 16]
FAULTY: list[Reply | int] = [
    Reply(status=500), 10,                                          # retried within the cycle
    Reply(status=503), Reply(status=429, headers={"Retry-After": "0"}), 11,
    Reply(body=b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
          content_type="text/html"),                               # a proxy's error page
    12,
    Reply(body=snapshot_bytes(13)[:5000]),                          # truncated JSON
    Reply(status=401, body=b'{"error": "No auth credentials found"}'),
    13,
    Reply(body=b'{"data": []}'),                                    # empty list: held
    Reply(body=half(14)),                                           # half the models: held
    14,
    Reply(body=snapshot_bytes(15), delay=3),                        # stalls past the timeout
    15,
    Reply(body=b'{"data": [' + b'{"id": "x"},' * 200_000 + b'{"id": "y"}]}'),  # over 1 MB
    16,
]


async def replay(path: Path, server: FakeOpenRouter, script: list[Reply | int]) -> tuple[list, App]:
    server.set_script(script)
    settings = config.load(path)
    store = Store.open(settings.state_dir)
    now = datetime(2026, 1, 4, tzinfo=UTC)
    async with fetch.new_session() as session:
        app = App(settings, store, session, clock=lambda: now)
        while server.served < len(script):
            await app.cycle(settings.watches[0])
            await app.deliverer.drain()
            await app.operator.wait()
            now += timedelta(minutes=1)
        app.close()
    events = store.events()
    store.close()
    return events, app


def essence(events: list[dict]) -> list[tuple]:
    return [(e["type"], e["model"], e["field"], json.dumps(e["old"]), json.dumps(e["new"]))
            for e in events]


async def test_fault_schedule_records_and_sends_exactly_what_the_clean_replay_does(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    results = {}
    for name, script in (("clean", list(STEPS)), ("faulty", FAULTY)):
        hook, ops = WebhookSink().start(), WebhookSink().start()
        try:
            folder = tmp_path / name
            folder.mkdir()
            events, _ = await replay(write(folder, fake_openrouter, hook, ops), fake_openrouter,
                                     script)
            sent = [e for r in hook.delivered for e in r.message["events"]]
            results[name] = (essence(events), essence(sent),
                             [(r.payload["title"], r.message["operator"]) for r in ops.delivered])
        finally:
            hook.stop()
            ops.stop()
    clean_events, clean_sent, clean_ops = results["clean"]
    faulty_events, faulty_sent, faulty_ops = results["faulty"]
    assert len(clean_events) > 100
    assert faulty_events == clean_events
    assert sorted(faulty_sent) == sorted(clean_sent) == sorted(clean_events)
    assert clean_ops == []
    titles = [title for title, _ in faulty_ops]
    assert titles == ["openrouter-watcher: models: problem", "openrouter-watcher: models: recovered",
                      "openrouter-watcher: models: problem", "openrouter-watcher: models: recovered"]
    assert "HTTP 401" in faulty_ops[0][1]
    assert "empty model list" in faulty_ops[2][1]


async def test_a_shrunken_list_seen_three_times_becomes_the_baseline(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    hook, ops = WebhookSink().start(), WebhookSink().start()
    try:
        path = write(tmp_path, fake_openrouter, hook, ops)
        script: list[Reply | int] = [14] + [Reply(body=half(14))] * 3
        events, _ = await replay(path, fake_openrouter, script)
    finally:
        hook.stop()
        ops.stop()
    removed = [e for e in events if e["type"] == "model_removed"]
    assert len(removed) == 348 - 348 // 2
    store = Store.open(tmp_path / "state")
    try:
        outcomes = [r[0] for r in store._conn.execute("SELECT outcome FROM checks ORDER BY id")]
    finally:
        store.close()
    assert outcomes == ["baseline", "held", "held", "changed"]
    assert len(hook.delivered) == 1


@pytest.fixture
def watch(fake_openrouter: FakeOpenRouter) -> Watch:
    return Watch(name="models", url=fake_openrouter.url, interval=60, timeout=1,
                 retry=RetryPolicy(attempts=3, backoff=0.01, max_retry_after=5),
                 max_body_bytes=1 << 20)


async def fetch_with(watch: Watch, sleeps: list[float]) -> list[bytes]:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with fetch.new_session() as session:
        return await fetch.fetch(session, watch, sleep=sleep)


async def test_retry_after_is_honoured_and_bounded(watch: Watch, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([Reply(status=429, headers={"Retry-After": "2"}),
                                Reply(status=503, headers={"Retry-After": "3600"}), 3])
    sleeps: list[float] = []
    (body,) = await fetch_with(watch, sleeps)
    assert body == snapshot_bytes(3)
    assert sleeps == [2.0, 5.0]


async def test_backoff_grows_and_the_cycle_fails_after_the_last_try(
        watch: Watch, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([Reply(status=502)])
    sleeps: list[float] = []
    with pytest.raises(FetchError) as caught:
        await fetch_with(watch, sleeps)
    assert "HTTP 502 (after 3 attempts)" in str(caught.value)
    assert caught.value.retryable
    assert len(sleeps) == 2
    assert 0.005 <= sleeps[0] <= 0.01
    assert 0.01 <= sleeps[1] <= 0.02


@pytest.mark.parametrize("status", [401, 402, 403])
async def test_auth_statuses_are_not_retried(watch: Watch, fake_openrouter: FakeOpenRouter,
                                             status: int) -> None:
    fake_openrouter.set_script([Reply(status=status)])
    with pytest.raises(AuthError):
        await fetch_with(watch, [])
    assert fake_openrouter.served == 1


async def test_oversized_body_fails_at_once(watch: Watch, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([Reply(body=b"x" * (2 << 20))])
    with pytest.raises(FetchError, match="larger than the 1048576 byte cap"):
        await fetch_with(watch, [])
    assert fake_openrouter.served == 1


async def test_stalled_response_times_out_and_is_retried(watch: Watch,
                                                         fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([Reply(body=b"{}", delay=3), 3])
    (body,) = await fetch_with(watch, [])
    assert body == snapshot_bytes(3)


async def test_pagination_follows_links_next(watch: Watch, fake_openrouter: FakeOpenRouter) -> None:
    data = json.loads(snapshot_bytes(3))["data"]
    page1 = json.dumps({"data": data[:200], "links": {"next": "/api/v1/models?page=2"}}).encode()
    page2 = json.dumps({"data": data[200:], "links": {"next": None}}).encode()
    fake_openrouter.set_script([Reply(body=page1), Reply(body=page2)])
    pages = await fetch_with(watch, [])
    from watcher import snapshot

    assert len(snapshot.parse_pages(pages).models) == len(data) == 350


async def test_auth_failure_is_told_once_per_repeat_interval_then_recovery_once(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    hook, ops = WebhookSink().start(), WebhookSink().start()
    try:
        path = write(tmp_path, fake_openrouter, hook, ops)
        settings = config.load(path)
        store = Store.open(settings.state_dir)
        now = [datetime(2026, 1, 4, tzinfo=UTC)]
        async with fetch.new_session() as session:
            app = App(settings, store, session, clock=lambda: now[0])
            fake_openrouter.set_script([Reply(status=401)])
            for minutes in (0, 10, 20, 70, 80):  # the 1 h repeat interval passes once
                now[0] = datetime(2026, 1, 4, tzinfo=UTC) + timedelta(minutes=minutes)
                await app.cycle(settings.watches[0])
                await app.operator.wait()
            fake_openrouter.set_script([3])
            await app.cycle(settings.watches[0])
            await app.cycle(settings.watches[0])
            await app.operator.wait()
            app.close()
        store.close()
        titles = [r.payload["title"] for r in ops.delivered]
        assert titles == ["openrouter-watcher: models: problem"] * 2 + [
            "openrouter-watcher: models: recovered"]
    finally:
        hook.stop()
        ops.stop()


def test_a_hold_counts_across_separate_once_runs(tmp_path: Path,
                                                 fake_openrouter: FakeOpenRouter) -> None:
    from tests.test_cli import cli

    path = tmp_path / "config.yaml"
    path.write_text(f"state_dir: state\nwatches: [{{name: models, url: '{fake_openrouter.url}', "
                    "interval: 1h}]\n")
    fake_openrouter.set_script([14])
    assert cli("once", "--config", str(path)).returncode == 0
    fake_openrouter.set_script([Reply(body=half(14))])
    outputs = [cli("once", "--config", str(path), "--format", "json").stdout for _ in range(3)]
    assert outputs[:2] == ["", ""]  # held twice, each time by a new process
    removed = [json.loads(line) for line in outputs[2].splitlines()]
    assert len(removed) == 348 - 348 // 2
    with Store.open(tmp_path / "state") as store:
        outcomes = [r[0] for r in store._read("SELECT outcome FROM checks ORDER BY id")]
    assert outcomes == ["baseline", "held", "held", "changed"]


async def test_links_next_to_another_origin_is_not_followed_with_the_key(
        fake_openrouter: FakeOpenRouter) -> None:
    watch = Watch(name="mine", url=f"{fake_openrouter.url}/user", interval=60, timeout=1,
                  api_key="sk-or-v1-secret", retry=RetryPolicy(attempts=1))
    page = json.dumps({"data": [{"id": "a"}],
                       "links": {"next": "https://elsewhere.invalid/api/v1/models?page=2"}})
    fake_openrouter.user_reply = Reply(body=page.encode())
    with pytest.raises(FetchError, match=r"links\.next points to another origin"):
        await fetch_with(watch, [])
    assert len(fake_openrouter.requests) == 1


async def test_a_response_the_core_cannot_diff_becomes_the_baseline_with_a_notice(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch) -> None:
    """A bug in the pure core (simulated: the diff raises on one response) must not stop
    change detection for good: the response becomes the baseline, the operator hears of
    it, and the next change is reported as usual."""
    import watcher.cycle

    hook, ops = WebhookSink().start(), WebhookSink().start()
    try:
        path = write(tmp_path, fake_openrouter, hook, ops)
        settings = config.load(path)
        real_diff = watcher.cycle.diff

        def diff_that_fails_on_011(old, new):
            if len(new.models) == 350 and len(old.models) == 353:  # 010 -> 011 only
                raise ValueError("cannot compare this catalogue")
            return real_diff(old, new)

        monkeypatch.setattr(watcher.cycle, "diff", diff_that_fails_on_011)
        with Store.open(settings.state_dir) as store:
            async with fetch.new_session() as session:
                app = App(settings, store, session, retry=RetryPolicy(attempts=1))
                outcomes = []
                for step in (10, 11, 11, 12):
                    fake_openrouter.set_script([step])
                    result = await app.cycle(settings.watches[0])
                    outcomes.append(result.outcome)
                    await app.deliverer.drain()
                    await app.operator.wait()
                app.close()
            checks = store._read("SELECT outcome, error FROM checks ORDER BY id")
            events = store.events()
        assert outcomes == ["baseline", "crashed", "unchanged", "changed"]
        assert checks[1] == ("crashed", "ValueError: cannot compare this catalogue")
        # The next diff starts from 011: only the 011 -> 012 changes are reported.
        added = {e["model"] for e in events if e["type"] == "model_added"}
        assert added == json_ids(12) - json_ids(11)
        titles = [r.payload["title"] for r in ops.delivered]
        assert titles == ["openrouter-watcher: models: problem",
                          "openrouter-watcher: models: recovered"]
        assert "not reported" in ops.delivered[0].message["operator"]
    finally:
        hook.stop()
        ops.stop()


def json_ids(number: int) -> set[str]:
    return {m["id"] for m in json.loads(snapshot_bytes(number))["data"]}


def test_once_from_a_timer_tells_a_lasting_problem_once_and_its_end_once(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    """Each `once` is a new process: what is being told lives in the state database, so a
    401 that lasts is told once per repeat_interval, and "recovered" once."""
    from tests.test_cli import cli

    ops = WebhookSink().start()
    try:
        path = tmp_path / "config.yaml"
        path.write_text(f"state_dir: state\nwatches: [{{name: models, url: '{fake_openrouter.url}', "
                        "interval: 1h, api_key_env: KEY}]\n"
                        f"targets: {{ops: '{ops.url()}'}}\n"
                        "operator: {notify: [ops], repeat_interval: 1h}\n")
        env = {"KEY": "sk-or-v1-timer"}
        fake_openrouter.set_script([10])
        assert cli("once", "--config", str(path), env=env).returncode == 0
        fake_openrouter.set_script([Reply(status=401)])
        codes = [cli("once", "--config", str(path), env=env).returncode for _ in range(3)]
        fake_openrouter.set_script([10])
        codes += [cli("once", "--config", str(path), env=env).returncode for _ in range(2)]
        titles = [r.message["title"] for r in ops.delivered]
    finally:
        ops.stop()
    assert codes == [1, 1, 1, 0, 0]
    assert titles == ["openrouter-watcher: models: problem", "openrouter-watcher: models: recovered"]
    with Store.open(tmp_path / "state") as store:
        assert store.notices() == {}
