"""Typed, strict configuration, loaded once.

Unknown keys, wrong types and missing keys are :class:`ConfigError`\\ s that name the file,
the line and the key.  ``${VAR}`` in string values expands from the environment; values
that come from the environment or from ``*_file`` keys in secret places (API keys, target
URLs) are collected in :attr:`Settings.secrets` so that logging can redact them.
"""

from __future__ import annotations

import glob
import ipaddress
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from watcher import yamldoc
from watcher.notify.templates import Template, compile_template
from watcher.rules.load import load_rule_files
from watcher.rules.model import Rule

ENV_CONFIG = "OPENROUTER_WATCHER_CONFIG"
LOCAL_CONFIG = "openrouter-watcher.yaml"
LOG_LEVELS = ("debug", "info", "warning", "error")
MIN_INTERVAL_OPENROUTER = 60.0
FORMATS = ("text", "markdown", "html", "json")
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
    api_key: str | None = field(default=None, repr=False)
    api_key_file: Path | None = None  # read again before every poll: a rotated key just works
    timeout: float = 30.0
    max_body_bytes: int = 32 << 20  # all pages of one poll together
    max_pages: int = 100
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_removed_pct: float = 30.0   # a response losing more than this is held, not diffed
    confirm_polls: int = 3          # ... until the same list is seen this many times in a row


@dataclass(frozen=True)
class Operator:
    """Who hears about the watcher's own trouble (auth refused, suspect responses held)."""

    notify: tuple[str, ...] = ()
    repeat_interval: float = 6 * 3600.0


@dataclass(frozen=True)
class Target:
    """A named place to send notifications: an Apprise URL, or ``console://``."""

    name: str
    url: str = field(repr=False)
    format: str | None = None       # text | markdown | html | json; None: by the URL's scheme
    max_length: int | None = None   # None: by the URL's scheme
    title: Template | None = None
    body: Template | None = None
    source: str = ""                # file:line, for errors at delivery time

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0].lower()


@dataclass(frozen=True)
class Delivery:
    """How hard notifications are tried before they are dead-lettered."""

    max_age: float = 24 * 3600.0
    retry_backoff: float = 30.0
    max_backoff: float = 3600.0
    stop_grace: float = 10.0


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


@dataclass(frozen=True)
class Http:
    """The optional listener for ``/healthz`` and ``/metrics``."""

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


def public_watch(settings: Settings, watch: Watch) -> Watch | None:
    """For a ``/models/user`` watch, the watch of the public ``/models`` list it pairs with."""
    base = watch.url.rstrip("/")
    if not base.endswith("/models/user"):
        return None
    public_url = base.removesuffix("/user")
    return next((w for w in settings.watches if w.url.rstrip("/") == public_url), None)


def packaged_config() -> Path:
    """The default config shipped inside the package."""
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
    root = yamldoc.load(path)
    keys = root.mapping(
        allowed={"state_dir", "watches", "targets", "rules", "log_level", "delivery",
                 "expiring_soon_days", "operator", "http", "retention"},
        required={"watches"},
    )
    base = path.parent
    secrets: list[str] = []
    warnings: list[str] = []

    if "state_dir" in keys:
        state_dir = base / keys["state_dir"].string(expand_env=True)
    else:
        state_dir = Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "state")

    watches = tuple(_watch(v, base, secrets, warnings) for v in keys["watches"].sequence())
    if not watches:
        raise keys["watches"].error("at least one watch is needed")
    names = [w.name for w in watches]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise keys["watches"].sequence()[i].error(f"duplicate watch name {name!r}")

    targets = _targets(keys["targets"], base, secrets) if "targets" in keys else {}

    rule_files: list[Path] = []
    if "rules" in keys:
        for item in keys["rules"].sequence():
            rule_files.extend(_expand_rule_paths(item, base))
    rules = load_rule_files(rule_files, targets=set(targets), watches=set(names))

    log_level = keys["log_level"].choice(LOG_LEVELS) if "log_level" in keys else "info"
    delivery = _delivery(keys["delivery"]) if "delivery" in keys else Delivery()
    operator = _operator(keys["operator"], set(targets)) if "operator" in keys else Operator()
    days: tuple[int, ...] = (7, 1)
    if "expiring_soon_days" in keys:
        days = tuple(sorted({v.integer(minimum=0) for v in keys["expiring_soon_days"].sequence()},
                            reverse=True))
    return Settings(
        path=path, state_dir=state_dir, watches=watches, targets=targets, rules=rules,
        rule_files=tuple(rule_files), log_level=log_level, delivery=delivery, operator=operator,
        expiring_soon_days=days,
        secrets=frozenset(s for s in secrets if len(s) >= 4), warnings=tuple(warnings),
        http=_http(keys["http"]) if "http" in keys else None,
        retention=_retention(keys["retention"]) if "retention" in keys else Retention(),
    )


