"""Typed, strict configuration, loaded once.

Unknown keys, wrong types and missing keys are :class:`ConfigError`\\ s that name the file,
the line and the key.  Each key is one :class:`Key` (its name, how it is read and checked,
the field it fills); its default is the dataclass field's, written once.  ``${VAR}`` in
string values expands from the environment.  API keys and target URLs are
:class:`~watcher.secret.Secret`\\ s, which never print their value; what may be a secret
(values from the environment or ``*_file`` keys, the token-like parts of target URLs) is
also collected in :attr:`Settings.secrets`, so that logging can redact it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import yaml

from watcher import yamldoc
from watcher.notify.templates import Template, compile_template
from watcher.rules.load import load_rule_files
from watcher.rules.model import Rule
from watcher.secret import Secret

ENV_CONFIG = "OPENROUTER_WATCHER_CONFIG"
LOCAL_CONFIG = "openrouter-watcher.yaml"
LOG_LEVELS = ("debug", "info", "warning", "error")
MIN_INTERVAL_OPENROUTER = 60.0
Format = Literal["text", "markdown", "html", "json"]
WatchKind = Literal["models", "endpoints"]
WATCH_KINDS: tuple[WatchKind, ...] = get_args(WatchKind)
FORMATS: tuple[Format, ...] = get_args(Format)
MAX_SECRET_BYTES = 64 << 10  # an API key or a target URL; /dev/zero is not one


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one cycle tries before it gives up."""

    attempts: int = 4
    backoff: float = 1.0        # first wait, doubled each retry, with jitter
    max_backoff: float = 30.0
    max_retry_after: float = 120.0


@dataclass(frozen=True)
class Watch:
    """One URL polled at a fixed rate."""

    name: str
    url: str
    interval: float
    api_key: Secret | None = None
    api_key_file: Path | None = None  # read again before every poll: a rotated key just works
    timeout: float = 30.0
    max_body_bytes: int = 32 << 20  # all pages of one poll together
    max_pages: int = 100
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_removed_pct: float = 30.0   # a response losing more than this is held, not diffed
    confirm_polls: int = 3          # ... until the same list is seen this many times in a row
    # kind: endpoints (issue 15): the provider endpoints of some models (watcher.providers);
    # ``url`` is then the API base, and the keys below say which models and how fast.
    kind: WatchKind = "models"
    models: tuple[str, ...] = ()        # globs over the host's public list, or ...
    used_within: float | None = None    # ... the models with requests in this usage window
    max_models: int = 50                # more are cut off, with a warning
    requests_per_second: float = 5.0
    concurrency: int = 5
    degraded_below: float = 95.0        # uptime_last_30m below this ...
    degraded_polls: int = 2             # ... this many polls in a row: provider_degraded
    recovered_above: float = 98.0       # then above this: provider_recovered

    def __post_init__(self) -> None:
        if self.api_key is not None:
            object.__setattr__(self, "api_key", Secret.of(self.api_key))


@dataclass(frozen=True)
class Operator:
    """Who hears about the watcher's own trouble (auth refused, suspect responses held)."""

    notify: tuple[str, ...] = ()
    repeat_interval: float = 6 * 3600.0


@dataclass(frozen=True)
class Target:
    """A named place to send notifications: an Apprise URL, or ``console://``."""

    name: str
    url: Secret
    format: Format | None = None    # text | markdown | html | json; None: by the URL's scheme
    max_length: int | None = None   # None: by the URL's scheme
    title: Template | None = None
    body: Template | None = None
    source: str = ""                # file:line, for errors at delivery time

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", Secret.of(self.url))

    @property
    def scheme(self) -> str:
        return self.url.reveal().split("://", 1)[0].lower()


@dataclass(frozen=True)
class Delivery:
    """How hard notifications are tried before they are dead-lettered."""

    max_age: float = 24 * 3600.0
    retry_backoff: float = 30.0
    max_backoff: float = 3600.0
    stop_grace: float = 10.0


