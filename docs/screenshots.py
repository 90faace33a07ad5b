"""Serve the web pages over a replay of the bundled snapshots; take the README screenshots.

Development only (the daemon serves the pages from its own listener)::

    .venv/bin/python docs/screenshots.py            # writes docs/web-changes.png, docs/web-model.png
    .venv/bin/python docs/screenshots.py --serve    # browse http://127.0.0.1:9464/ until Ctrl-C

It replays the 40 real responses in tests/data into a temporary state directory, as the
web tests do, and mounts the routes with ``watcher.web.routes.register`` on 127.0.0.1.
Screenshots need Debian's chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from tests import webstate  # noqa: E402
from watcher import config  # noqa: E402
from watcher.store import Store  # noqa: E402
from watcher.web import routes as web_routes  # noqa: E402

SHOTS = (("web-changes.png", "/", "1000,1150"), ("web-model.png", "/models/z-ai/glm-4.7", "900,1150"))


def chromium(url: str, out: Path, size: str, profile: Path) -> None:
    subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    f"--user-data-dir={profile}", f"--window-size={size}",
                    f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("WEB_TEST_KEY", "not-a-real-key")
        path, account = await webstate.replay(Path(tmp), hostile=False)
        settings = config.load(path)
        store = Store.open(settings.state_dir)
        app = web.Application()
        web_routes.register(app, store=store, settings=settings, account=lambda: account)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        base = f"http://127.0.0.1:{args.port}"
        try:
            if args.serve:
                print(f"serving {base}/ (Ctrl-C stops)")
                await asyncio.Event().wait()
            for name, page, size in SHOTS:
                await asyncio.to_thread(chromium, base + page, ROOT / "docs" / name, size,
                                        Path(tmp) / "profile")
                print(f"wrote docs/{name}")
        finally:
            await runner.cleanup()
            store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="serve until Ctrl-C, no screenshots")
    parser.add_argument("--port", type=int, default=9464)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
