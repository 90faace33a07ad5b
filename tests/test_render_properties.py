"""Property tests: whatever JSON the catalogue sends, events and messages are made, never raised.

A model's fields take any JSON value on either side of a diff (odd numbers such as
``"1e-400"``, ``"NaN"`` or 10,000 digits, objects where strings were, lists where objects
were, control characters and markup in text); the events, their one-line descriptions, the
digest in every markup and the message for every kind of target must come out.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher import escape, snapshot
from watcher.config import Target
from watcher.diff import diff
from watcher.events import change_pct, events_from_changes
from watcher.notify.render import compose, describe, digest_body, digest_title, line

ODD_NUMBERS = ["1e-400", "1e400", "1" * 10_000, "NaN", "-NaN", "sNaN", "Infinity", "-Infinity",
               "-0", "0e999999", "1e20", "1e-30", "-1", "0", "", " 1", "0x10", "1_000"]
HOSTILE_TEXT = ["<!channel>", "<@U123>", "@everyone", "[x](http://evil.example)", "<b>x</b>",
                "\x1b[31m", "\x1b]8;;http://evil\x07", "\r\n", "\u202e", "*x*", "&amp;"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(ODD_NUMBERS + HOSTILE_TEXT),
    st.text(max_size=20),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
FIELDS = ["name", "context_length", "expiration_date", "pricing", "architecture",
          "supported_parameters", "description"]
PRICE_KEYS = ["prompt", "completion", "image", "weird key", "<b>"]
model_values = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(FIELDS, json_values),
        "pricing": st.one_of(json_values, st.dictionaries(st.sampled_from(PRICE_KEYS),
                                                          json_values, max_size=4)),
    },
)
TARGETS = [Target("console", "console://"), Target("slack", "slack://T000/B000/XXXX"),
           Target("discord", "discord://1/abc"), Target("mail", "mailto://u:p@127.0.0.1"),
           Target("hook", "json://127.0.0.1:9/hook"), Target("pover", "pover://u@t"),
           Target("short", "json://127.0.0.1:9/x", format="markdown", max_length=200)]


def _events(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    before = snapshot.from_items([{"id": "a/b", **old}, {"id": "gone", "name": "x"}])
    after = snapshot.from_items([{"id": "a/b", **new}, {"id": "<@U1>/new", **new}])
    return events_from_changes(diff(before, after), old=before, new=after, watch="models",
                               detected_at="2026-01-04T19:13:29Z")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(model_values, model_values)
def test_any_pair_of_models_gives_events_that_render(old: dict[str, Any],
                                                     new: dict[str, Any]) -> None:
    events = _events(old, new)
    assert {e["type"] for e in events} >= {"model_removed", "model_added"}
    for event in events:
        text = describe(event, date(2026, 1, 4))
        assert text
        assert text == escape.plain(text)  # no control character comes through
        assert line(event)
    assert digest_title(events)
    for markup in ("text", "markdown", "html"):
        body = digest_body(events, markup=markup, limit=2000, today=date(2026, 1, 4))
        assert len(body) <= 2000
        assert escape.printable(body) == body
    for target in TARGETS:
        message = compose(target, events, key="k", today=date(2026, 1, 4),
                          public_url="https://watcher.example.com")
        assert message.body
        assert message.notify_type == "failure"  # a model was removed


@given(json_values, json_values)
def test_change_pct_is_a_finite_number_or_none(old: Any, new: Any) -> None:
    pct = change_pct(old, new)
    assert pct is None or (isinstance(pct, float) and math.isfinite(pct))


NOT_NUMBERS = ["1e-400", "1e400", "1" * 10_000, "NaN", "-NaN", "sNaN", "Infinity", "-Infinity",
               "", "0x10", "1e-31", "1" * 41]


@given(st.sampled_from(NOT_NUMBERS), st.sampled_from([*NOT_NUMBERS, "0.000001", "1e20"]))
def test_odd_prices_have_no_change_pct_and_render_as_they_came(old: str, new: str) -> None:
    before = snapshot.from_items([{"id": "m", "pricing": {"prompt": old}}])
    after = snapshot.from_items([{"id": "m", "pricing": {"prompt": new}}])
    events = events_from_changes(diff(before, after), old=before, new=after, watch="w",
                                 detected_at="2026-01-04T19:13:29Z")
    for event in events:
        assert event["change_pct"] is None
        text = describe(event)
        assert len(text) <= 500
        if old == "1e-400":
            assert text.startswith("1e-400 -> ")
