"""The ``openrouter-watcher`` command: argument parsing, exit codes and signals.

Exit codes: 0 success; 1 a watch could not be checked (fetch or validation failed) or the
state database is unusable; 2 the config, a rule file or the command line is wrong.
This is the only module that touches signals and ``sys.exit``.

Start-up is kept small (``python -m bench.startup`` measures it, ``tests/test_startup.py``
holds what it loads). aiohttp, Apprise, DeepDiff and Jinja2 take most of a second to import
and asyncio alone ~40 ms: each command imports what it needs itself. The command line is
parsed before anything else is imported, with only the named command's parser built, so
``--help`` and usage errors load neither PyYAML nor SQLite. A few modules that every command
reads import what only some of their functions need (hashlib, decimal, html) inside those
functions, marked "not at every start".
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcher import __version__, escape, log
from watcher.clock import iso
from watcher.errors import ConfigError, SnapshotError, StateError, StateInUseError, WatcherError

if TYPE_CHECKING:
    from watcher import config, snapshot
    from watcher.app import Extra
    from watcher.cycle import CycleResult
    from watcher.events import Event
    from watcher.store import Store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own usage errors exit 2 too
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line. With ``command``, only that command's parser is built: the other
    twelve cost every start ~10 ms, and only ``--help`` (or a mistyped command) needs them."""
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="PATH",
                        help="config file (default: $OPENROUTER_WATCHER_CONFIG, else "
                             "./openrouter-watcher.yaml, else the packaged default)")
    common.add_argument("--log-level", choices=log.LEVELS,
                        help="debug, info, warning or error (default: the config's log_level)")
    fmt = _Parser(add_help=False)
    fmt.add_argument("--format", choices=("text", "json"), default="text",
                     help="text for people, json for one event object per line")

    parser = _Parser(
        prog="openrouter-watcher",
        description="Watch the OpenRouter model catalogue and alert on what changes.",
        epilog="Exit codes: 0 ok, 1 a watch failed or the state is unusable, 2 bad config "
               "or usage.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    unused = _Parser(add_help=False, conflict_handler="resolve")  # takes the others' arguments

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, **kwargs) if command in (None, name) else unused

    add("run", parents=[common], help="poll every watch until stopped (the daemon)",
                   description="Poll every watch at its interval and deliver notifications "
                               "until SIGTERM or SIGINT (in-flight sends get delivery.stop_grace, "
                               "the rest stay pending). SIGHUP reloads the config and rules if "
                               "they load cleanly; otherwise the running ones stay.")
    once = add("once", parents=[common, fmt], help="one cycle of every watch, then exit",
                          description="Poll every watch once, record and print what changed, "
                                      "and send the notifications that are due. Exit 0 when "
                                      "every watch was checked, 1 when one failed. With "
                                      "--format json, stdout has one event per line and "
                                      "console:// digests go to stderr.")
    once.add_argument("--dry-run", action="store_true",
                      help="show every event with the rules that matched it ('no rule -> "
                           "nowhere' when none did) and the exact message each target would "
                           "get; send nothing and change no state")
    add("check", parents=[common], help="validate the config and rule files",
                   description="Load the config and every rule file, and check that every "
                               "target URL is one Apprise can load: exit 2 naming file, line "
                               "and key if not. Then print a 'warning:' line (file:line: key) "
                               "for what loads but probably does not do what was meant: a "
                               "target nothing sends to, a fields: glob no event field can "
                               "match, a models: glob no stored model ever matched (once "
                               "there is state), a rule or event type that can never fire, "
                               "a key that changes nothing. Warnings alone exit 0; run and "
                               "once log the same warnings at start.")
    hist = add("history", parents=[common], help="stored events, newest last",
                          description="Print stored events, oldest first.")
    hist.add_argument("--format", choices=("text", "json", "csv"), default="text",
                      help="text for people, json for one event per line, csv for spreadsheets")
    hist.add_argument("--watch", help="only this watch")
    hist.add_argument("--model", metavar="GLOB", help="only models whose id matches the glob")
    hist.add_argument("--type", type=_event_type, metavar="TYPE",
                      help='only this event type (README, "Events", lists them)')
    hist.add_argument("--since", metavar="AGE", help="only events newer than AGE (30m, 7d, ...)")
    hist.add_argument("--limit", type=int, metavar="N", help="only the newest N events")
    dif = add("diff", parents=[common, fmt],
                         help="the events between two saved responses (no state)",
                         description="Diff two saved /api/v1/models responses (.json or "
                                     ".json.gz) and print the events. Touches no state.")
    dif.add_argument("old", type=Path)
    dif.add_argument("new", type=Path)
    dif.add_argument("--rules", action="store_true",
                     help="also show which rule sends each event where (needs a config)")
    dif.add_argument("--matched", action="store_true",
                     help="with the rules (implies --rules): only the events a rule sends "
                          "somewhere, without the '-> nowhere' ones")
    notify = add("test-notify", parents=[common],
                            help="send a test message to targets and report each",
                            description="Send a test message to each named target (default: "
                                        "all) right now, outside the outbox. Exit 1 naming each "
                                        "target that failed.")
    notify.add_argument("targets", nargs="*", metavar="TARGET")
    add("status", parents=[common, fmt], help="watches and notification targets",
                   description="From the state database: each watch's last check, and per "
                               "target how many notifications were sent, are pending or "
                               "dead-lettered, since when it is failing and its own last "
                               "error. Exit 1 while dead letters wait (`resend` sends them "
                               "again or, with --drop, gives them up).")
    resend = add(
        "resend", parents=[common], help="send dead-lettered notifications again",
        description="Put the dead letters of the named targets (default: every configured "
                    "target) back in the outbox, due now, with the same idempotency keys. "
                    "Without a running daemon they are sent at once and each target's "
                    "outcome is printed (exit 1 if some failed again); beside a running "
                    "daemon they are only put back, and the daemon sends them within 10 "
                    "seconds. A message already older than delivery.max_age is "
                    "dead-lettered again if it fails once more.")
    resend.add_argument("targets", nargs="*", metavar="TARGET")
    resend.add_argument("--since", metavar="AGE|TIME",
                        help="only alerts queued since then: an age (30m, 2d) or a UTC time "
                             "(2026-01-04T10:00:00Z, 2026-01-04)")
    resend.add_argument("--drop", action="store_true",
                        help="give the dead letters up for good instead (also for targets no "
                             "longer configured); `status` stops counting them")
    show = add("show", parents=[common, fmt], help="one model's timeline",
                          description="A model's history from the stored snapshots: when it "
                                      "appeared, every price over time (per million tokens), "
                                      "context length, expiration date, removals and returns.")
    show.add_argument("model", metavar="MODEL", help="the model id, e.g. z-ai/glm-4.7")
    show.add_argument("--watch", help="only this watch (default: every watch that saw it)")
    health = add("health", parents=[common],
                            help="ask the running daemon's /healthz (exit 0 healthy, 1 not)",
                            description="GET /healthz of the running daemon and print its "
                                        "answer; exit 0 when it is healthy, 1 when not or "
                                        "unreachable. For Docker's HEALTHCHECK and scripts.")
    health.add_argument("--url", help="the health URL (default: /healthz at the config's "
                                      "http.listen address, asked on loopback)")
    health.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="give up after this long (default: 5)")
    prune = add("prune", parents=[common],
                           help="remove what the retention settings say is old",
                           description="Apply the config's retention: collapse old unchanged "
                                       "checks to one per watch and day, delete old sent, "
                                       "cancelled and duplicate messages (and, where configured, "
                                       "dead letters and events), then compress the model "
                                       "versions polls wrote. Never removes the model "
                                       "history, pending messages or reminders. The daemon does "
                                       "this once a day by itself; this command needs the state "
                                       "to itself (stop the daemon first).")
    prune.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")
    add("vacuum", parents=[common], help="give free space in the state back to the disk",
                   description="Rewrite the state database without its free pages (after a "
                               "prune). Needs the state to itself and about its size in free "
                               "disk space while it runs. On PostgreSQL: VACUUM (ANALYZE), "
                               "which makes the room of removed rows reusable and locks no "
                               "one out.")
    migrate = add(
        "migrate-state", parents=[common], help="copy a whole state to SQLite or PostgreSQL",
        description="Copy every row of one state (SQLite or PostgreSQL) into a new, empty "
                    "one: snapshots, model history, checks, events, the outbox and its "
                    "pending messages, usage, ids and the instance id, so that history, feeds "
                    "and idempotency keys go on as before. A state is a SQLite state directory "
                    "(or its database file) or a postgresql://user@host:port/database URL; the "
                    "password of a URL given here comes from PGPASSWORD or ~/.pgpass (libpq's "
                    "own), never from the URL. Either side left out is the config's state "
                    "(state_dir, or state: with its password_file or password_env). The "
                    "target must be empty (a copy never merges two histories); stop the daemon "
                    "first, and point its config at the target after. Exit 0 copied, 1 "
                    "unusable state or a target that is not empty, 2 usage.")
    migrate.add_argument("--from", dest="source", metavar="STATE",
                         help="the state to copy (default: the config's)")
    migrate.add_argument("--to", dest="target", metavar="STATE",
                         help="the new state to fill (default: the config's)")
    add("demo", parents=[common],
                   help="replay bundled real snapshots offline through the real pipeline",
                   description="Start a loopback server that replays four real responses "
                               "from January 2026 and watch it with the default config and "
                               "rules. Needs no network and leaves no state behind.")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = run_command(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`history | head`): stop quietly, as the Python docs advise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_FAILED
    sys.exit(code)


