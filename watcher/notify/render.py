"""Human text for events: pure functions, no I/O.

Prices are shown the way people read them: per million tokens for token prices
(``$0.40 -> $0.16 / 1M prompt tokens (-60%)``), per unit for the others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Context, Decimal, localcontext
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson

from watcher import escape
from watcher.clock import days_left
from watcher.diff import as_decimal
from watcher.errors import TemplateRefused
from watcher.events import Event
from watcher.links import model_id_path, model_path

if TYPE_CHECKING:  # config imports the templates of this package: avoid the cycle at runtime
    from watcher.config import Format, Target
    from watcher.notify.templates import Template


class RuleTemplates(Protocol):
    """What a message needs of its rule: a ``Rule``, or what the outbox kept of one."""

    @property
    def name(self) -> str: ...
    @property
    def title(self) -> Template | None: ...
    @property
    def body(self) -> Template | None: ...


@dataclass(frozen=True)
class Queued:
    """A rule's templates as the outbox kept them when the message was queued."""

    name: str
    title: Template | None = None
    body: Template | None = None


NotifyType = Literal["info", "success", "warning", "failure"]
PER_TOKEN = {"prompt": "prompt tokens", "completion": "completion tokens",
             "input_cache_read": "cached input tokens", "input_cache_write": "cache write tokens",
             "internal_reasoning": "reasoning tokens", "audio": "audio tokens"}
PER_UNIT = {"image": "image", "request": "request", "web_search": "web search",
            "image_output": "output image"}
MILLION = Decimal(1_000_000)


def money(amount: Decimal) -> str:
    """``$0.40``, ``$0.035``, ``$12``: two decimals at least, more only when needed."""
    if amount.is_zero():
        return "$0.00"  # never "$-0.00"
    # Enough precision for any amount as_decimal lets through (40 digits, up to 1e16 per
    # million tokens, plus two decimals): the default 28 digits could raise on quantize.
    with localcontext(Context(prec=80)):
        if amount == amount.quantize(Decimal("0.01")):
            return f"${amount:,.2f}"
        return "$" + format(amount.normalize(), "f")


def price(value: Any, key: str) -> str:
    """One price as a person reads it, without the unit; an odd value is shown as it came."""
    number = as_decimal(value)
    if number is None:
        return "n/a" if value is None else shown(value, 40)
    if number < 0:
        return "variable"
    # as_decimal bounds the number (1e-20..1e10, 40 digits): this never overflows.
    return money(number * MILLION) if key in PER_TOKEN else money(number)


def price_unit(key: str) -> str:
    if key in PER_TOKEN:
        return f"/ 1M {PER_TOKEN[key]}"
    return f"per {PER_UNIT.get(key, shown(key, 40).replace('_', ' '))}"


def pct(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return ""
    return f" ({value:+.1f}%)".replace(".0%", "%")


MAX_DESCRIPTION = 500  # characters of one event's description: a hostile list stays one line


def describe(event: Event, today: date | None = None) -> str:
    """One self-explanatory line of plain text, without the model (callers put it in front).

    Total: any JSON value in any field gives a line (an odd value shown as it came,
    shortened), never an exception; control characters never come through.
    """
    try:
        text = _describe(event, today)
    except (ArithmeticError, ValueError, TypeError, KeyError, AttributeError):
        # The parts above are each total; this is the last line of defence, so that one
        # stored event of a shape no code foresaw still reaches a person.
        text = f"{shown(event.get('type'), 40)}: {shown(event.get('field'), 80)}"
    text = escape.plain(text)
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 3] + "..."


def _describe(event: Event, today: date | None) -> str:
    lead = usage_lead(event)
    text = _what_changed(event, today)
    return f"{lead}: {text}" if lead else text


