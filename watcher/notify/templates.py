"""User title/body templates, rendered in Jinja2's sandbox with hard limits on work and output.

Templates can read the values they are given and nothing else: no attribute starting
with ``_`` (so ``{{ ''.__class__ }}`` is refused), no file loader (no ``include``/``import``),
no macros, no ``recursive`` loops, no ``{% set %}...{% endset %}`` or ``{% filter %}`` blocks
(they build text the output cap never sees), loops nested at most twice, and the output
capped.

The cap is on *work*, not only output: every loop iteration, call, operator, filter and
``~`` is charged to a budget (``MAX_WORK`` steps, a result of N characters costing N), and
anything that would build a value larger than ``MAX_OUTPUT`` (``center(10**9)``,
``replace`` that multiplies a text, ``'%9999999d'``, ``*``, ``+``, ``~``, ``join``) is
refused before it allocates.  So a template ends in bounded time and memory whatever it
does and whatever events it is given.

Catalogue text is escaped for the target's markup as it is written (``{{ ... }}``): HTML
targets autoescape, Markdown targets get Markdown escaping and broken mentions, text
targets lose control characters.  ``body`` is the default digest, already formatted for the
target, and is written as is.

Each template is compiled for every markup *and* rendered against sample events when the
config loads, so a hostile or broken template is a config error naming its file and line;
the budget bounds how long that takes, so a reload (SIGHUP) never holds the loop for long.

The Jinja2 side (the sandbox, the budget, the guards) is :mod:`watcher.notify.sandbox`,
imported with the first template: this module loads without Jinja2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watcher import yamldoc
from watcher.errors import TemplateRefused

MAX_SOURCE = 10_000
MAX_OUTPUT = 20_000
MAX_RANGE = 1_000
MAX_LOOP_DEPTH = 2
MAX_OPERAND = 10_000
# Steps of work per render: an iteration or an operator is one, an attribute or item three,
# a call ten (through the sandbox a call costs ~10x a loop step), a result of N characters
# N more.  Measured: a template that spends the whole budget takes 0.1-0.4 s, whatever it
# does.
MAX_WORK = 500_000
CALL_COST = 10
ACCESS_COST = 3  # e.events[0].model

MARKUPS = ("text", "console", "markdown", "html", "json")


class Template:
    """A compiled user template, one compiled form per markup."""

    def __init__(self, source: str) -> None:
        if len(source) > MAX_SOURCE:
            raise TemplateRefused(f"template is longer than {MAX_SOURCE} characters")
        # Jinja2 loads with the first template (see watcher.notify.sandbox).
        from watcher.notify.sandbox import Compiled  # noqa: PLC0415

        self.source = source
        self._compiled = {markup: Compiled(source, markup) for markup in MARKUPS}

    def render(self, context: Mapping[str, Any], *, markup: str = "text") -> str:
        """The template's output for ``context``, catalogue text escaped for ``markup``."""
        return self._compiled[markup].render(context)


SAMPLE_CONTEXT: dict[str, Any] = {
    "title": "OpenRouter models: 1 new, 1 price change",
    "body": "New models:\n  - Example (example/model): new model",
    "target": "team",
    "rule": "prices",
    "count": 2,
    "events": [
        {"watch": "models", "type": "model_added", "model": "example/new", "name": "Example New",
         "field": None, "old": None, "new": {"context_length": 8192, "pricing": {},
                                             "expiration_date": None},
         "change_pct": None, "detected_at": "2026-01-04T19:13:29Z"},
        {"watch": "models", "type": "price_changed", "model": "z-ai/glm-4.7", "name": "Z.AI: GLM 4.7",
         "field": "pricing.prompt", "old": "0.0000004", "new": "0.00000016", "change_pct": -60.0,
         "detected_at": "2026-01-04T19:13:29Z"},
    ],
    "lines": ["Example New (example/new): new model",
              "Z.AI: GLM 4.7 (z-ai/glm-4.7): $0.40 -> $0.16 / 1M prompt tokens (-60%)"],
}


def compile_template(value: yamldoc.Value) -> Template:
    """Compile a template from a config or rule file and try it on sample events."""
    try:
        template = Template(value.string())
        template.render(SAMPLE_CONTEXT)
    except TemplateRefused as exc:
        raise value.error(f"template refused: {exc}") from None
    return template
