"""Turn changes into typed events: the public contract.

Every event is a flat JSON object with the same keys everywhere (``once --format json``,
``history``, webhook payloads)::

    {"watch": "models", "type": "price_changed", "model": "z-ai/glm-4.7",
     "name": "Z.AI: GLM 4.7", "field": "pricing.prompt", "old": "0.0000004",
     "new": "0.00000016", "change_pct": -60.0, "detected_at": "2026-01-04T19:13:29Z"}

``field_changed`` events for set-like lists also carry ``added`` and ``removed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from datetime import date
from typing import TYPE_CHECKING, Any, Literal, Required, TypedDict, cast, get_args

import orjson

from watcher.clock import days_left
from watcher.diff import MAX_DIGITS, Change, as_decimal
from watcher.snapshot import Snapshot

if TYPE_CHECKING:
    from decimal import Decimal

EventType = Literal[
    "model_added", "model_removed", "price_changed",
    "expiration_set", "expiration_changed", "expiration_cleared",
    "context_length_changed", "field_changed", "expiring_soon",
    "model_unavailable_to_account", "model_available_to_account",
    # kind: endpoints watches (watcher.providers)
    "provider_added", "provider_removed", "provider_price_changed", "provider_context_changed",
    "provider_quantization_changed", "provider_status_changed", "provider_degraded",
    "provider_recovered",
]
EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))


class Event(TypedDict, total=False):
    """One published event (README, "Events"): every key below ``detected_at`` is always
    present (``null`` when it does not apply); the last three only on some types."""

    watch: Required[str]
    type: Required[EventType]
    model: Required[str]
    name: Required[str | None]
    field: Required[str | None]        # the dotted path of what changed
    old: Required[Any]                 # values as the catalogue sent them
    new: Required[Any]
    change_pct: Required[float | None]
    detected_at: Required[str]         # ISO 8601, UTC, seconds
    added: list[Any]                   # field_changed on a set-like list
    removed: list[Any]
    days_left: int                     # expiring_soon
    monthly_impact_usd: float | None   # the usage impact (watcher.impact, issue 15)
    impact_note: str | None
    spend_30d_usd: float | None
    requests_30d: int
    provider: str | None               # provider events: the endpoint's tag ...
    provider_name: str | None          # ... and its provider's name


def make_event(*, watch: str, type: EventType, model: str, detected_at: str,  # noqa: A002
               name: str | None = None, field: str | None = None, old: Any = None,
               new: Any = None, change_pct: float | None = None, **extra: Any) -> Event:
    """An event with every contract key present, in the contract's order."""
    return cast("Event", {
        "watch": watch, "type": type, "model": model, "name": name, "field": field,
        "old": old, "new": new, "change_pct": change_pct, "detected_at": detected_at, **extra})


def events_from_changes(changes: Iterable[Change], *, old: Snapshot, new: Snapshot,
                        watch: str, detected_at: str) -> list[Event]:
    """The events for ``changes`` between snapshots ``old`` and ``new``."""
    events: list[Event] = []
    for change in changes:
        source = new.models.get(change.model) or old.models[change.model]
        common: dict[str, Any] = {"watch": watch, "model": change.model, "detected_at": detected_at,
                  "name": source.get("name")}
        if change.kind == "added":
            events.append(make_event(type="model_added", new=summary(source), **common))
        elif change.kind == "removed":
            events.append(make_event(type="model_removed", old=summary(source), **common))
        else:
            events.append(_field_event(change, common))
    return events


def _field_event(change: Change, common: dict[str, Any]) -> Event:
    field = ".".join(change.path)
    old, new = change.old, change.new
    if change.path[:1] == ("pricing",):
        return make_event(type="price_changed", field=field, old=old, new=new,
                          change_pct=change_pct(old, new), **common)
    if change.path == ("expiration_date",):
        kind: EventType = ("expiration_set" if old is None else
                "expiration_cleared" if new is None else "expiration_changed")
        return make_event(type=kind, field=field, old=old, new=new, **common)
    if change.path == ("context_length",):
        return make_event(type="context_length_changed", field=field, old=old, new=new,
                          change_pct=change_pct(old, new), **common)
    if _is_set(old) and _is_set(new):
        before, after = set(old or ()), set(new or ())
        return make_event(type="field_changed", field=field, old=old, new=new,
                          added=sorted(after - before, key=str),
                          removed=sorted(before - after, key=str), **common)
    return make_event(type="field_changed", field=field, old=old, new=new, **common)