def usage_lead(event: Event) -> str:
    """What the change means for the account, when its usage is known: ``+$412.00/month at
    your last 30 days`` for a price change, ``$1,240.00 spent, 3,100 requests in the last 30
    days`` (or ``unused in the last 30 days``) for a model going away; else empty.  A
    stored value that is no number shows nothing."""
    if event.get("type") == "price_changed":
        if event.get("requests_30d") == 0 and event.get("monthly_impact_usd") == 0:
            return "unused in the last 30 days"
        amount = _usd(event.get("monthly_impact_usd"))
        if amount is None:
            return ""
        sign = "+" if amount > 0 else "-" if amount < 0 else ""
        return f"{sign}{money(abs(amount))}/month at your last 30 days"
    requests, spend = event.get("requests_30d"), _usd(event.get("spend_30d_usd"))
    if not isinstance(requests, int) or isinstance(requests, bool) or spend is None:
        return ""
    if requests <= 0 and spend <= 0:
        return "unused in the last 30 days"
    calls = "1 request" if requests == 1 else f"{_thousands(requests)} requests"
    return f"{money(spend)} spent, {calls} in the last 30 days"


def _usd(value: Any) -> Decimal | None:
    """A stored USD amount (a JSON number under 1e12), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or abs(value) >= 1e12:
        return None
    return Decimal(repr(value)).quantize(Decimal("0.01"))


def _what_changed(event: Event, today: date | None) -> str:
    kind = event.get("type")
    old, new = event.get("old"), event.get("new")
    if isinstance(kind, str) and kind.startswith("provider_"):
        return _provider_changed(event)
    if kind == "price_changed":
        field = event.get("field")
        field = field if isinstance(field, str) else "pricing"
        key = field.partition(".")[2] or field  # "pricing" itself when it stopped being an object
        if isinstance(old, (list, dict)) or isinstance(new, (list, dict)) or key == "pricing":
            what = "pricing" if key == "pricing" else f"{shown(key, 40)} pricing"
            return f"{what} changed: {shown(old, 60)} -> {shown(new, 60)}"
        return (f"{price(old, key)} -> {price(new, key)} {price_unit(key)}"
                f"{pct(event.get('change_pct'))}")
    if kind == "model_added":
        return "new model" + _model_facts(new)
    if kind == "model_removed":
        return "removed from OpenRouter" + _model_facts(old)
    if kind == "model_unavailable_to_account":
        return "no longer available to your account (OpenRouter still lists it)"
    if kind == "model_available_to_account":
        return "available to your account again"
    if kind in ("expiration_set", "expiration_changed", "expiring_soon"):
        left = days_left(new, today) if today else None
        suffix = "" if left is None else f" ({_days_phrase(left)})"
        if kind == "expiration_changed":
            return f"expiration moved {shown(old, 40)} -> {shown(new, 40)}{suffix}"
        return f"expires {shown(new, 40)}{suffix}"
    if kind == "expiration_cleared":
        return f"expiration date {shown(old, 40)} cleared"
    if kind == "context_length_changed":
        return (f"context {_thousands(old)} -> {_thousands(new)} tokens"
                f"{pct(event.get('change_pct'))}")
    field = shown(event.get("field"), 80)
    added, removed = event.get("added"), event.get("removed")
    if isinstance(added, list) or isinstance(removed, list):
        parts = ([f"+{shown(v, 40)}" for v in (added if isinstance(added, list) else [])[:20]]
                 + [f"-{shown(v, 40)}" for v in (removed if isinstance(removed, list) else [])[:20]])
        return f"{field}: {', '.join(parts)}"
    return f"{field}: {shown(old)} -> {shown(new)}"


def _provider_changed(event: Event) -> str:
    """A provider event (watcher.providers): ``provider DeepInfra (deepinfra/fp8): ...``."""
    kind, old, new = event.get("type"), event.get("old"), event.get("new")
    who = f"provider {shown(event.get('provider_name'), 80)} ({shown(event.get('provider'), 80)})"
    if kind == "provider_added":
        return f"{who} added" + _model_facts(new)
    if kind == "provider_removed":
        return f"{who} removed" + _model_facts(old)
    if kind == "provider_price_changed":
        field = event.get("field")
        key = field.partition(".")[2] if isinstance(field, str) else ""
        if not key or isinstance(old, (list, dict)) or isinstance(new, (list, dict)):
            return f"{who}: pricing changed: {shown(old, 60)} -> {shown(new, 60)}"
        return (f"{who}: {price(old, key)} -> {price(new, key)} {price_unit(key)}"
                f"{pct(event.get('change_pct'))}")
    if kind == "provider_context_changed":
        return (f"{who}: context {_thousands(old)} -> {_thousands(new)} tokens"
                f"{pct(event.get('change_pct'))}")
    if kind == "provider_quantization_changed":
        return f"{who}: quantization {shown(old, 40)} -> {shown(new, 40)}"
    if kind == "provider_status_changed":
        return f"{who}: status {shown(old, 20)} -> {shown(new, 20)}"
    uptime = f"{new:g}%" if isinstance(new, (int, float)) and not isinstance(new, bool) else "?"
    if kind == "provider_degraded":
        return f"{who} degraded: uptime {uptime} over the last 30 minutes"
    if kind == "provider_recovered":
        return f"{who} recovered: uptime {uptime} over the last 30 minutes"
    return f"{who}: {shown(event.get('field'), 80)}: {shown(old)} -> {shown(new)}"


def _days_phrase(left: int) -> str:
    if left > 1:
        return f"{left} days left"
    if left == 1:
        return "1 day left"
    if left == 0:
        return "today"
    return "passed yesterday" if left == -1 else f"passed {-left} days ago"


def who(event: Mapping[str, Any]) -> str:
    """``Name (id)``, or the id alone: plain text, shortened."""
    model, name = shown(event.get("model"), MAX_ID), event.get("name")
    if name is None or name == event.get("model") or name == "":
        return model
    return f"{shown(name, MAX_NAME)} ({model})"


def line(event: Event, today: date | None = None) -> str:
    """``Name (id): description``, plain text."""
    return f"{who(event)}: {describe(event, today)}"


def _model_facts(info: Any) -> str:
    """`` ($1.00 in / $2.00 out per 1M tokens, 128,000 context, expires ...)``: what an added
    or removed model's event keeps of it, as a suffix."""
    if not isinstance(info, dict):
        return "" if info is None else f" ({shown(info, 60)})"
    bits = []
    prices = info.get("pricing")
    prices = prices if isinstance(prices, dict) else {}
    if "prompt" in prices or "completion" in prices:
        bits.append(f"{price(prices.get('prompt', '0'), 'prompt')} in / "
                    f"{price(prices.get('completion', '0'), 'completion')} out per 1M tokens")
    if info.get("context_length"):
        bits.append(f"{_thousands(info['context_length'])} context")
    if info.get("expiration_date"):
        bits.append(f"expires {shown(info['expiration_date'], 40)}")
    return f" ({', '.join(bits)})" if bits else ""


