"""Usage from /api/v1/activity and its impact on events, rules and messages (issue 15).

Real loopback servers (tests.fakes.Activity follows tests/data/ACTIVITY.md), real SQLite,
real `once` processes.  The impact figures are worked out by hand from the fake's
deterministic usage (the comment above tests.fakes.activity_rows) and the real price
steps in tests/data.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from tests import fakes
from tests.fakes import FakeOpenRouter
from tests.sinks import WebhookSink
from tests.test_cli import cli
from tests.test_notify import Clock
from watcher import config, fetch, impact, usage
from watcher.app import App
from watcher.config import RetryPolicy
from watcher.errors import AuthError, FetchError, SnapshotError
from watcher.notify.render import describe, digest_body, line
from watcher.rules.match import route
from watcher.store import Store

FAST = RetryPolicy(attempts=1)
MANAGEMENT_KEY = "sk-or-v1-CANARYPROVISIONING0004"
INFERENCE_KEY = "sk-or-v1-inference-key-0005"
START = datetime(2026, 1, 4, 19, 0, tzinfo=UTC)   # the fake's "today" is this date


def write(tmp_path: Path, server: FakeOpenRouter, rules: str, *, targets: str = "",
          usage_section: bool = True) -> Path:
    (tmp_path / "rules.yaml").write_text(rules)
    path = tmp_path / "config.yaml"
    section = (f'usage: {{url: "http://127.0.0.1:{server.port}/api/v1/activity", '
               "api_key_env: OPENROUTER_PROVISIONING_KEY, timeout: 5s}" if usage_section else "")
    path.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{server.url}", interval: 1m, timeout: 5s}}
targets:
  console: "console://"
{targets}
rules: [rules.yaml]
delivery: {{retry_backoff: 0.05s, max_backoff: 0.2s}}
{section}
""")
    return path


ALL = ("rules:\n  - {name: all, on: [price_changed, model_removed, expiration_set, "
       "expiring_soon], notify: [console]}\n")


async def events_of(tmp_path: Path, server: FakeOpenRouter, steps: tuple[int, int],
                    monkeypatch: pytest.MonkeyPatch, rules: str = ALL, targets: str = ""
                    ) -> tuple[list, App]:
    """The events (and alerts) of the second of two real steps, with usage fetched."""
    monkeypatch.setenv("OPENROUTER_PROVISIONING_KEY", MANAGEMENT_KEY)
    server.activity.management_keys = {MANAGEMENT_KEY}
    server.activity.today = START.date()
    settings = config.load(write(tmp_path, server, rules, targets=targets))
    clock = Clock(START)
    with Store.open(settings.state_dir) as store:
        async with fetch.new_session() as session:
            app = App(settings, store, session, clock=clock, retry=FAST)
            try:
                await app.usage.refresh_if_due()
                server.set_script([steps[0]])
                await app.cycle(settings.watches[0])
                server.set_script([steps[1]])
                result = await app.cycle(settings.watches[0])
            finally:
                app.close()
    return result.events, app


def price_event(events: list, model: str, field: str) -> dict:
    (event,) = [e for e in events if e["model"] == model and e.get("field") == field]
    return event


# Impact, by hand, on three real price changes.

