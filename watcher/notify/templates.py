"""User title/body templates, rendered in Jinja2's sandbox with hard limits.

Templates can read the values they are given and nothing else: no attribute starting
with ``_`` (so ``{{ ''.__class__ }}`` is refused), no file loader (no ``include``/``import``),
``range`` capped, ``*``/``**`` on large operands refused, loops nested at most twice, and the
output capped.  Each template is compiled *and* rendered against sample events when the
config loads, so a hostile or broken template is a config error naming its file and line.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from watcher import yamldoc

MAX_SOURCE = 10_000
MAX_OUTPUT = 20_000
MAX_RANGE = 1_000
MAX_LOOP_DEPTH = 2
MAX_OPERAND = 10_000


class TemplateRefused(Exception):  # noqa: N818 - it is a refusal, not a bug
    """A template broke a sandbox rule or failed to render; the message says which."""


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, _context: Any, operator_name: str, left: Any, right: Any) -> Any:
        for value in (left, right):
            if isinstance(value, (str, list, tuple)) and len(value) * _as_int(left, right) > MAX_OPERAND:
                raise TemplateRefused("result of '*' would be too large")
            if isinstance(value, int) and abs(value) > MAX_OPERAND:
                raise TemplateRefused(f"operand of {operator_name!r} is too large")
        if operator_name == "**":
            return operator.pow(left, right)
        return operator.mul(left, right)


def _as_int(left: Any, right: Any) -> int:
    for value in (left, right):
        if isinstance(value, int) and not isinstance(value, bool):
            return abs(value)
    return 1


def _capped_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RANGE:
        raise TemplateRefused(f"range() longer than {MAX_RANGE}")
    return result


_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, loader=None)
_ENV.globals = {"range": _capped_range}  # nothing else: no dict(), lipsum, cycler...


class Template:
    """A compiled user template."""

    def __init__(self, source: str) -> None:
        if len(source) > MAX_SOURCE:
            raise TemplateRefused(f"template is longer than {MAX_SOURCE} characters")
        try:
            tree = _ENV.parse(source)
        except TemplateError as exc:
            raise TemplateRefused(f"template syntax error: {exc}") from None
        if _loop_depth(tree) > MAX_LOOP_DEPTH:
            raise TemplateRefused(f"loops nested deeper than {MAX_LOOP_DEPTH}")
        if any(True for _ in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport,
                                            nodes.Extends))):
            raise TemplateRefused("include, import and extends are not available")
        self.source = source
        self._template = _ENV.from_string(tree)

    def render(self, context: Mapping[str, Any]) -> str:
        out: list[str] = []
        size = 0
        try:
            for chunk in self._template.generate(**context):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateRefused(f"output longer than {MAX_OUTPUT} characters")
                out.append(chunk)
        except TemplateRefused:
            raise
        except (TemplateError, RecursionError, ArithmeticError, TypeError, ValueError) as exc:
            raise TemplateRefused(f"template failed: {type(exc).__name__}: {exc}") from None
        return "".join(out)


def _loop_depth(node: nodes.Node, depth: int = 0) -> int:
    here = depth + 1 if isinstance(node, nodes.For) else depth
    return max([here, *(_loop_depth(child, here) for child in node.iter_child_nodes())])


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
