"""The pure parts of the web pages: filters, the SVG chart, the feed's text, store helpers."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from watcher.events import make_event
from watcher.store import EventQuery, Store
from watcher.web import atom, chart, pages
from watcher.web.filters import FilterError, Filters


def test_filters_read_a_query_string_like_history_reads_its_options() -> None:
    filters = Filters.parse({"type": "price_changed", "model": " openai/* ", "watch": "models",
                             "since": "7d", "limit": "20"}, default_limit=100)
    assert filters.query_string() == "type=price_changed&model=openai%2F%2A&watch=models&since=7d&limit=20"
    query = filters.event_query(datetime(2026, 1, 8, tzinfo=UTC))
    assert query == EventQuery(watch="models", model_glob="openai/*", type="price_changed",
                               since="2026-01-01T00:00:00Z", limit=20)
    assert Filters.parse({}, default_limit=100).event_query(datetime.now(UTC)).limit == 100
    assert Filters.parse({}, default_limit=100).query_string() == "limit=100"
    assert Filters.parse({}, default_limit=100).query_string(limit=False) == ""


@pytest.mark.parametrize(("query", "message"), [
    ({"type": "nope"}, "unknown event type"),
    ({"limit": "0"}, "limit"), ({"limit": "-3"}, "limit"), ({"limit": "99999"}, "limit"),
    ({"since": "last week"}, "since"), ({"model": "x" * 201}, "model"),
])
def test_filters_refuse_what_is_no_filter(query: dict[str, str], message: str) -> None:
    with pytest.raises(FilterError, match=message):
        Filters.parse(query, default_limit=10)


def prices(*points: tuple[str, str]) -> list[dict[str, str]]:
    return [{"at": at, "price": value} for at, value in points]


def test_chart_draws_one_step_line_per_token_price_and_leaves_per_unit_prices_out() -> None:
    svg = chart.price_chart({
        "prompt": prices(("2026-01-01T00:00:00Z", "0.0000004"), ("2026-01-05T00:00:00Z", "0.00000016")),
        "image": prices(("2026-01-01T00:00:00Z", "0.01")),
    }, start="2026-01-01T00:00:00Z", end="2026-01-09T00:00:00Z")
    ET.fromstring(svg)  # well-formed
    (path,) = re.findall(r'data-key="prompt"[^>]* d="([^"]+)"', svg)
    # $0.40 from the left edge to the middle, then down to $0.16 until the right edge.
    assert path == "M64.0 68.8 H384.0 V166.7 H704.0"
    assert 'data-key="image"' not in svg
    assert re.findall(r'class="y-label"[^>]*>([^<]+)<', svg) == ["$0.00", "$0.10", "$0.20", "$0.30",
                                                                  "$0.40", "$0.50"]
    assert re.findall(r'class="x-label"[^>]*>([^<]+)<', svg) == [
        "2026-01-01", "2026-01-03", "2026-01-05", "2026-01-07", "2026-01-09"]


def test_chart_breaks_the_line_for_variable_pricing_and_shades_absences() -> None:
    svg = chart.price_chart({
        "completion": prices(("2026-01-01T00:00:00Z", "0.000001"), ("2026-01-03T00:00:00Z", "-1"),
                             ("2026-01-05T00:00:00Z", "0.000002")),
    }, start="2026-01-01T00:00:00Z", end="2026-01-09T00:00:00Z",
        absent=[("2026-01-06T00:00:00Z", "2026-01-07T00:00:00Z")])
    (path,) = re.findall(r' d="([^"]+)"', svg)
    assert path.count("M") == 2
    assert svg.count('class="absent"') == 1
    assert chart.price_chart({"image": prices(("2026-01-01T00:00:00Z", "0.01"))},
                             start="2026-01-01T00:00:00Z", end="2026-01-02T00:00:00Z") == ""


def test_chart_escapes_what_came_from_the_catalogue() -> None:
    svg = chart.price_chart({"prompt": prices(("2026-01-01T00:00:00Z", "0.000001"))},
                            start="2026-01-01T00:00:00Z", end="2026-01-01T00:00:00Z",
                            title='<script>alert("t")</script>')
    assert "<script" not in svg
    ET.fromstring(svg)


@pytest.mark.parametrize(("value", "ceiling"), [(0.0, 1.0), (0.55, 1.0), (0.3, 0.5), (2.2, 2.5),
                                                (7.0, 10.0), (0.0012, 0.002)])
def test_nice_ceiling(value: float, ceiling: float) -> None:
    assert chart.nice_ceiling(value) == pytest.approx(ceiling)


def test_feed_text_drops_what_xml_cannot_carry() -> None:
    event = make_event(watch="models", type="field_changed", model="a/b", name="bad\x00\x1bname",
                       field="description", old="x\x0b", new="y", detected_at="2026-01-01T00:00:00Z")
    info = atom.FeedInfo(id="urn:uuid:0", title="t\x01", self_url="http://h/feed.atom",
                         page_url="http://h/", updated="2026-01-01T00:00:00Z")
    document = atom.render(info, [(atom.entry_id(uuid.UUID(int=1), 7), "http://h/models/a/b", event)])
    root = ET.fromstring(document)
    assert root.find("{http://www.w3.org/2005/Atom}entry/{http://www.w3.org/2005/Atom}title").text.startswith("bad\ufffd\ufffdname")
    assert atom.entry_id(uuid.UUID(int=1), 7) == atom.entry_id(uuid.UUID(int=1), 7)
    assert atom.entry_id(uuid.UUID(int=1), 7) != atom.entry_id(uuid.UUID(int=2), 7)


def test_store_names_its_database_once_and_reads_events_with_their_row_ids(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    first = store.instance_id()
    assert store.instance_id() == first
    event = make_event(watch="w", type="model_added", model="a/b", detected_at="2026-01-01T00:00:00Z")
    _, ids = store.commit_cycle("w", "2026-01-01T00:00:00Z", None, "changed", [event, event])
    assert store.event_rows() == [(ids[0], event), (ids[1], event)]
    assert store.event_rows(EventQuery(limit=1)) == [(ids[1], event)]
    reader = Store.open_reader(store.path)
    try:
        assert reader.events() == [event, event]
        with pytest.raises(Exception, match="readonly"):
            reader.commit_cycle("w", "2026-01-01T00:00:00Z", None, "changed", [event])
    finally:
        reader.close()
    store.close()
    again = Store.open(tmp_path)
    assert again.instance_id() == first
    again.close()
    other = Store.open(tmp_path / "other")
    assert other.instance_id() != first
    other.close()


def test_chart_of_a_model_seen_for_hours_ends_at_its_last_data_point_not_in_the_future() -> None:
    svg = chart.price_chart({"prompt": prices(("2026-01-01T10:00:00Z", "0.000001"),
                                              ("2026-01-01T14:00:00Z", "0.000002"))},
                            start="2026-01-01T10:00:00Z", end="2026-01-01T16:00:00Z")
    labels = re.findall(r'class="x-label"[^>]*>([^<]+)<', svg)
    assert labels[-1] == "01-01 16:00"  # the right edge is the end, not start + 1 day
    assert labels[0] == "12-31 16:00"   # the day is made up on the left
    (path,) = re.findall(r'data-key="prompt"[^>]* d="([^"]+)"', svg)
    assert path.endswith("H704.0")      # the last price holds to the right edge, the end


def busy_story(changes: int) -> dict:
    """A model whose prompt price moved ``changes`` times, an hour apart."""
    at = [f"2026-01-{1 + h // 24:02d}T{h % 24:02d}:00:00Z" for h in range(changes + 1)]
    prices = [f"0.000000{1 + h % 9}{h % 7}" for h in range(changes + 1)]
    events = [make_event(watch="models", type="price_changed", model="busy/model", name="Busy",
                         detected_at=at[h], field="pricing.prompt", old=prices[h - 1],
                         new=prices[h], change_pct=1.0) for h in range(1, changes + 1)]
    return {"model": "busy/model", "name": "Busy", "watch": "models", "first_seen": at[0],
            "last_seen": at[-1], "present": True, "events": events,
            "prices": {"prompt": [{"at": a, "price": p} for a, p in zip(at, prices, strict=True)]},
            "context_length": [{"at": at[0], "context_length": 1000}]}


def test_a_model_page_lists_the_newest_changes_and_links_to_every_one() -> None:
    story = busy_story(250)
    html = pages.model_page(model="busy/model", stories=[story], unavailable_in=[], today=None,
                            prefix="/w", watch="models")
    changes = re.findall(r'<tr class="event price_changed">.*?datetime="([^"]+)"', html)
    assert len(changes) == pages.ROWS_SHOWN
    assert changes[0] == story["events"][-1]["detected_at"]  # newest first
    assert "150 older changes not listed" in html
    assert "151 older prices not listed" in html  # 251 prices, the newest 100 listed
    assert 'href="/w/models/busy/model?all=1&amp;watch=models"' in html
    assert "<circle" not in html  # 251 points: the line alone
    every = pages.model_page(model="busy/model", stories=[story], unavailable_in=[],
                             today=None, every=True)
    assert len(re.findall(r'<tr class="event price_changed">', every)) == 250
    assert "older changes not listed" not in every
    few = pages.model_page(model="busy/model", stories=[busy_story(5)], unavailable_in=[],
                           today=None)
    assert few.count("<circle") == 6
    assert "not listed:" not in few
