"""Does a rule select an event?  Pure functions over values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from watcher.impact import SPEND_TYPES
from watcher.rules.model import Rule


def matches(rule: Rule, event: Mapping[str, Any]) -> bool:
    """True when ``rule`` selects ``event`` (a flat event dict)."""
    if event["type"] not in rule.on:
        return False
    if rule.watches and event.get("watch") not in rule.watches:
        return False
    model = event.get("model") or ""
    if rule.models and not any(fnmatchcase(model, g) for g in rule.models):
        return False
    if any(fnmatchcase(model, g) for g in rule.exclude_models):
        return False
    field = event.get("field")
    if rule.fields and field is not None and not any(fnmatchcase(field, g) for g in rule.fields):
        return False
    return _passes_change(rule, event) and _passes_usage(rule, event)


MEASURED_TYPES = frozenset({"price_changed", "context_length_changed"})


def _passes_change(rule: Rule, event: Mapping[str, Any]) -> bool:
    if rule.min_change_pct is None and rule.direction == "any":
        return True
    if event.get("type") not in MEASURED_TYPES:
        return True  # thresholds speak of amounts; other events pass through them
    pct = event.get("change_pct")
    if pct is None:
        # No percentage: an increase from 0 (old price 0) passes "up" and any threshold;
        # a change between non-numeric values (variable pricing, tiers) passes only "any".
        return event.get("type") == "price_changed" and _from_zero(event) and rule.direction != "down"
    if rule.direction == "up" and pct <= 0:
        return False
    if rule.direction == "down" and pct >= 0:
        return False
    return rule.min_change_pct is None or abs(pct) >= rule.min_change_pct


def _passes_usage(rule: Rule, event: Mapping[str, Any]) -> bool:
    """``used``, ``min_spend_30d`` and ``min_monthly_impact`` (see watcher.impact).

    Unknown usage passes: an event without the field (no ``usage:`` section, nothing
    fetched yet, the key refused) or with a null impact (tiered or image pricing) is sent
    as if the rule had no usage keys, so that missing usage never drops an alert.  Event
    types that never carry usage pass through, as other events pass ``min_change_pct``.
    """
    if event.get("type") not in SPEND_TYPES:
        return True
    requests, spend = _known(event.get("requests_30d")), _known(event.get("spend_30d_usd"))
    if rule.used is not None and requests is not None and (requests > 0) != rule.used:
        return False
    if rule.min_spend_30d is not None and spend is not None and spend < rule.min_spend_30d:
        return False
    impact = _known(event.get("monthly_impact_usd"))
    return (rule.min_monthly_impact is None or event.get("type") != "price_changed"
            or impact is None or abs(impact) >= rule.min_monthly_impact)


def _known(value: Any) -> float | None:
    """A usage figure as stored, or None when it is unknown (absent, null, not a number)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:  # noqa: PLR0124 - nan
        return float(value)
    return None


def _from_zero(event: Mapping[str, Any]) -> bool:
    return event.get("old") == "0" and event.get("new") not in (None, "0")


def route(rules: Iterable[Rule], event: Mapping[str, Any]) -> list[tuple[Rule, str]]:
    """Every (rule, target) pair that ``event`` goes to, each target once, first rule wins."""
    out: list[tuple[Rule, str]] = []
    seen: set[str] = set()
    for rule in rules:
        if matches(rule, event):
            for target in rule.notify:
                if target not in seen:
                    seen.add(target)
                    out.append((rule, target))
    return out
