"""The rule type."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """Selects events and names the targets that hear about them."""

    name: str
    on: frozenset[str]
    notify: tuple[str, ...]
    models: tuple[str, ...] = ()
    exclude_models: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    watches: tuple[str, ...] = ()
    min_change_pct: float | None = None
    direction: str = "any"
    source: str = ""
