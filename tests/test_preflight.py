"""`check` and start-up: configs that load but cannot work.  One fixture per error and warning
(tests/configs/refused, tests/configs/warn), each naming file, line and key."""

from __future__ import annotations

import gzip
import itertools
import re
from pathlib import Path

import orjson
import pytest

from tests.fakes import DATA, FakeOpenRouter, snapshot_bytes
from tests.test_cli import cli
from watcher import config, preflight, snapshot
from watcher.diff import diff
from watcher.errors import ConfigError
from watcher.events import events_from_changes
from watcher.store import Store

CONFIGS = Path(__file__).parent / "configs"
REFUSED = sorted((CONFIGS / "refused").glob("*.yaml"))
WARN = sorted((CONFIGS / "warn").glob("*.yaml"))


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path} must start with '# expect: <regex>'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", REFUSED, ids=lambda p: p.stem)
def test_check_refuses_a_target_apprise_cannot_load(path: Path) -> None:
    proc = cli("check", "--config", str(path))
    assert proc.returncode == 2, proc.stdout
    assert re.search(expected(path), proc.stderr), proc.stderr
    assert str(CONFIGS / "refused") in proc.stderr  # the full file name, then :line: key
    assert "SECRET" not in proc.stderr + proc.stdout  # the URL may hold a token: never shown
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("path", WARN, ids=lambda p: p.stem)
def test_check_warns_naming_file_line_and_key(path: Path) -> None:
    found = preflight.verify(config.load(path), None)
    assert len(found) == 1, found
    assert re.search(expected(path), found[0]), found[0]
    assert found[0].startswith(str(CONFIGS / "warn"))
    proc = cli("check", "--config", str(path))
    assert proc.returncode == 0, proc.stderr  # warnings are printed; the config still works
    assert re.search(f"^warning: .*{expected(path)}", proc.stdout, re.MULTILINE), proc.stdout
    assert proc.stdout.rstrip().endswith("; 1 warnings")


def test_the_fixtures_cover_every_finding() -> None:
    assert len(REFUSED) >= 3
    assert len(WARN) >= 11


def test_the_packaged_config_has_no_warnings() -> None:
    assert preflight.verify(config.load(config.packaged_config()), None) == []


