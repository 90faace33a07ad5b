"""Provider endpoints (issue 15 item 3): the providers behind a model, as values.

``GET /api/v1/models/{author}/{slug}/endpoints`` lists, per model, the endpoints that serve
it (tests/data/ENDPOINTS.md has the shape).  A ``kind: endpoints`` watch stores them
through the same snapshot/version machinery as the catalogue: its "models" are

* one record per endpoint, keyed ``{model}|{provider_name}|{tag}`` (:func:`endpoint_key`):
  the stable fields (prices, context, quantisation, status, limits) and the uptime
  *state* (``health``, ``low_polls``), never the uptime figures themselves;
* one marker per model watched (keyed ``{model}|``): a model whose endpoints were
  never seen yields no ``provider_added`` storm when it joins the selection.

The volatile figures (uptime, latency, throughput) change on every poll: they are
:class:`Stats` for the pages (the ``provider_stats`` table), never part of the snapshot,
so they make no version and no event.

What an endpoints poll turns into, per endpoint (:func:`events`)::

    seen now, not before (model watched both times)  provider_added
    seen before, not now (model watched both times)  provider_removed
    pricing.<key> differs (absent == "0")            provider_price_changed, change_pct
    context_length differs                           provider_context_changed, change_pct
    quantization differs                             provider_quantization_changed
    status (the code) differs                        provider_status_changed
    health up -> degraded                            provider_degraded
    health degraded -> up                            provider_recovered

``health`` has hysteresis (:func:`health`): ``uptime_last_30m`` below ``degraded_below``
for ``degraded_polls`` polls in a row makes an endpoint degraded; only above
``recovered_above`` is it up again.  An uptime between the two, or one low poll, changes
nothing a person hears about.  Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import quote

import orjson

from watcher.config import Watch
from watcher.diff import as_decimal
from watcher.errors import SnapshotError
from watcher.events import Event, EventType, change_pct, make_event
from watcher.snapshot import Snapshot, from_items

MAX_ENDPOINTS = 100      # per model: a hostile response stays bounded
MAX_TEXT = 200           # characters of a provider name, tag, quantisation, model name
MAX_PRICING_KEYS = 30
MAX_PARAMETERS = 100
STABLE = ("context_length", "quantization", "max_completion_tokens", "max_prompt_tokens",
          "status", "supports_implicit_caching")
UPTIMES = ("uptime_last_5m", "uptime_last_30m", "uptime_last_1d")
PERCENTILES = ("latency_last_30m", "throughput_last_30m")
PROVIDER_TYPES: frozenset[str] = frozenset({
    "provider_added", "provider_removed", "provider_price_changed", "provider_context_changed",
    "provider_quantization_changed", "provider_status_changed", "provider_degraded",
    "provider_recovered"})


@dataclass(frozen=True)
class Stats:
    """One endpoint's latest record and volatile figures, for the pages."""

    model: str
    key: str
    provider_name: str
    tag: str
    data: dict[str, Any]   # the stable record plus the uptime, latency and throughput


def endpoint_key(model: str, provider_name: str, tag: str) -> str:
    """The snapshot key of one endpoint: a model's provider, by ``provider_name`` + ``tag``."""
    return f"{model}|{provider_name}|{tag}"


def marker_key(model: str) -> str:
    """The snapshot key of a model's marker: not the model id, so that the model's history
    (its page, ``show``) is the catalogue's alone."""
    return f"{model}|"


def endpoints_path(model: str) -> str | None:
    """``models/{author}/{slug}/endpoints`` for a catalogue id, or None for an id that is no
    ``author/slug`` (no other path can be reached with a hostile id)."""
    parts = model.split("/")
    if len(parts) != 2 or any(p in ("", ".", "..") for p in parts) or len(model) > MAX_TEXT:
        return None
    return "models/" + "/".join(quote(p, safe=":-._~") for p in parts) + "/endpoints"


def select(patterns: Sequence[str], catalogue: Iterable[str], limit: int) -> tuple[list[str], int]:
    """The catalogue ids matching any glob, sorted, at most ``limit``; and how many matched."""
    matched = sorted(m for m in set(catalogue) if any(fnmatchcase(m, g) for g in patterns))
    return matched[:limit], len(matched)


