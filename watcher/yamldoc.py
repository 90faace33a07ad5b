"""Strict YAML reading that remembers where every value came from.

Config and rule files are composed into YAML nodes (never constructed into Python objects
by PyYAML, so no tag can build anything) and read through :class:`Value`, whose errors
name the file, the line and the dotted key.  A size cap, a cap on nodes visited (aliases
included) and a cap on nesting depth stop hostile files such as "billion laughs" or 5,000
nested lists early, with a :class:`ConfigError` rather than a MemoryError or RecursionError.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

from watcher.errors import ConfigError

S = TypeVar("S", bound=str)
MAX_FILE_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 64  # the deepest config or rule file needs about 6; PyYAML's composer recurses
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_STR_TAG = "tag:yaml.org,2002:str"
_ALLOWED_TAGS = frozenset({_NULL_TAG, _BOOL_TAG, _INT_TAG, _FLOAT_TAG, _STR_TAG,
                           "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"})


class _Composer(yaml.composer.Composer, yaml.resolver.Resolver):
    """YAML events into nodes (never objects), with a bound on how deep the (recursive)
    composer may go. The events come from the parser mixed in below."""

    def __init__(self, path: Path) -> None:
        yaml.composer.Composer.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._path = path
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1  # type: ignore[attr-defined]
                raise ConfigError(f"{self._path}:{line}: YAML nested more than {MAX_DEPTH} deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _PyLoader(_Composer, yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's own reader, scanner and parser, for a PyYAML built without libyaml."""

    def __init__(self, stream: str, path: Path) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _Composer.__init__(self, path)


_Loader: type[_PyLoader | _CLoader]
if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CLoader(_Composer, CParser):
        """libyaml's parser (PyYAML's wheels have it): it reads a file ~8x faster than
        PyYAML's own, most of what ``status`` and ``history`` spend on their config. Its error
        texts are libyaml's, and it stops a flow nested 1,000 deep by itself."""

        def __init__(self, stream: str, path: Path) -> None:
            CParser.__init__(self, stream)
            _Composer.__init__(self, path)

    _Loader = _CLoader
else:  # pragma: no cover - a PyYAML built without libyaml
    _Loader = _PyLoader


@dataclass
class _Budget:
    """Nodes left to visit in one document; shared by every Value read from it."""

    left: int = field(default_factory=lambda: MAX_NODES)


