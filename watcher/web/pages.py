"""The HTML pages: pure functions from stored data to a document.

Templates live in ``templates/`` and are rendered by Jinja2 with autoescaping on, so
every value that came from the catalogue (model names, descriptions, even pricing keys)
is escaped unless it is :class:`markupsafe.Markup` made here (the SVG chart, which
escapes its own text).  Nothing here knows the config: no target, URL or key can show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from functools import cache
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from markupsafe import Markup

from watcher import escape
from watcher.events import EVENT_TYPES, Event
from watcher.links import model_id_path, model_path
from watcher.notify.render import describe, price, price_unit, shown, time_text
from watcher.web import chart
from watcher.web.filters import MAX_LIMIT, Filters


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("watcher.web", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False,
        finalize=_plain)


def _plain(value: Any) -> Any:
    """Catalogue text without control characters (a bidi override would reorder the page)."""
    return escape.plain(value) if isinstance(value, str) and not isinstance(value, Markup) \
        else value


def _trend(event: Event) -> str:
    pct = event.get("change_pct")
    if event["type"] == "price_changed" and isinstance(pct, (int, float)):
        return "up" if pct > 0 else "down" if pct < 0 else ""
    return {"model_removed": "up", "model_unavailable_to_account": "up", "expiring_soon": "up",
            "expiration_set": "up", "model_added": "down"}.get(event["type"], "")


def event_row(event: Event, today: date | None) -> dict[str, Any]:
    text = describe(event, today)
    if event["type"] == "model_added" and event.get("in_baseline"):
        text = "present when watching started" + text.removeprefix("new model")
    return {"at": event["detected_at"], "at_text": time_text(event["detected_at"]),
            "watch": event["watch"], "type": event["type"], "model": event["model"],
            "name": event.get("name"), "text": text, "trend": _trend(event)}


def index_page(*, events: Sequence[Event], filters: Filters, watches: Sequence[str],
               account: Mapping[str, Sequence[str]] | None, today: date | None,
               prefix: str = "", more: bool = False) -> str:
    """Recent changes, newest first, with the filter form and the account's missing models."""
    query = filters.query_string(limit=False)
    suffix = f"?{query}" if query else ""
    more_url = ""
    if more and filters.limit < MAX_LIMIT:
        bigger = dataclasses.replace(filters, limit=min(filters.limit * 4, MAX_LIMIT))
        more_url = f"{prefix}/?{bigger.query_string()}"
    return _environment().get_template("index.html").render(
        prefix=prefix, filters=filters, filter_text=filters.describe(),
        types=sorted(EVENT_TYPES), watches=watches,
        account={w: list(m) for w, m in (account or {}).items()},
        rows=[event_row(e, today) for e in events], model_url=_model_url(prefix),
        feed_url=f"{prefix}/feed.atom{suffix}", json_url=f"{prefix}/api/events{suffix}",
        more_url=more_url)


def _model_url(prefix: str) -> Callable[[str], str]:
    return lambda model: model_path(prefix, model)


# A model page lists the newest changes and prices; ``?all=1`` lists every one.  A model
# whose price moved thousands of times would otherwise be a page of megabytes that takes
# a second to build.
ROWS_SHOWN = 100


def model_page(*, model: str, stories: Sequence[Mapping[str, Any]], unavailable_in: Sequence[str],
               today: date | None, prefix: str = "", every: bool = False,
               watch: str | None = None) -> str:
    """One model's timelines (one per watch that saw it, or of ``watch``) with the price
    chart; the newest ``ROWS_SHOWN`` rows of each table unless ``every``."""
    name = next((s["name"] for s in reversed(stories) if s.get("name")), None)
    query = f"model={quote(model, safe='')}"
    listed = urlencode({"all": 1} | ({"watch": watch} if watch else {}))
    all_url = model_path(prefix, model) + ("&" if "?" in model_path("", model) else "?") + listed
    return _environment().get_template("model.html").render(all_url=all_url,
        prefix=prefix, model=model, name=name, unavailable_in=list(unavailable_in),
        stories=[_story(s, today, None if every else ROWS_SHOWN) for s in stories],
        json_url=f"{prefix}/api/models/{model_id_path(model)}",
        feed_url=f"{prefix}/feed.atom?{query}")


def error_page(*, status: int, heading: str, message: str, prefix: str = "") -> str:
    return _environment().get_template("error.html").render(
        prefix=prefix, status=status, heading=heading, message=message)


