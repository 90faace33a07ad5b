"""What ``check`` and start-up verify beyond a strict load: that the config can work.

:func:`watcher.config.load` proves a config well formed; this module finds the configs
that load but lie: a target that can never be sent to, a rule that can never fire.  An
error stops ``check``, ``run``, ``once`` and a SIGHUP reload (exit 2 / ``reload_failed``).
A warning is a config that works, probably not as meant: ``check`` prints it and still
exits 0; ``run`` and ``once`` log it as ``config.warning``.  Every finding starts with
``file:line: key:``.

==============================================  =======  ======================================
finding                                         kind     how it is decided
==============================================  =======  ======================================
a target URL Apprise cannot load                error    ``Apprise.instantiate``, no network;
                                                         the message never shows the URL
a target no rule and no ``operator.notify``     warning
uses
a ``fields:`` glob no event field can match     warning  the event contract (``pricing.*``,
                                                         ``expiration_date``, ``context_length``)
                                                         and the catalogue's fields:
                                                         :data:`SCHEMA_FIELDS` plus those of
                                                         the stored lists
a ``models:``/``exclude_models:`` glob no       warning  only once state exists: every model
stored model ever matched                                any watch ever listed (its spans)
a rule, or one of its event types, that can     warning  :func:`_never` (the reasons are there)
never fire
a key that changes nothing for the rule's       warning  ``min_change_pct``/``direction`` without
types                                                    a measured type; ``fields`` when none
                                                         of the types carries a field
a usage key (``used``, ``min_spend_30d``,       warning  no ``usage:`` section (every event
``min_monthly_impact``) that changes nothing             passes it), or none of the rule's
                                                         types carries usage
==============================================  =======  ======================================
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from watcher.config import Settings, public_watch
from watcher.errors import ConfigError, StateError
from watcher.impact import SPEND_TYPES
from watcher.rules.match import MEASURED_TYPES
from watcher.rules.model import Rule
from watcher.store import Store

# Every dotted field of the models in the real /api/v1/models responses of tests/data
# (December 2025 - January 2026; a test keeps it in step).  Before any state exists these
# are the fields a field_changed event can name.
SCHEMA_FIELDS = frozenset({
    "architecture", "architecture.input_modalities", "architecture.instruct_type",
    "architecture.modality", "architecture.output_modalities", "architecture.tokenizer",
    "canonical_slug", "context_length", "created", "default_parameters",
    "default_parameters.frequency_penalty", "default_parameters.temperature",
    "default_parameters.top_p", "description", "expiration_date", "hugging_face_id", "id",
    "name", "per_request_limits", "pricing", "pricing.audio", "pricing.completion",
    "pricing.image", "pricing.input_cache_read", "pricing.input_cache_write",
    "pricing.internal_reasoning", "pricing.prompt", "pricing.request", "pricing.web_search",
    "supported_parameters", "top_provider", "top_provider.context_length",
    "top_provider.is_moderated", "top_provider.max_completion_tokens",
})
# The field each of these types always carries (events.py: the public contract).
FIXED_FIELD = {"expiration_set": "expiration_date", "expiration_changed": "expiration_date",
               "expiration_cleared": "expiration_date", "expiring_soon": "expiration_date",
               "context_length_changed": "context_length"}
# Types whose events carry no field, so that ``fields:`` lets them through.
NO_FIELD = frozenset({"model_added", "model_removed"})
# model_unavailable_to_account and model_available_to_account: only from a /models/user
# watch paired with the public list of its host.
ACCOUNT_SUFFIX = "_to_account"


@dataclass(frozen=True)
class Catalogue:
    """What the stored state says the catalogue has had."""

    models: frozenset[str]
    fields: frozenset[str]


def verify(settings: Settings, store: Store | None) -> list[str]:
    """What ``check``, ``run``, ``once`` and a reload do: :func:`check_targets`, then every
    warning (the loader's own first); ``store`` None when there is no state to read."""
    check_targets(settings)
    found = list(settings.warnings)
    catalogue = None
    try:
        catalogue = stored_catalogue(store) if store is not None else None
    except StateError as exc:
        found.append(f"{exc} (so models: globs are not checked against the stored lists)")
    return [*found, *warnings(settings, catalogue)]


def check_targets(settings: Settings) -> None:
    """Raise :class:`ConfigError` for the first target whose URL Apprise cannot load."""
    # Apprise takes ~0.2 s to import: only the commands that validate or send load it.
    import apprise  # noqa: PLC0415
    from apprise.manager_plugins import NotificationManager  # noqa: PLC0415

    for name, target in settings.targets.items():
        if target.scheme == "console":
            continue
        # Apprise logs the URL it refuses, token and all: its words stay in the capture.
        with apprise.LogCapture(level=logging.DEBUG):  # type: ignore[no-untyped-call]
            loaded = apprise.Apprise.instantiate(target.url.reveal())
        if loaded is not None:
            continue
        if target.scheme not in NotificationManager():  # type: ignore[no-untyped-call]
            reason = (f"Apprise has no {target.scheme}:// scheme (its URLs: "
                      "https://github.com/caronc/apprise/wiki)")
        else:
            reason = (f"Apprise's {target.scheme}:// plugin refuses this URL (a token or part "
                      "missing or malformed?)")
        raise ConfigError(f"{target.source}: targets.{name}: {reason}; the URL is not shown "
                          "because it may hold a secret")


def stored_catalogue(store: Store) -> Catalogue | None:
    """The models and fields the stored lists have had; None before the first poll."""
    models: set[str] = set()
    fields: set[str] = set()
    watches = store.watches()
    for watch in watches:
        models.update(store.models_ever(watch))
        for snap in (store.first_snapshot(watch), store.latest_snapshot(watch)):
            if snap is not None:
                for item in snap.models.values():
                    fields.update(dotted_fields(item))
    return Catalogue(frozenset(models), frozenset(fields)) if watches else None


def dotted_fields(item: dict[str, Any], prefix: str = "") -> Iterable[str]:
    """Every dotted path of object keys in ``item``, cut at lists (as the diff names them)."""
    for key, value in item.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict):
            yield from dotted_fields(value, f"{path}.")


