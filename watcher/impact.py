"""What a change costs the account, from its usage: pure, values in, values out.

With a usage :class:`~watcher.usage.Summary` (the last 30 days the activity has), events
grow these fields (the event contract in the README):

=============================================  ==============================================
event types                                    fields added
=============================================  ==============================================
``price_changed``                              ``monthly_impact_usd``: (new - old) x the
                                               window's count of what the key prices,
                                               rounded to cents; ``null`` with
                                               ``impact_note`` saying why when it cannot be
                                               computed; ``impact_note`` is null otherwise.
                                               Also ``spend_30d_usd`` and ``requests_30d``.
``model_removed``, ``expiration_*``,           ``spend_30d_usd`` (rounded to cents) and
``expiring_soon``,                             ``requests_30d``
``model_unavailable_to_account``
=============================================  ==============================================

What each price key is multiplied by: ``pricing.prompt`` by prompt tokens,
``pricing.completion`` by completion plus reasoning tokens (reasoning is billed as
completion), ``pricing.request`` by requests.  Any other key (images, web search, cache
reads, audio ...) has no count in the activity, so its impact is null (unless the model
was not used at all: then every impact is 0).  So is the impact
of a model with tiered ``pricing.overrides`` (a tier's price, not the base price, may be
what was paid), of a change to or from variable pricing (``-1``) and of a value that is no
price.  An absent price counts as ``0``, as in the diff.

Without a summary (no ``usage:`` configured, or nothing fetched yet) the events are
returned as they are: no field is added, so "unknown" is never mistaken for "unused".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any, cast

from watcher.diff import as_decimal
from watcher.events import Event

SPEND_TYPES = frozenset({"price_changed", "model_removed", "expiration_set",
                         "expiration_changed", "expiration_cleared", "expiring_soon",
                         "model_unavailable_to_account"})
CENT = Decimal("0.01")


@dataclass(frozen=True)
class ModelUsage:
    """One model's usage over the window."""

    spend_usd: float = 0.0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class Summary:
    """The usage of the 30 days up to ``last_day``, per model id (and permaslug)."""

    first_day: str
    last_day: str
    models: dict[str, ModelUsage] = field(default_factory=dict)

    def of(self, model: str) -> ModelUsage:
        """A model's usage; a model not in it was not used in the window."""
        return self.models.get(model, ModelUsage())


def annotate(events: list[Event], summary: Summary | None, *,
             tiered: frozenset[str] = frozenset()) -> list[Event]:
    """``events`` with the impact fields of their types (new dicts; the input is kept).

    ``tiered``: the models whose pricing has ``overrides`` (see :func:`tiered_models`).
    """
    if summary is None:
        return events
    return [_annotated(event, summary, tiered) if event.get("type") in SPEND_TYPES else event
            for event in events]


def _annotated(event: Event, summary: Summary, tiered: frozenset[str]) -> Event:
    model = event.get("model")
    used = summary.of(model) if isinstance(model, str) else ModelUsage()
    extra: dict[str, Any] = {}
    if event.get("type") == "price_changed":
        impact, note = monthly_impact(event, used, tiered=isinstance(model, str) and model in tiered)
        extra = {"monthly_impact_usd": impact, "impact_note": note}
    extra["spend_30d_usd"] = cents(Decimal(repr(used.spend_usd)))
    extra["requests_30d"] = used.requests
    return cast("Event", {**event, **extra})


def monthly_impact(event: Event, used: ModelUsage, *, tiered: bool = False
                   ) -> tuple[float | None, str | None]:
    """(impact in USD rounded to cents, None) or (None, why it cannot be computed).

    A model not used in the window costs nothing at any price: its impact is 0."""
    if not (used.requests or used.prompt_tokens or used.completion_tokens
            or used.reasoning_tokens or used.spend_usd):
        return 0.0, None
    field = event.get("field")
    key = field.partition(".")[2] if isinstance(field, str) and field.startswith("pricing.") else ""
    if tiered or key == "overrides":
        return None, "tiered pricing (pricing.overrides): the price paid depends on the tier"
    count = {"prompt": used.prompt_tokens,
             "completion": used.completion_tokens + used.reasoning_tokens,
             "request": used.requests}.get(key)
    if count is None:
        what = key or "this pricing"
        return None, f"the activity has no count that pricing.{what} applies to"[:200]
    old, new = _price(event.get("old")), _price(event.get("new"))
    if old is None or new is None:
        return None, "not a price on both sides (variable pricing or an odd value)"
    with localcontext(Context(prec=80)):
        return cents((new - old) * count), None


def _price(value: Any) -> Decimal | None:
    if value is None:
        return Decimal(0)  # an absent price is "0", as in the diff
    number = as_decimal(value)
    return None if number is None or number < 0 else number


def cents(amount: Decimal) -> float:
    """``amount`` rounded to cents, as a JSON number (never ``-0.0``)."""
    with localcontext(Context(prec=80)):
        rounded = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    return float(rounded) + 0.0


def tiered_models(models: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    """The ids of the models whose ``pricing`` has ``overrides`` (tiers)."""
    return frozenset(model for model, item in models.items()
                     if isinstance(pricing := item.get("pricing"), dict) and pricing.get("overrides"))


def order_key(events: Iterable[Event]) -> float | None:
    """How much a digest line (one model's events) weighs: the absolute sum of the known
    ``monthly_impact_usd``, else the ``spend_30d_usd``; None when neither is known."""
    events = list(events)
    impacts = [v for e in events if (v := _number(e.get("monthly_impact_usd"))) is not None]
    if impacts:
        return abs(sum(impacts))
    spends = [v for e in events if (v := _number(e.get("spend_30d_usd"))) is not None]
    return max(spends) if spends else None


def _number(value: Any) -> float | None:
    """A stored number as a float; None for anything else (a bool, nan, a string)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e15:
        return float(value)  # abs(nan) < x is False: nan is None too
    return None
