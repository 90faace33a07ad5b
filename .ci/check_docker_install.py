"""Run the Dockerfile's install steps without Docker, then use the result as the image would.

There is no Docker engine on CI machines, so this reads the Dockerfile and carries out
its build stage under a scratch directory that stands for the container's root:

1. each ``COPY`` of the build stage copies the same files, less what .dockerignore keeps
   out of the build context (what is not copied is not there, as in a real build: a file
   the install needs but the Dockerfile or .dockerignore forgets fails);
2. each ``RUN`` runs the same command, its absolute paths moved under the scratch root;
3. the final stage's ``COPY`` lines are carried out the same way;
4. checks of the result: no pip in the app's venv, the licence (pyproject's, the wheel's
   metadata and LICENSE file, the image's label agree), ``--version``, ``check`` of the image's
   default config and of examples/config.yaml (secrets read through
   ``$CREDENTIALS_DIRECTORY``), then the daemon runs as an unprivileged user that can
   write only its state directory (no writable home), polls a loopback server, answers
   ``health`` (the HEALTHCHECK command), sends a change through Apprise to a loopback
   webhook, and stops on SIGTERM with exit 0; its log is JSON lines.

What this does not check: the base image itself (CI's Python, not python:3.12-slim),
``useradd``, and Docker's own handling of VOLUME, --read-only and HEALTHCHECK.
"""

from __future__ import annotations

import email.parser
import fnmatch
import gzip
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534


def stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, per stage, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile)
    out: list[list[tuple[str, str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            out.append([])
        if out:
            out[-1].append((word.upper(), rest.strip()))
    return out


def under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def ignored(relative: str) -> bool:
    """Whether .dockerignore keeps ``relative`` out of the build context (the last matching
    pattern wins, ``!`` re-includes; a pattern also covers what is under a directory)."""
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").rstrip("/").removeprefix("**/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pattern.removeprefix("!").startswith("**/"):
            prefixes += parts  # **/name matches at any depth
        if any(fnmatch.fnmatchcase(prefix, body) for prefix in prefixes):
            verdict = not negated
    return verdict


def copy(root: Path, workdir: str, args: str) -> None:
    parts = [p for p in shlex.split(args) if not p.startswith("--")]
    *sources, dest = parts
    target = under(root, dest if dest.startswith("/") else f"{workdir}/{dest}")
    for source in sources:
        src = REPO / source
        if ignored(source.rstrip("/")):
            raise SystemExit(f"COPY {source}: excluded from the build context by .dockerignore")
        if src.is_dir():
            def skip(directory: str, names: list[str]) -> set[str]:
                base = Path(directory).relative_to(REPO)
                return {n for n in names if ignored(str(base / n))}

            # Docker's COPY keeps symlinks as links (watcher/defaults/rules/default.yaml
            # points at rules/default.yaml): copy them as links too, so a link whose
            # target the build stage did not COPY breaks here as it would in a build.
            shutil.copytree(src, target, dirs_exist_ok=True, ignore=skip, symlinks=True)
        else:
            dst = target / src.name if dest.endswith("/") else target
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def relocate(root: Path, command: str) -> str:
    """The command with every absolute path moved under ``root``."""
    return re.sub(r"(?<![\w.])(/[\w./-]+)", lambda m: str(under(root, m.group(1))), command)


def step(what: str) -> None:
    print(f"-- {what}", flush=True)


def main() -> int:
    dockerfile = (REPO / "Dockerfile").read_text()
    build, final = stages(dockerfile)[0], stages(dockerfile)[-1]
    root = Path(tempfile.mkdtemp(prefix="owd-"))
    root.chmod(0o755)  # the unprivileged user reads the "image", as in a container
    env_base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(root / "nonexistent"),
                "LANG": "C.UTF-8"}
    try:
        workdir = "/"
        for word, args in build:
            if word == "WORKDIR":
                workdir = args
                under(root, workdir).mkdir(parents=True, exist_ok=True)
            elif word == "COPY":
                step(f"build: COPY {args}")
                copy(root, workdir, args)
            elif word == "RUN":
                command = relocate(root, args)
                step(f"build: RUN {args}")
                subprocess.run(["sh", "-c", command], cwd=under(root, workdir), env=env_base,
                               check=True)
        env = dict(env_base)
        for word, args in final:
            if word == "COPY":
                if args.startswith("--from="):
                    _, src, dest = shlex.split(args)
                    if under(root, src) != under(root, dest):
                        shutil.copytree(under(root, src), under(root, dest))
                    step(f"final: COPY {args} (already in place)")
                else:
                    step(f"final: COPY {args}")
                    copy(root, "/", args)
            elif word == "ENV":
                for assignment in shlex.split(args):
                    name, _, value = assignment.partition("=")
                    value = value.replace("$PATH", env["PATH"])
                    env[name] = relocate(root, value) if name != "PATH" else ":".join(
                        str(under(root, p)) if p.startswith("/opt") else p
                        for p in value.split(":"))
        venv = Path(env["PATH"].split(":")[0]).parent
        state = Path(env["STATE_DIRECTORY"])
        state.mkdir(parents=True)
        os.chown(state, NOBODY, NOBODY)
        state.chmod(0o700)
        secrets = Path(env["CREDENTIALS_DIRECTORY"])
        secrets.mkdir(parents=True)
        (secrets / "openrouter-api-key").write_text("sk-or-v1-not-a-real-key\n")
        (secrets / "slack-url").write_text("json://127.0.0.1:9/not-a-real-hook\n")
        (secrets / "mail-url").write_text("mailto://127.0.0.1:9?to=a@example.com"
                                          "&from=w@example.com\n")
        for path in secrets.iterdir():
            os.chown(path, NOBODY, NOBODY)  # as the README says: the service user alone
            path.chmod(0o400)

        step("no pip in the app's venv")
        assert not list(venv.glob("bin/pip*")), list(venv.glob("bin/pip*"))
        probe = subprocess.run([venv / "bin/python", "-c", "import pip"], capture_output=True,
                               check=False)
        assert probe.returncode != 0, "pip is importable in the final venv"

        step("the installed package carries the licence the image's label names")
        check_licence(venv, final)

        exe = venv / "bin/openrouter-watcher"
        step("openrouter-watcher --version")
        subprocess.run(as_nobody(exe, "--version"), env=env, check=True)
        step("check the image's default config (as the unprivileged user)")
        subprocess.run(as_nobody(exe, "check"), env=env, check=True)
        example = root / "example"
        example.mkdir()
        shutil.copy2(REPO / "examples/config.yaml", example / "config.yaml")
        (example / "rules").mkdir()
        shutil.copy2(REPO / "examples/rules/team.yaml", example / "rules/team.yaml")
        step("check examples/config.yaml with secrets from $CREDENTIALS_DIRECTORY")
        subprocess.run(as_nobody(exe, "check", "--config", example / "config.yaml"), env=env,
                       check=True)
        smoke(root, env, exe)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("docker install steps: OK")
    return 0


def check_licence(venv: Path, final: list[tuple[str, str]]) -> None:
    """pyproject's licence is in the wheel's metadata and the image's label, and the wheel
    carries the LICENSE file (which the build stage must COPY for that)."""
    licence = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    labels = dict(item.partition("=")[::2] for word, args in final if word == "LABEL"
                  for item in shlex.split(args))
    assert labels.get("org.opencontainers.image.licenses") == licence, labels
    (dist,) = venv.glob("lib/python*/site-packages/openrouter_watcher-*.dist-info")
    metadata = email.parser.Parser().parsestr((dist / "METADATA").read_text())
    assert metadata["License-Expression"] == licence, metadata["License-Expression"]
    assert (dist / "licenses/LICENSE").read_bytes() == (REPO / "LICENSE").read_bytes()


def as_nobody(*args: str | Path) -> list[str]:
    """The command, run as an unprivileged user (the image's USER is not root either)."""
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
            *map(str, args)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SINK = """
import http.server, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[2], "ab") as out:
            out.write(body + b"\\n")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
"""


def snapshot(number: int) -> bytes:
    (path,) = (REPO / "tests/data").glob(f"{number:03d}_*.json.gz")
    return gzip.decompress(path.read_bytes())


def smoke(root: Path, env: dict[str, str], exe: Path) -> None:
    """As the unprivileged user, with no writable home: the daemon polls a loopback server,
    is healthy by the HEALTHCHECK command, sends a change through Apprise to a loopback
    webhook, and stops cleanly on SIGTERM."""
    www = root / "www"
    (www / "api/v1").mkdir(parents=True)
    served = www / "api/v1/models"
    served.write_bytes(snapshot(24))
    upstream_port, http_port, sink_port = free_port(), free_port(), free_port()
    received = root / "sink.jsonl"
    (root / "smoke-rules.yaml").write_text(
        "rules: [{name: exp, on: [expiration_set], notify: [hook]}]\n")
    config = root / "smoke.yaml"
    config.write_text(
        f'watches: [{{name: models, url: "http://127.0.0.1:{upstream_port}/api/v1/models", '
        f'interval: 1s}}]\n'
        f'targets: {{hook: "json://127.0.0.1:{sink_port}/hook"}}\n'
        f"rules: [smoke-rules.yaml]\n"
        f'http: {{listen: "127.0.0.1:{http_port}"}}\n')
    run_env = {**env, "OPENROUTER_WATCHER_CONFIG": str(config)}
    helpers = [
        subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                          "--directory", str(www), str(upstream_port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-c", SINK, str(sink_port), str(received)]),
    ]
    log = root / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(as_nobody(exe, "run"), env=run_env, stdout=out, stderr=out,
                                  cwd=env["STATE_DIRECTORY"])
    try:
        step("run as the unprivileged user; wait for HEALTHCHECK's command to pass")
        deadline = time.monotonic() + 30
        while True:
            health = subprocess.run(as_nobody(exe, "health", "--timeout", "8"),
                                    env=run_env, capture_output=True, text=True, check=False)
            if health.returncode == 0:
                break
            if time.monotonic() > deadline or daemon.poll() is not None:
                sys.stdout.write(log.read_text())
                raise SystemExit(f"never healthy: {health.stdout}{health.stderr}")
            time.sleep(0.5)
        assert json.loads(health.stdout)["status"] == "ok"
        step("a change upstream reaches the webhook through Apprise")
        swap = served.with_suffix(".new")
        swap.write_bytes(snapshot(25))
        swap.replace(served)
        deadline = time.monotonic() + 30
        while not (received.exists() and received.read_bytes().strip()):
            if time.monotonic() > deadline or daemon.poll() is not None:
                sys.stdout.write(log.read_text())
                raise SystemExit("the change never reached the webhook")
            time.sleep(0.2)
        assert b"expiration_set" in received.read_bytes()
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        events = {e.get("event") for e in lines}
        assert {"cycle.baseline", "cycle.changed"} <= events, events
        step("SIGTERM: exit 0")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log.read_text()
        assert "notify.sent" in {json.loads(x).get("event") for x in log.read_text().splitlines()}
    finally:
        if daemon.poll() is None:
            daemon.kill()
        for helper in helpers:
            helper.terminate()
            helper.wait(10)


if __name__ == "__main__":
    sys.exit(main())
