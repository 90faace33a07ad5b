"""A value that must never be printed: an API key, a target URL with its token, a password.

``repr``, ``str`` and every format spec give ``Secret('****')``, so a secret that reaches a
log line, a traceback's message, an f-string or the repr of the settings holding it shows
nothing.  :meth:`Secret.reveal` is called only where the value is used: the HTTP
``Authorization`` header and the URL handed to Apprise.  The log redactor
(:data:`watcher.log.redactor`) stays the second line of defence, for what leaves a
revealed value (an Apprise error that quotes its URL).
"""

from __future__ import annotations

MASKED = "Secret('****')"


class Secret:
    """A string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @classmethod
    def of(cls, value: Secret | str) -> Secret:
        """``value`` as a Secret: settings built in code (the demo, tests) may give a str."""
        return value if isinstance(value, Secret) else cls(value)

    def reveal(self) -> str:
        """The value itself, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return MASKED

    __str__ = __repr__

    def __format__(self, _spec: str) -> str:
        return MASKED

    def __eq__(self, other: object) -> bool:
        """Equal to the same secret, or to its value (a re-read key is compared unrevealed)."""
        value = other.reveal() if isinstance(other, Secret) else other
        if not isinstance(value, str):
            return NotImplemented
        import hmac  # noqa: PLC0415 - not at every start (cli.py)

        return hmac.compare_digest(self._value.encode(), value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)