def _thousands(value: Any) -> str:
    """An integer with thousands separators (``128,000``); anything else shown as it is."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10 ** 30:
        return f"{value:,}"
    return shown(value, 40)


MAX_ID = 200     # characters of a model id shown (real ids are under 80)
MAX_NAME = 200


def shown(value: Any, limit: int = 80) -> str:
    """Any JSON value as plain text of at most ``limit`` characters, as it came."""
    if value is None:
        text = "(none)"
    elif isinstance(value, str):
        text = value[: limit * 2]
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int) and value.bit_length() > 256:
        text = f"a {value.bit_length()}-bit number"
    else:
        try:
            text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):
            text = f"(a {type(value).__name__})"
    text = escape.plain(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Links: each model's line points at its page on openrouter.ai, or on this daemon.

OPENROUTER = "https://openrouter.ai"


def model_url(model: Any, public_url: str | None = None) -> str | None:
    """Where a person sees ``model``; None for an id no real model has (too long, empty,
    only dots).

    The path is :func:`watcher.links.model_id_path`, the one encoding of every link to a
    model: no id can make a link that resolves elsewhere (``x/../../api/y``).
    """
    if not isinstance(model, str) or not model or len(model) > MAX_ID:
        return None
    if public_url:
        return model_path(public_url, model)
    return None if model in (".", "..") else f"{OPENROUTER}/{model_id_path(model)}"


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
    ("Providers", ("provider_added", "provider_removed", "provider_price_changed",
                   "provider_context_changed", "provider_quantization_changed",
                   "provider_status_changed", "provider_degraded", "provider_recovered"),
     "provider change", "provider changes"),
    ("Other changes", ("field_changed",), "other change", "other changes"),
)
_SECTION_TYPES = frozenset(t for _, types, _, _ in SECTIONS for t in types)
MAX_LINE = 1500  # characters of one model's descriptions in a digest


_PRICE_ORDER = {f"pricing.{k}": i for i, k in enumerate([*PER_TOKEN, *PER_UNIT])}


def _reading_order(event: Event) -> tuple[str, int, str]:
    """Models in id order; prompt before completion before the rest."""
    field = event.get("field")
    field = field if isinstance(field, str) else ""
    return (str(event.get("model")), _PRICE_ORDER.get(field, len(_PRICE_ORDER)), field)


@dataclass(frozen=True)
class Entry:
    """One model's line in a digest section, as plain text."""

    model: str
    head: str        # "Name (id)"
    name: str | None  # the name part of head, when there is one
    text: str        # "; "-joined descriptions


