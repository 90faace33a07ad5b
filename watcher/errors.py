"""One error tree for the whole package.

::

    WatcherError                 anything this package raises on purpose
    ├── ConfigError              a config or rule file is wrong: file, line and key in the message
    ├── StateError               the state database cannot be opened, read or written
    │   └── StateInUseError      another process (a running daemon) holds the writer lock
    ├── BackendError             a PostgreSQL driver error, translated by ``pgstate``; the
    │                            store turns it into a StateError like sqlite3's own
    ├── FetchError               an HTTP poll failed; ``retryable`` says whether to try again
    │   └── AuthError            401, 402 or 403: the key or the account needs a person
    ├── SnapshotError            a response is not a model list we can trust
    ├── TemplateRefused          a message template broke a sandbox rule or failed to render
    └── DeliveryError            a notification target did not accept a message

Third-party errors (aiohttp, sqlite3, yaml) are translated where they happen, so that
nothing above ``fetch``/``store``/``config`` ever sees them, and so that their messages
(which may carry request headers) never reach a log line.
"""

from __future__ import annotations


class WatcherError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(WatcherError):
    """A config or rule file is invalid; the message names file, line and key."""


class StateError(WatcherError):
    """The state database cannot be used; never treated as empty."""


class StateInUseError(StateError):
    """Another openrouter-watcher holds the state directory's writer lock."""


class BackendError(WatcherError):
    """A statement failed on PostgreSQL (psycopg's error, its text only); never leaves
    :mod:`watcher.store`, which reports it as it reports ``sqlite3.Error``."""


class FetchError(WatcherError):
    """An HTTP poll failed."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class AuthError(FetchError):
    """The server refused the key or the account (401, 402, 403)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message, retryable=False, status=status)


class SnapshotError(WatcherError):
    """A response body is not a model list we can trust (not JSON, wrong shape, ...)."""


class TemplateRefused(WatcherError):  # noqa: N818 - it is a refusal, not a bug
    """A template broke a sandbox rule or failed to render; the message says which.

    Caught where templates are compiled (a ConfigError naming the key) and rendered (the
    default message is sent, with a note): it never reaches a caller of either.
    """


class DeliveryError(WatcherError):
    """A target did not accept a message; the reason carries no secret."""