@dataclass(frozen=True)
class Usage:
    """Where the account's usage comes from: ``GET /api/v1/activity``, which needs a
    provisioning (management) key; an inference key is refused with 403."""

    url: str = "https://openrouter.ai/api/v1/activity"
    api_key: Secret | None = None
    api_key_file: Path | None = None  # read again before every fetch, like a watch's
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.api_key is not None:
            object.__setattr__(self, "api_key", Secret.of(self.api_key))


@dataclass(frozen=True)
class Retention:
    """How long the state keeps what only says "nothing changed" (None: forever).

    Events and the model history's change points are kept forever unless ``events`` is
    set; what the next diff, a pending alert or a reminder needs is never pruned.
    """

    unchanged_checks: float | None = 30 * 86400.0  # then one per watch and UTC day is kept
    messages: float | None = 90 * 86400.0          # sent, cancelled and duplicate outbox rows
    dead_letters: float | None = None              # dead letters: until resent, by default
    events: float | None = None                    # events nothing pending refers to
    usage: float | None = 400 * 86400.0            # the usage table's days (by their date)


@dataclass(frozen=True)
class Http:
    """The optional listener: ``/healthz``, ``/metrics``, and the pages (recent changes, a
    model's history, the Atom feed) with their JSON API."""

    host: str
    port: int
    public_url: str | None = None   # where people reach the pages (links in messages, feed)
    max_connections: int = 100      # open at once; lowered to leave fds for the polls
    header_timeout: float = 10.0    # a request head must arrive within this (and idle keep-alive)

    @property
    def url(self) -> str:
        """Where a local client reaches it: a wildcard address is asked on loopback."""
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - mapped away, not bound
        host = wildcard.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


@dataclass(frozen=True)
class Database:
    """The state in PostgreSQL (``state:`` in the config): a libpq URL without a password,
    and the password, from a file or the environment, as a Secret."""

    url: str                         # postgresql://user@host:port/dbname[?sslmode=...]
    password: Secret | None = None

    def __post_init__(self) -> None:
        if self.password is not None:
            object.__setattr__(self, "password", Secret.of(self.password))

    def __str__(self) -> str:
        return self.url  # never holds a password: the config refuses one in the URL


@dataclass(frozen=True)
class Settings:
    """Everything the daemon needs, validated."""

    path: Path
    state_dir: Path
    watches: tuple[Watch, ...]
    targets: dict[str, Target]
    rules: tuple[Rule, ...]
    rule_files: tuple[Path, ...] = ()
    log_level: str = "info"
    delivery: Delivery = field(default_factory=Delivery)
    operator: Operator = field(default_factory=Operator)
    expiring_soon_days: tuple[int, ...] = (7, 1)
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    warnings: tuple[str, ...] = ()
    http: Http | None = None        # None: no listener
    retention: Retention = field(default_factory=Retention)
    usage: Usage | None = None      # None: no usage, events carry no impact fields
    database: Database | None = None  # ``state:``: the state in PostgreSQL, not state_dir

    @property
    def state(self) -> Path | Database:
        """Where the state is: the SQLite state directory, or the PostgreSQL database."""
        return self.database if self.database is not None else self.state_dir


def public_watch(settings: Settings, watch: Watch) -> Watch | None:
    """For a ``/models/user`` watch, the watch of the public ``/models`` list it pairs with."""
    base = watch.url.rstrip("/")
    if not base.endswith("/models/user"):
        return None
    public_url = base.removesuffix("/user")
    return next((w for w in settings.watches if w.url.rstrip("/") == public_url), None)


def packaged_config() -> Path:
    """The default config shipped inside the package."""
    from importlib import resources  # noqa: PLC0415 - not at every start (cli.py)

    return Path(str(resources.files("watcher") / "defaults" / "openrouter-watcher.yaml"))