def test_a_models_glob_is_checked_against_every_stored_list(tmp_path: Path) -> None:
    """Only once state exists: a glob no stored model had warns; a model seen once counts."""
    state = tmp_path / "state"
    with Store.open(state) as store:
        store.commit_cycle("models", "2026-01-01T00:00:00Z",
                           snapshot.parse(snapshot_bytes(24)), "baseline", [])
        store.commit_cycle("models", "2026-01-02T00:00:00Z",
                           snapshot.parse(b'{"data": [{"id": "acme/new-model"}]}'), "changed", [])
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: vendors\n    on: [model_removed]\n"
        "    models: ['mistralai/*', 'acme/*', 'opnai/*']\n    exclude_models: ['*:nitro']\n"
        "    notify: [console]\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"state_dir: {state}\nwatches:\n  - {{name: models, url: "
                    "'http://127.0.0.1:1/api/v1/models', interval: 10m}\n"
                    "targets: {console: 'console://'}\nrules: [rules.yaml]\n")
    settings = config.load(path)
    assert preflight.verify(settings, None) == []  # no state: models: globs are not judged
    with Store.open(state, readonly=True) as store:
        found = preflight.verify(settings, store)
    seen = len(snapshot.parse(snapshot_bytes(24)).models) + 1
    assert found == [
        (f"{tmp_path}/rules.yaml:4: rules[0].models[2]: 'opnai/*' matches no model of the "
         f"{seen} the stored lists have had"),
        (f"{tmp_path}/rules.yaml:5: rules[0].exclude_models[0]: '*:nitro' matches no model of "
         f"the {seen} the stored lists have had"),
    ]
    proc = cli("check", "--config", str(path))
    assert proc.returncode == 0
    assert "rules[0].models[2]: 'opnai/*' matches no model" in proc.stdout


def test_a_field_the_stored_catalogue_has_is_known(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Store.open(state) as store:
        store.commit_cycle("models", "2026-01-01T00:00:00Z", snapshot.parse(
            b'{"data": [{"id": "a/b", "top_provider": {"new_knob": 1}}]}'), "baseline", [])
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: knobs, on: [field_changed], fields: [top_provider.new_knob], "
        "notify: [console]}\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"state_dir: {state}\nwatches:\n  - {{name: models, url: "
                    "'http://127.0.0.1:1/api/v1/models', interval: 10m}\n"
                    "targets: {console: 'console://'}\nrules: [rules.yaml]\n")
    before = preflight.verify(config.load(path), None)
    assert [w.split(": ", 2)[1] for w in before] == ["rules[0].fields[0]", "rules[0].fields"]
    with Store.open(state, readonly=True) as store:
        assert preflight.verify(config.load(path), store) == []


def test_schema_fields_are_the_fields_of_the_real_responses() -> None:
    """The oracle: every dotted field of every model of tests/data, no more, no less."""
    fields: set[str] = set()
    for path in sorted(DATA.glob("*.json.gz")):
        for item in orjson.loads(gzip.decompress(path.read_bytes()))["data"]:
            fields.update(preflight.dotted_fields(item))
    assert fields == preflight.SCHEMA_FIELDS


def test_every_real_event_field_is_one_its_type_can_carry() -> None:
    """The oracle for the contract preflight assumes: over every real step, the field of
    each event, taken as a glob, is one that preflight says its type can carry."""
    paths = sorted(DATA.glob("*.json.gz"))
    seen: set[str] = set()
    for old_path, new_path in itertools.pairwise(paths):
        old = snapshot.parse(gzip.decompress(old_path.read_bytes()))
        new = snapshot.parse(gzip.decompress(new_path.read_bytes()))
        for event in events_from_changes(diff(old, new), old=old, new=new, watch="m",
                                         detected_at="2026-01-01T00:00:00Z"):
            seen.add(event["type"])
            expected_carry = None if event["field"] is None else True
            assert preflight._can_carry(event["type"], event["field"] or "*",
                                        preflight.SCHEMA_FIELDS) is expected_carry, event
    assert {"price_changed", "field_changed", "model_added", "expiration_set"} <= seen


def test_once_and_run_refuse_a_bad_target_before_touching_state(tmp_path: Path) -> None:
    path = REFUSED[0]
    for command in (["once"], ["run"], ["once", "--dry-run"]):
        proc = cli(*command, "--config", str(path), cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stderr)
        assert re.search(expected(path), proc.stderr)
        assert "SECRET" not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []  # no state directory was made


def test_once_logs_the_warnings_at_start_up(write_config, fake_openrouter: FakeOpenRouter,
                                            tmp_path: Path) -> None:
    fake_openrouter.set_script([24])
    path = write_config(f"state_dir: state\nwatches:\n  - {{name: models, url: "
                        f"'{fake_openrouter.url}', interval: 10m}}\n"
                        "targets: {console: 'console://', spare: 'json://127.0.0.1:9/x'}\n")
    proc = cli("once", "--config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "config.warning" in proc.stderr
    assert f"{path}:4: targets.spare: no rule and no operator.notify sends to it" in proc.stderr


def test_a_reload_with_a_target_apprise_refuses_keeps_the_running_config(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    import asyncio

    from watcher.app import App
    from watcher.fetch import new_session

    path = tmp_path / "config.yaml"
    path.write_text(f"state_dir: state\nwatches:\n  - {{name: models, url: "
                    f"'{fake_openrouter.url}', interval: 10m}}\n"
                    "targets: {console: 'console://'}\n")
    settings = config.load(path)
    path.write_text(path.read_text().replace("'console://'", "'slak://x'"))
    with pytest.raises(ConfigError):
        preflight.check_targets(config.load(path))

    async def reload() -> bool:
        with Store.open(tmp_path / "state") as store:
            async with new_session() as session:
                app = App(settings, store, session)
                try:
                    return await app.reload(asyncio.Event())
                finally:
                    app.close()

    assert asyncio.run(reload()) is False


def test_a_rule_made_in_code_is_pointed_at_by_its_source() -> None:
    from watcher.config import Settings, Target, Watch
    from watcher.rules.model import Rule

    rule = Rule(name="r", on=frozenset({"model_added"}), notify=("console",), min_change_pct=5,
                source="x.yaml:3")
    settings = Settings(path=Path("c.yaml"), state_dir=Path("s"),
                        watches=(Watch("m", "http://127.0.0.1:1/api/v1/models", 60),),
                        targets={"console": Target("console", "console://", source="c.yaml:4")},
                        rules=(rule,))
    (warning,) = preflight.warnings(settings)
    assert warning.startswith("x.yaml:3: min_change_pct: rule 'r': min_change_pct changes nothing")


async def test_a_reload_compiles_and_test_renders_off_the_event_loop(
        tmp_path: Path, fake_openrouter) -> None:
    """A reload whose template takes a while to test-render (close to its work budget)
    leaves the loop free: other tasks keep running while it loads."""
    import asyncio

    from watcher.app import App
    from watcher.fetch import new_session

    path = tmp_path / "config.yaml"
    path.write_text(f"state_dir: state\nwatches:\n  - {{name: models, url: "
                    f"'{fake_openrouter.url}', interval: 10m}}\n"
                    "targets: {console: 'console://'}\n")
    settings = config.load(path)
    heavy = ("{% for i in range(900) %}{% for j in range(500) %}{% endfor %}{% endfor %}"
             "{{ title }}")
    path.write_text(path.read_text().replace(
        "targets: {console: 'console://'}",
        f"targets:\n  console: {{url: 'console://', body: \"{heavy}\"}}"))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    with Store.open(tmp_path / "state") as store:
        async with new_session() as session:
            app = App(settings, store, session)
            beat = asyncio.create_task(ticker())
            try:
                await asyncio.sleep(0.01)
                before = ticks
                assert await app.reload(asyncio.Event()) is True
                during = ticks - before
            finally:
                beat.cancel()
                app.close()
    assert app.settings.targets["console"].body is not None
    assert during >= 5, f"the loop ran {during} times while the reload loaded"