def used_models(rows: Iterable[Sequence[Any]], since: str, limit: int) -> tuple[list[str], int]:
    """The models with requests in the usage ``rows`` (``watcher.usage.Row`` field order)
    from day ``since`` on, most spent first, at most ``limit``; and how many there were."""
    spend: dict[str, float] = {}
    for row in rows:
        day, model, requests, usd = row[0], row[1], row[7], row[5]
        if day >= since and isinstance(requests, int) and requests > 0:
            spend[model] = spend.get(model, 0.0) + float(usd or 0)
    ranked = sorted(spend, key=lambda m: (-spend[m], m))
    return ranked[:limit], len(ranked)


def parse(body: bytes, model: str) -> list[dict[str, Any]]:
    """The endpoint records of one response, bounded; SnapshotError when it is no endpoints
    response.  An endpoint without a string ``provider_name`` and ``tag`` is skipped (one bad
    entry costs only itself); a repeated key keeps the first."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"endpoints of {model[:MAX_TEXT]!r}: not valid JSON ({exc})") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    listed = data.get("endpoints") if isinstance(data, dict) else None
    if not isinstance(listed, list):
        raise SnapshotError(f"endpoints of {model[:MAX_TEXT]!r}: no data.endpoints list")
    records: dict[str, dict[str, Any]] = {}
    for item in listed[:MAX_ENDPOINTS]:
        record = _record(item, model)
        if record is not None:
            records.setdefault(endpoint_key(model, record["provider_name"], record["tag"]), record)
    return list(records.values())


def _record(item: Any, model: str) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    name, tag = item.get("provider_name"), item.get("tag")
    if not isinstance(name, str) or not isinstance(tag, str) or not name:
        return None
    record: dict[str, Any] = {"model": model, "provider_name": name[:MAX_TEXT],
                              "tag": tag[:MAX_TEXT], "model_name": _text(item.get("model_name"))}
    pricing = item.get("pricing")
    if isinstance(pricing, dict):
        record["pricing"] = {str(k)[:40]: _scalar(v) for k, v in
                             list(pricing.items())[:MAX_PRICING_KEYS] if _scalar(v) is not None}
    for key in STABLE:
        record[key] = _scalar(item.get(key))
    params = item.get("supported_parameters")
    if isinstance(params, list):
        record["supported_parameters"] = sorted(
            {p[:60] for p in params[:MAX_PARAMETERS] if isinstance(p, str)})
    for key in UPTIMES:
        record[key] = _percent(item.get(key))
    for key in PERCENTILES:
        stats = item.get(key)
        record[key] = ({p: v for p in ("p50", "p75", "p90", "p99")
                        if _finite(v := stats.get(p)) is not None} if isinstance(stats, dict)
                       else None)
    return record


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _scalar(value: Any) -> Any:
    """A bounded scalar: strings cut to MAX_TEXT, finite numbers, booleans; else None."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, bool):
        return value
    return _finite(value)


