"""Property tests for the pure diff: noise never becomes an event, real changes always do."""

from __future__ import annotations

import copy
import itertools
import random
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from watcher import snapshot
from watcher.diff import diff
from watcher.events import events_from_changes

PRICE_KEYS = ["prompt", "completion", "request", "image", "web_search", "input_cache_read"]
PARAMS = ["temperature", "top_p", "tools", "max_tokens", "seed", "stop", "response_format"]

prices = st.one_of(
    st.just("0"), st.just("-1"),
    st.decimals(min_value=Decimal("0.000000001"), max_value=Decimal(100), places=9,
                allow_nan=False, allow_infinity=False).map(lambda d: format(d.normalize(), "f")),
)
model = st.fixed_dictionaries(
    {
        "name": st.text(min_size=1, max_size=8),
        "context_length": st.integers(min_value=1, max_value=2_000_000),
        "pricing": st.dictionaries(st.sampled_from(PRICE_KEYS), prices),
        "supported_parameters": st.lists(st.sampled_from(PARAMS), unique=True),
        "architecture": st.fixed_dictionaries({
            "input_modalities": st.lists(st.sampled_from(["text", "image", "audio"]), unique=True),
            "instruct_type": st.one_of(st.none(), st.just("none")),
        }),
    },
    optional={
        "expiration_date": st.one_of(st.none(), st.dates().map(str)),
        "hugging_face_id": st.one_of(st.none(), st.just(""), st.just("org/model")),
    },
)
catalogue = st.dictionaries(st.text("abcdefgh/:-", min_size=1, max_size=6), model, max_size=12)


def snap(models: dict[str, dict[str, Any]], order: list[str] | None = None) -> snapshot.Snapshot:
    ids = order if order is not None else list(models)
    return snapshot.from_items([{"id": i, **models[i]} for i in ids])


def events(old: snapshot.Snapshot, new: snapshot.Snapshot) -> list[dict[str, Any]]:
    return events_from_changes(diff(old, new), old=old, new=new, watch="w", detected_at="t")


@given(catalogue)
def test_diff_of_a_snapshot_with_itself_is_empty(models) -> None:
    assert events(snap(models), snap(copy.deepcopy(models))) == []


@given(catalogue, st.randoms(use_true_random=False))
def test_shuffling_items_and_set_like_lists_changes_nothing(models, rnd: random.Random) -> None:
    shuffled = copy.deepcopy(models)
    for item in shuffled.values():
        rnd.shuffle(item["supported_parameters"])
        rnd.shuffle(item["architecture"]["input_modalities"])
    order = list(shuffled)
    rnd.shuffle(order)
    assert events(snap(models), snap(shuffled, order)) == []


@given(catalogue)
def test_absent_null_and_zero_prices_and_decimal_spelling_change_nothing(models) -> None:
    noisy = copy.deepcopy(models)
    for item in noisy.values():
        item.setdefault("expiration_date", None)          # absent -> null
        item["per_request_limits"] = None                # a new null key
        item["default_parameters"] = {"top_k": None}     # an object of nulls == absent
        for key in PRICE_KEYS:
            item["pricing"].setdefault(key, "0")         # absent -> "0"
        item["pricing"] = {k: (v + "0" if "." in v else v) for k, v in item["pricing"].items()}
    assert events(snap(models), snap(noisy)) == []
    stripped = copy.deepcopy(models)
    for item in stripped.values():
        item["pricing"] = {k: v for k, v in item["pricing"].items() if Decimal(v) != 0}
    assert events(snap(models), snap(stripped)) == []


@given(catalogue, catalogue)
def test_every_added_and_removed_id_yields_exactly_one_event(a, b) -> None:
    found = events(snap(a), snap(b))
    added = sorted(e["model"] for e in found if e["type"] == "model_added")
    removed = sorted(e["model"] for e in found if e["type"] == "model_removed")
    assert added == sorted(b.keys() - a.keys())
    assert removed == sorted(a.keys() - b.keys())


@given(catalogue, st.data())
def test_a_real_price_change_is_one_price_event(models, data) -> None:
    if not models:
        return
    model_id = data.draw(st.sampled_from(sorted(models)))
    changed = copy.deepcopy(models)
    old = models[model_id]["pricing"].get("prompt", "0")
    new = data.draw(prices.filter(lambda p: Decimal(p) != Decimal(old)))
    changed[model_id]["pricing"]["prompt"] = new
    (event,) = events(snap(models), snap(changed))
    assert (event["type"], event["model"], event["field"]) == ("price_changed", model_id, "pricing.prompt")
    assert Decimal(event["new"]) == Decimal(new)


@settings(max_examples=25)
@given(catalogue)
def test_non_decimal_pricing_values_do_not_crash_and_still_report(models) -> None:
    if not models:
        return
    model_id = min(models)
    tiers = copy.deepcopy(models)
    tiers[model_id]["pricing"]["overrides"] = [{"min_tokens": 200000, "prompt": "0.000005"}]
    more = copy.deepcopy(tiers)
    more[model_id]["pricing"]["overrides"][0]["prompt"] = "0.000006"
    (added,) = events(snap(models), snap(tiers))
    assert (added["type"], added["field"], added["old"]) == ("price_changed", "pricing.overrides", "0")
    (event,) = events(snap(tiers), snap(more))
    assert event["field"] == "pricing.overrides"
    assert event["new"] == [{"min_tokens": 200000, "prompt": "0.000006"}]
    assert event["change_pct"] is None


def test_variable_price_and_free_model_transitions() -> None:
    base = {"r": {"pricing": {"prompt": "-1", "completion": "-1"}},
            "p": {"pricing": {"prompt": "0.000001", "completion": "0.000002"}}}
    after = {"r": {"pricing": {"prompt": "0.000001", "completion": "-1"}},
             "p": {"pricing": {"prompt": "0", "completion": "0"}}}
    found = {(e["model"], e["field"]): e for e in events(snap(base), snap(after))}
    assert set(found) == {("r", "pricing.prompt"), ("p", "pricing.prompt"), ("p", "pricing.completion")}
    assert found["r", "pricing.prompt"]["change_pct"] is None
    assert found["p", "pricing.completion"]["change_pct"] == -100.0
    assert found["p", "pricing.completion"]["new"] == "0"


def test_set_like_list_events_say_what_was_added_and_removed() -> None:
    a = {"m": {"supported_parameters": ["tools", "seed", "stop"]}}
    b = {"m": {"supported_parameters": ["stop", "tools", "top_k"]}}
    (event,) = events(snap(a), snap(b))
    assert (event["type"], event["field"]) == ("field_changed", "supported_parameters")
    assert (event["added"], event["removed"]) == (["top_k"], ["seed"])


def test_context_and_expiration_lifecycle() -> None:
    steps = [{"m": {"context_length": 1000}},
             {"m": {"context_length": 500, "expiration_date": "2026-02-01"}},
             {"m": {"context_length": 500, "expiration_date": "2026-03-01"}},
             {"m": {"context_length": 500, "expiration_date": None}}]
    kinds = [[(e["type"], e["old"], e["new"], e["change_pct"]) for e in events(snap(a), snap(b))]
             for a, b in itertools.pairwise(steps)]
    assert kinds == [
        [("context_length_changed", 1000, 500, -50.0), ("expiration_set", None, "2026-02-01", None)],
        [("expiration_changed", "2026-02-01", "2026-03-01", None)],
        [("expiration_cleared", "2026-03-01", None, None)],
    ]
