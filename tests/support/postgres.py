"""A private PostgreSQL server for the tests, started once per pytest session.

:func:`server_url` returns the URL of a server the tests may use freely:

* ``$WAIAAS_TEST_POSTGRES_URL`` when it is set (an operator's server, or the one the parent
  pytest process started: children inherit it);
* otherwise a private server: ``initdb -A trust`` and ``pg_ctl start`` from Debian's
  binaries (``/usr/lib/postgresql/<version>/bin``, or ``$WAIAAS_PG_BIN``), on a free port of
  127.0.0.1 with its socket in a temporary directory, ``fsync=off``. As root the directory
  belongs to ``postgres`` and the binaries run through ``runuser -u postgres --`` (initdb
  refuses root). :func:`stop_server` stops and deletes it (the pytest plugin calls it at
  the end of the session; ``atexit`` as a fallback).

The URL is exported in ``$WAIAAS_TEST_POSTGRES_URL`` so subprocesses and other fixtures find
the same server. :class:`PostgresUnavailable` says why no server could be had; the plugin
fails the session with it when ``$WAIAAS_REQUIRE_POSTGRES=1`` (CI) and skips otherwise.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

URL_ENV = "WAIAAS_TEST_POSTGRES_URL"
REQUIRE_ENV = "WAIAAS_REQUIRE_POSTGRES"
BIN_ENV = "WAIAAS_PG_BIN"
PREFERRED_VERSION = "15"

SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # several processes x pool_size connections, and wallets a failing test left open
    "max_connections": "400",
    "shared_buffers": "128MB",
    "max_locks_per_transaction": "256",  # DROP SCHEMA ... CASCADE of many tables at once
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started (binaries missing, initdb or start failed)."""


def required() -> bool:
    """Whether a missing server must fail the run (``$WAIAAS_REQUIRE_POSTGRES=1``)."""
    return os.environ.get(REQUIRE_ENV, "") == "1"


def find_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: ``$WAIAAS_PG_BIN``, else Debian's
    ``/usr/lib/postgresql/15/bin``, else the newest ``/usr/lib/postgresql/*/bin``."""
    explicit = os.environ.get(BIN_ENV)
    if explicit:
        return Path(explicit) if (Path(explicit) / "initdb").is_file() else None
    preferred = Path(f"/usr/lib/postgresql/{PREFERRED_VERSION}/bin")
    if (preferred / "initdb").is_file():
        return preferred
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PrivateServer:
    """A PostgreSQL cluster in a temporary directory, run by :func:`start_private`."""

    bindir: Path
    root: Path
    port: int
    as_postgres: bool

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one of the server's binaries (as ``postgres`` when we are root)."""
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        done = subprocess.run(
            [*prefix, str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
        )
        if check and done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{args[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{tail}"
            )
        return done

    def stop(self) -> None:
        """Stop the server (immediately: its data is thrown away) and delete its directory."""
        if (self.data / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start_private() -> PrivateServer:
    """initdb + pg_ctl start in a new temporary directory; the server is ready on return.

    Raises:
        PostgresUnavailable: no binaries, or initdb / the start failed (three ports tried).
    """
    bindir = find_bin()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb; "
            f"apt-get install postgresql, or set {BIN_ENV} or {URL_ENV})"
        )
    as_postgres = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="waiaas-pg-"))
    os.chmod(root, 0o700)
    if as_postgres:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable("running as root, and there is no 'postgres' user") from None
        os.chown(root, user.pw_uid, user.pw_gid)
    server = PrivateServer(bindir=bindir, root=root, port=0, as_postgres=as_postgres)
    try:
        server.run(
            "initdb",
            "-D",
            str(server.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        last: PostgresUnavailable | None = None
        for _attempt in range(3):
            server.port = _free_port()
            options = " ".join(
                [f"-p {server.port}", f"-k {root}"]
                + [f"-c {k}={v}" for k, v in SERVER_SETTINGS.items()]
            )
            try:
                server.run(
                    "pg_ctl",
                    "-D",
                    str(server.data),
                    "-l",
                    str(root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                )
                return server
            except PostgresUnavailable as exc:  # the port was taken meanwhile: another
                last = exc
        raise last or PostgresUnavailable("pg_ctl start failed")
    except BaseException:
        server.stop()
        raise


_lock = threading.Lock()
_private: PrivateServer | None = None
_failure: PostgresUnavailable | None = None


def server_url() -> str:
    """The URL of the tests' PostgreSQL server, starting the private one on first use.

    Raises:
        PostgresUnavailable: no ``$WAIAAS_TEST_POSTGRES_URL`` and the private server could not
            start (the same error again on every later call: it is tried once).
    """
    global _private, _failure
    with _lock:
        given = os.environ.get(URL_ENV)
        if given:
            return given
        if _failure is not None:
            raise _failure
        try:
            _private = start_private()
        except PostgresUnavailable as exc:
            _failure = exc
            raise
        except (OSError, subprocess.SubprocessError) as exc:
            _failure = PostgresUnavailable(f"cannot start PostgreSQL: {exc}")
            raise _failure from exc
        atexit.register(stop_server)
        os.environ[URL_ENV] = _private.url
        return _private.url


def stop_server() -> None:
    """Stop and delete the private server if this process started one (idempotent)."""
    global _private
    with _lock:
        server, _private = _private, None
        if server is None:
            return
        if os.environ.get(URL_ENV) == server.url:
            del os.environ[URL_ENV]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            server.stop()


def connect(url: str | None = None, **kwargs: object) -> object:
    """A plain psycopg connection (autocommit) to ``url`` (default: :func:`server_url`);
    the ``+psycopg`` of a SQLAlchemy URL is accepted."""
    import psycopg

    target = (url or server_url()).replace("postgresql+psycopg://", "postgresql://", 1)
    return psycopg.connect(target, autocommit=True, **kwargs)  # type: ignore[arg-type]