def run_command(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv and argv[0] in COMMANDS else None).parse_args(argv)
    log.configure(args.log_level or "info")
    try:
        handler = COMMANDS[args.command]
        return handler(args)
    except ConfigError as exc:
        print(f"openrouter-watcher: config error: {log.redactor.text(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except WatcherError as exc:
        print(f"openrouter-watcher: {log.redactor.text(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace, *, warn: bool = True) -> config.Settings:
    from watcher import config

    settings = config.load(config.find_config(args.config))
    log.redactor.update(settings.secrets)
    log.configure(args.log_level or settings.log_level)
    if warn:
        _log_warnings(settings.warnings)
    return settings


def _log_warnings(warnings: Sequence[str]) -> None:
    for warning in warnings:
        log.get().warning("config.warning", message=warning)


def _say(text: str) -> None:
    """Print our text: catalogue text in it can move no cursor and forge no line."""
    print(escape.printable(text))


def _print_json(document: Any) -> None:
    """One JSON object on a line of stdout (orjson escapes newlines and C0 controls)."""
    import orjson

    sys.stdout.write(escape.json_line(orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)
                                      .decode()) + "\n")


def _print_events(events: Sequence[Event], fmt: str) -> None:
    from watcher.notify.render import line

    for event in events:
        if fmt == "json":
            _print_json(event)
        else:
            _say(f"{event['detected_at']}  {event['watch']:<10} {event['type']:<24} "
                 f"{line(event)}")
    sys.stdout.flush()


def cmd_check(args: argparse.Namespace) -> int:
    from watcher import preflight
    from watcher.store import DB_NAME, Store

    settings = _settings(args, warn=False)
    if settings.database is None and (settings.state_dir / DB_NAME).is_file():
        with Store.open(settings.state, readonly=True) as store:
            warnings = preflight.verify(settings, store)
    else:
        warnings = preflight.verify(settings, None)
    for warning in warnings:
        print(f"warning: {warning}")
    counted = f"; {len(warnings)} warnings" if warnings else ""
    print(f"{settings.path}: OK: {len(settings.watches)} watches, {len(settings.targets)} "
          f"targets, {len(settings.rules)} rules from {len(settings.rule_files)} files{counted}")
    return EXIT_OK


def cmd_once(args: argparse.Namespace) -> int:
    import asyncio

    from watcher import preflight
    from watcher.app import run_once
    from watcher.store import Store

    settings = _settings(args, warn=False)
    preflight.check_targets(settings)  # a bad target is a config error before any state error
    with Store.open(settings.state, readonly=args.dry_run) as store:
        _log_warnings(preflight.verify(settings, store))
        # With --format json stdout carries only events: console:// digests go to stderr.
        console = sys.stderr if args.format == "json" else sys.stdout
        results = asyncio.run(run_once(settings, store, console=console, dry_run=args.dry_run))
        if args.dry_run:
            _print_dry_run(settings, results, args.format)
            return EXIT_FAILED if any(r.outcome in ("failed", "crashed") for r in results) else EXIT_OK
        pending = {t: s["pending"] for t, s in store.outbox_status().items() if s["pending"]}
    for result in results:
        _print_events(result.events, args.format)
        if args.format == "text":
            print(_cycle_line(result))
    for target, count in sorted(pending.items()):
        print(f"openrouter-watcher: {count} notifications for {target!r} are pending (failed or "
              "settling); `status` shows why", file=sys.stderr)
    return EXIT_FAILED if any(r.outcome in ("failed", "crashed") for r in results) else EXIT_OK


def _print_dry_run(settings: config.Settings, results: list[CycleResult], fmt: str) -> None:
    from watcher.notify.render import Queued, compose, line

    today = datetime.now(UTC).date()
    for result in results:
        if fmt == "json":
            for event in result.events:
                routes = [{"rule": a.rule, "target": a.target} for a in result.alerts
                          if a.event is event]
                _print_json({**event, "routes": routes})
            continue
        _say(f"{_cycle_line(result)} (dry run: nothing recorded, nothing sent)")
        by_key: dict[tuple[str, str], list[Event]] = {}
        templates: dict[str, Queued] = {}
        for alert in result.alerts:
            by_key.setdefault((alert.target, alert.group), []).append(alert.event)
            templates[alert.group] = Queued(alert.group, title=alert.title, body=alert.body)
        # Every event, with where each goes: one no rule matches is shown too, since a
        # dry run is where a person finds out that a rule does not select what it should.
        for event in result.events:
            alerts = [a for a in result.alerts if a.event is event]
            for alert in alerts:
                _say(f"  rule {alert.rule!r} -> {alert.target}: {line(event)}")
            if not alerts:
                _say(f"  no rule -> nowhere: {event['type']}: {line(event)}")
        for (target, group), events in by_key.items():
            rule = templates[group] if group else None
            message = compose(settings.targets[target], events, key="dry-run", today=today,
                              rule=rule, public_url=_public_url(settings))
            _say(f"\n--- {target} would get ({message.format}) ---\n"
                 f"{message.title}  [{message.notify_type}]\n\n{message.body}")


def _event_type(text: str) -> str:
    """``history --type``: one of the event types (loaded only when the option is given)."""
    from watcher.events import EVENT_TYPES

    if text not in EVENT_TYPES:
        raise argparse.ArgumentTypeError(
            f"unknown event type {text!r} (known: {', '.join(sorted(EVENT_TYPES))})")
    return text


def _public_url(settings: config.Settings) -> str | None:
    return settings.http.public_url if settings.http else None


def _cycle_line(result: CycleResult) -> str:
    if result.outcome in ("failed", "crashed"):
        error = escape.plain(log.redactor.text(result.error or ""))
        return f"{result.watch}: {result.outcome.upper()}: {error}"
    if result.outcome == "baseline":
        return f"{result.watch}: baseline recorded ({result.models} models); changes show next time"
    if result.outcome == "unchanged":
        return f"{result.watch}: no change ({result.models} models)"
    return f"{result.watch}: {len(result.events)} events ({result.models} models)"


def cmd_test_notify(args: argparse.Namespace) -> int:
    import asyncio

    from watcher.notify.deliver import privacy_url

    settings = _settings(args)
    names = args.targets or sorted(settings.targets)
    unknown = [n for n in names if n not in settings.targets]
    if unknown:
        raise ConfigError(f"unknown target(s): {', '.join(unknown)} (configured: "
                          f"{', '.join(sorted(settings.targets)) or 'none'})")
    failures = asyncio.run(_test_notify(settings, names))
    for name in names:
        where = privacy_url(settings.targets[name].url.reveal())
        if name in failures:
            print(f"{name}: FAILED ({where}): {failures[name]}")
        else:
            print(f"{name}: delivered ({where})")
    if failures:
        print(f"openrouter-watcher: test message failed for: {', '.join(sorted(failures))}",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def _test_notify(settings: config.Settings, names: list[str]) -> dict[str, str]:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from watcher.events import make_event
    from watcher.notify.deliver import build_senders
    from watcher.notify.render import compose

    now = datetime.now(UTC)
    sample = make_event(watch="test", type="price_changed", model="openrouter-watcher/test",
                        name="openrouter-watcher test message", field="pricing.prompt",
                        old="0.0000004", new="0.00000016", change_pct=-60.0,
                        detected_at=iso(now))
    with ThreadPoolExecutor(max_workers=4) as executor:
        senders = build_senders(settings, executor, console=sys.stdout)
        results = await asyncio.gather(
            *(senders[n].send(compose(settings.targets[n], [sample], today=now.date(),
                                      key=f"test-{now.timestamp():.0f}-{n}",
                                      public_url=_public_url(settings)))
              for n in names), return_exceptions=True)
    return {n: log.redactor.text(str(r)) for n, r in zip(names, results, strict=True)
            if isinstance(r, BaseException)}


def cmd_status(args: argparse.Namespace) -> int:
    import orjson

    from watcher.store import Store, empty_target_status

    settings = _settings(args)
    with Store.open(settings.state, readonly=True) as store:
        checks, targets = store.last_checks(), store.outbox_status()
    dead = sorted(name for name, entry in targets.items() if entry["dead"])
    code = EXIT_FAILED if dead else EXIT_OK
    if args.format == "json":
        print(orjson.dumps({"watches": checks, "targets": targets}).decode())
        return code
    for watch in settings.watches:
        check = checks.get(watch.name)
        if check is None:
            print(f"watch {watch.name}: never checked")
        else:
            error = f": {log.redactor.text(check['error'])}" if check["error"] else ""
            print(f"watch {watch.name}: last check {check['at']} {check['outcome']}{error}")
    for name in sorted(set(settings.targets) | set(targets)):
        entry = targets.get(name, empty_target_status())
        text = (f"target {name}: {entry['sent']} sent, {entry['pending']} pending, "
                f"{entry['dead']} dead-lettered")
        if name not in settings.targets:
            text += " (no longer configured)"
        if entry["failing_since"]:
            text += f"; failing since {iso(entry['failing_since'])}"
        if entry["dead"] and entry["last_dead_at"]:
            text += f"; last dead letter {iso(entry['last_dead_at'])}"
        if entry["last_error"] and (entry["failing_since"] or entry["dead"]):
            text += f"; last error: {log.redactor.text(entry['last_error'])}"
        print(text)
    if dead:
        print(f"openrouter-watcher: dead letters wait for {', '.join(dead)}: `openrouter-watcher "
              "resend [TARGET]` sends them again, `resend TARGET --drop` gives them up",
              file=sys.stderr)
    return code


def _since(text: str | None, option: str) -> float | None:
    """An age (``30m``, ``7d``) or a time (ISO 8601, UTC unless it says otherwise) as a
    Unix time; None for no limit."""
    from watcher.yamldoc import parse_duration

    if text is None:
        return None
    seconds = parse_duration(text)
    if seconds is not None:
        return time.time() - seconds
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{option}: expected an age such as 30m, 12h or 7d, or a time such "
                          f"as 2026-01-04T10:00:00Z, got {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def cmd_resend(args: argparse.Namespace) -> int:
    from watcher.store import Store, empty_target_status

    settings = _settings(args)
    since = _since(args.since, "--since")
    unknown = [n for n in args.targets if n not in settings.targets]
    if unknown and not args.drop:
        raise ConfigError(f"unknown target(s): {', '.join(unknown)} (configured: "
                          f"{', '.join(sorted(settings.targets)) or 'none'}; --drop gives up "
                          "the dead letters of a target no longer configured)")
    names = args.targets or sorted(settings.targets)
    try:
        store = Store.open(settings.state)
    except StateInUseError:
        # The daemon is the one sender: put the dead letters back and let it send them.
        try:
            with Store.open_beside_writer(settings.state) as side:
                counts = side.requeue_dead(time.time(), targets=names, since=since,
                                           drop=args.drop)
        except StateError as exc:
            raise StateError(f"{exc}. A running daemon holds the state directory and its "
                             "database did not take the change: stop the daemon, run "
                             "`resend` again, and start it") from None
        _print_requeued(names, counts, since=since, drop=args.drop, beside_daemon=True)
        return EXIT_OK
    with store:
        before = store.outbox_status()
        counts = store.requeue_dead(time.time(), targets=names, since=since, drop=args.drop)
        if args.drop or not counts:
            _print_requeued(names, counts, since=since, drop=args.drop, beside_daemon=False)
            return EXIT_OK
        import asyncio

        asyncio.run(_send_requeued(settings, store))
        after = store.outbox_status()
    code = EXIT_OK
    for name in sorted(counts):
        was, now = before.get(name, empty_target_status()), after.get(name, empty_target_status())
        sent = now["sent"] - was["sent"]
        dead = now["dead"] - (was["dead"] - counts[name])  # the resent ones that died again
        pending = max(now["pending"] - was["pending"], 0)  # others may have gone out too
        text = f"target {name}: {counts[name]} dead letter(s) resent: {sent} sent"
        if dead or pending:
            code = EXIT_FAILED
            error = log.redactor.text(now["last_error"] or "")
            text += f", {dead} dead-lettered again, {pending} pending (retried later): {error}"
        print(text)
    return code


def _print_requeued(names: list[str], counts: dict[str, int], *, since: float | None,
                    drop: bool, beside_daemon: bool) -> None:
    for name in names:
        count = counts.get(name, 0)
        if not count:
            print(f"target {name}: no dead letters" + (" queued since then" if since else ""))
        elif drop:
            print(f"target {name}: {count} dead letter(s) dropped")
        else:
            print(f"target {name}: {count} dead letter(s) put back in the outbox")
    if beside_daemon and not drop and any(counts.values()):
        print("openrouter-watcher: a daemon is running on this state directory: it sends "
              "them within 10 s (`status` shows how it went; were it a `once`, the next run "
              "sends them)")


async def _send_requeued(settings: config.Settings, store: Store) -> None:
    """Send what is due now (the dead letters just put back), as ``once`` would."""
    from concurrent.futures import ThreadPoolExecutor

    from watcher.notify.deliver import Deliverer, OperatorNotices, build_senders

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="notify") as executor:
        senders = build_senders(settings, executor)
        operator = OperatorNotices(settings, senders, memory=store)
        await Deliverer(settings, store, senders, operator=operator).drain()
        await operator.wait()


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from watcher import preflight
    from watcher.store import Store

    # A stop asked for while starting up (before the event loop owns the signals) is kept,
    # not obeyed by the default handler: the daemon then stops cleanly right away.
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: early.append(signum))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    settings = _settings(args, warn=False)
    preflight.check_targets(settings)  # a bad target is a config error before any state error
    with Store.open(settings.state) as store:
        _log_warnings(preflight.verify(settings, store))
        return asyncio.run(_daemon(settings, store, early=early))