def find_config(explicit: str | None) -> Path:
    """``--config``, else ``$OPENROUTER_WATCHER_CONFIG``, else ``./openrouter-watcher.yaml``,
    else the packaged default."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    if Path(LOCAL_CONFIG).is_file():
        return Path(LOCAL_CONFIG)
    return packaged_config()


def load(path: Path) -> Settings:
    """Read and validate the config at ``path`` and every rule file it names."""
    loading = _Loading(path.parent)
    keys = loading.keys()
    settings = _fields(_mapping(yamldoc.load(path), keys, exclusive=("state_dir", "state")), keys)
    settings.setdefault("state_dir", _default_state_dir())
    settings["targets"] = loading.targets
    if loading.used_within and settings.get("usage") is None:
        raise loading.used_within[0].error("needs a usage: section: the models used are read "
                                           "from the stored usage (GET /api/v1/activity)")
    settings["rules"] = load_rule_files(settings.get("rule_files", ()),
                                        targets=set(loading.targets), watches=loading.watches)
    return Settings(path=path, **settings,
                    secrets=frozenset(s for s in loading.secrets if len(s) >= 4),
                    warnings=tuple(loading.warnings))


@dataclass(frozen=True)
class Key:
    """One config key: its name in the file, how its value is read and checked, and the
    dataclass field it fills.

    A key missing from the file is left out of the fields, so the dataclass's own default
    applies: each default is written once, on the dataclass.
    """

    name: str
    read: Callable[[yamldoc.Value], Any]
    into: str = ""           # the dataclass field, when it is not named like the key
    required: bool = False

    @property
    def attr(self) -> str:
        return self.into or self.name


def _mapping(value: yamldoc.Value, keys: Sequence[Key], *, exclusive: tuple[str, str] | None = None
             ) -> dict[str, yamldoc.Value]:
    """The keys of mapping ``value``; unknown, duplicate and missing ones are errors (naming
    file, line and key), and so are both of an ``exclusive`` pair."""
    found = value.mapping(allowed={k.name for k in keys},
                          required={k.name for k in keys if k.required})
    if exclusive and all(name in found for name in exclusive):
        first, second = exclusive
        raise found[second].error(f"give {first} or {second}, not both")
    return found


def _fields(found: dict[str, yamldoc.Value], keys: Sequence[Key]) -> dict[str, Any]:
    """The dataclass fields ``keys`` read from ``found``, in the order of ``keys``."""
    return {key.attr: key.read(found[key.name]) for key in keys if key.name in found}


def _read(value: yamldoc.Value, keys: Sequence[Key]) -> dict[str, Any]:
    return _fields(_mapping(value, keys), keys)


def _duration(minimum: float = 0.0) -> Callable[[yamldoc.Value], float]:
    return lambda value: yamldoc.duration(value, minimum=minimum)


def _integer(minimum: int) -> Callable[[yamldoc.Value], int]:
    return lambda value: value.integer(minimum=minimum)


def _number(minimum: float) -> Callable[[yamldoc.Value], float]:
    return lambda value: value.number(minimum=minimum)


class _Loading:
    """One load of a config: where relative paths start, the secrets and warnings found,
    and what later keys refer to (rules and ``operator.notify`` name targets and watches).

    The top-level keys are read in the order of :meth:`keys`, so ``watches`` and
    ``targets`` are known when ``operator`` is read, and when the rule files are.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.secrets: list[str] = []
        self.warnings: list[str] = []
        self.watches: set[str] = set()
        self.targets: dict[str, Target] = {}
        self.used_within: list[yamldoc.Value] = []  # need a usage: section

    def keys(self) -> tuple[Key, ...]:
        return (
            Key("state_dir", self._state_dir),
            Key("state", self._database, into="database"),
            Key("watches", self._watches, required=True),
            Key("targets", self._targets),
            Key("rules", self._rule_files, into="rule_files"),
            Key("log_level", lambda value: value.choice(LOG_LEVELS)),
            Key("delivery", lambda value: Delivery(**_read(value, DELIVERY_KEYS))),
            Key("operator", self._operator),
            Key("expiring_soon_days", _days),
            Key("http", _http),
            Key("retention", lambda value: Retention(**_read(value, RETENTION_KEYS))),
            Key("usage", self._usage),
        )

    def _state_dir(self, value: yamldoc.Value) -> Path:
        return self.base / value.string(expand_env=True)

    def _database(self, value: yamldoc.Value) -> Database:
        """``state: postgresql://...``, or a mapping of ``url`` and ``password_file`` or
        ``password_env``."""
        if isinstance(value.node, yaml.ScalarNode):
            return Database(url=_database_url(value))
        found = _mapping(value, DATABASE_KEYS, exclusive=("password_file", "password_env"))
        password = None
        if "password_file" in found:
            password = _read_secret_file(found["password_file"], self.base)
        elif "password_env" in found:
            password = _api_key_env(found["password_env"]).reveal()
        if password is not None:
            self.secrets.append(password)
        return Database(url=_database_url(found["url"]),
                        password=None if password is None else Secret(password))

    def _target_url(self, value: yamldoc.Value) -> str:
        return value.string(expand_env=True, secrets=self.secrets)

    def _target_url_file(self, value: yamldoc.Value) -> str:
        url = _read_secret_file(value, self.base)
        self.secrets.append(url)
        return url

    def _watches(self, value: yamldoc.Value) -> tuple[Watch, ...]:
        items = value.sequence()
        watches = tuple(self._watch(item) for item in items)
        if not watches:
            raise value.error("at least one watch is needed")
        for item, watch in zip(items, watches, strict=True):
            if watch.name in self.watches:
                raise item.error(f"duplicate watch name {watch.name!r}")
            self.watches.add(watch.name)
        return watches

    def _watch(self, value: yamldoc.Value) -> Watch:
        keys = (*self._watch_keys(), *ENDPOINTS_KEYS, *RETRY_KEYS)
        found = _mapping(value, keys, exclusive=("api_key_env", "api_key_file"))
        fields = _fields(found, (*self._watch_keys(), *ENDPOINTS_KEYS))
        self._check_kind(value, found, fields)
        if "api_key_file" in found:
            fields["api_key"] = Secret(_read_secret_file(found["api_key_file"], self.base))
        if "api_key" in fields:
            self.secrets.append(fields["api_key"].reveal())
        watch = Watch(**fields, retry=RetryPolicy(**_fields(found, RETRY_KEYS)))
        host = urlsplit(watch.url).hostname or ""
        if watch.interval < MIN_INTERVAL_OPENROUTER and host.endswith("openrouter.ai"):
            self.warnings.append(
                f"{value.path}:{found['interval'].line}: watch {watch.name!r} polls openrouter.ai "
                f"every {watch.interval:g}s; below {MIN_INTERVAL_OPENROUTER:g}s is meant for "
                "tests and replays")
        return watch

    def _check_kind(self, value: yamldoc.Value, found: dict[str, yamldoc.Value],
                    fields: dict[str, Any]) -> None:
        """The endpoints keys belong to ``kind: endpoints``, which needs ``models`` or
        ``used_within`` (one of them)."""
        only = [k.name for k in ENDPOINTS_KEYS if k.name != "kind" and k.name in found]
        if fields.get("kind", "models") == "models":
            if only:
                raise found[only[0]].error("only for a watch of kind: endpoints")
            return
        if "models" in found and "used_within" in found:
            raise found["used_within"].error("give models or used_within, not both")
        if "models" not in found and "used_within" not in found:
            raise value.error("kind: endpoints needs models (globs over the host's public "
                              "list) or used_within (the models used in that window)")
        if "used_within" in found:
            self.used_within.append(found["used_within"])
        below = fields.get("degraded_below", 95.0)
        above = fields.get("recovered_above", 98.0)
        if above < below:
            where = found.get("recovered_above") or found["degraded_below"]
            raise where.error(f"recovered_above ({above:g}) must not be below degraded_below "
                              f"({below:g}): that is the hysteresis")

    def _usage(self, value: yamldoc.Value) -> Usage:
        keys = (Key("url", _watch_url),
                Key("api_key_env", _api_key_env, into="api_key"),
                Key("api_key_file", lambda item: _secret_path(item, self.base)),
                Key("timeout", _duration(minimum=1.0)))
        found = _mapping(value, keys, exclusive=("api_key_env", "api_key_file"))
        if "api_key_env" not in found and "api_key_file" not in found:
            raise value.error("give api_key_env or api_key_file: /api/v1/activity needs a "
                              "provisioning (management) key")
        fields = _fields(found, keys)
        if "api_key_file" in found:
            fields["api_key"] = Secret(_read_secret_file(found["api_key_file"], self.base))
        self.secrets.append(fields["api_key"].reveal())
        return Usage(**fields)

    def _watch_keys(self) -> tuple[Key, ...]:
        return (
            Key("name", _watch_name, required=True),
            Key("url", _watch_url, required=True),
            Key("interval", _duration(minimum=1.0), required=True),
            Key("api_key_env", _api_key_env, into="api_key"),
            Key("api_key_file", lambda value: _secret_path(value, self.base)),
            Key("timeout", _duration(minimum=1.0)),
            Key("max_body_mb", lambda value: int(value.number(minimum=0.01) * (1 << 20)),
                into="max_body_bytes"),
            Key("max_pages", _integer(minimum=1)),
            Key("max_removed_pct", _number(minimum=0)),
            Key("confirm_polls", _integer(minimum=1)),
        )

    def _targets(self, value: yamldoc.Value) -> dict[str, Target]:
        for name, item in value.items():
            self.targets[name] = self._target(name, item)
        return self.targets

    def _target(self, name: str, item: yamldoc.Value) -> Target:
        if isinstance(item.node, yaml.MappingNode):
            keys = (Key("url", self._target_url), Key("url_file", self._target_url_file,
                                                      into="url"), *TARGET_KEYS)
            found = _mapping(item, keys)
            if ("url" in found) == ("url_file" in found):
                raise item.error("give exactly one of url or url_file")
            fields = _fields(found, keys)
            url = fields.pop("url")
        else:
            fields, url = {}, self._target_url(item)
        if "://" not in url:
            # The URL may hold a token: name the key, never echo the value.
            raise item.error("expected an Apprise URL such as slack://..., mailto://... "
                             "or console://")
        if url.split("://", 1)[0] != "console":
            self.secrets.extend(url_secrets(url))
        return Target(name=name, url=Secret(url), source=f"{item.path}:{item.line}", **fields)

    def _rule_files(self, value: yamldoc.Value) -> tuple[Path, ...]:
        return tuple(path for item in value.sequence()
                     for path in _expand_rule_paths(item, self.base))

    def _operator(self, value: yamldoc.Value) -> Operator:
        found = _mapping(value, OPERATOR_KEYS)
        fields = _fields(found, OPERATOR_KEYS)
        for name in fields["notify"]:
            if name not in self.targets:
                known = ", ".join(sorted(self.targets)) or "none are configured"
                raise found["notify"].error(f"unknown target {name!r} (targets: {known})")
        return Operator(**fields)


