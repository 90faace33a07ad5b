"""Logging: structlog with stable dotted event names, and secrets redacted everywhere.

JSON lines when stderr is not a terminal (journald, Docker), readable lines when it is.
Every record, including formatted tracebacks and records from third-party loggers, passes
through :class:`Redactor` last, so a secret that reaches a message is replaced before it is
written.  Tracebacks are rendered without local variables.

structlog (and the asyncio it imports) costs ~40 ms of start-up, more than a read-only
command spends on its work: :func:`configure` only records the settings, and the first
:func:`get`, or the first record of a stdlib logger, imports and sets it up.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

MASK = "***"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


class Redactor:
    """Replaces known secret strings anywhere in an event dict."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()

    def update(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def add(self, secret: str) -> None:
        """One more secret (an API key read again), keeping the others."""
        self.update((*self._secrets, secret))

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if isinstance(value, BaseException):
            return self.text(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
                 ) -> MutableMapping[str, Any]:
        if not self._secrets:
            return event_dict
        return {k: self.value(v) for k, v in event_dict.items()}


redactor = Redactor()


class _Setup:
    """The settings :func:`configure` was last given, until they are applied."""

    pending: tuple[str, TextIO, bool | None] | None = None
    applied = False


_setup = _Setup()


def configure(level: str = "info", *, stream: TextIO | None = None,
              json: bool | None = None) -> None:
    """Set up structlog and the stdlib root logger; safe to call again (reload).

    Until something logs, only the settings are kept (see the module's docstring); the
    root logger gets a handler that completes the set-up on its first record, so a
    third-party record never goes out unformatted.
    """
    _setup.pending = (level, stream or sys.stderr, json)
    if _setup.applied:
        _apply()
        return
    root = logging.getLogger()
    root.handlers[:] = [_FirstRecord()]
    root.setLevel(max(LEVELS[level], logging.WARNING))


class _FirstRecord(logging.Handler):
    """The root handler until structlog is set up: sets it up, then hands the record on."""

    def emit(self, record: logging.LogRecord) -> None:
        _apply()
        for handler in logging.getLogger().handlers:
            if handler is not self and record.levelno >= handler.level:
                handler.handle(record)


def _apply() -> None:
    if _setup.pending is None:
        return
    import structlog  # noqa: PLC0415 - deferred: see the module's docstring

    level, out, json = _setup.pending
    _setup.pending, _setup.applied = None, True
    as_json = (not out.isatty()) if json is None else json
    renderer: Any = (structlog.processors.JSONRenderer() if as_json else
                     structlog.dev.ConsoleRenderer(
                         colors=False, exception_formatter=structlog.dev.plain_traceback))
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Tracebacks become text here, before the redactor, so they are redacted too.
        structlog.processors.format_exc_info,
        redactor,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    # Records of third-party loggers (aiohttp, asyncio) get the same shape: one JSON object
    # per line off a terminal, so that journald and Docker never see a plain-text line.
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redactor, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Third-party libraries speak only when something is wrong.
    root.setLevel(max(LEVELS[level], logging.WARNING))
    # Apprise logs every failed send; the deliverer captures that text and logs a target's
    # failure once when it starts and once when it ends, so Apprise's own lines would only
    # repeat it on every retry.
    logging.getLogger("apprise").propagate = False


def get(name: str = "watcher") -> Any:
    _apply()
    import structlog  # noqa: PLC0415 - deferred: see the module's docstring

    return structlog.get_logger(name)