def _sections(events: list[Event], today: date | None) -> list[tuple[str, list[Entry], str]]:
    """(section title, one entry per model, count phrase) for non-empty sections.

    An event of a type no section knows goes to "Other changes": every event renders.
    """
    out = []
    for title, types, one, many in SECTIONS:
        per_model: dict[str, list[str]] = {}
        firsts: dict[str, Event] = {}
        of_model: dict[str, list[Event]] = {}
        for event in sorted(events, key=_reading_order):
            kind = event.get("type")
            if kind in types or (title == "Other changes" and kind not in _SECTION_TYPES):
                model = str(event.get("model"))
                per_model.setdefault(model, []).append(describe(event, today))
                firsts.setdefault(model, event)
                of_model.setdefault(model, []).append(event)
        if per_model:
            entries = []
            for model, texts in _by_impact(per_model, of_model):
                # dict.fromkeys: "expiration set" and its reminder read the same; say it once.
                text = "; ".join(dict.fromkeys(texts))
                text = text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."
                event = firsts[model]
                name = event.get("name")
                has_name = name not in (None, "", event.get("model"))
                entries.append(Entry(model=model, head=who(event), text=text,
                                     name=shown(name, MAX_NAME) if has_name else None))
            noun = one if len(entries) == 1 else many
            if title == "Expiring":
                noun = "expiring" if all(
                    e["type"] in ("expiring_soon", "expiration_set", "expiration_changed")
                    for e in events if e.get("type") in types) else noun
            out.append((title, entries, f"{len(entries)} {noun}"))
    return out


def _by_impact(per_model: dict[str, list[str]], of_model: dict[str, list[Event]]
               ) -> list[tuple[str, list[str]]]:
    """The lines of a section, the largest absolute impact (or 30-day spend) first, those
    without usage last; the sort is stable, so equal or unknown ones keep the id order."""
    from watcher import impact  # noqa: PLC0415 - not at every start (cli.py): digests only

    weights = {model: impact.order_key(of_model[model]) for model in per_model}
    return sorted(per_model.items(), key=lambda item: (
        weights[item[0]] is None, -(weights[item[0]] or 0.0)))


def digest_title(events: list[Event], today: date | None = None) -> str:
    """``OpenRouter models: 3 new, 5 price changes, 1 expiring``."""
    watches = sorted({str(e.get("watch")) for e in events})
    prefix = f"OpenRouter {watches[0]}" if len(watches) == 1 else "OpenRouter"
    counts = ", ".join(count for _, _, count in _sections(events, today))
    return escape.plain(f"{prefix}: {counts or 'no changes'}")


