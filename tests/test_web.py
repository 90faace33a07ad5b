"""The change page, the model pages, the Atom feed and the JSON API over a real state."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path

import feedparser
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests import webstate
from tests.test_cli import cli
from watcher import config
from watcher.store import Store
from watcher.web import routes as web_routes

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, list[str]]]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WEB_TEST_KEY", webstate.API_KEY)
        yield webstate.build(tmp_path_factory.mktemp("web"))


@pytest.fixture
def config_path(state, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WEB_TEST_KEY", webstate.API_KEY)
    return state[0]


async def serve(path: Path, account: dict[str, list[str]] | None = None) -> TestClient:
    settings = config.load(path)
    store = Store.open(settings.state_dir)
    app = web.Application()
    web_routes.register(app, store=store, settings=settings,
                        account=(lambda: account) if account is not None else None)

    async def close_store(_: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close_store)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client(state, config_path: Path) -> AsyncIterator[TestClient]:
    client = await serve(config_path, state[1])
    try:
        yield client
    finally:
        await client.close()


class Collect(HTMLParser):
    """Tags with their attributes and the page's text, as a browser would read them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Collect:
    parser = Collect()
    parser.feed(html)
    parser.close()
    return parser


def rows(page: Collect) -> list[dict[str, str | None]]:
    return [a for t, a in page.tags if t == "tr" and "event" in (a.get("class") or "").split()]


