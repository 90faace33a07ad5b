"""Provider endpoints (issue 15 item 3): kind: endpoints watches, end to end.

A real loopback fake (tests.fakes.Endpoints follows tests/data/ENDPOINTS.md) serves the
endpoints of models from the bundled real list; the tests move providers, prices, status
and uptime between polls and assert the exact events.  Real SQLite, real App cycles.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog.testing

from tests import fakes
from tests.fakes import FakeOpenRouter, Reply
from tests.test_notify import Clock
from watcher import config, fetch, providers
from watcher.app import App
from watcher.config import RetryPolicy, Watch
from watcher.cycle import CycleResult
from watcher.notify.render import describe, digest_body, line
from watcher.rules.match import route
from watcher.rules.model import Rule
from watcher.store import Store

API_KEY = "sk-or-v1-CANARYENDPOINTSKEY0006"
DEEPSEEK = "deepseek/deepseek-v3.2"
GLM = "z-ai/glm-4.6"


def catalogue() -> list[dict[str, Any]]:
    return list(orjson.loads(fakes.snapshot_bytes(0))["data"])


def write(tmp_path: Path, server: FakeOpenRouter, endpoints: str) -> Path:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: providers, on: [provider_added, provider_removed, "
        "provider_price_changed, provider_degraded, provider_recovered], "
        f"models: [{DEEPSEEK}], notify: [console]}}\n")
    base = f"http://127.0.0.1:{server.port}/api/v1"
    path = tmp_path / "config.yaml"
    path.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{server.url}", interval: 1m, timeout: 5s}}
  - name: providers
    kind: endpoints
    url: "{base}"
    api_key_env: OPENROUTER_API_KEY
    interval: 1m
    timeout: 5s
{endpoints}
targets:
  console: "console://"
rules: [rules.yaml]
""")
    return path


class Run:
    """An App over the fake, polled step by step."""

    def __init__(self, tmp_path: Path, server: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch,
                 endpoints: str = f"    models: [{DEEPSEEK}, z-ai/glm-4.6]\n",
                 retry: RetryPolicy | None = None) -> None:
        monkeypatch.setenv("OPENROUTER_API_KEY", API_KEY)
        server.set_script([0])
        server.endpoints.fill(catalogue())
        self.server = server
        self.settings = config.load(write(tmp_path, server, endpoints))
        self.retry = retry or RetryPolicy(attempts=1)
        self.clock = Clock()

    async def polls(self, steps: list[Any]) -> list[CycleResult]:
        """The models watch once, then one endpoints poll per step (a callable that moves
        the fake first, or None)."""
        results = []
        with Store.open(self.settings.state_dir) as store:
            async with fetch.new_session() as session:
                app = App(self.settings, store, session, clock=self.clock, retry=self.retry)
                try:
                    await app.cycle(self.settings.watches[0])
                    for step in steps:
                        if step is not None:
                            step(self.server.endpoints.data)
                        self.clock.advance(minutes=1)
                        results.append(await app.cycle(self.settings.watches[1]))
                    self.stats = store.provider_stats(DEEPSEEK)
                finally:
                    app.close()
        return results


def kinds(result: CycleResult) -> list[tuple[str, str, str | None, Any, Any]]:
    return [(e["type"], e["model"], e.get("provider"), e["old"], e["new"]) for e in result.events]


def endpoint(data: dict[str, list[dict[str, Any]]], model: str, tag: str) -> dict[str, Any]:
    (found,) = [e for e in data[model] if e["tag"] == tag]
    return found


def uptime(value: float) -> Any:
    def step(data: dict[str, list[dict[str, Any]]]) -> None:
        endpoint(data, DEEPSEEK, "together")["uptime_last_30m"] = value
    return step


