"""Does a rule select an event?  Pure functions over values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

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
    return _passes_change(rule, event)


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
