"""Replays of the real snapshots in tests/data: the exact events of known steps.

The per-step table in tests/data/SOURCE.md was computed independently (a stdlib script,
models matched by id); every one of the 39 real transitions must agree with it.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

import pytest

from tests.fakes import DATA, snapshot_bytes
from watcher import snapshot
from watcher.diff import diff
from watcher.events import Event, events_from_changes


@cache
def snap(number: int) -> snapshot.Snapshot:
    return snapshot.parse(snapshot_bytes(number))


def events_between(a: int, b: int) -> list[Event]:
    old, new = snap(a), snap(b)
    return events_from_changes(diff(old, new), old=old, new=new, watch="models",
                               detected_at="2026-01-01T00:00:00Z")


def key(event: Event) -> tuple[object, ...]:
    return (event["type"], event["model"], event["field"], event["old"], event["new"])


def non_field(events: list[Event]) -> set[tuple[object, ...]]:
    return {key(e) for e in events if e["type"] not in ("field_changed", "model_added",
                                                        "model_removed")}


def test_010_011_price_cuts_and_three_removals() -> None:
    events = events_between(10, 11)
    removed = {e["model"] for e in events if e["type"] == "model_removed"}
    assert removed == {"tngtech/tng-r1t-chimera:free", "alibaba/tongyi-deepresearch-30b-a3b:free",
                       "arliai/qwq-32b-arliai-rpr-v1"}
    assert not [e for e in events if e["type"] == "model_added"]
    assert non_field(events) == {
        ("price_changed", "deepseek/deepseek-chat-v3-0324", "pricing.completion", "0.00000088", "0.00000087"),
        ("price_changed", "deepseek/deepseek-chat-v3-0324", "pricing.input_cache_read", "0.000000106", "0"),
        ("price_changed", "deepseek/deepseek-chat-v3-0324", "pricing.prompt", "0.0000002", "0.00000019"),
        ("price_changed", "deepseek/deepseek-r1", "pricing.completion", "0.0000012", "0.0000024"),
        ("price_changed", "deepseek/deepseek-r1", "pricing.prompt", "0.0000003", "0.0000007"),
        ("price_changed", "deepseek/deepseek-v3.2", "pricing.completion", "0.00000038", "0.00000016"),
        ("price_changed", "deepseek/deepseek-v3.2", "pricing.prompt", "0.00000025", "0.000000112"),
        ("price_changed", "moonshotai/kimi-k2", "pricing.completion", "0.00000184", "0.0000024"),
        ("price_changed", "moonshotai/kimi-k2", "pricing.prompt", "0.000000456", "0.0000005"),
        ("price_changed", "moonshotai/kimi-k2-thinking", "pricing.completion", "0.00000175", "0.00000048"),
        ("price_changed", "moonshotai/kimi-k2-thinking", "pricing.prompt", "0.0000004", "0.00000032"),
        ("price_changed", "nousresearch/hermes-4-405b", "pricing.completion", "0.0000012", "0.000003"),
        ("price_changed", "nousresearch/hermes-4-405b", "pricing.prompt", "0.0000003", "0.000001"),
        ("price_changed", "qwen/qwen2.5-vl-72b-instruct", "pricing.completion", "0.00000026", "0.0000006"),
        ("price_changed", "qwen/qwen2.5-vl-72b-instruct", "pricing.prompt", "0.00000007", "0.00000015"),
        ("price_changed", "qwen/qwen3-vl-235b-a22b-instruct", "pricing.completion", "0.0000012", "0.00000056"),
        ("price_changed", "qwen/qwen3-vl-235b-a22b-instruct", "pricing.prompt", "0.0000002", "0.00000012"),
        ("price_changed", "qwen/qwen3-vl-235b-a22b-thinking", "pricing.completion", "0.0000012", "0.0000035"),
        ("price_changed", "qwen/qwen3-vl-235b-a22b-thinking", "pricing.prompt", "0.0000003", "0.00000045"),
        ("price_changed", "z-ai/glm-4.5-air", "pricing.completion", "0.00000085", "0.00000022"),
        ("price_changed", "z-ai/glm-4.5-air", "pricing.prompt", "0.00000013", "0.00000005"),
        ("price_changed", "z-ai/glm-4.7", "pricing.completion", "0.0000015", "0.0000008"),
        ("price_changed", "z-ai/glm-4.7", "pricing.prompt", "0.0000004", "0.00000016"),
    }
    fields = Counter(e["field"].split(".")[0] for e in events if e["type"] == "field_changed")
    assert fields == {"top_provider": 11, "supported_parameters": 5}
    glm = next(e for e in events if e["model"] == "z-ai/glm-4.7" and e["field"] == "pricing.prompt")
    assert glm == {
        "watch": "models", "type": "price_changed", "model": "z-ai/glm-4.7", "name": glm["name"],
        "field": "pricing.prompt", "old": "0.0000004", "new": "0.00000016", "change_pct": -60.0,
        "detected_at": "2026-01-01T00:00:00Z",
    }
    assert glm["name"].startswith("Z.AI")


def test_024_025_devstral_expiration_set() -> None:
    events = events_between(24, 25)
    assert non_field(events) == {
        ("expiration_set", "mistralai/devstral-2512:free", "expiration_date", None, "2026-01-27"),
    }
    assert sorted((e["model"], e["field"]) for e in events if e["type"] == "field_changed") == [
        ("mistralai/mistral-nemo", "supported_parameters"),
        ("mistralai/mistral-nemo", "top_provider.max_completion_tokens"),
    ]


@pytest.mark.parametrize(("a", "b"), [(2, 3), (7, 9), (9, 7)])
def test_order_only_differences_give_no_events(a: int, b: int) -> None:
    assert events_between(a, b) == []


def test_014_015_dropped_zero_prices_are_not_events_but_a_dropped_price_is() -> None:
    assert [key(e) for e in events_between(14, 15)] == [
        ("price_changed", "mistralai/pixtral-large-2411", "pricing.image", "0.002888", "0"),
    ]


def test_020_021_expiration_key_appears_everywhere_but_only_real_dates_are_events() -> None:
    events = events_between(20, 21)
    expirations = {key(e) for e in events if e["type"].startswith("expiration")}
    assert expirations == {
        ("expiration_set", "google/gemini-2.5-flash-preview-09-2025", "expiration_date", None, "2026-02-17"),
        ("expiration_set", "google/gemini-2.0-flash-lite-001", "expiration_date", None, "2026-02-06"),
        ("expiration_set", "google/gemini-2.0-flash-exp:free", "expiration_date", None, "2026-02-06"),
    }
    assert [e["model"] for e in events if e["type"] == "model_removed"] == ["openai/codex-mini"]
    assert len(events) == 8


def test_expiration_postponed_then_model_gone() -> None:
    assert non_field(events_between(28, 29)) >= {
        ("expiration_changed", "google/gemini-2.0-flash-lite-001", "expiration_date",
         "2026-02-06", "2026-03-03"),
    }
    (removed,) = events_between(37, 38)
    assert (removed["type"], removed["model"]) == ("model_removed", "mistralai/devstral-2512:free")
    assert removed["old"] == {"context_length": 262144, "expiration_date": "2026-01-27",
                              "pricing": {"prompt": "0", "completion": "0"}}


def test_030_031_decimal_strings_compare_exactly() -> None:
    events = [e for e in events_between(30, 31) if e["type"] == "price_changed"]
    gemini = next(e for e in events if e["model"] == "google/gemini-3-flash-preview")
    assert (gemini["old"], gemini["new"]) == ("0.00000008333333333333333", "0.00000008333333333333334")
    assert gemini["change_pct"] == 0.0


def test_035_036_model_added_with_expiration_and_zero_key_churn_is_silent() -> None:
    events = events_between(35, 36)
    assert sorted((e["type"], e["model"]) for e in events) == [
        ("model_added", "moonshotai/kimi-k2.5"), ("model_added", "upstage/solar-pro-3:free"),
    ]
    solar = next(e for e in events if e["model"] == "upstage/solar-pro-3:free")
    assert solar["new"]["expiration_date"] == "2026-03-02"


def _source_table() -> dict[tuple[int, int], dict[str, int]]:
    rows = {}
    text = (DATA / "SOURCE.md").read_text()
    for m in re.finditer(r"^\| (\d{3})→(\d{3}) \| [^|]+\| (\d+) \| (\d+) \| \d+ \| (\d+) \| (\d+) \|",
                         text, re.MULTILINE):
        a, b, added, removed, price_models, expirations = (int(g) for g in m.groups())
        rows[a, b] = {"added": added, "removed": removed, "price_models": price_models,
                      "expirations": expirations}
    return rows


SOURCE_TABLE = _source_table()


def test_source_table_was_read() -> None:
    assert len(SOURCE_TABLE) == 39


@pytest.mark.parametrize("pair", sorted(SOURCE_TABLE), ids=lambda p: f"{p[0]:03d}-{p[1]:03d}")
def test_every_real_step_agrees_with_the_independent_count(pair: tuple[int, int]) -> None:
    events = events_between(*pair)
    expected = SOURCE_TABLE[pair]
    by_type = Counter(e["type"] for e in events)
    assert by_type["model_added"] == expected["added"]
    assert by_type["model_removed"] == expected["removed"]
    assert len({e["model"] for e in events if e["type"] == "price_changed"}) == expected["price_models"]
    expirations = sum(by_type[t] for t in ("expiration_set", "expiration_changed", "expiration_cleared"))
    assert expirations == expected["expirations"]
