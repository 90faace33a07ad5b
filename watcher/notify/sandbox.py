"""Jinja2's sandbox with a budget: how :mod:`watcher.notify.templates` compiles and renders.

The rules are in that module's docstring.  This one holds everything that needs Jinja2,
so that Jinja2 (~50 ms to import) loads with the first template a config has, and never
for a config without any or a command that only reads the state.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.filters import FILTERS
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from watcher import escape
from watcher.errors import TemplateRefused
from watcher.notify.templates import (
    ACCESS_COST,
    CALL_COST,
    MARKUPS,
    MAX_LOOP_DEPTH,
    MAX_OPERAND,
    MAX_OUTPUT,
    MAX_RANGE,
    MAX_WORK,
)


class _Budget:
    """The work one render may still do."""

    def __init__(self) -> None:
        self.left = MAX_WORK

    def charge(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise TemplateRefused(f"template does too much work (more than {MAX_WORK:,} steps)")


_BUDGET: ContextVar[_Budget] = ContextVar("template_budget")


def _charge(steps: int = 1) -> None:
    budget = _BUDGET.get(None)
    if budget is not None:
        budget.charge(steps)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 1


def _check_size(size: int, what: str) -> None:
    if size > MAX_OUTPUT:
        raise TemplateRefused(f"{what} would be longer than {MAX_OUTPUT} characters")
    _charge(1 + size)


_PRINTF_WIDTH = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_NUMBER = re.compile(r"\d+")


def _check_printf(fmt: str) -> None:
    for match in _PRINTF_WIDTH.finditer(fmt):
        for part in match.groups():
            if part == "*" or (part and int(part) > MAX_OUTPUT):
                raise TemplateRefused("a '%' format width or precision is too large")


def _check_format_spec(fmt: str) -> None:
    # str.format: a width or precision is a number in the spec; none may exceed the cap.
    if "{" in fmt and any(int(n) > MAX_OUTPUT for n in _FORMAT_NUMBER.findall(fmt)):
        raise TemplateRefused("a format width or precision is too large")


def _replaced_size(text: str, old: Any, new: Any, count: Any = -1) -> int:
    old, new = str(old), str(new)
    hits = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _joined(items: Iterable[Any], sep: Any = "") -> tuple[list[Any], int]:
    listed = list(items)
    size = sum(len(str(x)) for x in listed) + len(str(sep)) * max(0, len(listed) - 1)
    return listed, size


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, _context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "%":
            if isinstance(left, str):
                _check_printf(left)
            _charge(1 + _size(left))
            return operator.mod(left, right)
        if operator_name == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                _check_size(len(left) + len(right), "result of '+'")
            else:
                _charge()
            return operator.add(left, right)
        for value in (left, right):
            if isinstance(value, (str, list, tuple)) and len(value) * _as_int(left, right) > MAX_OPERAND:
                raise TemplateRefused("result of '*' would be too large")
            if isinstance(value, int) and abs(value) > MAX_OPERAND:
                raise TemplateRefused(f"operand of {operator_name!r} is too large")
        _charge(1 + _size(left) * _as_int(left, right))
        if operator_name == "**":
            return operator.pow(left, right)
        return operator.mul(left, right)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: PYI063
        _charge(CALL_COST)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            args = _check_str_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _charge(ACCESS_COST)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _charge(ACCESS_COST)
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja's sandbox swaps str.format for its own at attribute access; check the spec
        # there, and the arguments (a width may come from one: "{:{}}") when it is called.
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text: str = value.__self__
        _check_format_spec(text)

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_str_method(text, "format", args, kwargs)
            return wrapped(*args, **kwargs)

        return checked


def _check_str_method(text: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
                      ) -> tuple[Any, ...]:
    """Refuse a ``str`` method call that would build a value over the cap, before it runs."""
    numbers = [v for v in (*args, *kwargs.values()) if isinstance(v, int)]
    if any(abs(n) > MAX_OUTPUT for n in numbers):
        raise TemplateRefused(f"an argument of str.{name}() is too large")
    if name == "replace" and len(args) >= 2:
        _check_size(_replaced_size(text, *args[:3]), "result of replace()")
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        _check_size(len(text) + text.count("\t") * int(tab), "result of expandtabs()")
    elif name == "join" and args:
        listed, size = _joined(args[0], text)
        _check_size(size, "result of join()")
        return (listed, *args[1:])
    elif name in ("format", "format_map"):
        _check_format_spec(text)
        _charge(1 + len(text))
    else:
        _charge(1 + len(text))
    return args


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


def _budgeted(iterable: Any) -> Iterator[Any]:
    """What a ``for`` loop iterates: the items, each iteration charged to the budget."""
    for item in iterable:
        _charge()
        yield item


def _concat(*values: Any) -> str:
    """``a ~ b``: refused when it would build a text over the cap."""
    texts = [str(v) for v in values]
    _check_size(sum(len(t) for t in texts), "result of '~'")
    return "".join(texts)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter with its size checked before it runs and its work charged."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) else 0

    @functools.wraps(func)  # keeps jinja_pass_arg, so Jinja passes the same arguments
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _charge(CALL_COST)
        value, rest = (args[skip] if len(args) > skip else None), args[skip + 1:]
        numbers = [v for v in (*rest, *kwargs.values()) if isinstance(v, int)]
        if any(abs(n) > MAX_OUTPUT for n in numbers):
            raise TemplateRefused(f"an argument of the {name!r} filter is too large")
        if name == "join" and value is not None:
            listed, size = _joined(value, rest[0] if rest else kwargs.get("d", ""))
            _check_size(size, "result of join")
            args = (*args[:skip], listed, *rest)
        elif name == "replace" and isinstance(value, str) and len(rest) >= 2:
            _check_size(_replaced_size(value, *rest[:3]), "result of replace")
        elif name == "indent" and isinstance(value, str):
            width = rest[0] if rest else kwargs.get("width", 4)
            pad = len(width) if isinstance(width, str) else int(width)
            _check_size(len(value) + pad * (value.count("\n") + 1), "result of indent")
        elif name == "format" and isinstance(value, str):
            _check_printf(value)
        result = func(*args, **kwargs)
        _charge(1 + (len(result) if isinstance(result, str) else 0))
        return result

    return guarded


class _Formatted(str):
    """Text already formatted for the target (the default ``body``): written as is."""

    __slots__ = ()


def _finalize(markup: str) -> Callable[[Any], Any]:
    def finalize(value: Any) -> Any:
        if isinstance(value, (Markup, _Formatted)) or markup == "json":
            return value
        text = escape.plain(value if isinstance(value, str) else str(value))
        if markup == "markdown":
            return escape.markdown(text)
        if markup == "text":
            return escape.unping(text)
        return text  # html: autoescape escapes it; console: plain text

    return finalize


def _environment(markup: str) -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=markup == "html", loader=None,
                   finalize=_finalize(markup))
    # Nothing else: no dict(), lipsum, cycler, namespace...
    env.globals = {"range": _capped_range, "_budgeted": _budgeted, "_concat": _concat}
    env.filters = {name: _guard_filter(name, func) for name, func in FILTERS.items()}
    return env


_ENVIRONMENTS = {markup: _environment(markup) for markup in MARKUPS}
_REFUSED_NODES: tuple[tuple[tuple[type[nodes.Node], ...], str], ...] = (
    ((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends),
     "include, import and extends are not available"),
    ((nodes.Macro, nodes.CallBlock), "macros are not available"),
    ((nodes.AssignBlock, nodes.FilterBlock),
     "{% set %}...{% endset %} and {% filter %} blocks are not available"),
)


class _Guard(NodeTransformer):
    """Routes every loop and ``~`` through the budget (see the module docstring)."""

    def __init__(self, env: _Sandbox) -> None:
        self.env = env

    def _call(self, name: str, args: list[Any], like: nodes.Node) -> nodes.Call:
        call = nodes.Call(nodes.Name(name, "load"), args, [], None, None)
        call.set_lineno(like.lineno)
        call.set_environment(self.env)
        return call

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 - Jinja's visitor naming
        self.generic_visit(node)
        node.iter = self._call("_budgeted", [node.iter], node)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return self._call("_concat", list(node.nodes), node)


def _compile(source: str, env: _Sandbox) -> Any:
    try:
        tree = env.parse(source)
    except TemplateError as exc:
        raise TemplateRefused(f"template syntax error: {exc}") from None
    if _loop_depth(tree) > MAX_LOOP_DEPTH:
        raise TemplateRefused(f"loops nested deeper than {MAX_LOOP_DEPTH}")
    for kinds, reason in _REFUSED_NODES:
        if any(True for _ in tree.find_all(kinds)):
            raise TemplateRefused(reason)
    if any(loop.recursive for loop in tree.find_all(nodes.For)):
        raise TemplateRefused("recursive loops are not available")
    tree = _Guard(env).visit(tree)
    return env.from_string(tree)


def _loop_depth(node: nodes.Node, depth: int = 0) -> int:
    here = depth + 1 if isinstance(node, nodes.For) else depth
    return max([here, *(_loop_depth(child, here) for child in node.iter_child_nodes())])



class Compiled:
    """A template compiled for one markup, rendered within the budget."""

    def __init__(self, source: str, markup: str) -> None:
        self.markup = markup
        self._template = _compile(source, _ENVIRONMENTS[markup])

    def render(self, context: Mapping[str, Any]) -> str:
        """The output for ``context``, catalogue text escaped for this markup."""
        values = dict(context)
        if isinstance(values.get("body"), str):
            body = values["body"]
            values["body"] = Markup(body) if self.markup == "html" else _Formatted(body)  # noqa: S704 - our own formatted digest
        out: list[str] = []
        size = 0
        token = _BUDGET.set(_Budget())
        try:
            for chunk in self._template.generate(**values):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateRefused(f"output longer than {MAX_OUTPUT} characters")
                _charge(1 + len(chunk))
                out.append(chunk)
        except TemplateRefused:
            raise
        except (TemplateError, RecursionError, ArithmeticError, TypeError, ValueError,
                MemoryError) as exc:
            raise TemplateRefused(f"template failed: {type(exc).__name__}: {exc}") from None
        finally:
            _BUDGET.reset(token)
        return "".join(out)