def detected(events: list[Event]) -> str:
    """``Detected 2026-01-04 19:13 UTC`` (or a span), from the events' own times."""
    times = sorted({t for e in events if isinstance(t := e.get("detected_at"), str)
                    and _TIME.fullmatch(t)})
    if not times:
        return ""
    first, last = time_text(times[0]), time_text(times[-1])
    if first == last:
        return f"Detected {first} UTC"
    if first[:10] == last[:10]:
        return f"Detected {first} to {last[11:]} UTC"
    return f"Detected {first} to {last} UTC"


_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def time_text(at: str | None) -> str:
    """``2026-01-04 19:13``: a stored time as people read it (UTC, to the minute)."""
    return "" if not at else at.replace("T", " ").removesuffix("Z")[:16]


def digest_body(events: list[Event], *, markup: str = "text", limit: int = 10_000,
                today: date | None = None, public_url: str | None = None,
                mentions: bool = False) -> str:
    """The events grouped by kind, one self-explanatory line per model, cut to ``limit``.

    Each line links to the model (:func:`model_url`); the last line says when the events
    were detected.  Catalogue text is escaped for ``markup``; with ``mentions`` False
    (chat targets), ``@`` never starts a mention.
    """
    blocks = [(t, entries) for t, entries, _ in _sections(events, today)]
    style = _Style(markup, public_url, mentions)
    footer = detected(events)
    total = sum(len(entries) for _, entries in blocks)
    body = _format(blocks, total, total, style, footer)
    if len(body) <= limit:
        return body
    # The most lines that fit, found by bisection; "... and N more" says what was left out.
    low, high = 0, total - 1
    while low < high:
        mid = (low + high + 1) // 2
        if len(_format(blocks, mid, total, style, footer)) <= limit:
            low = mid
        else:
            high = mid - 1
    body = _format(blocks, low, total, style, footer)
    if len(body) <= limit:
        return body
    # Not even the count fits (a limit below ~100): plain text, which a cut cannot break.
    text = escape.plain(f"{total} changes")
    return text[:limit]


@dataclass(frozen=True)
class _Style:
    markup: str
    public_url: str | None
    mentions: bool

    def text(self, text: str) -> str:
        """Plain text (already free of controls) escaped for this markup."""
        if self.markup == "markdown":
            return escape.markdown(text)
        if self.markup == "html":
            return escape.html(text)
        return text if self.mentions else escape.unping(text)

    def entry(self, entry: Entry) -> str:
        url = model_url(entry.model, self.public_url)
        model = shown(entry.model, MAX_ID)
        if self.markup == "markdown":
            ref = f"[{self.text(model)}]({url})" if url else self.text(model)
            head = f"{self.text(entry.name)} ({ref})" if entry.name else ref
            return f"- {head}: {self.text(entry.text)}"
        if self.markup == "html":
            ref = f'<a href="{escape.html(url)}">{self.text(model)}</a>' if url else self.text(model)
            head = f"{self.text(entry.name)} ({ref})" if entry.name else ref
            return f"<li>{head}: {self.text(entry.text)}</li>"
        link = f"\n    {url}" if url else ""
        return f"  - {self.text(entry.head)}: {self.text(entry.text)}{link}"

    def block(self, title: str, lines: list[str]) -> str:
        if self.markup == "markdown":
            return f"**{title}**\n" + "\n".join(lines)
        if self.markup == "html":
            return f"<h3>{escape.html(title)}</h3><ul>{''.join(lines)}</ul>"
        return f"{title}:\n" + "\n".join(lines)

    def paragraph(self, text: str) -> str:
        return f"<p>{escape.html(text)}</p>" if self.markup == "html" else text


def _format(blocks: list[tuple[str, list[Entry]]], shown_lines: int, total: int,
            style: _Style, footer: str) -> str:
    parts: list[str] = []
    left = shown_lines
    for title, entries in blocks:
        if left <= 0:
            break
        take = entries[:left]
        left -= len(take)
        parts.append(style.block(title, [style.entry(e) for e in take]))
    if shown_lines < total:
        parts.append(style.paragraph(f"... and {total - shown_lines} more"))
    if footer:
        parts.append(style.paragraph(footer))
    return ("" if style.markup == "html" else "\n\n").join(parts)


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
    format: Format
    key: str     # idempotency key
    notify_type: NotifyType = "info"  # Apprise's


