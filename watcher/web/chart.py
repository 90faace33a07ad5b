"""A model's token prices over time as an inline SVG step chart: pure, values in, text out.

One step line per per-token pricing key, in dollars per million tokens (what people
compare); per-unit prices (per image, per request) have other units and stay in the
table beside the chart.  Periods when the model was not listed are shaded.  Everything
that came from the catalogue (pricing keys) is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any

from watcher.clock import parse as parse_time
from watcher.diff import as_decimal
from watcher.notify.render import MILLION, PER_TOKEN, money

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 28
MAX_MARKERS = 120  # a series of more prices is drawn as its line alone, without a dot each
# Okabe-Ito: told apart by people with any common colour-vision deficiency.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


@dataclass(frozen=True)
class Step:
    at: datetime
    per_million: Decimal | None  # None: not a number we can draw (variable pricing)


def chartable(prices: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[Step]]:
    """The per-token series of a timeline's ``prices``, per million tokens."""
    out: dict[str, list[Step]] = {}
    for key, points in prices.items():
        if key not in PER_TOKEN:
            continue
        steps = []
        for point in points:
            number = as_decimal(point["price"])
            steps.append(Step(parse_time(point["at"]),
                              None if number is None or number < 0 else number * MILLION))
        if any(s.per_million is not None for s in steps):
            out[key] = steps
    return out