async def _daemon(settings: config.Settings, store: Store, *, early: list[int]) -> int:
    import asyncio

    from watcher import leadership, sdnotify
    from watcher.app import App, unavailable_to_account
    from watcher.fetch import new_session
    from watcher.web import listener

    stop, reload = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    if early:  # read after the loop owns the signals: none can fall in between
        stop.set()
    async with new_session() as session:
        app = App(settings, store, session,
                  leadership=leadership.for_state(store.database))
        extras: list[Extra] = []
        notifier = sdnotify.Notifier.from_env()
        if notifier is not None:
            watchdog = sdnotify.watchdog_interval()
            extras.append(lambda stop: sdnotify.supervise(
                notifier, stop, stuck=app.stuck, status_line=app.status_line, watchdog=watchdog))
        listening = None
        if settings.http is not None:
            shown = listener.Sources(
                store=app.store, settings=lambda: app.settings, problems=app.problems,
                watches=app.status.snapshot, targets=app.deliverer, metrics=app.metrics,
                account=lambda: unavailable_to_account(app), role=lambda: app.role)
            listening = await listener.start(shown, settings.http)
        try:
            await app.run(stop, reload, extras)
        finally:
            if listening is not None:
                await listening.cleanup()
            if notifier is not None:
                notifier.close()
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    import urllib.error  # with ssl and http.client: ~10 ms no other command needs
    import urllib.request

    url = args.url
    if not url:
        settings = _settings(args)
        if settings.http is None:
            raise ConfigError(f"{settings.path}: http.listen is not configured, so there is no "
                              "health endpoint to ask (or give --url)")
        url = f"{settings.http.url}/healthz"
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url: expected an http:// URL, got {url!r}")
    # No proxy: the daemon is local, and a proxy from the environment must not see this.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=args.timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"openrouter-watcher: health: cannot reach {url}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    print(body.decode("utf-8", "replace").strip())
    return EXIT_OK if status == 200 else EXIT_FAILED


