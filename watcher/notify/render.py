"""Human text for events: pure functions, no I/O.

Prices are shown the way people read them: per million tokens for token prices
(``$0.40 -> $0.16 / 1M prompt tokens (-60%)``), per unit for the others.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from watcher.diff import as_decimal
from watcher.events import Event

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
    if kind in ("expiration_set", "expiration_changed", "expiring_soon"):
        when = new
        left = days_left(when, today) if (today and isinstance(when, str)) else None
        suffix = f" ({left} days left)" if left is not None else ""
        if kind == "expiration_changed":
            return f"expiration moved {old} -> {when}{suffix}"
        if kind == "expiring_soon":
            return f"expires {when}{suffix}"
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