def warnings(settings: Settings, catalogue: Catalogue | None = None) -> list[str]:
    """Every warning about ``settings``; the ``models:`` globs only with a ``catalogue``."""
    fields = SCHEMA_FIELDS | (catalogue.fields if catalogue else frozenset())
    used = {t for rule in settings.rules for t in rule.notify} | set(settings.operator.notify)
    out = [f"{target.source}: targets.{name}: no rule and no operator.notify sends to it"
           for name, target in settings.targets.items() if name not in used]
    for rule in settings.rules:
        for index, glob in enumerate(rule.fields):
            if not any(_can_carry(t, glob, fields) for t in (*FIXED_FIELD, "price_changed",
                                                              "field_changed")):
                out.append(f"{_at(rule, f'fields[{index}]')}: {glob!r} matches no field an "
                           "event can carry (prices are pricing.<key> such as pricing.prompt; "
                           "then expiration_date, context_length, or a model field such as "
                           "top_provider.max_completion_tokens)")
        if catalogue is not None:
            for key in ("models", "exclude_models"):
                for index, glob in enumerate(getattr(rule, key)):
                    if not any(fnmatchcase(m, glob) for m in catalogue.models):
                        out.append(f"{_at(rule, f'{key}[{index}]')}: {glob!r} matches no model "
                                   f"of the {len(catalogue.models)} the stored lists have had")
        out += _rule_findings(rule, settings, fields)
    return out


def _rule_findings(rule: Rule, settings: Settings, fields: frozenset[str]) -> list[str]:
    named = f"rule {rule.name!r}"
    if _excludes_all(rule):
        reason = "exclude_models leaves out every model it selects"
        return [f"{_at(rule, 'exclude_models')}: {named} can never fire: {reason}"]
    out: list[str] = []
    never = {t: why for t in sorted(rule.on) if (why := _never(rule, t, settings, fields))}
    if never and len(never) == len(rule.on):
        keys = {key for key, _ in never.values()}
        key = keys.pop() if len(keys) == 1 else "on"
        reasons = "; ".join(reason for _, reason in never.values())
        out.append(f"{_at(rule, key)}: {named} can never fire: {reasons}")
    else:
        out += [f"{_at(rule, key)}: {named} never sends its {t} events: {reason}"
                for t, (key, reason) in never.items()]
    if not rule.on & MEASURED_TYPES:
        for key, given in (("min_change_pct", rule.min_change_pct is not None),
                           ("direction", rule.direction != "any")):
            if given:
                out.append(f"{_at(rule, key)}: {named}: {key} changes nothing: only "
                           "price_changed and context_length_changed have a change_pct, and "
                           "other events pass through it")
    out += _usage_findings(rule, settings)
    if rule.fields and all(t in NO_FIELD or t.endswith(ACCOUNT_SUFFIX) for t in rule.on):
        out.append(f"{_at(rule, 'fields')}: {named}: fields changes nothing: "
                   f"{', '.join(sorted(rule.on))} events carry no field, and pass through it")
    return out


