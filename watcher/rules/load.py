"""Strict loading of rule files: errors name the file, the line and the key."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from watcher import yamldoc
from watcher.events import EVENT_TYPES
from watcher.notify.templates import compile_template
from watcher.rules.model import Rule

RULE_KEYS = {"name", "on", "models", "exclude_models", "fields", "watches",
             "min_change_pct", "direction", "notify", "settle", "title", "body",
             "used", "min_monthly_impact", "min_spend_30d"}
_GLOB_CHARS = re.compile(r"^[\w.\-/:*?\[\]!@+]+$")


def load_rule_files(paths: Iterable[Path], *, targets: set[str], watches: set[str]
                    ) -> tuple[Rule, ...]:
    """Every rule of every file, in order; rule names are unique across files."""
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for path in paths:
        for rule, value in _load_file(path, targets=targets, watches=watches):
            if rule.name in seen:
                raise value.error(f"rule name {rule.name!r} is already used at {seen[rule.name]}")
            seen[rule.name] = rule.source
            rules.append(rule)
    return tuple(rules)


def _load_file(path: Path, *, targets: set[str], watches: set[str]
               ) -> list[tuple[Rule, yamldoc.Value]]:
    root = yamldoc.load(path)
    top = root.mapping(allowed={"rules"}, required={"rules"})
    if top["rules"].is_null:
        return []
    return [(_rule(item, targets, watches), item) for item in top["rules"].sequence()]


def _rule(value: yamldoc.Value, targets: set[str], watches: set[str]) -> Rule:
    keys = value.mapping(allowed=RULE_KEYS, required={"name", "on", "notify"})
    on = keys["on"].string_list()
    for event_type in on:
        if event_type not in EVENT_TYPES:
            raise keys["on"].error(
                f"unknown event type {event_type!r} (known: {', '.join(sorted(EVENT_TYPES))})")
    if not on:
        raise keys["on"].error("name at least one event type")
    notify = keys["notify"].string_list()
    for target in notify:
        if target not in targets:
            known = ", ".join(sorted(targets)) or "none are configured"
            raise keys["notify"].error(f"unknown target {target!r} (targets: {known})")
    if not notify:
        raise keys["notify"].error("name at least one target")
    rule_watches = keys["watches"].string_list() if "watches" in keys else []
    for name in rule_watches:
        if name not in watches:
            raise keys["watches"].error(f"unknown watch {name!r}")
    min_pct = keys["min_change_pct"].number(minimum=0) if "min_change_pct" in keys else None
    return Rule(
        name=keys["name"].string(),
        on=frozenset(on),
        notify=tuple(notify),
        models=_globs(keys.get("models")),
        exclude_models=_globs(keys.get("exclude_models")),
        fields=_globs(keys.get("fields")),
        watches=tuple(rule_watches),
        min_change_pct=min_pct,
        direction=keys["direction"].choice(("up", "down", "any")) if "direction" in keys else "any",
        used=keys["used"].boolean() if "used" in keys else None,
        min_monthly_impact=(keys["min_monthly_impact"].number(minimum=0)
                            if "min_monthly_impact" in keys else None),
        min_spend_30d=keys["min_spend_30d"].number(minimum=0) if "min_spend_30d" in keys else None,
        settle=yamldoc.duration(keys["settle"], minimum=1) if "settle" in keys else None,
        title=compile_template(keys["title"]) if "title" in keys else None,
        body=compile_template(keys["body"]) if "body" in keys else None,
        source=f"{value.path}:{value.line}",
        where=_where(keys),
    )


def _where(keys: dict[str, yamldoc.Value]) -> dict[str, str]:
    where = {}
    for key, value in keys.items():
        where[key] = f"{value.path}:{value.line}: {value.key}"
        if key in ("models", "exclude_models", "fields") and not value.is_null:
            items = value.sequence() if isinstance(value.node, yaml.SequenceNode) else [value]
            for index, item in enumerate(items):
                where[f"{key}[{index}]"] = f"{item.path}:{item.line}: {value.key}[{index}]"
    return where


def _globs(value: yamldoc.Value | None) -> tuple[str, ...]:
    if value is None:
        return ()
    globs = value.string_list()
    for pattern in globs:
        if not pattern or not _GLOB_CHARS.match(pattern) or not _brackets_balanced(pattern):
            raise value.error(f"bad glob {pattern!r}")
    return tuple(globs)


def _brackets_balanced(pattern: str) -> bool:
    depth = 0
    for char in pattern:
        if char == "[":
            if depth:
                return False
            depth = 1
        elif char == "]" and depth:
            depth = 0
    return depth == 0