def _story(story: Mapping[str, Any], today: date | None, shown: int | None) -> dict[str, Any]:
    events: list[Event] = story["events"]
    end = max([story["last_seen"], *(e["detected_at"] for e in events)])
    absent = _absent(events, end, present=story["present"])
    gone_since = absent[-1][0] if absent and not story["present"] else ""
    title = f"Prices of {story['name'] or story['model']} per million tokens"
    svg = chart.price_chart(story["prices"], start=story["first_seen"], end=end, absent=absent,
                            title=title)
    context = story["context_length"]
    return {
        "watch": story["watch"], "present": story["present"],
        "gone_since": time_text(gone_since),
        "first_seen_text": time_text(story["first_seen"]),
        "last_seen_text": time_text(story["last_seen"]),
        "in_baseline": bool(events and events[0].get("in_baseline")),
        "context_text": _tokens(context[-1]["context_length"]) if context else "unknown",
        "expiration": _expiration(events),
        "chart": Markup(svg) if svg else "",  # noqa: S704 - chart.py escapes every text it writes
        "legend": chart.legend(story["prices"]), "absent": absent,
        "price_rows": [{"key": key, "price": price(p["price"], key), "unit": price_unit(key),
                        "since": time_text(p["at"])}
                       for key, points in story["prices"].items()
                       for p in _newest(points, shown)],
        "prices_hidden": sum(max(0, len(points) - (shown or len(points)))
                             for points in story["prices"].values()),
        "context_rows": [{"tokens": _tokens(c["context_length"]), "since": time_text(c["at"])}
                         for c in _newest(context, shown)],
        "rows": [event_row(e, today) for e in _newest(events, shown)],
        "rows_hidden": max(0, len(events) - (shown or len(events))),
        **_usage_and_providers(story),
    }


def _usage_and_providers(story: Mapping[str, Any]) -> dict[str, Any]:
    """The 30-day spend (its bar chart) and the providers table (issue 15 item 4)."""
    spent = story.get("usage_30d")
    svg = chart.spend_chart(story.get("usage_days") or [])
    rows = []
    for item in story.get("providers") or []:
        prices = item.get("pricing") if isinstance(item.get("pricing"), dict) else {}
        uptime = item.get("uptime_last_30m")
        latency = item.get("latency_last_30m")
        rows.append({
            "provider": shown(item.get("provider_name"), 80), "tag": shown(item.get("tag"), 80),
            "prompt": price(prices.get("prompt", "0"), "prompt"),
            "completion": price(prices.get("completion", "0"), "completion"),
            "context": _tokens(item.get("context_length")),
            "quantization": shown(item.get("quantization"), 40),
            "status": shown(item.get("status"), 20),
            "health": shown(item.get("health"), 20),
            "uptime": f"{uptime:g}%" if isinstance(uptime, (int, float)) else "n/a",
            "latency": (f"{latency['p50']:g} s" if isinstance(latency, dict)
                        and isinstance(latency.get("p50"), (int, float)) else "n/a"),
            "at": time_text(item.get("at"))})
    return {
        "spend": (f"${spent['spend_usd']:,.2f} spent, {spent['requests']:,} requests "
                  f"({spent['first_day']} .. {spent['last_day']})") if spent else "",
        "spend_chart": Markup(svg) if svg else "",  # noqa: S704 - chart.py escapes what it writes
        "providers": rows,
    }


def _newest(items: Sequence[Any], shown: int | None) -> list[Any]:
    """The last ``shown`` of ``items`` (all when None), newest first."""
    return list(reversed(items[-shown:] if shown is not None else items))


def _absent(events: Sequence[Event], end: str, *, present: bool) -> list[tuple[str, str]]:
    """``(from, to)`` of each time the model was not listed, from its removals and returns."""
    out: list[tuple[str, str]] = []
    gone: str | None = None
    for event in events:
        if event["type"] == "model_removed":
            gone = event["detected_at"]
        elif event["type"] == "model_added" and gone is not None:
            out.append((gone, event["detected_at"]))
            gone = None
    if gone is not None and not present:
        out.append((gone, end))
    return out


def _expiration(events: Sequence[Event]) -> str | None:
    """The expiration date the newest event tells, if any."""
    current = None
    for event in events:
        if event["type"] in ("model_added", "model_removed"):
            info = event.get("new") if event["type"] == "model_added" else event.get("old")
            current = info.get("expiration_date") if isinstance(info, dict) else current
        elif event["type"] in ("expiration_set", "expiration_changed", "expiration_cleared"):
            current = event.get("new")
    return current if isinstance(current, str) else None


def _tokens(value: Any) -> str:
    return f"{value:,} tokens" if isinstance(value, int) else "unknown"