def cmd_history(args: argparse.Namespace) -> int:
    from watcher.store import EventQuery, Store
    from watcher.web.filters import FilterError, Filters

    settings = _settings(args)
    try:  # the same ages as ?since= on the pages, with the same bounds
        since = Filters.parse({"since": args.since or ""}, default_limit=0).event_query(
            datetime.now(UTC)).since
    except FilterError as exc:
        raise ConfigError(f"--{exc}") from None
    with Store.open(settings.state, readonly=True) as store:
        events = store.events(EventQuery(watch=args.watch, model_glob=args.model,
                                         type=args.type, since=since, limit=args.limit))
    if args.format == "csv":
        _print_csv(events)
    else:
        _print_events(events, args.format)
    return EXIT_OK


CSV_COLUMNS = ("detected_at", "watch", "type", "model", "name", "field", "old", "new",
               "change_pct")


def _print_csv(events: Sequence[Event]) -> None:
    import csv

    # Every cell quoted: a CR in catalogue text must not end a row (QUOTE_MINIMAL leaves
    # a lone CR unquoted when the line ends in LF).
    writer = csv.writer(sys.stdout, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for event in events:
        # Catalogue text reaches a terminal too (`history --format csv | less`): no controls.
        writer.writerow([escape.plain(_cell(event.get(column)))
                         for column in CSV_COLUMNS])


# A cell a spreadsheet would run as a formula (OWASP "CSV injection"), unless it is a number.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")


def _cell(value: Any) -> str:
    """One CSV cell; text that a spreadsheet would take for a formula gets a leading ``'``.

    A plain number stays as it is (``change_pct`` ``-60.0``, the variable price ``"-1"``):
    it cannot be a formula, and a quote would turn it into text.
    """
    import orjson

    if value is None:
        return ""
    text = orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def cmd_show(args: argparse.Namespace) -> int:
    from watcher.store import Store
    from watcher.timeline import timeline
    from watcher.usage import usage_30d, usage_days

    settings = _settings(args)
    with Store.open(settings.state, readonly=True) as store:
        watches = [args.watch] if args.watch else store.watches()
        stories = [timeline(args.model, store.model_states(w, args.model), watch=w) for w in watches]
        spent = usage_30d(store, args.model)
        daily = usage_days(store, args.model)
        found = store.provider_stats(args.model)  # kind: endpoints watches (issue 15)
    # The same documents as /api/models/{id} (watcher.web.routes._read_stories).
    stories = [{**s, "usage_30d": spent, "usage_days": daily, "providers": found}
               for s in stories if s["first_seen"] is not None]
    if not stories:
        print(f"openrouter-watcher: no stored snapshot has a model {args.model!r}",
              file=sys.stderr)
        return EXIT_FAILED
    if args.format == "json":
        for story in stories:
            _print_json(story)
        return EXIT_OK
    for story in stories:
        _print_story(story)
    return EXIT_OK


def _print_story(story: dict[str, Any]) -> None:
    from watcher.notify.render import describe, price, price_unit, shown, who

    state = "listed" if story["present"] else "not listed any more"
    _say(f"{who({'model': story['model'], 'name': story['name']})}, watch {story['watch']}: "
         f"seen {story['first_seen']} .. {story['last_seen']}, {state}")
    for event in story["events"]:
        if event["type"] == "model_added" and event.get("in_baseline"):
            text = "present when watching started" + describe(event).removeprefix("new model")
        else:
            text = describe(event)
        _say(f"  {event['detected_at']}  {text}")
    for key, series in story["prices"].items():
        points = ", ".join(f"{price(p['price'], key)} since {p['at'][:10]}" for p in series)
        _say(f"  {shown(key, 40)} {price_unit(key)}: {points}")
    spent = story.get("usage_30d")
    if spent is not None:
        _say(f"  usage {spent['first_day']} .. {spent['last_day']}: "
             f"${spent['spend_usd']:,.2f} spent, {spent['requests']:,} requests, "
             f"{spent['prompt_tokens']:,} prompt / {spent['completion_tokens']:,} completion / "
             f"{spent['reasoning_tokens']:,} reasoning tokens")
    for item in story.get("providers") or []:
        prices = item.get("pricing") if isinstance(item.get("pricing"), dict) else {}
        _say(f"  provider {shown(item.get('provider_name'), 80)} ({shown(item.get('tag'), 80)}): "
             f"{price(prices.get('prompt', '0'), 'prompt')} in / "
             f"{price(prices.get('completion', '0'), 'completion')} out per 1M tokens, "
             f"context {shown(item.get('context_length'), 20)}, "
             f"{shown(item.get('quantization'), 40)}, status {shown(item.get('status'), 20)}, "
             f"{shown(item.get('health'), 20)}, uptime "
             f"{shown(item.get('uptime_last_30m'), 20)}% (read {shown(item.get('at'), 40)})")


def _read_snapshot(path: Path) -> snapshot.Snapshot:
    import gzip

    from watcher import snapshot

    try:
        body = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read: {exc.strerror}") from None
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    try:
        return snapshot.parse(body)
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}") from None