def _finite(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value if abs(value) < 10 ** 15 else None
    return value if math.isfinite(value) else None


def _percent(value: Any) -> float | None:
    number = _finite(value)
    return float(number) if number is not None and 0 <= number <= 100 else None


def health(previous: Mapping[str, Any] | None, uptime: float | None, watch: Watch
           ) -> tuple[str, int]:
    """The endpoint's uptime state after this poll: (``up`` | ``degraded``, low polls).

    Below ``degraded_below`` counts a low poll; ``degraded_polls`` in a row make it
    degraded; degraded stays until the uptime is above ``recovered_above``.  An unknown
    uptime (null, absent, not a percentage) leaves the state as it was.
    """
    state = str(previous.get("health", "up")) if previous else "up"
    low = int(previous.get("low_polls", 0) or 0) if previous else 0
    if uptime is None:
        return state, low
    if state == "degraded":
        return ("up", 0) if uptime > watch.recovered_above else ("degraded", 0)
    if uptime >= watch.degraded_below:
        return "up", 0
    low += 1
    return ("degraded", 0) if low >= watch.degraded_polls else ("up", low)


def settle(fetched: Mapping[str, list[dict[str, Any]]], carried: Iterable[str],
           baseline: Snapshot | None, watch: Watch) -> tuple[Snapshot, list[Stats]]:
    """The snapshot to store for this poll, and the figures for the pages.

    ``fetched``: each model whose endpoints were read, with its parsed records;
    ``carried``: models whose read failed this time: their records stay as the baseline
    has them (a failure is no removal).  Every other model is not watched any more.
    """
    old = baseline.models if baseline is not None else {}
    items: list[dict[str, Any]] = []
    stats: list[Stats] = []
    for model, records in fetched.items():
        items.append({"id": marker_key(model), "model": model, "watched": True})
        for record in records:
            key = endpoint_key(model, record["provider_name"], record["tag"])
            previous = old.get(key)
            uptime = record.get("uptime_last_30m")
            state, low = health(previous, uptime, watch)
            was = previous.get("health", "up") if previous else "up"
            # The uptime is kept only as it was when the state last changed: no new version
            # for every wiggle, and the event can say what the uptime was.
            at_change = uptime if state != was else (previous or {}).get("health_uptime")
            stable = {k: v for k, v in record.items() if k not in UPTIMES and k not in PERCENTILES}
            items.append({"id": key, **stable, "health": state, "low_polls": low,
                          "health_uptime": at_change})
            stats.append(Stats(model, key, record["provider_name"], record["tag"],
                               {**record, "health": state}))
    keep = set(carried) - fetched.keys()
    items += [dict(item, id=key) for key, item in old.items() if item.get("model") in keep]
    return from_items(items), stats


def events(old: Snapshot, new: Snapshot, *, watch: str, detected_at: str) -> list[Event]:
    """The provider events between two endpoints snapshots (see the module's table).

    Only models watched both times give events: one joining or leaving the selection (a
    glob, the usage window) does not look like its providers coming or going.
    """
    both = {v.get("model") for v in new.models.values() if v.get("watched")} & {
        v.get("model") for v in old.models.values() if v.get("watched")}
    out: list[Event] = []
    for key in sorted(old.models.keys() | new.models.keys()):
        before, after = old.models.get(key), new.models.get(key)
        item = after or before
        if item is None or item.get("watched") or item.get("model") not in both:
            continue
        common: dict[str, Any] = {
            "watch": watch, "model": item["model"], "name": item.get("model_name"),
            "detected_at": detected_at, "provider": item.get("tag"),
            "provider_name": item.get("provider_name")}
        if before is None:
            out.append(make_event(type="provider_added", new=summary(item), **common))
        elif after is None:
            out.append(make_event(type="provider_removed", old=summary(item), **common))
        else:
            out += _changes(before, after, common)
    return out


def _changes(before: Mapping[str, Any], after: Mapping[str, Any],
             common: dict[str, Any]) -> list[Event]:
    out: list[Event] = []
    old_prices, new_prices = _prices(before), _prices(after)
    for key in sorted(old_prices.keys() | new_prices.keys()):
        a, b = old_prices.get(key, "0"), new_prices.get(key, "0")
        if not _same_price(a, b):
            out.append(make_event(type="provider_price_changed", field=f"pricing.{key}",
                                  old=a, new=b, change_pct=change_pct(a, b), **common))
    simple: tuple[tuple[str, EventType, bool], ...] = (
        ("context_length", "provider_context_changed", True),
        ("quantization", "provider_quantization_changed", False),
        ("status", "provider_status_changed", False))
    for field, kind, measured in simple:
        a, b = before.get(field), after.get(field)
        if a != b:
            out.append(make_event(type=kind, field=field, old=a, new=b,
                                  change_pct=change_pct(a, b) if measured else None, **common))
    was, now = before.get("health", "up"), after.get("health", "up")
    if was != now and "degraded" in (was, now):
        kind = "provider_degraded" if now == "degraded" else "provider_recovered"
        out.append(make_event(type=kind, field="uptime_last_30m", old=None,
                              new=after.get("health_uptime"), **common))
    return out


def _prices(item: Mapping[str, Any]) -> dict[str, Any]:
    pricing = item.get("pricing")
    return dict(pricing) if isinstance(pricing, dict) else {}


def _same_price(a: Any, b: Any) -> bool:
    if a == b:
        return True
    x, y = as_decimal(a), as_decimal(b)
    return x is not None and y is not None and x == y


def summary(item: Mapping[str, Any]) -> dict[str, Any]:
    """What a person wants to know of a provider that appeared or went away."""
    prices = _prices(item)
    return {"pricing": {k: v for k, v in prices.items() if k in ("prompt", "completion")},
            "context_length": item.get("context_length"),
            "quantization": item.get("quantization"), "status": item.get("status")}
