"""Starting and stopping real Centrala processes in tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(var_dir: Path, *, http_port: int, smtp_port: int, embedded: bool, **extra: str) -> dict[str, str]:
    """Environment for child processes; ``embedded`` drops the database and Redis URLs to use the defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CENTRALA_")}
    env.update(
        CENTRALA_VAR_DIR=str(var_dir),
        CENTRALA_HTTP_PORT=str(http_port),
        CENTRALA_SMTP_PORT=str(smtp_port),
        CENTRALA_PUBLIC_URL=f"http://127.0.0.1:{http_port}",
        CENTRALA_SECRET_KEY=os.environ["CENTRALA_SECRET_KEY"],
        CENTRALA_QUEUE_NAME=os.environ["CENTRALA_QUEUE_NAME"],
        CENTRALA_LOG_LEVEL="INFO",
    )
    if not embedded:
        from centrala.core.settings import get_settings

        env["CENTRALA_DATABASE_URL"] = get_settings().effective_database_url
        env["CENTRALA_REDIS_URL"] = os.environ["CENTRALA_REDIS_URL"]
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``centrala <args>`` with its output in ``log_path``."""
    log_file = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "centrala", *args], env=env, stdout=log_file, stderr=subprocess.STDOUT
    )


def run(args: list[str], env: dict[str, str]) -> str:
    """Run ``centrala <args>`` to completion and return its standard output."""
    result = subprocess.run(
        [sys.executable, "-m", "centrala", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_until(check: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # the service may still be starting
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})")


def stop(process: subprocess.Popen[bytes], *, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int:
    """Signal the process and wait for it to exit; returns its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"pid {process.pid} did not stop within {timeout} s after signal {sig}") from None


def stop_all(processes: Iterable[subprocess.Popen[bytes]], log_dir: Path, *, timeout: float = 20.0) -> None:
    """Stop whichever of ``processes`` still run and print the tail of every log in ``log_dir``."""
    for process in processes:
        if process.poll() is None:
            stop(process, timeout=timeout)
    for log in sorted(log_dir.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            children.append(int(status.parent.name))
    return children


def is_running(pid: int) -> bool:
    """Whether ``pid`` still runs: an ended process its new parent has not reaped yet (a zombie, state Z, which
    init may leave for a second or more) does not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