def cmd_diff(args: argparse.Namespace) -> int:
    from watcher.diff import diff
    from watcher.events import events_from_changes
    from watcher.notify.render import line
    from watcher.rules.match import route

    old, new = _read_snapshot(args.old), _read_snapshot(args.new)
    events = events_from_changes(diff(old, new), old=old, new=new, watch="diff",
                                 detected_at=iso(datetime.now(UTC)))
    if not args.rules and not args.matched:
        _print_events(events, args.format)
        return EXIT_OK
    settings = _settings(args)
    for event in events:
        routes = route(settings.rules, event)
        if args.matched and not routes:
            continue
        if args.format == "json":
            _print_json({**event, "routes": [{"rule": r.name, "target": t} for r, t in routes]})
        else:
            where = ", ".join(f"{t} (rule {r.name})" for r, t in routes) or "nowhere"
            _say(f"{event['type']:<24} {line(event)}\n{'':<24} -> {where}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    log.configure(args.log_level or "warning")  # the demo's output is the point, not its logs
    return asyncio.run(_demo())


async def _demo() -> int:
    from watcher import demo
    from watcher.app import App
    from watcher.fetch import new_session
    from watcher.store import Store

    snapshots = demo.bundled_snapshots()
    with demo.temp_state() as state_dir:
        async with demo.replay_server([body for _, body in snapshots]) as url:
            settings = demo.demo_settings(url, Path(state_dir))
            print(f"Replaying {len(snapshots)} real /api/v1/models responses from {url}\n")
            with Store.open(settings.state) as store:
                # The clock reads each snapshot's own time, so dates and reminders are as
                # they were then.
                now = {"at": datetime.now(UTC)}
                async with new_session() as session:
                    app = App(settings, store, session, clock=lambda: now["at"],
                              console=sys.stdout)
                    for step, (name, _) in enumerate(snapshots, start=1):
                        now["at"] = demo.taken_at(name)
                        result = await app.guarded_cycle(settings.watches[0])
                        print(f"== poll {step}: {name.removesuffix('.json.gz')} ==")
                        print(_cycle_line(result))
                        if result.events:
                            print(f"{len(result.alerts)} of them match the default rules; "
                                  "the console target gets:")
                        await app.send_due()
                        print()
                    app.close()
    print("That was the real pipeline against a local replay server. Next: "
          "`openrouter-watcher once` polls openrouter.ai itself.")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from watcher.store import Pruned, Store

    settings = _settings(args)
    with Store.open(settings.state, readonly=args.dry_run) as store:
        pruned = Pruned()
        for pruned in store.prune(settings.retention, time.time(), dry_run=args.dry_run):
            log.get().debug("state.prune_batch", removed=pruned.total())
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {pruned.unchanged_checks} unchanged checks, {pruned.messages} messages, "
          f"{pruned.dead_letters} dead letters, {pruned.events} events, "
          f"{pruned.usage} usage rows; "
          f"{'would compress' if args.dry_run else 'compressed'} {pruned.versions_packed} "
          "model versions")
    return EXIT_OK