def _default_state_dir() -> Path:
    """systemd's ``StateDirectory=`` when it is set, else ``./state``."""
    return Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "state")


def _watch_name(value: yamldoc.Value) -> str:
    name = value.string()
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise value.error("use letters, digits, '-' and '_' only")
    return name


def _watch_url(value: yamldoc.Value) -> str:
    url = value.string(expand_env=True)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise value.error(f"expected an http:// or https:// URL, got {url!r}")
    return url


def is_database_url(text: str) -> bool:
    """Whether ``text`` names a PostgreSQL state (not a SQLite state directory)."""
    return text.startswith(("postgresql://", "postgres://"))


def database_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a PostgreSQL state URL (None: nothing).  Never quotes
    the URL: it may hold a password."""
    if not is_database_url(url):
        return ("expected a postgresql://user@host:port/database URL (the SQLite state is "
                "state_dir: a directory)")
    parts = urlsplit(url)
    if parts.password is not None:
        return ("the URL holds a password: give it in password_file or password_env instead "
                "(state: {url: ..., password_file: ...}), so that it is never printed")
    if not parts.path.strip("/"):
        return "the URL names no database: postgresql://user@host:port/DATABASE"
    return None


def _database_url(value: yamldoc.Value) -> str:
    """A PostgreSQL URL with a database name and no password in it."""
    url = value.string(expand_env=True).strip()
    problem = database_url_problem(url)
    if problem:
        raise value.error(problem)
    return url


def _api_key_env(value: yamldoc.Value) -> Secret:
    var = value.string()
    key = os.environ.get(var)
    if not key:
        raise value.error(f"environment variable {var} is not set")
    return Secret(key)


def _days(value: yamldoc.Value) -> tuple[int, ...]:
    return tuple(sorted({item.integer(minimum=0) for item in value.sequence()}, reverse=True))


def _percent(value: yamldoc.Value) -> float:
    number = value.number(minimum=0)
    if number > 100:
        raise value.error(f"expected a percentage from 0 to 100, got {number:g}")
    return number


def _globs(value: yamldoc.Value) -> tuple[str, ...]:
    globs = tuple(value.string_list())
    if not globs or any(not g for g in globs):
        raise value.error("name at least one model or glob, such as anthropic/*")
    return globs


ENDPOINTS_KEYS = (
    Key("kind", lambda value: value.choice(WATCH_KINDS)),
    Key("models", _globs),
    Key("used_within", _duration(minimum=86400.0)),
    Key("max_models", _integer(minimum=1)),
    Key("requests_per_second", _number(minimum=0.01)),
    Key("concurrency", _integer(minimum=1)),
    Key("degraded_below", _percent),
    Key("degraded_polls", _integer(minimum=1)),
    Key("recovered_above", _percent),
)
RETRY_KEYS = (
    Key("retries", lambda value: value.integer(minimum=0) + 1, into="attempts"),
    Key("retry_backoff", _duration(minimum=0.001), into="backoff"),
    Key("max_retry_after", _duration()),
)
DELIVERY_KEYS = (
    Key("max_age", _duration(minimum=1)),
    Key("retry_backoff", _duration(minimum=0.01)),
    Key("max_backoff", _duration(minimum=0.01)),
    Key("stop_grace", _duration()),
)
OPERATOR_KEYS = (
    Key("notify", lambda value: tuple(value.string_list()), required=True),
    Key("repeat_interval", _duration(minimum=1)),
)
TARGET_KEYS = (  # after url or url_file, which the load reads (they are secrets)
    Key("format", lambda value: value.choice(FORMATS)),
    Key("max_length", _integer(minimum=200)),
    Key("title", compile_template),
    Key("body", compile_template),
)
DATABASE_KEYS = (  # read by _Loading._database: the password is a secret
    Key("url", lambda value: value, required=True),
    Key("password_file", lambda value: value),
    Key("password_env", lambda value: value),
)
FOREVER = ("forever", "never")  # "keep forever", "never prune": both read naturally


def _age(minimum: float) -> Callable[[yamldoc.Value], float | None]:
    """A retention age: a duration of at least ``minimum``, or forever (None)."""
    def read(value: yamldoc.Value) -> float | None:
        if isinstance(value.node, yaml.ScalarNode) and value.node.value in FOREVER:
            return None
        return yamldoc.duration(value, minimum=minimum)
    return read


RETENTION_KEYS = (
    Key("unchanged_checks", _age(minimum=3600.0)),
    # A message row must outlive the window in which another watch's copy of the same change
    # is recognised (a day, or 3 intervals): see cycle.same_change_window.
    Key("messages", _age(minimum=7 * 86400.0)),
    Key("dead_letters", _age(minimum=3600.0)),
    Key("events", _age(minimum=3600.0)),
    # The usage window is 30 days: a shorter keep would prune what the impact is read from.
    Key("usage", _age(minimum=31 * 86400.0)),
)


def _http(value: yamldoc.Value) -> Http:
    fields = _read(value, HTTP_KEYS)
    host, port = fields.pop("listen")
    return Http(host=host, port=port, **fields)


def _listen(value: yamldoc.Value) -> tuple[str, int]:
    listen = value.string(expand_env=True)
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise value.error(f"expected HOST:PORT such as 127.0.0.1:9464 or [::1]:9464, "
                          f"got {listen!r}")
    return host, int(port)


def _public_url(value: yamldoc.Value) -> str:
    """An absolute http(s) URL without query or fragment, kept without its trailing ``/``."""
    url = value.string(expand_env=True).strip()
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if (parts.scheme not in ("http", "https") or not parts.hostname or not port_ok
            or parts.query or parts.fragment or any(c.isspace() for c in url)):
        raise value.error("expected an absolute http:// or https:// URL without query or "
                          f"fragment, such as https://watcher.example.com, got {url!r}")
    return url.rstrip("/")


HTTP_KEYS = (  # listen is two fields, host and port
    Key("listen", _listen, required=True),
    Key("public_url", _public_url),
    Key("max_connections", _integer(minimum=1)),
    Key("header_timeout", _duration(minimum=0.1)),
)


# Query keys of Apprise URLs whose values name places, people or options, never secrets.
# Masking them would mask more than the secret: ``smtp=127.0.0.1`` masked the watch's
# host in every log line.
PUBLIC_QUERY_KEYS = frozenset({
    "smtp", "host", "port", "from", "to", "cc", "bcc", "reply", "name", "user", "format",
    "overflow", "mode", "secure", "verify", "lang", "image", "avatar", "footer", "rto", "cto",
    "tz", "emojis", "method", "priority", "channel", "channels", "chat", "chat_id",
})


# Schemes whose host is always a place (a compose service name such as ``mailrelay`` too).
PLACE_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos",
                           "http", "https"})


def url_secrets(url: str) -> list[str]:
    """A target URL and the parts of it that may be tokens, for redaction.

    Apprise URLs carry tokens in the password, the path (Slack, Discord, webhooks), a
    "host" that is no host name (``slack://TOKEN/...``, ``discord://ID/TOKEN``) and the
    query; any such part of 8 or more characters is masked wherever it appears.  A host
    name, an IP address or a port is not: it also appears in other URLs (a watch's), which
    must stay readable.
    """
    parts = urlsplit(url)
    pieces = [url, parts.password or ""]
    pieces += [seg for seg in parts.path.split("/") if len(seg) >= 8]
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # not a number: Apprise refuses the URL, redaction must not crash
        port = None
    if (host and "." not in host and ":" not in host and host != "localhost"
            and port is None and parts.scheme.lower() not in PLACE_SCHEMES):
        # A dotless "host" is a token, not a place (as written: hostname is lowercased).
        pieces.append(parts.netloc.rsplit("@", 1)[-1].split(":", 1)[0])
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        if key.lower().lstrip("+-:") in PUBLIC_QUERY_KEYS or _is_address(value):
            continue
        pieces.append(value)
    if parts.password:
        pieces.append(parts.netloc.rsplit("@", 1)[0])  # user:password, as Apprise may print it
    return [p for p in pieces if len(p) >= 8]


def _is_address(value: str) -> bool:
    """An IP address or a port number: a place, never a secret."""
    import ipaddress  # noqa: PLC0415 - not at every start (cli.py)

    if value.isdigit():
        return True
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def _secret_path(value: yamldoc.Value, base: Path) -> Path:
    return base / value.string(expand_env=True)


def _read_secret_file(value: yamldoc.Value, base: Path) -> str:
    path = _secret_path(value, base)
    try:
        text = yamldoc.read_file(path, MAX_SECRET_BYTES).decode("utf-8").strip()
    except yamldoc.UnreadableFileError as exc:
        raise value.error(f"{path}: {exc}") from None
    except OSError as exc:
        raise value.error(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise value.error(f"{path}: not UTF-8 text") from None
    if not text:
        raise value.error(f"{path} is empty")
    return text


def _expand_rule_paths(value: yamldoc.Value, base: Path) -> list[Path]:
    pattern = value.string(expand_env=True)
    full = base / pattern
    if glob.has_magic(pattern):
        matches = sorted(Path(p) for p in glob.glob(str(full)))  # noqa: PTH207 - absolute patterns
        if not matches:
            raise value.error(f"no rule file matches {pattern!r}")
        for match in matches:
            if not match.is_file():  # a device, a FIFO or a directory: never read
                raise value.error(f"{pattern!r} matches {match}, which is not a regular file")
        return matches
    if not full.is_file():
        what = "is not a regular file" if full.exists() else "not found"
        raise value.error(f"rule file {full} {what}")
    return [full]
