"""The rule type."""

from __future__ import annotations

from dataclasses import dataclass

from watcher.notify.templates import Template


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
    settle: float | None = None  # seconds a change must hold before it is sent
    title: Template | None = None
    body: Template | None = None
    source: str = ""