FOREVER = ("forever", "never")  # "keep forever", "never prune": both read naturally


def _retention(value: yamldoc.Value) -> Retention:
    kinds = ("unchanged_checks", "messages", "dead_letters", "events")
    keys = value.mapping(allowed=set(kinds))
    default = Retention()
    ages: dict[str, float | None] = {}
    for kind in kinds:
        if kind not in keys:
            ages[kind] = getattr(default, kind)
        elif isinstance(keys[kind].node, yaml.ScalarNode) and keys[kind].node.value in FOREVER:
            ages[kind] = None
        else:
            # A message row must outlive the window in which another watch's copy of the
            # same change is recognised (a day, or 3 intervals): see app.same_change_window.
            minimum = 7 * 86400.0 if kind == "messages" else 3600.0
            ages[kind] = yamldoc.duration(keys[kind], minimum=minimum)
    return Retention(**ages)


def _http(value: yamldoc.Value) -> Http:
    keys = value.mapping(allowed={"listen", "public_url", "max_connections", "header_timeout"},
                         required={"listen"})
    listen = keys["listen"].string(expand_env=True)
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise keys["listen"].error(f"expected HOST:PORT such as 127.0.0.1:9464 or [::1]:9464, "
                                   f"got {listen!r}")
    public_url = _public_url(keys["public_url"]) if "public_url" in keys else None
    limits: dict[str, Any] = {}
    if "max_connections" in keys:
        limits["max_connections"] = keys["max_connections"].integer(minimum=1)
    if "header_timeout" in keys:
        limits["header_timeout"] = yamldoc.duration(keys["header_timeout"], minimum=0.1)
    return Http(host=host, port=int(port), public_url=public_url, **limits)


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


def _watch(value: yamldoc.Value, base: Path, secrets: list[str], warnings: list[str]) -> Watch:
    keys = value.mapping(
        allowed={"name", "url", "interval", "api_key_env", "api_key_file", "timeout",
                 "max_body_mb", "max_pages", "retries", "retry_backoff", "max_retry_after", "max_removed_pct",
                 "confirm_polls"},
        required={"name", "url", "interval"},
    )
    name = keys["name"].string()
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise keys["name"].error("use letters, digits, '-' and '_' only")
    url = keys["url"].string(expand_env=True)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise keys["url"].error(f"expected an http:// or https:// URL, got {url!r}")
    interval = yamldoc.duration(keys["interval"], minimum=1.0)
    if interval < MIN_INTERVAL_OPENROUTER and (parts.hostname or "").endswith("openrouter.ai"):
        warnings.append(
            f"{value.path}:{keys['interval'].line}: watch {name!r} polls openrouter.ai every "
            f"{interval:g}s; below {MIN_INTERVAL_OPENROUTER:g}s is meant for tests and replays"
        )
    if "api_key_env" in keys and "api_key_file" in keys:
        raise keys["api_key_file"].error("give api_key_env or api_key_file, not both")
    api_key, key_file = None, None
    if "api_key_env" in keys:
        var = keys["api_key_env"].string()
        api_key = os.environ.get(var)
        if not api_key:
            raise keys["api_key_env"].error(f"environment variable {var} is not set")
    elif "api_key_file" in keys:
        key_file = _secret_path(keys["api_key_file"], base)
        api_key = _read_secret_file(keys["api_key_file"], base)
    if api_key:
        secrets.append(api_key)
    timeout = yamldoc.duration(keys["timeout"], minimum=1.0) if "timeout" in keys else 30.0
    max_mb = keys["max_body_mb"].number(minimum=0.01) if "max_body_mb" in keys else 32.0
    max_pages = keys["max_pages"].integer(minimum=1) if "max_pages" in keys else Watch.max_pages
    default = RetryPolicy()
    retry = RetryPolicy(
        attempts=keys["retries"].integer(minimum=0) + 1 if "retries" in keys else default.attempts,
        backoff=yamldoc.duration(keys["retry_backoff"], minimum=0.001)
        if "retry_backoff" in keys else default.backoff,
        max_retry_after=yamldoc.duration(keys["max_retry_after"])
        if "max_retry_after" in keys else default.max_retry_after,
    )
    max_removed = keys["max_removed_pct"].number(minimum=0) if "max_removed_pct" in keys else 30.0
    confirm = keys["confirm_polls"].integer(minimum=1) if "confirm_polls" in keys else 3
    return Watch(name=name, url=url, interval=interval, api_key=api_key, api_key_file=key_file,
                 timeout=timeout,
                 max_body_bytes=int(max_mb * (1 << 20)), max_pages=max_pages, retry=retry,
                 max_removed_pct=max_removed, confirm_polls=confirm)