def _usage_findings(rule: Rule, settings: Settings) -> list[str]:
    """The usage keys (used, min_spend_30d, min_monthly_impact) that change nothing."""
    named = f"rule {rule.name!r}"
    given = [key for key, value in (("used", rule.used), ("min_spend_30d", rule.min_spend_30d),
                                    ("min_monthly_impact", rule.min_monthly_impact))
             if value is not None]
    out: list[str] = []
    for key in given:
        types = {"price_changed"} if key == "min_monthly_impact" else SPEND_TYPES
        if settings.usage is None:
            out.append(f"{_at(rule, key)}: {named}: {key} changes nothing without a usage: "
                       "section: events without usage pass it")
        elif not rule.on & types:
            out.append(f"{_at(rule, key)}: {named}: {key} changes nothing: none of "
                       f"{', '.join(sorted(rule.on))} carries usage (only "
                       f"{', '.join(sorted(types))}), and they pass through it")
    return out


def _at(rule: Rule, key: str) -> str:
    """Where a warning about ``key`` of ``rule`` points: ``file:line: rules[i].key``."""
    return rule.where.get(key) or f"{rule.source}: {key}"


def _never(rule: Rule, event_type: str, settings: Settings, fields: frozenset[str]
           ) -> tuple[str, str] | None:
    """Why ``rule`` can never pass an event of ``event_type``, as (key to blame, reason)."""
    if event_type.endswith(ACCOUNT_SUFFIX):
        names = set(rule.watches) or {w.name for w in settings.watches}
        if not any(w.name in names and public_watch(settings, w) for w in settings.watches):
            where = "its watches have" if rule.watches else "the config has"
            reason = (f"{event_type} comes only from a /models/user watch paired with the "
                      f"/models watch of the same host, and {where} none")
            return ("watches" if rule.watches else "on"), reason
    if event_type.startswith("provider_"):
        names = set(rule.watches) or {w.name for w in settings.watches}
        if not any(w.name in names and w.kind == "endpoints" for w in settings.watches):
            where = "its watches have" if rule.watches else "the config has"
            return (("watches" if rule.watches else "on"),
                    f"{event_type} comes only from a kind: endpoints watch, and {where} none")
    if event_type == "expiring_soon" and not settings.expiring_soon_days:
        return "on", "expiring_soon_days is empty, so no expiring_soon is ever sent"
    if rule.fields and not any(_can_carry(event_type, g, fields) is not False for g in rule.fields):
        carried = ("pricing.<key>" if event_type == "price_changed" else
                   FIXED_FIELD.get(event_type, "a model field other than those"))
        return "fields", f"{event_type} events carry {carried}, which no fields glob matches"
    if (event_type in MEASURED_TYPES and rule.direction == "down"
            and (rule.min_change_pct or 0) > 100):
        return "min_change_pct", "a decrease is at most 100%"
    return None


def _can_carry(event_type: str, glob: str, fields: frozenset[str]) -> bool | None:
    """Can an ``event_type`` event carry a field ``glob`` matches?  None: it has no field."""
    if event_type in NO_FIELD or event_type.endswith(ACCOUNT_SUFFIX):
        return None
    if event_type in FIXED_FIELD:
        return fnmatchcase(FIXED_FIELD[event_type], glob)
    if event_type == "price_changed":
        # Any pricing key may appear tomorrow: a glob under pricing. can always match.
        return glob.startswith("pricing.") or any(
            fnmatchcase(f, glob) for f in fields if f.startswith("pricing."))
    if event_type == "field_changed":
        return any(fnmatchcase(f, glob) for f in fields
                   if f.split(".", 1)[0] != "pricing" and f not in FIXED_FIELD.values())
    return True  # a type this module does not know: assume it can


def _excludes_all(rule: Rule) -> bool:
    """Does every model that ``models`` selects match an ``exclude_models`` glob?

    Sound, not complete: a glob is only known to cover another when it is ``*``, the same
    glob, a literal prefix followed by ``*``, or matches a glob without wildcards.
    """
    return bool(rule.exclude_models) and all(
        any(_covers(ex, inc) for ex in rule.exclude_models) for inc in rule.models or ("*",))


def _covers(outer: str, inner: str) -> bool:
    if outer in ("*", inner):
        return True
    magic = set("*?[")
    if not magic & set(inner):
        return fnmatchcase(inner, outer)
    head = outer.removesuffix("*")
    return outer.endswith("*") and not magic & set(head) and inner.startswith(head)