def legend(prices: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[tuple[str, str]]:
    """``(key, colour)`` of each line :func:`price_chart` draws, in its order."""
    drawn = [key for key, points in prices.items() if key in PER_TOKEN and any(
        (number := as_decimal(p["price"])) is not None and number >= 0 for p in points)]
    return [(key, PALETTE[i % len(PALETTE)]) for i, key in enumerate(drawn)]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least ``value``."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for mantissa in (1, 2, 2.5, 5, 10):
        candidate = mantissa * 10.0 ** exponent
        if candidate >= value * (1 - 1e-9):
            return candidate
    return 10.0 ** (exponent + 1)  # pragma: no cover - the loop ends at 10


def price_chart(prices: Mapping[str, Sequence[Mapping[str, Any]]], *, start: str, end: str,
                absent: Sequence[tuple[str, str]] = (), title: str = "Price history") -> str:
    """SVG markup, or "" when there is no per-token price to draw.

    ``start``/``end`` bound the time axis (``end`` is its right edge, at least a day after
    the left); ``absent`` are ``(from, to)`` times when the
    model was not listed.
    """
    series = chartable(prices)
    if not series:
        return ""
    t0, t1 = parse_time(start), parse_time(end)
    if t1 - t0 < timedelta(days=1):
        # At least a day wide, widened into the past: the axis ends at ``end`` (the last
        # data point), never in a future that no price has been seen in.
        t0 = t1 - timedelta(days=1)
    top = max(float(s.per_million) for steps in series.values() for s in steps
              if s.per_million is not None)
    step = nice_ceiling(top / 4)
    ticks = max(1, math.ceil(top * 1.05 / step))
    y_max = step * ticks
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = (t1 - t0).total_seconds()

    origin = t0.timestamp()

    def x(moment: datetime) -> float:
        return round(LEFT + plot_w * min(max((moment.timestamp() - origin) / span, 0.0), 1.0), 1)

    def y(value: Decimal) -> float:
        return round(TOP + plot_h * (1 - float(value) / y_max), 1)

    parts = [
        (f'<svg class="price-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} '
         f'{HEIGHT}" role="img" aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">'),
        f"<title>{escape(title)}</title>",
    ]
    for start_absent, end_absent in absent:
        a, b = x(parse_time(start_absent)), x(parse_time(end_absent))
        parts.append(f'<rect class="absent" x="{a}" y="{TOP}" width="{max(b - a, 1.0)}" '
                     f'height="{plot_h}" fill="#888" fill-opacity="0.15">'
                     f"<title>not listed {escape(start_absent)} .. {escape(end_absent)}</title></rect>")
    for tick in range(ticks + 1):
        value = step * tick
        ty = round(TOP + plot_h * (1 - tick / ticks), 1)
        parts.append(f'<line x1="{LEFT}" y1="{ty}" x2="{WIDTH - RIGHT}" y2="{ty}" '
                     f'stroke="#ccc" stroke-width="1"/>')
        label = money(Decimal(repr(round(value, 9))))
        parts.append(f'<text class="y-label" x="{LEFT - 6}" y="{ty + 4}" text-anchor="end" '
                     f'font-size="13">{escape(label)}</text>')
    for tick in range(5):
        moment = t0 + (t1 - t0) * tick / 4
        tx = x(moment)
        text = moment.strftime("%Y-%m-%d" if span >= 4 * 86400 else "%m-%d %H:%M")
        anchor = "start" if tick == 0 else "end" if tick == 4 else "middle"
        parts.append(f'<line x1="{tx}" y1="{TOP + plot_h}" x2="{tx}" y2="{TOP + plot_h + 5}" '
                     f'stroke="#666"/>')
        parts.append(f'<text class="x-label" x="{tx}" y="{TOP + plot_h + 20}" '
                     f'text-anchor="{anchor}" font-size="13">{text}</text>')
    parts.append(f'<text x="{LEFT}" y="{TOP - 10}" font-size="13">$ / 1M tokens</text>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" '
                 f'y2="{TOP + plot_h}" stroke="#666"/>')
    end_x = x(t1)
    for index, (key, steps) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(f'<path class="series" data-key="{escape(key)}" fill="none" '
                     f'stroke="{colour}" stroke-width="2" d="{_step_path(steps, x, y, end_x)}">'
                     f"<title>{escape(key)} $ / 1M {escape(PER_TOKEN[key])}</title></path>")
        if len(steps) <= MAX_MARKERS:  # more would overlap in 640 pixels, and weigh MBs
            parts.extend(
                f'<circle cx="{x(step.at)}" cy="{y(step.per_million)}" r="3" fill="{colour}">'
                f"<title>{escape(key)}: {escape(money(step.per_million))} since "
                f"{step.at:%Y-%m-%d %H:%M}</title></circle>"
                for step in steps if step.per_million is not None)
    parts.append("</svg>")
    return "".join(parts)


def _step_path(steps: Sequence[Step], x: Any, y: Any, end_x: float) -> str:
    """``M x y H x V y ...``: a price holds until the next one; a gap breaks the line."""
    out: list[str] = []
    drawing = False
    xs = [x(step.at) for step in steps] + [end_x]
    for index, step in enumerate(steps):
        if step.per_million is None:
            drawing = False
            continue
        here_y = y(step.per_million)
        out.append(f"V{here_y}" if drawing else f"M{xs[index]} {here_y}")
        out.append(f"H{xs[index + 1]}")
        drawing = True
    return " ".join(out)


BAR_HEIGHT = 160


def spend_chart(days: Sequence[tuple[str, float, int]]) -> str:
    """A model's spend per UTC day as an inline SVG bar chart (``days``: date, USD,
    requests, in date order); empty when nothing was spent or requested."""
    if not days or not any(usd > 0 or requests > 0 for _, usd, requests in days):
        return ""
    top = nice_ceiling(max((usd for _, usd, _ in days), default=0.0) or 1.0)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, BAR_HEIGHT - TOP - BOTTOM
    step = inner_w / len(days)
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {BAR_HEIGHT}" '
             f'role="img" aria-label="Spend per day over the last {len(days)} days">'),
             (f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" font-size="11">'
             f'{escape(money(Decimal(repr(top))))}</text>'),
             f'<text x="{LEFT - 6}" y="{TOP + inner_h}" text-anchor="end" font-size="11">$0</text>',
             (f'<line x1="{LEFT}" y1="{TOP + inner_h}" x2="{LEFT + inner_w}" y2="{TOP + inner_h}" '
             'stroke="#888"/>')]
    for i, (day, usd, requests) in enumerate(days):
        height = max(0.0, usd) / top * inner_h if math.isfinite(usd) else 0.0
        x, y = LEFT + i * step + 1, TOP + inner_h - height
        label = escape(f"{day}: {money(Decimal(repr(round(usd, 2))))}, {requests:,} requests")
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" '
                     f'height="{height:.1f}" fill="{PALETTE[0]}"><title>{label}</title></rect>')
    first, last = escape(days[0][0]), escape(days[-1][0])
    parts.append(f'<text x="{LEFT}" y="{BAR_HEIGHT - 8}" font-size="11">{first}</text>')
    parts.append(f'<text x="{LEFT + inner_w}" y="{BAR_HEIGHT - 8}" text-anchor="end" '
                 f'font-size="11">{last}</text>')
    parts.append("</svg>")
    return "".join(parts)