def test_prompt_increase_impact_is_the_price_step_times_30_days_of_prompt_tokens(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    # 013 -> 014: z-ai/glm-4.7 prompt 0.00000016 -> 0.0000004 per token; 45,000,000 prompt
    # tokens in the 30 days: +0.00000024 x 45,000,000 = +$10.80.
    events, _ = asyncio.run(events_of(tmp_path, fake_openrouter, (13, 14), monkeypatch))
    event = price_event(events, "z-ai/glm-4.7", "pricing.prompt")
    assert fakes.GLM_PROMPT_30D == 45_000_000
    assert event["monthly_impact_usd"] == 10.80
    assert event["impact_note"] is None
    assert event["requests_30d"] == fakes.GLM_REQUESTS_30D == 6_000
    assert event["spend_30d_usd"] == 38.40   # (1.02 + 0.26) x 30
    assert line(event).startswith("Z.AI: GLM 4.7 (z-ai/glm-4.7): +$10.80/month at your last "
                                  "30 days: $0.16 -> $0.40 / 1M prompt tokens (+150%)")


def test_completion_decrease_counts_reasoning_tokens_as_completion(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    # 010 -> 011: z-ai/glm-4.7 completion 0.0000015 -> 0.0000008; 15,000,000 completion +
    # 3,000,000 reasoning tokens: -0.0000007 x 18,000,000 = -$12.60.
    events, _ = asyncio.run(events_of(tmp_path, fake_openrouter, (10, 11), monkeypatch))
    event = price_event(events, "z-ai/glm-4.7", "pricing.completion")
    assert fakes.GLM_COMPLETION_AND_REASONING_30D == 18_000_000
    assert event["monthly_impact_usd"] == -12.60
    assert "-$12.60/month at your last 30 days: $1.50 -> $0.80" in line(event)


def test_request_price_impact_is_per_request_and_images_have_none(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    # 016 -> 017: openai/gpt-4o-search-preview request 0.035 -> absent ("0"); 400 requests
    # on 15 of the 30 days: -0.035 x 6,000 = -$210.00.  Its image price changed too: the
    # activity counts no images, so that impact is null, with the reason.
    events, _ = asyncio.run(events_of(tmp_path, fake_openrouter, (16, 17), monkeypatch))
    model = "openai/gpt-4o-search-preview"
    request = price_event(events, model, "pricing.request")
    assert request["monthly_impact_usd"] == -210.00
    assert request["requests_30d"] == 15 * fakes.SEARCH_REQUESTS_PER_DAY
    image = price_event(events, model, "pricing.image")
    assert image["monthly_impact_usd"] is None
    assert "pricing.image" in image["impact_note"]
    # An unused model's price change costs nothing, and says so.
    unused = [e for e in events if e["type"] == "price_changed" and e["requests_30d"] == 0
              and e["impact_note"] is None]
    assert unused
    assert all(e["monthly_impact_usd"] == 0 for e in unused)
    assert describe(unused[0]).startswith("unused in the last 30 days: ")


def test_digest_orders_lines_by_absolute_impact_unknown_last(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    # 010 -> 011: glm-4.7 (-$10.80 prompt, -$12.60 completion: net $23.40), deepseek-v3.2
    # (prompt 0.00000025 -> 0.000000112 x 60M = -$8.28, completion 0.00000038 -> 0.00000016
    # x 30M = -$6.60: $14.88), kimi-k2-thinking (a few cents), then the unused ones.
    events, _ = asyncio.run(events_of(tmp_path, fake_openrouter, (10, 11), monkeypatch))
    prices = [e for e in events if e["type"] == "price_changed"]
    deepseek = [e for e in prices if e["model"] == "deepseek/deepseek-v3.2"]
    assert sorted(e["monthly_impact_usd"] for e in deepseek) == [-8.28, -6.60]
    unknown = {**prices[-1], "model": "zzz/unknown-usage", "name": None}
    for key in ("monthly_impact_usd", "impact_note", "spend_30d_usd", "requests_30d"):
        unknown.pop(key)
    body = digest_body([{**e, "name": None} for e in (unknown, *prices)], limit=100_000)
    order = [ln.removeprefix("  - ").split(": ")[0] for ln in body.splitlines()
             if ln.startswith("  - ")]
    assert order[:3] == ["z-ai/glm-4.7", "deepseek/deepseek-v3.2", "moonshotai/kimi-k2-thinking"]
    assert order[-1] == "zzz/unknown-usage"
    rest = order[3:-1]
    assert rest == sorted(rest)  # unused (impact 0) keep the id order


# Rules.

RULES = """
rules:
  - {name: big, on: [price_changed], min_monthly_impact: 12, notify: [big]}
  - {name: used, on: [price_changed], used: true, notify: [used]}
  - {name: unused, on: [price_changed], used: false, notify: [unused]}
  - {name: spenders, on: [price_changed], min_spend_30d: 20, notify: [spend]}
"""
TARGETS = """  big: "console://"
  used: "console://"
  unused: "console://"
  spend: "console://"
"""


def test_rules_on_usage_route_exactly_the_expected_events(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_PROVISIONING_KEY", MANAGEMENT_KEY)
    fake_openrouter.activity.management_keys = {MANAGEMENT_KEY}
    fake_openrouter.activity.today = START.date()
    (tmp_path / "rules.yaml").write_text(RULES)
    path = write(tmp_path, fake_openrouter, RULES, targets=TARGETS)
    events, _ = asyncio.run(events_of(tmp_path, fake_openrouter, (10, 11), monkeypatch,
                                      rules=RULES, targets=TARGETS))
    settings = config.load(path)
    routed: dict[str, set[tuple[str, str]]] = {}
    for event in events:
        for rule, _target in route(settings.rules, event):
            routed.setdefault(rule.name, set()).add((event["model"], event["field"]))
    prices = {(e["model"], e["field"]) for e in events if e["type"] == "price_changed"}
    used = {"z-ai/glm-4.7", "deepseek/deepseek-v3.2", "moonshotai/kimi-k2-thinking"}
    # |impact| >= $12: only glm-4.7's completion (-$12.60); its prompt is -$10.80.
    assert routed["big"] == {("z-ai/glm-4.7", "pricing.completion")}
    assert routed["used"] == {p for p in prices if p[0] in used}
    assert routed["unused"] == {p for p in prices if p[0] not in used}
    assert len(routed["unused"]) > 5
    # $20 or more spent in 30 days: glm-4.7 ($38.40) and deepseek-v3.2 ($26.10).
    assert {m for m, _ in routed["spenders"]} == {"z-ai/glm-4.7", "deepseek/deepseek-v3.2"}


def test_rules_let_events_of_unknown_usage_through() -> None:
    # No usage (no usage: section, or not fetched yet): every usage condition passes, so a
    # missing key never drops an alert; a null impact (tiered pricing) passes a threshold.
    from watcher.rules.model import Rule

    event = {"type": "price_changed", "model": "a/b", "field": "pricing.prompt", "old": "1",
             "new": "2", "change_pct": 100.0, "watch": "m"}
    rules = [Rule(name="u", on=frozenset({"price_changed"}), notify=("x",), used=True,
                  min_spend_30d=5, min_monthly_impact=5)]
    assert route(rules, event)
    tiered = {**event, "monthly_impact_usd": None, "impact_note": "tiered",
              "spend_30d_usd": 9.0, "requests_30d": 3}
    assert route(rules, tiered)
    assert not route(rules, {**tiered, "requests_30d": 0, "spend_30d_usd": 0.0})
    assert not route(rules, {**tiered, "monthly_impact_usd": -4.99})
    assert route(rules, {**tiered, "monthly_impact_usd": -5.0})
    # Types that never carry usage pass through the keys, as they pass min_change_pct.
    added = {"type": "model_added", "model": "a/b", "watch": "m"}
    assert route([Rule(name="n", on=frozenset({"model_added"}), notify=("x",), used=True)],
                 added)


def test_tiered_models_have_no_impact() -> None:
    summary = usage.summarise([usage.Row("2026-01-03", "a/b", None, "e", None, 1.0, 0.0, 10,
                                         1000, 10, 0)])
    event = {"type": "price_changed", "model": "a/b", "field": "pricing.prompt",
             "old": "0.000001", "new": "0.000002"}
    (plain,) = impact.annotate([event], summary)
    assert plain["monthly_impact_usd"] == 0.0  # 1000 x 0.000001 = $0.001: rounds to $0.00
    (tiered,) = impact.annotate([event], summary, tiered=frozenset({"a/b"}))
    assert tiered["monthly_impact_usd"] is None
    assert "overrides" in tiered["impact_note"]
    assert impact.tiered_models({"a/b": {"pricing": {"prompt": "1", "overrides": [{}]}},
                                 "c/d": {"pricing": {"prompt": "1"}}}) == {"a/b"}
    assert impact.annotate([event], None) == [event]  # no usage: no field at all


def test_removal_and_reminders_carry_spend(tmp_path: Path, fake_openrouter: FakeOpenRouter,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    events, _ = asyncio.run(events_of(tmp_path, fake_openrouter, (10, 11), monkeypatch))
    fake = {"type": "model_removed", "model": "deepseek/deepseek-v3.2", "old": None}
    summary = usage.summarise([usage.Row(*r) for r in _stored_rows(tmp_path)])
    (removed,) = impact.annotate([fake], summary)
    assert removed["spend_30d_usd"] == 26.10   # 0.87 x 30
    assert removed["requests_30d"] == fakes.DEEPSEEK_REQUESTS_30D
    assert line({**removed, "name": None}).startswith(
        "deepseek/deepseek-v3.2: $26.10 spent, 30,000 requests in the last 30 days: removed")
    for event in events:
        if event["type"] in impact.SPEND_TYPES:
            assert isinstance(event["spend_30d_usd"], float)
        else:
            assert "spend_30d_usd" not in event


def _stored_rows(tmp_path: Path) -> list[tuple]:
    with Store.open(tmp_path / "state", readonly=True) as store:
        return store.usage_rows()


# The activity: fetch, store, schedule.

def test_usage_is_stored_once_per_day_and_days_are_final(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_PROVISIONING_KEY", MANAGEMENT_KEY)
    fake = fake_openrouter.activity
    fake.management_keys = {MANAGEMENT_KEY}
    fake.today = START.date()
    settings = config.load(write(tmp_path, fake_openrouter, ALL))
    clock = Clock(START)

    async def scenario() -> None:
        with Store.open(settings.state_dir) as store:
            async with fetch.new_session() as session:
                app = App(settings, store, session, clock=clock, retry=FAST)
                await app.usage.refresh_if_due()
                rows = store.usage_rows()
                assert {r[0] for r in rows} == {(START.date() - timedelta(days=n)).isoformat()
                                                for n in range(1, 31)}
                assert store.usage_through() == "2026-01-03"
                await app.usage.refresh_if_due()  # nothing missing: no request
                assert len(fake.requests) == 1
                assert fake.requests[0]["authorization"] == f"Bearer {MANAGEMENT_KEY}"
                # The next day, 20 minutes after midnight: not complete yet; at 00:30 it is.
                clock.now = datetime(2026, 1, 5, 0, 20, tzinfo=UTC)
                await app.usage.refresh_if_due()
                assert len(fake.requests) == 1
                clock.now = datetime(2026, 1, 5, 0, 31, tzinfo=UTC)
                fake.today = date(2026, 1, 5)
                await app.usage.refresh_if_due()
                assert len(fake.requests) == 2
                assert store.usage_through() == "2026-01-04"
                after = store.usage_rows()
                assert len(after) == len(rows) + len(fakes.activity_rows(date(2026, 1, 4)))
                assert set(rows) <= set(after)  # the days stored before are kept as they were
                app.close()

    asyncio.run(scenario())


def test_schedule_is_30_minutes_after_the_utc_day_boundary() -> None:
    assert usage.next_fetch(datetime(2026, 1, 4, 19, 0, tzinfo=UTC)) == datetime(
        2026, 1, 5, 0, 30, tzinfo=UTC)
    assert usage.next_fetch(datetime(2026, 1, 5, 0, 10, tzinfo=UTC)) == datetime(
        2026, 1, 5, 0, 30, tzinfo=UTC)
    assert usage.due(datetime(2026, 1, 5, 0, 10, tzinfo=UTC), "2026-01-03") is False
    assert usage.due(datetime(2026, 1, 5, 0, 30, tzinfo=UTC), "2026-01-03") is True
    assert usage.due(datetime(2026, 1, 5, 0, 30, tzinfo=UTC), None) is True


def test_fake_activity_follows_the_documented_errors(fake_openrouter: FakeOpenRouter) -> None:
    fake = fake_openrouter.activity
    fake.management_keys = {MANAGEMENT_KEY}
    fake.today = START.date()
    base = f"http://127.0.0.1:{fake_openrouter.port}/api/v1/activity"

    async def get(key: str | None, url: str = base) -> list[usage.Row]:
        source = config.Usage(url=url, api_key=key, timeout=5)
        async with fetch.new_session() as session:
            return await usage.fetch(session, source, policy=FAST)

    one_day = asyncio.run(get(MANAGEMENT_KEY, base + "?date=2026-01-03"))
    assert {r.date for r in one_day} == {"2026-01-03"}
    with pytest.raises(FetchError, match="HTTP 400"):
        asyncio.run(get(MANAGEMENT_KEY, base + "?date=2026-01-04"))  # today: not complete
    with pytest.raises(FetchError, match="HTTP 400"):
        asyncio.run(get(MANAGEMENT_KEY, base + "?date=2025-12-04"))  # 31 days ago
    with pytest.raises(AuthError, match="HTTP 403"):
        asyncio.run(get(INFERENCE_KEY))
    with pytest.raises(AuthError, match="HTTP 401"):
        asyncio.run(get(None))


def test_parse_skips_bad_rows_and_refuses_what_is_no_activity() -> None:
    good = fakes.activity_rows(date(2026, 1, 3))[0]
    bad = [{**good, "requests": -1}, {**good, "usage": "1.0"}, {**good, "date": "yesterday"},
           {**good, "model": None}, {**good, "prompt_tokens": True}, "row", None]
    rows = usage.parse(orjson.dumps({"data": [good, *bad]}))
    assert [r.model for r in rows] == ["z-ai/glm-4.7"]
    for body in (b"<html>", b"[]", b'{"data": {}}'):
        with pytest.raises(SnapshotError):
            usage.parse(body)
    assert impact.cents(Decimal("0.005")) == 0.01
    assert str(impact.cents(Decimal("-0.001"))) == "0.0"


# A refused key: one operator notice, alerts flow without impact, the key stays secret.

def test_inference_key_gives_one_operator_notice_and_alerts_still_flow(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    hook = WebhookSink().start()
    ops = WebhookSink().start()
    try:
        fake_openrouter.activity.management_keys = {"sk-or-v1-some-other-management-key"}
        rules = "rules:\n  - {name: all, on: [price_changed], used: true, notify: [hook]}\n"
        path = write(tmp_path, fake_openrouter, rules,
                     targets=f'  hook: "{hook.url()}"\n  ops: "{ops.url(path="ops")}"\n')
        path.write_text(path.read_text() + "operator: {notify: [ops]}\n")
        env = {"OPENROUTER_PROVISIONING_KEY": MANAGEMENT_KEY}  # refused: not a management key
        for step in (10, 11, 12):
            fake_openrouter.set_script([step])
            proc = cli("once", "--config", str(path), "--log-level", "debug", env=env)
            assert proc.returncode == 0, proc.stderr
            for text in (proc.stdout, proc.stderr):
                assert MANAGEMENT_KEY not in text
                assert MANAGEMENT_KEY[4:-4] not in text
        # Each `once` asked (the usage was missing each time), and was refused each time ...
        assert len(fake_openrouter.activity.requests) == 3
        # ... but the operator heard it once (the notice is remembered in the state).
        notices = [r.message for r in ops.delivered]
        assert len(notices) == 1, notices
        assert "provisioning (management) key" in notices[0]["operator"]
        assert MANAGEMENT_KEY not in orjson.dumps(notices).decode()
        # The alerts went out, without usage fields (unknown usage passes `used: true`).
        sent = [e for r in hook.delivered for e in r.message["events"]]
        assert {e["model"] for e in sent} >= {"z-ai/glm-4.7", "deepseek/deepseek-v3.2"}
        assert not any("monthly_impact_usd" in e or "requests_30d" in e for e in sent)
        history = cli("history", "--format", "json", "--config", str(path), env=env)
        status = cli("status", "--config", str(path), env=env)
        check = cli("check", "--config", str(path), env=env)
        for proc in (history, status, check):
            assert MANAGEMENT_KEY not in proc.stdout + proc.stderr
            assert MANAGEMENT_KEY[4:-4] not in proc.stdout + proc.stderr
        db = (tmp_path / "state" / "openrouter-watcher.sqlite3").read_bytes()
        assert MANAGEMENT_KEY.encode() not in db
    finally:
        hook.stop()
        ops.stop()


def test_management_key_once_carries_impact_to_the_webhook(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    hook = WebhookSink().start()
    try:
        fake_openrouter.activity.management_keys = {MANAGEMENT_KEY}
        # The day the real clock's `once` expects (its window ends 30 min after midnight).
        fake_openrouter.activity.today = usage.last_complete_day(datetime.now(UTC)) + timedelta(1)
        rules = ("rules:\n  - {name: big, on: [price_changed], min_monthly_impact: 12, "
                 "notify: [hook]}\n")
        path = write(tmp_path, fake_openrouter, rules, targets=f'  hook: "{hook.url()}"\n')
        env = {"OPENROUTER_PROVISIONING_KEY": MANAGEMENT_KEY}
        for step in (10, 11):
            fake_openrouter.set_script([step])
            proc = cli("once", "--config", str(path), "--log-level", "debug", env=env)
            assert proc.returncode == 0, proc.stderr
            assert MANAGEMENT_KEY not in proc.stdout + proc.stderr
        assert len(fake_openrouter.activity.requests) == 1  # the second `once` had the day
        messages = [r.message for r in hook.delivered]
        assert len(messages) == 1, messages
        (event,) = messages[0]["events"]
        assert (event["model"], event["field"]) == ("z-ai/glm-4.7", "pricing.completion")
        assert event["monthly_impact_usd"] == -12.60
        assert event["impact_note"] is None
        assert event["requests_30d"] == 6000
    finally:
        hook.stop()


# Where people look (the cheap parts of item 4): `show MODEL` and /api/usage.

def test_show_and_api_usage_give_the_stored_usage(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from watcher.web import routes

    asyncio.run(events_of(tmp_path, fake_openrouter, (10, 11), monkeypatch))
    path = tmp_path / "config.yaml"
    env = {"OPENROUTER_PROVISIONING_KEY": MANAGEMENT_KEY}
    shown = cli("show", "z-ai/glm-4.7", "--config", str(path), env=env)
    assert shown.returncode == 0, shown.stderr
    assert ("usage 2025-12-05 .. 2026-01-03: $38.40 spent, 6,000 requests, 45,000,000 prompt / "
            "15,000,000 completion / 3,000,000 reasoning tokens") in shown.stdout
    as_json = cli("show", "z-ai/glm-4.7", "--format", "json", "--config", str(path), env=env)
    assert orjson.loads(as_json.stdout.splitlines()[0])["usage_30d"]["requests"] == 6000

    async def ask() -> None:
        settings = config.load(path)
        store = Store.open(settings.state_dir)
        app = web.Application()
        routes.register(app, store=store, settings=settings)
        async with TestClient(TestServer(app)) as client:
            doc = await (await client.get("/api/usage")).json()
            assert doc["through"] == "2026-01-03"
            assert doc["since"] == "2025-12-05"
            assert len(doc["rows"]) == len(store.usage_rows())
            assert doc["rows"][0]["model"]
            assert set(doc["rows"][0]) == set(usage.ROW_FIELDS)
            one = await (await client.get("/api/usage?model=deepseek/deepseek-v3.2")).json()
            assert {r["model"] for r in one["rows"]} == {"deepseek/deepseek-v3.2"}
            assert len(one["rows"]) == 30
            bad = await client.get("/api/usage?since=yesterday")
            assert bad.status == 400
        store.close()

    asyncio.run(ask())


def test_retention_prunes_usage_days_by_date(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(events_of(tmp_path, fake_openrouter, (10, 11), monkeypatch))
    settings = config.load(tmp_path / "config.yaml")
    assert settings.retention.usage == 400 * 86400
    with Store.open(settings.state_dir) as store:
        before = store.usage_rows()
        # 400 days after 2025-12-20: the days before 2025-12-20 go, the others stay.
        now = datetime(2025, 12, 20, 12, tzinfo=UTC).timestamp() + 400 * 86400
        dry = list(store.prune(settings.retention, now, dry_run=True))[-1]
        assert len(store.usage_rows()) == len(before)
        *_, done = store.prune(settings.retention, now)
        after = store.usage_rows()
    assert dry.usage == done.usage == len([r for r in before if r[0] < "2025-12-20"]) > 0
    assert after == [r for r in before if r[0] >= "2025-12-20"]


def test_check_warns_about_usage_keys_that_change_nothing(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    from watcher import preflight

    rules = ("rules:\n  - {name: a, on: [price_changed], used: true, notify: [console]}\n"
             "  - {name: b, on: [model_added], min_spend_30d: 5, notify: [console]}\n"
             "  - {name: c, on: [model_removed], min_monthly_impact: 5, notify: [console]}\n")
    monkeypatch.setenv("OPENROUTER_PROVISIONING_KEY", MANAGEMENT_KEY)
    found = preflight.warnings(config.load(write(tmp_path, fake_openrouter, rules)))
    assert not [w for w in found if "rule 'a'" in w]
    assert [w for w in found if "rule 'b'" in w and "min_spend_30d changes nothing" in w]
    assert [w for w in found if "rule 'c'" in w and "min_monthly_impact changes nothing" in w]
    without = preflight.warnings(config.load(write(tmp_path, fake_openrouter, rules,
                                                   usage_section=False)))
    assert [w for w in without if "rule 'a'" in w and "without a usage: section" in w]


def test_daemon_refused_key_notice_then_reload_brings_impact(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    """A real daemon: the key is refused (one notice, alerts flow without usage); OpenRouter
    then accepts it, a SIGHUP tries again at once, and the next alerts carry the impact.
    The provisioning key is a canary: never in the logs, the output or the state."""
    import signal

    from tests.daemon import Daemon, wait_for

    hook = WebhookSink().start()
    ops = WebhookSink().start()
    fake = fake_openrouter.activity
    fake.today = usage.last_complete_day(datetime.now(UTC)) + timedelta(1)
    (tmp_path / "provisioning-key").write_text(MANAGEMENT_KEY + "\n")
    rules = "rules:\n  - {name: all, on: [price_changed], used: true, notify: [hook]}\n"
    path = write(tmp_path, fake_openrouter, rules,
                 targets=f'  hook: "{hook.url()}"\n  ops: "{ops.url(path="ops")}"\n')
    text = path.read_text().replace("api_key_env: OPENROUTER_PROVISIONING_KEY",
                                    "api_key_file: provisioning-key")
    path.write_text(text.replace("interval: 1m", "interval: 1s") + "operator: {notify: [ops]}\n")
    fake_openrouter.set_script([10, 11])
    daemon = Daemon(path, log_level="debug").start()
    try:
        wait_for(lambda: hook.delivered and ops.delivered, timeout=60,
                 what="an alert and the operator notice")
        (notice,) = [r.message for r in ops.delivered]
        assert "provisioning (management) key" in notice["operator"]
        first = [e for r in hook.delivered for e in r.message["events"]]
        assert not any("requests_30d" in e for e in first)

        fake.management_keys = {MANAGEMENT_KEY}
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "usage.fetched" in daemon.logs(), timeout=30, what="usage.fetched")
        wait_for(lambda: len(ops.delivered) == 2, timeout=30, what="the recovered notice")
        assert "recovered" in ops.delivered[1].message["title"]
        seen = len(hook.delivered)
        fake_openrouter.set_script([12])  # 011 -> 012: deepseek-v3.2 prompt and completion
        wait_for(lambda: len(hook.delivered) > seen, timeout=60, what="the alert with impact")
        later = [e for r in hook.delivered[seen:] for e in r.message["events"]]
        deepseek = [e for e in later if e["model"] == "deepseek/deepseek-v3.2"]
        # prompt 0.000000112 -> 0.00000025 x 60M = +$8.28; completion 0.00000016 ->
        # 0.00000038 x 30M = +$6.60
        assert sorted(e["monthly_impact_usd"] for e in deepseek) == [6.60, 8.28]
        assert all(e["requests_30d"] == fakes.DEEPSEEK_REQUESTS_30D for e in later)
        assert daemon.stop() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
        hook.stop()
        ops.stop()
    assert len(fake.requests) == 2  # at the start, and once after the reload
    outputs = [daemon.logs(), daemon.output(),
               orjson.dumps([r.payload for r in hook.requests + ops.requests]).decode()]
    for args in (["history", "--format", "json"], ["status"], ["show", "z-ai/glm-4.7"],
                 ["check"]):
        proc = cli(*args, "--config", str(path))
        outputs.append(proc.stdout + proc.stderr)
    for out in outputs:
        assert MANAGEMENT_KEY not in out
        assert MANAGEMENT_KEY[4:-4] not in out
    for db_file in (tmp_path / "state").iterdir():
        assert MANAGEMENT_KEY.encode() not in db_file.read_bytes()