def body_format(target: Target) -> Format:
    if target.format:
        return target.format
    if target.scheme in MARKDOWN_SCHEMES:
        return "markdown"
    if target.scheme in HTML_SCHEMES:
        return "html"
    if target.scheme in JSON_SCHEMES:
        return "json"
    return "text"


_FAILURE = frozenset({"model_removed", "model_unavailable_to_account"})
_WARNING = frozenset({"expiration_set", "expiration_changed", "expiring_soon",
                      "provider_removed", "provider_degraded", "provider_status_changed"})


def notify_type(events: list[Event]) -> NotifyType:
    """Apprise's notify type for the worst event: a removal or the account losing a model
    is a failure; an expiry, a price increase, or a provider removed, degraded or changing
    status a warning; anything else info."""
    kinds = {e.get("type") for e in events}
    if kinds & _FAILURE:
        return "failure"
    if kinds & _WARNING or any(_price_increase(e) for e in events):
        return "warning"
    return "info"


def _price_increase(event: Event) -> bool:
    if event.get("type") not in ("price_changed", "provider_price_changed"):
        return False
    old, new = as_decimal(event.get("old")), as_decimal(event.get("new"))
    # "-1" is variable pricing: going to or from it is no increase one can count.
    return old is not None and new is not None and 0 <= old < new


def compose(target: Target, events: list[Event], *, key: str, today: date | None = None,
            rule: RuleTemplates | None = None, public_url: str | None = None) -> Message:
    """The message ``target`` gets for ``events``: the digest, or the user's templates.

    Total: every event renders, whatever its values.  A user template that the sandbox
    refuses for these events (too much work or output) gives the default digest instead,
    with a line saying why, so one odd event never dead-letters a message.
    """
    fmt = body_format(target)
    limit = target.max_length or LIMITS.get(target.scheme, DEFAULT_LIMIT)
    title = digest_title(events, today)
    mentions = target.scheme == "console"  # a terminal pings no one: nothing to break there
    if fmt == "json":
        shown_events = events[:JSON_LIMIT_EVENTS]
        body = escape.json_line(orjson.dumps(
            {"idempotency_key": key, "title": title, "events": shown_events,
             "more": len(events) - len(shown_events)},
            option=orjson.OPT_NON_STR_KEYS).decode())
    else:
        body = digest_body(events, markup=fmt, limit=limit, today=today, public_url=public_url,
                           mentions=mentions)
    kind = notify_type(events)
    title_t = (rule.title if rule else None) or target.title
    body_t = (rule.body if rule else None) or target.body
    if not (title_t or body_t):
        return Message(title=title, body=body, format=fmt, key=key, notify_type=kind)
    context = {"title": title, "body": body, "events": events, "count": len(events),
               "lines": [line(e, today) for e in events], "target": target.name,
               "rule": rule.name if rule else None}
    try:
        plain = "console" if mentions else "text"  # a title is plain text everywhere
        new_title = title_t.render(context, markup=plain) if title_t else title
        new_body = (body_t.render(context, markup=plain if fmt == "text" else fmt)[:limit]
                    if body_t else body)
    except TemplateRefused as exc:
        if fmt != "json":  # a JSON document stays one: the default document, as it is
            note = f"(the {target.name!r} template was refused for these events: {exc})"
            note = (f"<p>{escape.html(note)}</p>" if fmt == "html" else
                    escape.markdown(note) + "\n\n" if fmt == "markdown" else note + "\n\n")
            body = note + digest_body(events, markup=fmt, limit=max(0, limit - len(note)),
                                      today=today, public_url=public_url, mentions=mentions)
        return Message(title=title, body=body, format=fmt, key=key, notify_type=kind)
    return Message(title=escape.plain(new_title), body=new_body, format=fmt, key=key,
                   notify_type=kind)