def _operator(value: yamldoc.Value, targets: set[str]) -> Operator:
    keys = value.mapping(allowed={"notify", "repeat_interval"}, required={"notify"})
    notify = keys["notify"].string_list()
    for name in notify:
        if name not in targets:
            raise keys["notify"].error(f"unknown target {name!r} (targets: "
                                       f"{', '.join(sorted(targets)) or 'none are configured'})")
    repeat = (yamldoc.duration(keys["repeat_interval"], minimum=1)
              if "repeat_interval" in keys else Operator().repeat_interval)
    return Operator(notify=tuple(notify), repeat_interval=repeat)


def _delivery(value: yamldoc.Value) -> Delivery:
    keys = value.mapping(allowed={"max_age", "retry_backoff", "max_backoff", "stop_grace"})
    default = Delivery()
    return Delivery(
        max_age=yamldoc.duration(keys["max_age"], minimum=1) if "max_age" in keys
        else default.max_age,
        retry_backoff=yamldoc.duration(keys["retry_backoff"], minimum=0.01)
        if "retry_backoff" in keys else default.retry_backoff,
        max_backoff=yamldoc.duration(keys["max_backoff"], minimum=0.01)
        if "max_backoff" in keys else default.max_backoff,
        stop_grace=yamldoc.duration(keys["stop_grace"]) if "stop_grace" in keys
        else default.stop_grace,
    )


def _targets(value: yamldoc.Value, base: Path, secrets: list[str]) -> dict[str, Target]:
    targets: dict[str, Target] = {}
    for name, item in value.items():
        extra: dict[str, Any] = {}
        if isinstance(item.node, yaml.MappingNode):
            keys = item.mapping(allowed={"url", "url_file", "format", "max_length", "title",
                                         "body"})
            if ("url" in keys) == ("url_file" in keys):
                raise item.error("give exactly one of url or url_file")
            if "url" in keys:
                url = keys["url"].string(expand_env=True, secrets=secrets)
            else:
                url = _read_secret_file(keys["url_file"], base)
                secrets.append(url)
            if "format" in keys:
                extra["format"] = keys["format"].choice(FORMATS)
            if "max_length" in keys:
                extra["max_length"] = keys["max_length"].integer(minimum=200)
            for key in ("title", "body"):
                if key in keys:
                    extra[key] = compile_template(keys[key])
        else:
            url = item.string(expand_env=True, secrets=secrets)
        if "://" not in url:
            # The URL may hold a token: name the key, never echo the value.
            raise item.error("expected an Apprise URL such as slack://..., mailto://... "
                             "or console://")
        if url.split("://", 1)[0] != "console":
            secrets.extend(url_secrets(url))
        targets[name] = Target(name=name, url=url, source=f"{item.path}:{item.line}", **extra)
    return targets


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