def cmd_vacuum(args: argparse.Namespace) -> int:
    from watcher.store import Store

    settings = _settings(args)
    with Store.open(settings.state) as store:
        before, after = store.vacuum()
    print(f"{store.where}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    return EXIT_OK


def cmd_migrate_state(args: argparse.Namespace) -> int:
    from watcher.store import Store

    if not args.source and not args.target:
        raise ConfigError("migrate-state: give --from, --to or both (the other side is the "
                          "config's state)")
    settings = _settings(args) if not (args.source and args.target) else None
    source = _state_arg("--from", args.source, settings)
    target = _state_arg("--to", args.target, settings)
    if str(source) == str(target):
        raise ConfigError(f"migrate-state: --from and --to are the same state ({source})")
    with Store.open(source, readonly=True) as old, Store.open(target) as new:
        counts = old.copy_to(new)  # refuses a target with rows
    print(f"copied {sum(counts.values())} rows from {old.where} to {new.where}: "
          + ", ".join(f"{n} {table}" for table, n in counts.items() if n))
    return EXIT_OK


def _state_arg(option: str, value: str | None, settings: config.Settings | None
               ) -> Path | config.Database:
    """``--from``/``--to`` as a state location; None: the config's."""
    from watcher import config
    from watcher.store import DB_NAME

    if value is None:
        assert settings is not None  # loaded when a side is left out
        return settings.state
    if config.is_database_url(value):
        problem = config.database_url_problem(value)
        if problem:
            raise ConfigError(f"migrate-state {option}: {problem}")
        return config.Database(url=value)
    path = Path(value)
    if path.is_file():
        if path.name != DB_NAME:
            raise ConfigError(f"migrate-state {option}: {path} is a file but not a state "
                              f"database ({DB_NAME}): name its state directory")
        return path.parent
    return path


COMMANDS = {
    "check": cmd_check, "once": cmd_once, "run": cmd_run, "history": cmd_history,
    "diff": cmd_diff, "demo": cmd_demo, "test-notify": cmd_test_notify, "status": cmd_status,
    "show": cmd_show, "resend": cmd_resend,
    "health": cmd_health, "prune": cmd_prune, "vacuum": cmd_vacuum,
    "migrate-state": cmd_migrate_state,
}
