"""A model's history from its stored states: pure, values in and values out.

The store keeps each state a model has been in, and from when (:mod:`watcher.versions`):
walking them in order gives its whole story: when it appeared, each price over time,
context length, expiration date, removals and returns.  What changed between two states
is told by the events recorded when the poll saw it happen (the same ``diff`` + ``events``
as the alerts), so the timeline and the alerts never disagree, and a model page costs no
diff: with thousands of versions, diffing each pair again took over a second.
"""

from __future__ import annotations

from typing import Any

from watcher.diff import as_decimal
from watcher.events import Event, make_event, summary
from watcher.versions import ModelStates


def timeline(model_id: str, history: ModelStates, *, watch: str) -> dict[str, Any]:
    """The model's story in ``history`` (its states in one watch, oldest first)."""
    entries: list[Event] = []
    prices: dict[str, list[dict[str, Any]]] = {}
    context: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None
    name = None
    first_seen = None
    recorded: dict[str, list[Event]] = {}
    for event in history.events:
        recorded.setdefault(event["detected_at"], []).append(event)
    for index, (taken_at, item) in enumerate(history.states):
        if item is not None:
            name = item.get("name") or name
            first_seen = first_seen or taken_at
            _series(item, taken_at, prices, context)
        if previous is None and item is not None:
            # in_baseline: it was already there when this watch started.
            entries.append(make_event(watch=watch, type="model_added", model=model_id,
                                      name=item.get("name"), new=summary(item),
                                      detected_at=taken_at,
                                      in_baseline=index == 0 and history.in_first_snapshot))
        elif previous is not None and item is None:
            entries.append(make_event(watch=watch, type="model_removed", model=model_id,
                                      name=previous.get("name"), old=summary(previous),
                                      detected_at=taken_at))
        elif previous is not None and item is not None:
            entries += recorded.get(taken_at, [])
        previous = item
    # A price that was never anything but zero says nothing.
    prices = {k: v for k, v in prices.items() if any(as_decimal(p["price"]) for p in v)}
    return {"model": model_id, "name": name, "watch": watch, "first_seen": first_seen,
            "last_seen": history.last_seen, "present": previous is not None,
            "events": entries, "prices": prices, "context_length": context}


def _series(item: dict[str, Any], taken_at: str, prices: dict[str, list[dict[str, Any]]],
            context: list[dict[str, Any]]) -> None:
    pricing = item.get("pricing")
    if not isinstance(pricing, dict):
        pricing = {}
    # A key seen for the first time joins the series in name order; a known key missing
    # from this state is priced "0" (zero-priced keys are dropped upstream).
    for key in sorted(k for k, v in pricing.items() if k not in prices and isinstance(v, str)):
        prices[key] = []
    for key, series in prices.items():
        value = pricing.get(key, "0")
        if not isinstance(value, str):
            continue
        if not series:
            series.append({"at": taken_at, "price": value})
            continue
        last = series[-1]["price"]
        if last != value and as_decimal(last) != as_decimal(value):
            series.append({"at": taken_at, "price": value})
    length = item.get("context_length")
    if not context or context[-1]["context_length"] != length:
        context.append({"at": taken_at, "context_length": length})