def test_replay_gives_exactly_the_expected_provider_events(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(tmp_path, fake_openrouter, monkeypatch)
    (deepseek_0,) = [m for m in catalogue() if m["id"] == DEEPSEEK]
    assert [e["tag"] for e in fake_openrouter.endpoints.data[DEEPSEEK]] == [
        "deepinfra/fp8", "together", "fireworks", "novita/bf16"]

    def added_removed_price(data: dict[str, list[dict[str, Any]]]) -> None:
        data[DEEPSEEK].append({**data[DEEPSEEK][0], "provider_name": "Parasail",
                               "tag": "parasail/fp4", "quantization": "fp4"})
        data[GLM] = [e for e in data[GLM] if e["tag"] != "together"]
        endpoint(data, DEEPSEEK, "fireworks")["pricing"] = {
            **deepseek_0["pricing"], "prompt": "0.00000039"}

    def context_quant_status(data: dict[str, list[dict[str, Any]]]) -> None:
        target = endpoint(data, DEEPSEEK, "deepinfra/fp8")
        target.update(context_length=131072, quantization="fp4", status=-2)
        # Volatile figures only: never an event.
        for item in data[GLM]:
            item.update(latency_last_30m={"p50": 9.9}, throughput_last_30m={"p50": 1.0},
                        uptime_last_5m=3.0, uptime_last_1d=50.0)

    results = asyncio.run(run.polls([
        None,                      # the baseline
        added_removed_price,
        context_quant_status,
        uptime(90.0),              # below 95 once: nothing
        uptime(90.0),              # twice: degraded
        uptime(97.0),              # between the thresholds: still degraded, nothing
        uptime(99.0),              # above 98: recovered
        None,
    ]))
    assert results[0].outcome == "baseline"
    assert kinds(results[1]) == [
        ("provider_price_changed", DEEPSEEK, "fireworks", "0.00000026", "0.00000039"),
        ("provider_added", DEEPSEEK, "parasail/fp4", None, {
            "pricing": {"prompt": "0.00000026", "completion": "0.00000038"},
            "context_length": 163840, "quantization": "fp4", "status": 0}),
        ("provider_removed", GLM, "together", {
            "pricing": {"prompt": "0.00000039", "completion": "0.0000019"},
            "context_length": 204800, "quantization": "fp16", "status": 0}, None),
    ]
    price = results[1].events[0]
    assert price["field"] == "pricing.prompt"
    assert price["change_pct"] == 50.0
    assert price["provider_name"] == "Fireworks"
    assert price["name"] == "DeepSeek: DeepSeek V3.2"
    assert kinds(results[2]) == [
        ("provider_context_changed", DEEPSEEK, "deepinfra/fp8", 163840, 131072),
        ("provider_quantization_changed", DEEPSEEK, "deepinfra/fp8", "fp8", "fp4"),
        ("provider_status_changed", DEEPSEEK, "deepinfra/fp8", 0, -2),
    ]
    assert results[2].events[0]["change_pct"] == -20.0
    assert results[3].events == []
    assert kinds(results[4]) == [("provider_degraded", DEEPSEEK, "together", None, 90.0)]
    assert results[5].events == []
    assert kinds(results[6]) == [("provider_recovered", DEEPSEEK, "together", None, 99.0)]
    assert results[7].events == []
    assert results[7].outcome == "unchanged"
    # The rule selects by type and model: the GLM removal, the context, quantisation and
    # status changes of the others are not routed.
    assert [(a.event["type"], a.target) for a in results[1].alerts] == [
        ("provider_price_changed", "console"), ("provider_added", "console")]
    assert [a.event["type"] for r in results for a in r.alerts][2:] == [
        "provider_degraded", "provider_recovered"]
    # The pages' figures: the latest of each provider, with the volatile fields.
    together = next(s for s in run.stats if s["tag"] == "together")
    assert together["uptime_last_30m"] == 99.0
    assert together["health"] == "up"
    assert together["latency_last_30m"] == {"p50": 1.21, "p75": 1.74, "p90": 2.55, "p99": 6.02}
    assert {s["tag"] for s in run.stats} == {"deepinfra/fp8", "together", "fireworks",
                                             "novita/bf16", "parasail/fp4"}
    # The key went with each request, and nowhere else.
    assert set(fake_openrouter.endpoints.authorization) == {f"Bearer {API_KEY}"}
    db = (tmp_path / "state" / "openrouter-watcher.sqlite3").read_bytes()
    assert API_KEY.encode() not in db


def test_a_fluctuating_uptime_between_96_and_100_gives_no_event() -> None:
    watch = Watch(name="p", url="http://127.0.0.1:1/api/v1", interval=60, kind="endpoints")
    record = providers.parse(
        (fakes.DATA / "endpoints_deepseek-v3.2.json").read_bytes(), DEEPSEEK)[0]
    baseline = None
    series = [96.0, 100.0, 96.5, 99.9, 96.01, 97.3, 100.0, 96.0, 98.5, 96.2] * 3
    for value in series:
        current, _ = providers.settle({DEEPSEEK: [{**record, "uptime_last_30m": value}]}, [],
                                      baseline, watch)
        if baseline is not None:
            assert providers.events(baseline, current, watch="p", detected_at="t") == []
            assert current.same_content(baseline)  # and no new version either
        baseline = current
    # One low poll and back: no event; null uptime keeps the state.
    for value in (94.0, 96.0, None, 94.0, None):
        current, _ = providers.settle({DEEPSEEK: [{**record, "uptime_last_30m": value}]}, [],
                                      baseline, watch)
        assert providers.events(baseline, current, watch="p", detected_at="t") == []
        baseline = current
    current, _ = providers.settle({DEEPSEEK: [{**record, "uptime_last_30m": 10.0}]}, [],
                                  baseline, watch)
    assert [e["type"] for e in providers.events(baseline, current, watch="p",
                                                 detected_at="t")] == ["provider_degraded"]


def test_429_retry_after_pauses_the_pacer_and_the_poll_still_succeeds(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(tmp_path, fake_openrouter, monkeypatch, retry=RetryPolicy(attempts=3))
    fake = fake_openrouter.endpoints

    def throttle(_data: dict[str, list[dict[str, Any]]]) -> None:
        fake.queue = [Reply(status=429, headers={"Retry-After": "1"},
                            body=b'{"error": {"code": 429, "message": "Rate limit exceeded"}}')]
        fake.starts.clear()

    def price(data: dict[str, list[dict[str, Any]]]) -> None:
        throttle(data)
        endpoint(data, DEEPSEEK, "together")["pricing"] = {"prompt": "0.000001",
                                                           "completion": "0.00000038"}

    results = asyncio.run(run.polls([None, price]))
    # The 429 was answered once; the two models were read after it, not before 1 s passed.
    assert len(fake.starts) == 3
    first, *rest = fake.starts
    assert min(rest) - first >= 1.0
    assert results[1].outcome == "changed"
    assert [(e["type"], e["provider"], e["field"]) for e in results[1].events] == [
        ("provider_price_changed", "together", "pricing.prompt")]


def test_50_models_at_5_per_second_take_10_s_and_never_more_than_5_at_once(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each answer takes 1.2 s, so without the concurrency bound 6 would be in flight; the
    # starts are 0.2 s apart at least: 49 gaps, >= 9.8 s from the first start to the last,
    # and the 50th answer 1.2 s later (measured at the fake).
    run = Run(tmp_path, fake_openrouter, monkeypatch, endpoints=(
        '    models: ["*"]\n    max_models: 50\n    requests_per_second: 5\n'
        "    concurrency: 5\n"))
    fake = fake_openrouter.endpoints
    fake.delay = 1.2
    with structlog.testing.capture_logs() as logs:
        results = asyncio.run(run.polls([None]))
    assert results[0].outcome == "baseline"
    assert len(fake.starts) == 50  # capped: the list has 349 models
    assert fake.peak == 5
    gaps = [b - a for a, b in zip(fake.starts, fake.starts[1:], strict=False)]
    assert min(gaps) >= 0.19  # the fake's clock, not ours: a little slack for its scheduling
    assert fake.starts[-1] - fake.starts[0] + fake.delay >= 10.0
    # The cut is a warning naming how many matched.
    (warning,) = [x for x in logs if x["event"] == "endpoints.capped"]
    assert (warning["log_level"], warning["matched"], warning["max_models"]) == ("warning", 349, 50)


def test_a_failed_model_keeps_its_providers_and_a_404_leaves_the_selection(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(tmp_path, fake_openrouter, monkeypatch)

    def fail_one(data: dict[str, list[dict[str, Any]]]) -> None:
        fake_openrouter.endpoints.queue = [Reply(status=500, body=b"oops")]

    def gone(data: dict[str, list[dict[str, Any]]]) -> None:
        del data[GLM]

    def back(data: dict[str, list[dict[str, Any]]]) -> None:
        data.update({m["id"]: fakes.endpoints_of(m) for m in catalogue() if m["id"] == GLM})

    results = asyncio.run(run.polls([None, fail_one, None, gone, back]))
    # A 500 for one model: no removals; the model read fine again: nothing either.
    assert [r.events for r in results[1:]] == [[], [], [], []]
    assert [r.outcome for r in results] == ["baseline", "unchanged", "unchanged", "changed",
                                            "changed"]


def test_used_within_reads_the_models_used_from_the_stored_usage(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [fakes.activity_rows(d) for d in fake_openrouter.activity.window()]
    flat = [tuple(r.values()) for day in rows for r in day]
    # Row order: date, model, permaslug, endpoint, provider, USD, BYOK USD, requests.
    since = fake_openrouter.activity.window()[-7].isoformat()
    chosen, found = providers.used_models(flat, since, limit=3)
    assert found == 4
    assert chosen == ["openai/gpt-4o-search-preview", "z-ai/glm-4.7", "deepseek/deepseek-v3.2"]


def test_selection_globs_are_sorted_and_capped() -> None:
    ids = [m["id"] for m in catalogue()]
    chosen, found = providers.select(["anthropic/*", "openai/gpt-4o"], ids, 5)
    assert found == 14
    assert chosen == ["anthropic/claude-3-haiku", "anthropic/claude-3-opus",
                      "anthropic/claude-3.5-haiku", "anthropic/claude-3.5-haiku-20241022",
                      "anthropic/claude-3.5-sonnet"]
    assert providers.endpoints_path("a/../../b") is None
    assert providers.endpoints_path("..") is None
    assert providers.endpoints_path("evil/x?y#z") == "models/evil/x%3Fy%23z/endpoints"
    assert providers.endpoints_path("z-ai/glm-4.5-air:free") == (
        "models/z-ai/glm-4.5-air:free/endpoints")


HOSTILE = "\x1b]8;;https://evil.example\x07Evil\x1b[2J\nINFO forged <!channel> @everyone " + "x" * 500


def test_hostile_provider_text_is_bounded_and_escaped() -> None:
    sample = orjson.loads((fakes.DATA / "endpoints_deepseek-v3.2.json").read_bytes())
    bad = copy.deepcopy(sample)
    first = bad["data"]["endpoints"][0]
    first.update(provider_name=HOSTILE, tag=HOSTILE, quantization=HOSTILE, model_name=HOSTILE,
                 pricing={"prompt": HOSTILE, **{f"k{i}": "1" for i in range(100)}},
                 supported_parameters=[HOSTILE] * 1000, uptime_last_30m="UPTIME",
                 context_length="CONTEXT")
    bad["data"]["endpoints"] += [None, 5, {"tag": "no-name"}, {"provider_name": 3, "tag": "x"}]
    bad["data"]["endpoints"] += [dict(sample["data"]["endpoints"][1])] * 500
    body = orjson.dumps(bad).replace(b'"UPTIME"', b"250.5").replace(b'"CONTEXT"', b"1" + b"0" * 17)
    records = providers.parse(body, DEEPSEEK)
    assert len(records) == 3  # the hostile one, the two others (500 copies are one key)
    hostile = records[0]
    assert len(hostile["provider_name"]) == providers.MAX_TEXT
    assert len(hostile["pricing"]) == providers.MAX_PRICING_KEYS
    assert hostile["supported_parameters"] == [HOSTILE[:60]]
    assert hostile["uptime_last_30m"] is None
    assert hostile["context_length"] is None
    watch = Watch(name="p", url="http://127.0.0.1:1/api/v1", interval=60, kind="endpoints")
    old, _ = providers.settle({DEEPSEEK: records[1:]}, [], None, watch)
    new, _ = providers.settle({DEEPSEEK: records}, [], old, watch)
    (event,) = providers.events(old, new, watch="p", detected_at="2026-01-04T19:00:00Z")
    assert event["type"] == "provider_added"
    text = line(event)
    assert "\x1b" not in text
    assert "\n" not in text
    assert "\x07" not in text
    assert len(describe(event)) <= 500
    body = digest_body([event], markup="markdown")
    assert "<!channel>" not in body.replace("\\<!channel>", "")  # only escaped
    assert "@everyone" not in body
    html = digest_body([event], markup="html")
    assert "<!channel>" not in html
    assert "&lt;!channel&gt;" in html


def test_rules_select_provider_events_by_type_and_model() -> None:
    rule = Rule(name="r", on=frozenset({"provider_degraded"}), notify=("t",),
                models=("deepseek/*",))
    event = {"watch": "p", "type": "provider_degraded", "model": DEEPSEEK, "field": None}
    assert route([rule], event) == [(rule, "t")]
    assert route([rule], {**event, "model": GLM}) == []
    assert route([rule], {**event, "type": "provider_recovered"}) == []


def test_an_auth_refusal_fails_the_poll_with_the_auth_notice(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(tmp_path, fake_openrouter, monkeypatch)

    def refuse(_data: dict[str, list[dict[str, Any]]]) -> None:
        fake_openrouter.endpoints.queue = [Reply(status=401, body=b"{}")] * 2

    results = asyncio.run(run.polls([refuse]))
    assert results[0].outcome == "failed"
    assert "HTTP 401" in (results[0].error or "")
    assert API_KEY not in (results[0].error or "")


def test_model_page_shows_spend_and_providers_and_the_change_page_sorts_by_impact(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_cli import cli
    from tests.test_web import parse, serve
    from watcher import usage

    run = Run(tmp_path, fake_openrouter, monkeypatch)

    def hostile(data: dict[str, list[dict[str, Any]]]) -> None:
        data[DEEPSEEK].append({**data[DEEPSEEK][0], "provider_name": "<script>alert(1)</script>",
                               "tag": "evil\x1b[2J", "uptime_last_30m": 91.5})

    asyncio.run(run.polls([None, hostile]))
    days = fake_openrouter.activity.window()
    body = orjson.dumps({"data": [r for d in days for r in fakes.activity_rows(d)]})
    with Store.open(run.settings.state_dir) as store:
        store.store_usage(usage.parse(body), days[-1].isoformat())

    async def pages() -> tuple[str, str, int, int]:
        client = await serve(run.settings.path)
        try:
            page = await client.get(f"/models/{DEEPSEEK}")
            assert page.status == 200
            index = await client.get("/?sort=impact")
            bad = await client.get("/?sort=bogus")
            return await page.text(), await index.text(), index.status, bad.status
        finally:
            await client.close()

    html, index, ok, bad = asyncio.run(pages())
    assert (ok, bad) == (200, 400)
    tags = parse(html).tags
    rows = [a for t, a in tags if t == "tr" and "provider" in (a.get("class") or "")]
    assert len(rows) == 5
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\x1b" not in html
    assert "$26.10 spent, 30,000 requests" in html  # 0.87 x 30 days
    spend = html.split('aria-label="Spend per day over the last 30 days"')[1].split("</svg>")[0]
    assert spend.count("<rect") == 30
    assert "by impact" in index
    # show MODEL prints the providers, escaped for a terminal.
    proc = cli("show", DEEPSEEK, "--config", str(run.settings.path),
               env={"OPENROUTER_API_KEY": API_KEY})
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stdout.splitlines() if x.startswith("  provider ")]
    assert len(lines) == 5
    assert any(x.startswith("  provider DeepInfra (deepinfra/fp8): $0.26 in / $0.38 out per 1M "
                            "tokens, context 163840, fp8, status 0, up, uptime 99.5%")
               for x in lines), lines
    assert "\x1b" not in proc.stdout


def test_by_impact_orders_the_largest_impact_then_spend_first() -> None:
    from watcher.web.filters import by_impact

    events: list[Any] = [
        {"type": "price_changed", "model": "a", "monthly_impact_usd": -5.0},
        {"type": "model_added", "model": "b"},
        {"type": "price_changed", "model": "c", "monthly_impact_usd": 120.0},
        {"type": "model_removed", "model": "d", "spend_30d_usd": 40.0},
        {"type": "price_changed", "model": "e", "monthly_impact_usd": None},
    ]
    assert [e["model"] for e in by_impact(events)] == ["c", "a", "d", "b", "e"]


def test_once_reports_provider_events_and_keeps_the_key_secret(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_cli import cli

    run = Run(tmp_path, fake_openrouter, monkeypatch)
    env = {"OPENROUTER_API_KEY": API_KEY}
    path = str(run.settings.path)
    first = cli("once", "--config", path, "--format", "json", env=env)
    assert first.returncode == 0, first.stderr
    endpoint(fake_openrouter.endpoints.data, GLM, "together")["status"] = -5
    second = cli("once", "--config", path, "--format", "json", "--log-level", "debug", env=env)
    assert second.returncode == 0, second.stderr
    assert '"provider_status_changed"' in second.stdout
    assert '"provider":"together"' in second.stdout.replace(" ", "")
    fake_openrouter.endpoints.queue = [Reply(status=401, body=b"{}")] * 4
    refused = cli("once", "--config", path, "--log-level", "debug", env=env)
    for proc in (first, second, refused):
        assert API_KEY not in proc.stdout + proc.stderr
        assert API_KEY[4:-4] not in proc.stdout + proc.stderr
    assert "HTTP 401" in refused.stdout + refused.stderr


def test_plan_of_an_endpoints_poll_is_pure_and_carries_the_figures() -> None:
    from datetime import UTC, datetime

    from watcher.cycle import CycleState, Poll, Rules, plan
    from watcher.errors import SnapshotError

    watch = Watch(name="p", url="http://127.0.0.1:1/api/v1", interval=60, kind="endpoints")
    records = providers.parse((fakes.DATA / "endpoints_deepseek-v3.2.json").read_bytes(), DEEPSEEK)
    old, _ = providers.settle({DEEPSEEK: records}, [], None, watch)
    # Every provider but one gone: no guard holds it (a shrinking selection is no truncation).
    new, stats = providers.settle({DEEPSEEK: records[:1]}, [], old, watch)
    rules = Rules((Rule(name="r", on=frozenset({"provider_removed"}), notify=("t",)),), (7, 1))
    now = datetime(2026, 1, 4, 19, 0, tzinfo=UTC)
    planned = plan(CycleState(old), Poll(new, stats=tuple(stats), watched=frozenset({DEEPSEEK})),
                   watch=watch, rules=rules, now=now)
    assert planned.outcome == "changed"
    assert [(e["type"], e["provider"]) for e in planned.events] == [
        ("provider_removed", "deepinfra/fp4"), ("provider_removed", "novita/fp8")]
    assert [a.target for a in planned.alerts] == ["t", "t"]
    assert [s.tag for s in planned.stats] == ["deepseek"]
    assert planned.watched == frozenset({DEEPSEEK})
    failed = plan(CycleState(old), Poll(error=SnapshotError("x")), watch=watch,
                  rules=rules, now=now)
    assert (failed.outcome, failed.stats, failed.watched) == ("failed", (), frozenset())


def test_provider_trouble_is_a_warning() -> None:
    from watcher.notify.render import notify_type

    def event(kind: str, **extra: Any) -> Any:
        return {"type": kind, "model": DEEPSEEK, **extra}

    assert notify_type([event("provider_degraded")]) == "warning"
    assert notify_type([event("provider_removed")]) == "warning"
    assert notify_type([event("provider_price_changed", old="0.1", new="0.2")]) == "warning"
    assert notify_type([event("provider_price_changed", old="0.2", new="0.1")]) == "info"
    assert notify_type([event("provider_recovered"), event("provider_added")]) == "info"