async def test_page_lists_recent_changes_newest_first_with_filters(client: TestClient) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "script-src" not in resp.headers["Content-Security-Policy"]  # default-src 'none'
    page = parse(await resp.text())
    assert ("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}) in page.tags
    assert len(rows(page)) == 100
    times = re.findall(r'<time datetime="([^"]+)"', await resp.text())
    assert times == sorted(times, reverse=True)
    assert not [t for t, a in page.tags if t in ("script", "link") and a.get("rel") != "alternate"]
    assert 'href="/?limit=400"' in await resp.text()  # more of the same
    assert "Show more" not in await (await client.get("/?limit=10000")).text()

    resp = await client.get("/", params={"type": "price_changed", "model": "z-ai/*",
                                         "watch": "models"})
    html = await resp.text()
    page = parse(html)
    found = rows(page)
    assert found
    assert {r["class"] for r in found} == {"event price_changed"}
    links = re.findall(r'<td class="model"><a href="([^"]+)"', html)
    assert len(links) == len(found)
    assert all(link.startswith("/models/z-ai/") for link in links)
    # The form keeps the filters; the feed and JSON links carry them.
    assert ("option", {"value": "price_changed", "selected": None}) in page.tags
    assert 'href="/feed.atom?type=price_changed&amp;model=z-ai%2F%2A&amp;watch=models"' in html


async def test_filters_that_make_no_sense_are_refused(client: TestClient) -> None:
    resp = await client.get("/api/events", params={"type": "no_such_type"})
    assert resp.status == 400
    assert "unknown event type" in (await resp.json())["error"]
    assert (await client.get("/", params={"limit": "0"})).status == 400
    assert (await client.get("/feed.atom", params={"since": "yesterday"})).status == 400
    resp = await client.get("/models/no/such-model")
    assert resp.status == 404
    assert "No stored snapshot has a model" in await resp.text()
    assert (await client.get("/api/models/no/such-model")).status == 404


async def test_untrusted_catalogue_text_is_escaped_everywhere(client: TestClient) -> None:
    index = await (await client.get("/", params={"model": "evil/*"})).text()
    resp = await client.get(f"/models/{webstate.EVIL_ID.replace('<', '%3C').replace('>', '%3E')}")
    assert resp.status == 200
    model = await resp.text()
    for html in (index, model):
        assert "<script" not in html.lower()
        assert "<img" not in html.lower()
        assert "<b>key" not in html
        assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt; &amp; Co" in html
    text = "".join(parse(model).text)
    assert webstate.EVIL_NAME in text  # shown as text, not run
    # The pricing key is chart text and table text; escaped in both.
    assert "&lt;b&gt;key&lt;/b&gt;" in model
    feed = await (await client.get("/feed.atom", params={"model": "evil/*"})).read()
    assert b"<script" not in feed
    parsed = feedparser.parse(feed)
    assert not parsed.bozo
    assert any(webstate.EVIL_NAME in e.title for e in parsed.entries)
    events = await (await client.get("/api/events", params={"model": "evil/*"})).json()
    assert {e["name"] for e in events} == {webstate.EVIL_NAME}  # JSON carries the raw value


async def test_no_secret_is_ever_served(client: TestClient, config_path: Path) -> None:
    settings = config.load(config_path)
    assert webstate.API_KEY in settings.secrets
    bodies = [await (await client.get(path)).read() for path in (
        "/", "/feed.atom", "/api/events", "/api/account", "/models/z-ai/glm-4.7",
        "/api/models/z-ai/glm-4.7", "/?watch=my-models")]
    for body in bodies:
        for secret in (webstate.API_KEY, webstate.HOOK_TOKEN, "127.0.0.1:9", "json://"):
            assert secret.encode() not in body


async def test_feed_is_valid_atom_for_a_real_consumer(client: TestClient) -> None:
    resp = await client.get("/feed.atom", params={"type": "price_changed", "model": "openai/*",
                                                  "watch": "models"})
    assert resp.status == 200
    assert resp.content_type == "application/atom+xml"
    feed = feedparser.parse(await resp.read())
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.id.startswith("urn:uuid:")
    assert feed.feed.title == "OpenRouter changes: price_changed, model openai/*, watch models"
    assert feed.feed.author == "openrouter-watcher"
    assert feed.feed.updated_parsed
    rels = {link.rel: link.href for link in feed.feed.links}
    assert rels["self"] == (str(client.make_url("/feed.atom"))
                            + "?type=price_changed&model=openai%2F%2A&watch=models")
    same = await (await client.get("/api/events", params={
        "type": "price_changed", "model": "openai/*", "watch": "models"})).json()
    assert len(feed.entries) == len(same) == 34
    ids = [e.id for e in feed.entries]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("urn:uuid:") for i in ids)
    for entry in feed.entries:
        assert [t.term for t in entry.tags] == ["price_changed"]
        assert entry.link.startswith(str(client.make_url("/models/openai/")))
        assert entry.updated_parsed
        assert "/ 1M" in entry.title or "per " in entry.title
    updated = [e.updated for e in feed.entries]
    assert updated == sorted(updated, reverse=True)
    assert feed.feed.updated == updated[0]
    # Feed readers poll: the same document again is a 304.
    again = await client.get("/feed.atom", params={"type": "price_changed", "model": "openai/*",
                                                   "watch": "models"},
                             headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    everything = feedparser.parse(await (await client.get("/feed.atom")).read())
    assert len(everything.entries) == 50  # the newest 50 unless ?limit= says otherwise


async def test_feed_entry_ids_are_stable_across_restarts_and_unique_to_a_database(
        state, config_path: Path, tmp_path: Path) -> None:
    async def ids(path: Path) -> tuple[str, list[str]]:
        client = await serve(path)
        try:
            feed = feedparser.parse(await (await client.get("/feed.atom?limit=500")).read())
        finally:
            await client.close()
        return feed.feed.id, [e.id for e in feed.entries]

    client = await serve(config_path)
    try:
        feed = feedparser.parse(await (await client.get("/feed.atom?limit=5&type=model_added")).read())
    finally:
        await client.close()
    assert {link.rel: link.href for link in feed.feed.links}["self"].endswith(
        "/feed.atom?type=model_added&limit=5")
    first = await ids(config_path)
    assert len(first[1]) == 500
    assert await ids(config_path) == first  # a new Store on the same file: the same ids
    # The same file moved elsewhere is the same database.
    moved = tmp_path / "moved"
    shutil.copytree(config_path.parent, moved)
    assert await ids(moved / "config.yaml") == first
    # A database started afresh (event rows count from 1 again) never reuses an id.
    fresh, _ = await webstate.replay(tmp_path / "fresh", [10, 11])
    other = await ids(fresh)
    assert other[0] != first[0]
    assert not set(other[1]) & set(first[1])


@pytest.mark.parametrize("args", [[], ["--type", "price_changed", "--model", "openai/*"],
                                  ["--watch", "my-models", "--limit", "7"]])
async def test_api_events_are_history_json(client: TestClient, config_path: Path,
                                           args: list[str]) -> None:
    proc = cli("history", "--format", "json", "--config", str(config_path), *args)
    assert proc.returncode == 0, proc.stderr
    expected = [json.loads(line) for line in proc.stdout.splitlines()]
    params = dict(zip([a.removeprefix("--") for a in args[::2]], args[1::2], strict=True))
    params.setdefault("limit", "10000")
    got = await (await client.get("/api/events", params=params)).json()
    assert got == expected
    assert expected


@pytest.mark.parametrize("model", ["z-ai/glm-4.7", "mistralai/devstral-2512:free",
                                   "qwen/qwen-max", webstate.EVIL_ID])
async def test_api_model_is_show_json(client: TestClient, config_path: Path, model: str) -> None:
    proc = cli("show", model, "--format", "json", "--config", str(config_path))
    assert proc.returncode == 0, proc.stderr
    expected = [json.loads(line) for line in proc.stdout.splitlines()]
    resp = await client.get("/api/models/" + model.replace("<", "%3C").replace(">", "%3E"))
    assert resp.status == 200
    assert await resp.json() == expected


async def test_model_page_draws_the_price_history(client: TestClient) -> None:
    resp = await client.get("/models/z-ai/glm-4.7")
    html = await resp.text()
    page = parse(html)
    svg = [a for t, a in page.tags if t == "svg"]
    assert [a["class"] for a in svg] == ["price-chart"]
    keys = [a["data-key"] for t, a in page.tags if t == "path" and a.get("class") == "series"]
    assert keys == ["completion", "input_cache_read", "prompt"]
    labels = re.findall(r'class="y-label"[^>]*>([^<]+)<', html)
    assert labels[0] == "$0.00"
    assert all(label.startswith("$") for label in labels)
    assert re.findall(r'class="x-label"[^>]*>(\d{4}-\d\d-\d\d)<', html)
    text = " ".join(" ".join(page.text).split())
    assert "$0.40 -> $0.16 / 1M prompt tokens (-60%)" in text
    assert "202,752 tokens" in text
    # The account cannot use this one (the account view), and the page says so.
    assert "Not available to your account (watch my-models)" in text


async def test_model_page_lists_every_change_on_request(client: TestClient) -> None:
    """A short history is listed whole either way; ``?all=1`` (with ``watch``) is a page too."""
    plain = parse(await (await client.get("/models/z-ai/glm-4.7")).text())
    resp = await client.get("/models/z-ai/glm-4.7?all=1&watch=models")
    assert resp.status == 200
    every = parse(await resp.text())
    assert rows(every) == rows(plain)
    assert len(rows(every)) > 1


async def test_model_page_shows_removals_returns_and_expiration(client: TestClient) -> None:
    html = await (await client.get("/models/qwen/qwen-max")).text()
    assert html.count('class="absent"') == 1  # removed at step 20, back at 22
    assert "removed from OpenRouter" in html
    html = await (await client.get("/models/mistralai/devstral-2512:free")).text()
    text = " ".join(" ".join(parse(html).text).split())
    assert "not listed since" in text
    assert re.search(r"Expiration date (\d{4}-\d\d-\d\d)", text)


async def test_account_view_lists_models_the_account_cannot_use(client: TestClient, state) -> None:
    html = await (await client.get("/")).text()
    assert 'id="account"' in html
    for model in webstate.NOT_FOR_ACCOUNT:
        assert f'href="/models/{model}"' in html
    assert await (await client.get("/api/account")).json() == state[1]


async def test_page_without_account_view_has_no_account_section(config_path: Path) -> None:
    client = await serve(config_path)
    try:
        html = await (await client.get("/")).text()
    finally:
        await client.close()
    assert 'id="account"' not in html
    assert 'id="changes"' in html


def chromium(*args: str, user_data: Path) -> list[str]:
    return [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={user_data}", *args]


async def run_chromium(*args: str, user_data: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        *chromium(*args, user_data=user_data), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0
    return out.decode()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium; "
                                                  "apt-get install chromium, as .ci/run does)")
async def test_a_real_browser_renders_the_table_and_the_chart(client: TestClient,
                                                              tmp_path: Path) -> None:
    dom = await run_chromium("--dump-dom", str(client.make_url("/")), user_data=tmp_path / "a")
    page = parse(dom)
    assert len(rows(page)) == 100
    assert ("table", {"class": "events"}) in page.tags
    dom = await run_chromium("--dump-dom", str(client.make_url("/models/z-ai/glm-4.7")),
                             user_data=tmp_path / "b")
    assert [a["class"] for t, a in parse(dom).tags if t == "svg"] == ["price-chart"]
    assert dom.count('class="series"') == 3
    shot = tmp_path / "phone.png"
    await run_chromium(f"--screenshot={shot}", "--window-size=390,844",
                       str(client.make_url("/models/z-ai/glm-4.7")), user_data=tmp_path / "c")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 390


async def test_routes_mount_under_a_prefix_beside_other_routes(config_path: Path) -> None:
    settings = config.load(config_path)
    store = Store.open(settings.state_dir)
    app = web.Application()
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/healthz", healthz)
    web_routes.register(app, store=store, settings=lambda: settings, prefix="/history/")
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        assert await (await client.get("/healthz")).text() == "ok"
        html = await (await client.get("/history/", params={"model": "z-ai/*"})).text()
        assert 'href="/history/models/z-ai/glm-4.7"' in html
        assert 'action="/history/"' in html
        assert (await client.get("/history/models/z-ai/glm-4.7")).status == 200
        assert (await client.get("/history/api/events?limit=1")).status == 200
        assert (await client.get("/")).status == 404
    finally:
        await client.close()
        store.close()