@dataclass
class Value:
    """One YAML node, with the file and dotted key it was found at."""

    path: Path
    node: yaml.Node
    key: str
    budget: _Budget = field(default_factory=_Budget)

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def error(self, message: str) -> ConfigError:
        where = f"{self.path}:{self.line}"
        return ConfigError(f"{where}: {self.key}: {message}" if self.key else f"{where}: {message}")

    def _child(self, node: yaml.Node, key: str) -> Value:
        self.budget.left -= 1
        if self.budget.left < 0:
            raise self.error(f"too many YAML nodes (more than {MAX_NODES}, aliases counted)")
        child = Value(self.path, node, key, self.budget)
        if node.tag not in _ALLOWED_TAGS:
            raise child.error(f"YAML tag {node.tag!r} is not allowed")
        return child

    @property
    def is_null(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode) and self.node.tag == _NULL_TAG

    def mapping(self, *, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
                ) -> dict[str, Value]:
        """The mapping's values by key; unknown, duplicate and missing keys are errors."""
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(f"expected a mapping, got {self.kind()}")
        out: dict[str, Value] = {}
        for key_node, value_node in self.node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            dotted = f"{self.key}.{key}" if self.key else str(key)
            if not isinstance(key, str):
                raise self._child(key_node, self.key).error("mapping keys must be strings")
            child = self._child(value_node, dotted)
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self._child(key_node, dotted).error(f"unknown key (known keys: {known})")
            if key in out:
                raise self._child(key_node, dotted).error("duplicate key")
            out[key] = child
        missing = sorted(set(required) - out.keys())
        if missing:
            name = f"{self.key}.{missing[0]}" if self.key else missing[0]
            raise Value(self.path, self.node, name).error("required key is missing")
        return out

    def items(self) -> list[tuple[str, Value]]:
        """A mapping with free-form string keys, in file order."""
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(f"expected a mapping, got {self.kind()}")
        out: list[tuple[str, Value]] = []
        seen: set[str] = set()
        for key_node, value_node in self.node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                raise self._child(key_node, self.key).error("mapping keys must be strings")
            dotted = f"{self.key}.{key_node.value}" if self.key else key_node.value
            if key_node.value in seen:
                raise self._child(key_node, dotted).error("duplicate key")
            seen.add(key_node.value)
            out.append((key_node.value, self._child(value_node, dotted)))
        return out

    def sequence(self) -> list[Value]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error(f"expected a list, got {self.kind()}")
        return [self._child(n, f"{self.key}[{i}]") for i, n in enumerate(self.node.value)]

    def string_list(self, *, expand_env: bool = False) -> list[str]:
        """A list of strings; a single string is accepted as a list of one."""
        if isinstance(self.node, yaml.ScalarNode) and self.node.tag == _STR_TAG:
            return [self.string(expand_env=expand_env)]
        return [item.string(expand_env=expand_env) for item in self.sequence()]

    def string(self, *, expand_env: bool = False, secrets: list[str] | None = None) -> str:
        """A string scalar; with ``expand_env``, ``${VAR}`` is replaced from the environment.

        Expanded values are appended to ``secrets`` when it is given, so that callers can
        register them for redaction.
        """
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag != _STR_TAG:
            raise self.error(f"expected a string, got {self.kind()}")
        text: str = self.node.value
        if not expand_env:
            return text

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            value = os.environ.get(name)
            if value is None:
                raise self.error(f"environment variable {name} is not set")
            if secrets is not None and value:
                secrets.append(value)
            return value

        return _ENV_REF.sub(substitute, text)

    def integer(self, *, minimum: int | None = None) -> int:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag != _INT_TAG:
            raise self.error(f"expected an integer, got {self.kind()}")
        value = int(yaml.safe_load(self.node.value))
        if minimum is not None and value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}")
        return value

    def number(self, *, minimum: float | None = None) -> float:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag not in (_INT_TAG, _FLOAT_TAG):
            raise self.error(f"expected a number, got {self.kind()}")
        value = float(yaml.safe_load(self.node.value))
        if not math.isfinite(value):  # .inf and .nan are YAML floats; no setting means them
            raise self.error(f"expected a finite number, got {self.node.value}")
        if minimum is not None and value < minimum:
            raise self.error(f"must be at least {minimum:g}, got {value:g}")
        return value

    def boolean(self) -> bool:
        """``true`` or ``false`` (YAML 1.1's ``yes``/``on`` too, as PyYAML reads them)."""
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag != _BOOL_TAG:
            raise self.error(f"expected true or false, got {self.kind()}")
        return bool(yaml.safe_load(self.node.value))

    def choice(self, options: tuple[S, ...]) -> S:
        value = self.string()
        for option in options:
            if value == option:
                return option
        raise self.error(f"must be one of {', '.join(options)}, got {value!r}")

    def kind(self) -> str:
        if isinstance(self.node, yaml.MappingNode):
            return "a mapping"
        if isinstance(self.node, yaml.SequenceNode):
            return "a list"
        kinds = {_NULL_TAG: "null", _BOOL_TAG: "a boolean", _INT_TAG: "an integer",
                 _FLOAT_TAG: "a number", _STR_TAG: "a string"}
        return kinds.get(self.node.tag, self.node.tag)


class UnreadableFileError(ValueError):
    """A file the config names is not a small regular file; the message says which."""


def read_file(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, if at most ``limit``.

    A device (``/dev/zero``, ``/dev/stdin``), a FIFO or a directory is refused before a byte
    is read (opened non-blocking, so a FIFO cannot hang the open), and no more than
    ``limit + 1`` bytes are ever read, whatever the size claims.  UnreadableFileError for
    those; OSError when the file cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFileError("not a regular file")
        if info.st_size > limit:
            raise UnreadableFileError(f"file is too large ({info.st_size} bytes, limit {limit})")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnreadableFileError(f"file is too large (limit {limit} bytes)")
    return data


def load(path: Path) -> Value:
    """Compose the one YAML document in ``path`` into a :class:`Value`."""
    try:
        text = read_file(path, MAX_FILE_BYTES).decode("utf-8")
    except UnreadableFileError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    loader = _Loader(text, path)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    if node is None:
        raise ConfigError(f"{path}: the file is empty")
    return Value(path, node, "")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float | None:
    """Seconds in ``"90s"``, ``"10m"``, ``"1h30m"``, ``"7d"``; None when it is not a duration."""
    text = text.strip()
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if text else None


def duration(value: Value, *, minimum: float = 0.0) -> float:
    """A duration such as ``10m``; a bare number counts as seconds."""
    if isinstance(value.node, yaml.ScalarNode) and value.node.tag in (_INT_TAG, _FLOAT_TAG):
        seconds = value.number()
    else:
        if not isinstance(value.node, yaml.ScalarNode):
            raise value.error(f"expected a duration such as 30s, 10m, 1h or 7d, got {value.kind()}")
        parsed = parse_duration(value.string())
        if parsed is None:
            raise value.error(f"expected a duration such as 30s, 10m, 1h or 7d, got {value.node.value!r}")
        seconds = parsed
    if not math.isfinite(seconds):  # "9999...9d": more digits than a float holds
        raise value.error(f"duration is too large: {value.node.value[:40]!r}")
    if seconds < minimum:
        raise value.error(f"must be at least {minimum:g}s")
    return seconds
