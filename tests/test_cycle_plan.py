"""cycle.plan, table by table: every outcome of one poll, decided without network or store.

The plan is pure (state + this poll + rules + now in, a CyclePlan out), so each row here
runs in milliseconds; the daemon, replay and fault tests show the same decisions applied.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes import FakeOpenRouter, snapshot_bytes
from watcher import config, cycle, snapshot
from watcher.cycle import CycleState, Notice, Poll, Rules, plan, read_state
from watcher.errors import AuthError, FetchError, SnapshotError
from watcher.events import EVENT_TYPES
from watcher.rules.model import Rule
from watcher.store import Store

NOW = datetime(2026, 1, 4, 19, 13, 29, tzinfo=UTC)
WATCH = config.Watch(name="models", url="http://127.0.0.1:1/api/v1/models", interval=60)
EVERYTHING = Rule(name="everything", on=frozenset(EVENT_TYPES), notify=("console",))
RULES = Rules((EVERYTHING,), (7, 1))


@cache
def real(number: int) -> snapshot.Snapshot:
    return snapshot.parse(snapshot_bytes(number))


def snap(*models: dict[str, Any]) -> snapshot.Snapshot:
    return snapshot.parse(orjson.dumps({"data": list(models)}))


def model(id_: str, prompt: str = "0.000001", **extra: Any) -> dict[str, Any]:
    return {"id": id_, "name": id_.upper(), "pricing": {"prompt": prompt, "completion": "0.000002"},
            **extra}


def kinds(notices: tuple[Notice, ...]) -> list[tuple[str, str]]:
    return [(n.action, n.kind) for n in notices]


def test_first_list_is_the_baseline() -> None:
    current = real(10)
    planned = plan(CycleState(None), Poll(current), watch=WATCH, rules=RULES, now=NOW)
    assert (planned.outcome, planned.write) == ("baseline", "commit")
    assert planned.snapshot is current
    assert planned.new_baseline is current
    assert planned.events == []
    assert planned.alerts == []
    assert planned.models == len(current.models)
    assert [line.event for line in planned.logs] == ["cycle.baseline"]
    assert kinds(planned.notices) == [("resolved", "auth"), ("resolved", "held")]


def test_the_same_list_is_unchanged_and_records_only_a_check() -> None:
    planned = plan(CycleState(real(10)), Poll(real(10)), watch=WATCH, rules=RULES, now=NOW)
    assert (planned.outcome, planned.write) == ("unchanged", "check")
    assert planned.snapshot is None
    assert planned.new_baseline is None
    assert planned.events == []
    assert planned.reminders == []
    assert [line.event for line in planned.logs] == ["cycle.unchanged"]
    assert kinds(planned.notices)[-1] == ("resolved", "crashed")


@pytest.mark.parametrize(("a", "b"), [(2, 3), (7, 9)])
def test_a_list_in_another_order_is_unchanged(a: int, b: int) -> None:
    planned = plan(CycleState(real(a)), Poll(real(b)), watch=WATCH, rules=RULES, now=NOW)
    assert (planned.outcome, planned.events, planned.write) == ("unchanged", [], "check")


def test_010_011_is_changed_with_the_glm_price_cut_routed() -> None:
    planned = plan(CycleState(real(10)), Poll(real(11)), watch=WATCH, rules=RULES, now=NOW)
    assert (planned.outcome, planned.write) == ("changed", "commit")
    assert planned.snapshot is real(11)
    assert planned.new_baseline is real(11)
    glm = next(e for e in planned.events
               if e["model"] == "z-ai/glm-4.7" and e["field"] == "pricing.prompt")
    assert (glm["type"], glm["old"], glm["new"], glm["change_pct"]) == (
        "price_changed", "0.0000004", "0.00000016", -60.0)
    assert glm["detected_at"] == "2026-01-04T19:13:29Z"
    assert len(planned.alerts) == len(planned.events)  # one rule, one target, every event
    assert {a.target for a in planned.alerts} == {"console"}
    assert planned.alerts[0].scope == "http://127.0.0.1:1"
    assert planned.same_change_window == cycle.SAME_CHANGE_MIN_WINDOW
    assert [line.event for line in planned.logs] == ["cycle.changed"]


def test_a_rule_selecting_nothing_gives_events_without_alerts() -> None:
    none = Rule(name="none", on=frozenset({"model_added"}), notify=("console",),
                models=("nobody/*",))
    planned = plan(CycleState(real(10)), Poll(real(11)), watch=WATCH,
                   rules=Rules((none,), (7, 1)), now=NOW)
    assert planned.outcome == "changed"
    assert planned.events
    assert planned.alerts == []


def test_a_suspect_list_is_held_until_seen_confirm_polls_times() -> None:
    baseline = snap(model("a/1"), model("a/2"), model("a/3"))
    current = snap(model("a/1"))
    state = CycleState(baseline, suspicion="2 of 3 models (67%) are missing", held_streak=1)
    planned = plan(state, Poll(current), watch=WATCH, rules=RULES, now=NOW)
    assert (planned.outcome, planned.write) == ("held", "check")
    assert (planned.error, planned.digest) == (state.suspicion, current.digest)
    assert planned.snapshot is None
    assert planned.new_baseline is None
    assert kinds(planned.notices) == [("resolved", "auth"), ("problem", "held")]
    (held,) = planned.logs
    assert (held.event, held.fields["seen"], held.fields["confirm_polls"]) == ("guard.held", 2, 3)


def test_a_suspect_list_seen_confirm_polls_times_becomes_a_change() -> None:
    baseline = snap(model("a/1"), model("a/2"), model("a/3"))
    current = snap(model("a/1"))
    state = CycleState(baseline, suspicion="too many gone", held_streak=2)
    planned = plan(state, Poll(current), watch=WATCH, rules=RULES, now=NOW)
    assert planned.outcome == "changed"
    assert sorted(e["model"] for e in planned.events) == ["a/2", "a/3"]
    assert [(line.event, line.early) for line in planned.logs] == [
        ("guard.confirmed", True), ("cycle.changed", False)]
    assert ("resolved", "held") in kinds(planned.notices)


def test_read_state_reads_the_held_streak_only_for_a_suspect_list(tmp_path: Path) -> None:
    baseline = snap(model("a/1"), model("a/2"), model("a/3"))
    with Store.open(tmp_path / "state") as store:
        store.commit_cycle("models", "2026-01-04T19:00:00Z", baseline, "baseline", [])
        trusted = read_state(store, WATCH, baseline, baseline, paired=False)
        assert (trusted.suspicion, trusted.held_streak) == (None, 0)
        suspect = snap(model("a/1"))
        store.record_check("models", "2026-01-04T19:01:00Z", "held", "x", digest=suspect.digest)
        held = read_state(store, WATCH, baseline, suspect, paired=False)
        assert held.suspicion is not None
        assert held.held_streak == 1
        assert held.sent == frozenset()  # still held: nothing else is read


@pytest.mark.parametrize(("error", "notices"), [
    (AuthError("401 Unauthorized: the API key was refused", status=401), [("problem", "auth")]),
    (FetchError("connection refused", retryable=True), []),
    (SnapshotError("the body is not JSON"), []),
])
def test_a_failed_fetch_records_a_failed_check(error: Exception, notices: list) -> None:
    assert isinstance(error, (FetchError, SnapshotError))
    planned = plan(CycleState(real(10)), Poll(error=error), watch=WATCH, rules=RULES, now=NOW)
    assert (planned.outcome, planned.write, planned.error) == ("failed", "check", str(error))
    assert planned.fetch_failed
    assert planned.new_baseline is None
    assert kinds(planned.notices) == notices
    if notices:
        assert planned.notices[0].text.endswith("No change is detected until this is fixed.")


def test_a_crashing_event_builder_gives_a_crashed_plan_with_the_new_baseline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> list[Any]:
        raise ValueError("cannot build this event")

    monkeypatch.setattr(cycle, "events_from_changes", broken)
    planned = plan(CycleState(real(10)), Poll(real(11)), watch=WATCH, rules=RULES, now=NOW)
    assert (planned.outcome, planned.write) == ("crashed", "commit")
    assert planned.error == "ValueError: cannot build this event"
    assert planned.snapshot is real(11)
    assert planned.new_baseline is real(11)
    assert planned.events == []
    assert planned.alerts == []
    assert kinds(planned.notices)[-1] == ("problem", "crashed")
    assert ("resolved", "crashed") not in kinds(planned.notices)
    (crashed,) = planned.logs
    assert (crashed.event, crashed.level, crashed.early) == ("cycle.crashed", "error", True)


def test_a_reminder_due_is_planned_once() -> None:
    expiring = snap(model("a/1", expiration_date="2026-01-10"))  # 6 days left on NOW
    planned = plan(CycleState(expiring), Poll(expiring), watch=WATCH, rules=RULES, now=NOW)
    assert (planned.outcome, planned.write) == ("unchanged", "commit")
    assert [(e["type"], e["days_left"]) for e in planned.events] == [("expiring_soon", 6)]
    assert planned.reminders == [("a/1", "2026-01-10", 7)]
    assert planned.snapshot is None  # the list did not change: no new snapshot
    assert [line.event for line in planned.logs] == ["cycle.reminders"]

    sent = CycleState(expiring, sent=frozenset(planned.reminders))
    again = plan(sent, Poll(expiring), watch=WATCH, rules=RULES, now=NOW)
    assert (again.outcome, again.write, again.events) == ("unchanged", "check", [])


def test_an_account_list_is_told_apart_with_the_paired_public_ids() -> None:
    baseline = snap(model("a/1"), model("a/2"), model("a/3"))
    current = snap(model("a/1"), model("a/3"), model("a/4"))
    public = frozenset({"a/1", "a/2", "a/3", "a/4"})
    state = CycleState(baseline, known_gaps=frozenset({"a/4"}))
    planned = plan(state, Poll(current, before=public, after=public | {"a/5"}), watch=WATCH,
                   rules=RULES, now=NOW)
    assert sorted((e["type"], e["model"]) for e in planned.events) == [
        ("model_available_to_account", "a/4"), ("model_unavailable_to_account", "a/2")]
    assert planned.gaps == frozenset({"a/2"})  # a/5 was in one public list only


def test_account_gaps_that_did_not_move_are_not_written_again() -> None:
    both = snap(model("a/1"))
    public = frozenset({"a/1", "a/2"})
    state = CycleState(both, known_gaps=frozenset({"a/2"}))
    planned = plan(state, Poll(both, before=public, after=public), watch=WATCH, rules=RULES,
                   now=NOW)
    assert (planned.outcome, planned.gaps) == ("unchanged", None)
    first = plan(CycleState(None), Poll(both, before=public, after=public), watch=WATCH,
                 rules=RULES, now=NOW)
    assert (first.outcome, first.gaps) == ("baseline", frozenset({"a/2"}))


def test_the_plan_is_the_same_on_every_call() -> None:
    state, poll = CycleState(real(10)), Poll(real(11))
    one = plan(state, poll, watch=WATCH, rules=RULES, now=NOW)
    two = plan(state, poll, watch=WATCH, rules=RULES, now=NOW)
    assert (one.outcome, one.events, one.alerts, one.notices) == (
        two.outcome, two.events, two.alerts, two.notices)


async def test_dry_run_plans_and_writes_nothing(tmp_path: Path,
                                                fake_openrouter: FakeOpenRouter) -> None:
    from watcher.app import run_once

    path = tmp_path / "config.yaml"
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: everything, on: [model_added, model_removed, price_changed], "
        "notify: [console]}\n")
    path.write_text(f"state_dir: state\nwatches:\n  - name: models\n    url: {fake_openrouter.url}\n"
                    "    interval: 1m\ntargets:\n  console: console://\nrules: [rules.yaml]\n")
    settings = config.load(path)
    tables = ("snapshots", "checks", "events", "outbox", "reminders")
    with Store.open(settings.state_dir) as store:
        fake_openrouter.set_script([10])
        (first,) = await run_once(settings, store)
        assert first.outcome == "baseline"
        before = {t: store._read(f"SELECT count(*) FROM {t}")[0][0] for t in tables}
        fake_openrouter.set_script([11])
        (dry,) = await run_once(settings, store, dry_run=True)
        after = {t: store._read(f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    assert dry.outcome == "changed"
    assert dry.events
    assert dry.alerts
    assert after == before
