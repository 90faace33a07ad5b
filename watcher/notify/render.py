"""Human text for events: pure functions, no I/O.

Prices are shown the way people read them: per million tokens for token prices
(``$0.40 -> $0.16 / 1M prompt tokens (-60%)``), per unit for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from watcher.diff import as_decimal
from watcher.events import Event

if TYPE_CHECKING:  # config imports the templates of this package: avoid the cycle at runtime
    from watcher.config import Target
    from watcher.rules.model import Rule

PER_TOKEN = {"prompt": "prompt tokens", "completion": "completion tokens",
             "input_cache_read": "cached input tokens", "input_cache_write": "cache write tokens",
             "internal_reasoning": "reasoning tokens", "audio": "audio tokens"}
PER_UNIT = {"image": "image", "request": "request", "web_search": "web search",
            "image_output": "output image"}
MILLION = Decimal(1_000_000)


def money(amount: Decimal) -> str:
    """``$0.40``, ``$0.035``, ``$12``: two decimals at least, more only when needed."""
    if amount == amount.quantize(Decimal("0.01")):
        return f"${amount:,.2f}"
    return "$" + format(amount.normalize(), "f")


def price(value: Any, key: str) -> str:
    """One price as a person reads it, without the unit."""
    number = as_decimal(value)
    if number is None:
        return "n/a" if value is None else str(value)
    if number < 0:
        return "variable"
    return money(number * MILLION) if key in PER_TOKEN else money(number)


def price_unit(key: str) -> str:
    if key in PER_TOKEN:
        return f"/ 1M {PER_TOKEN[key]}"
    return f"per {PER_UNIT.get(key, key.replace('_', ' '))}"


def pct(value: float | None) -> str:
    if value is None:
        return ""
    return f" ({value:+.1f}%)".replace(".0%", "%")


def days_left(expires: str, today: date) -> int | None:
    try:
        return (date.fromisoformat(expires[:10]) - today).days
    except ValueError:
        return None


def describe(event: Event, today: date | None = None) -> str:
    """One self-explanatory line, without the model (callers put it in front)."""
    kind = event["type"]
    old, new = event.get("old"), event.get("new")
    if kind == "price_changed":
        key = (event.get("field") or "pricing.?").split(".", 1)[1]
        if isinstance(old, (list, dict)) or isinstance(new, (list, dict)):
            return f"{key} pricing changed"
        return (f"{price(old, key)} -> {price(new, key)} {price_unit(key)}"
                f"{pct(event.get('change_pct'))}")
    if kind == "model_added":
        return "new model" + _summary(new)
    if kind == "model_removed":
        return "removed from OpenRouter" + _summary(old)
    if kind == "model_unavailable_to_account":
        return "no longer available to your account (OpenRouter still lists it)"
    if kind == "model_available_to_account":
        return "available to your account again"
    if kind in ("expiration_set", "expiration_changed", "expiring_soon"):
        when = new
        left = days_left(when, today) if (today and isinstance(when, str)) else None
        suffix = "" if left is None else f" ({_days_phrase(left)})"
        if kind == "expiration_changed":
            return f"expiration moved {old} -> {when}{suffix}"
        return f"expires {when}{suffix}"
    if kind == "expiration_cleared":
        return f"expiration date {old} cleared"
    if kind == "context_length_changed":
        return f"context {_tokens(old)} -> {_tokens(new)} tokens{pct(event.get('change_pct'))}"
    field = event.get("field")
    if "added" in event or "removed" in event:
        parts = [f"+{v}" for v in event.get("added", [])] + [f"-{v}" for v in event.get("removed", [])]
        return f"{field}: {', '.join(parts)}"
    return f"{field}: {_short(old)} -> {_short(new)}"


def _days_phrase(left: int) -> str:
    if left > 1:
        return f"{left} days left"
    if left == 1:
        return "1 day left"
    if left == 0:
        return "today"
    return "passed yesterday" if left == -1 else f"passed {-left} days ago"


def line(event: Event, today: date | None = None) -> str:
    """``Name (id): description``."""
    name = event.get("name")
    who = f"{name} ({event['model']})" if name and name != event["model"] else event["model"]
    return f"{who}: {describe(event, today)}"


def _summary(info: Any) -> str:
    if not isinstance(info, dict):
        return ""
    bits = []
    prices = info.get("pricing") or {}
    if "prompt" in prices or "completion" in prices:
        bits.append(f"{price(prices.get('prompt', '0'), 'prompt')} in / "
                    f"{price(prices.get('completion', '0'), 'completion')} out per 1M tokens")
    if info.get("context_length"):
        bits.append(f"{_tokens(info['context_length'])} context")
    if info.get("expiration_date"):
        bits.append(f"expires {info['expiration_date']}")
    return f" ({', '.join(bits)})" if bits else ""


def _tokens(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _short(value: Any, limit: int = 80) -> str:
    text = "(none)" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Digest: every alert of one cycle for one target becomes one message.

SECTIONS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    # (title, event types, counted as "N <noun>")
    ("New models", ("model_added",), "new", "new"),
    ("Removed models", ("model_removed",), "removed", "removed"),
    ("No longer available to your account", ("model_unavailable_to_account",),
     "unavailable to the account", "unavailable to the account"),
    ("Available to your account again", ("model_available_to_account",),
     "available to the account again", "available to the account again"),
    ("Expiring", ("expiring_soon", "expiration_set", "expiration_changed", "expiration_cleared"),
     "expiring", "expiration changes"),
    ("Price changes", ("price_changed",), "price change", "price changes"),
    ("Context windows", ("context_length_changed",), "context change", "context changes"),
    ("Other changes", ("field_changed",), "other change", "other changes"),
)
MARKUPS = ("text", "markdown", "html")


_PRICE_ORDER = {f"pricing.{k}": i for i, k in enumerate([*PER_TOKEN, *PER_UNIT])}


def _reading_order(event: Event) -> tuple[str, int, str]:
    """Models in id order; prompt before completion before the rest."""
    field = event.get("field") or ""
    return (event["model"], _PRICE_ORDER.get(field, len(_PRICE_ORDER)), field)


def _sections(events: list[Event], today: date | None) -> list[tuple[str, list[str], str]]:
    """(section title, one line per model, count phrase) for non-empty sections."""
    out = []
    for title, types, one, many in SECTIONS:
        per_model: dict[str, list[str]] = {}
        heads: dict[str, str] = {}
        for event in sorted(events, key=_reading_order):
            if event["type"] in types:
                per_model.setdefault(event["model"], []).append(describe(event, today))
                name = event.get("name")
                heads[event["model"]] = (f"{name} ({event['model']})"
                                         if name and name != event["model"] else event["model"])
        if per_model:
            # dict.fromkeys: "expiration set" and its reminder read the same; say it once.
            lines = [f"{heads[m]}: {'; '.join(dict.fromkeys(d))}" for m, d in per_model.items()]
            noun = one if len(lines) == 1 else many
            if title == "Expiring":
                noun = "expiring" if all(
                    e["type"] in ("expiring_soon", "expiration_set", "expiration_changed")
                    for e in events if e["type"] in types) else noun
            out.append((title, lines, f"{len(lines)} {noun}"))
    return out


def digest_title(events: list[Event], today: date | None = None) -> str:
    """``OpenRouter models: 3 new, 5 price changes, 1 expiring``."""
    watches = sorted({e["watch"] for e in events})
    prefix = f"OpenRouter {watches[0]}" if len(watches) == 1 else "OpenRouter"
    counts = ", ".join(count for _, _, count in _sections(events, today))
    return f"{prefix}: {counts or 'no changes'}"


def digest_body(events: list[Event], *, markup: str = "text", limit: int = 10_000,
                today: date | None = None) -> str:
    """The events grouped by kind, one self-explanatory line per model, cut to ``limit``."""
    blocks: list[tuple[str, list[str]]] = [(t, lines) for t, lines, _ in _sections(events, today)]
    total = sum(len(lines) for _, lines in blocks)
    body = _format(blocks, total, total, markup)
    if len(body) <= limit:
        return body
    # The most lines that fit, found by bisection; "... and N more" says what was left out.
    low, high = 0, total - 1
    while low < high:
        mid = (low + high + 1) // 2
        if len(_format(blocks, mid, total, markup)) <= limit:
            low = mid
        else:
            high = mid - 1
    body = _format(blocks, low, total, markup)
    return body if len(body) <= limit else body[: max(0, limit - 3)] + "..."


def _format(blocks: list[tuple[str, list[str]]], shown: int, total: int, markup: str) -> str:
    parts: list[str] = []
    left = shown
    for title, lines in blocks:
        if left <= 0:
            break
        take = lines[:left]
        left -= len(take)
        if markup == "markdown":
            parts.append(f"**{title}**\n" + "\n".join(f"- {_md(x)}" for x in take))
        elif markup == "html":
            items = "".join(f"<li>{_html(x)}</li>" for x in take)
            parts.append(f"<h3>{_html(title)}</h3><ul>{items}</ul>")
        else:
            parts.append(f"{title}:\n" + "\n".join(f"  - {x}" for x in take))
    if shown < total:
        more = f"... and {total - shown} more"
        parts.append(f"<p>{more}</p>" if markup == "html" else more)
    return ("" if markup == "html" else "\n\n").join(parts)


def _md(text: str) -> str:
    return text.replace("*", "\\*")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# A message for one target.

MARKDOWN_SCHEMES = frozenset({"slack", "discord", "tgram", "mattermost", "mmost", "rocket",
                              "msteams", "matrix", "matrixs", "zulip", "ntfy", "ntfys"})
HTML_SCHEMES = frozenset({"mailto", "mailtos"})
JSON_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})
LIMITS = {"discord": 2000, "tgram": 4096, "slack": 8000, "msteams": 20000, "mattermost": 12000,
          "mailto": 100_000, "mailtos": 100_000, "console": 1_000_000}
DEFAULT_LIMIT = 10_000
JSON_LIMIT_EVENTS = 1000


@dataclass(frozen=True)
class Message:
    """What one target receives for one group of alerts."""

    title: str
    body: str
    format: str  # text | markdown | html | json
    key: str     # idempotency key


def body_format(target: Target) -> str:
    if target.format:
        return target.format
    if target.scheme in MARKDOWN_SCHEMES:
        return "markdown"
    if target.scheme in HTML_SCHEMES:
        return "html"
    if target.scheme in JSON_SCHEMES:
        return "json"
    return "text"


def compose(target: Target, events: list[Event], *, key: str, today: date | None = None,
            rule: Rule | None = None) -> Message:
    """The message ``target`` gets for ``events``: the digest, or the user's templates."""
    fmt = body_format(target)
    limit = target.max_length or LIMITS.get(target.scheme, DEFAULT_LIMIT)
    title = digest_title(events, today)
    if fmt == "json":
        shown = events[:JSON_LIMIT_EVENTS]
        body = orjson.dumps({"idempotency_key": key, "title": title, "events": shown,
                             "more": len(events) - len(shown)}).decode()
    else:
        body = digest_body(events, markup=fmt, limit=limit, today=today)
    title_t = (rule.title if rule else None) or target.title
    body_t = (rule.body if rule else None) or target.body
    if title_t or body_t:
        context = {"title": title, "body": body, "events": events, "count": len(events),
                   "lines": [line(e, today) for e in events], "target": target.name,
                   "rule": rule.name if rule else None}
        if title_t:
            title = title_t.render(context)
        if body_t:
            body = body_t.render(context)[:limit]
    return Message(title=title, body=body, format=fmt, key=key)