def _is_set(value: Any) -> bool:
    return value is None or (
        isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value))


def change_pct(old: Any, new: Any) -> float | None:
    """Percent change from ``old`` to ``new``, rounded to 0.1; None when old is 0 or either
    is not a number the diff computes with (see :func:`watcher.diff.as_decimal`)."""
    from decimal import Context, localcontext  # noqa: PLC0415 - not at every start (cli.py)

    a, b = _number(old), _number(new)
    if a is None or b is None or a <= 0 or b < 0:
        return None
    # Both are bounded (at most 40 digits, 1e-20..1e10), so the ratio has at most ~100
    # digits: exact at this precision, and a change too large to quantize is None, not an
    # exception that would fail the cycle on every poll.
    with localcontext(Context(prec=120)):
        try:
            return float(round((b - a) / a * 100, 1))
        except ArithmeticError:
            return None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return as_decimal(str(value)) if abs(value) < 10 ** MAX_DIGITS else None
    return as_decimal(value)


def summary(item: dict[str, Any]) -> dict[str, Any]:
    """What a person wants to know about a model that appeared or went away."""
    pricing = item.get("pricing") if isinstance(item.get("pricing"), dict) else {}
    return {
        "context_length": item.get("context_length"),
        "pricing": {k: v for k, v in (pricing or {}).items() if k in ("prompt", "completion")},
        "expiration_date": item.get("expiration_date"),
    }


def account_view(events: list[Event], listed: frozenset[str], gaps: frozenset[str]) -> list[Event]:
    """Events of a ``/models/user`` watch, told apart with the ids OpenRouter ``listed``
    in the same cycle and the ``gaps`` (models OpenRouter listed that the account lacked)
    of the previous cycle.

    A removal of a model that OpenRouter still lists is ``model_unavailable_to_account``;
    one it no longer lists is ``model_removed``.  A model the account gets back, that it
    lacked while OpenRouter listed it, is ``model_available_to_account``.
    """

    def told_apart(event: Event) -> Event:
        if event["type"] == "model_removed" and event["model"] in listed:
            return {**event, "type": "model_unavailable_to_account"}
        if event["type"] == "model_added" and event["model"] in gaps:
            return {**event, "type": "model_available_to_account"}
        return event

    return [told_apart(event) for event in events]


def change_key(scope: str, event: Event) -> str:
    """What makes two events one change, whichever watch of ``scope`` (the API host) saw it:
    type, model, field, old and new (and the days left of a reminder).  The summaries of
    an added or removed model are left out: a removal is one removal, whichever list's
    copy of the model it carries."""
    keep: tuple[str, ...] = ("type", "model", "field", "days_left")
    if event["type"].startswith("provider_"):
        keep += ("provider_name", "provider")  # one model's providers change apart
    if event["type"] not in ("model_added", "model_removed", "model_unavailable_to_account",
                             "model_available_to_account"):
        keep += ("old", "new")
    import hashlib  # noqa: PLC0415 - not at every start (cli.py)

    identity = orjson.dumps([scope, *(event.get(k) for k in keep)], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(identity).hexdigest()[:32]


def expiring_soon(snap: Snapshot, *, watch: str, today: date, days: Iterable[int],
                  sent: AbstractSet[tuple[str, str, int]], detected_at: str
                  ) -> list[tuple[Event, tuple[str, str, int]]]:
    """Reminders for models whose ``expiration_date`` is ``days`` or fewer days away.

    Each (model, date, threshold) is reminded once: with thresholds 7 and 1, a model is
    reminded when it comes within 7 days and again within 1 day.  Returns each event
    with the reminder key to record.
    """
    thresholds = sorted(set(days))
    out: list[tuple[Event, tuple[str, str, int]]] = []
    for model_id, item in snap.models.items():
        when = item.get("expiration_date")
        if not isinstance(when, str) or (left := days_left(when, today)) is None:
            continue
        due = [d for d in thresholds if left <= d]
        if left < 0 or not due:
            continue
        key = (model_id, when, due[0])
        if key in sent:
            continue
        event = make_event(watch=watch, type="expiring_soon", model=model_id,
                           name=item.get("name"), field="expiration_date", new=when,
                           detected_at=detected_at, days_left=left)
        out.append((event, key))
    out.sort(key=lambda pair: pair[0]["model"])
    return out
