"""The rule type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from watcher.notify.templates import Template

Direction = Literal["up", "down", "any"]


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
    direction: Direction = "any"
    used: bool | None = None                  # any requests in the usage window (None: either)
    min_monthly_impact: float | None = None   # USD, on the absolute monthly_impact_usd
    min_spend_30d: float | None = None        # USD, spend_30d_usd
    settle: float | None = None  # seconds a change must hold before it is sent
    title: Template | None = None
    body: Template | None = None
    source: str = ""
    # "file:line: rules[i].key" of each key the rule gives, and of each glob as "key[j]":
    # where `check` points a warning about that key.
    where: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
