"""``python -m tests.support.crashing_smtp before-commit|after-commit``: ``centrala smtp`` that dies mid-write.

The server is started exactly as ``centrala smtp`` starts it; only its first ledger write is wrapped so that
the process ends with ``os._exit(137)`` (no cleanup, no reply, as after SIGKILL) at one point:

- ``before-commit``: the row is inserted in the open transaction, which is never committed;
- ``after-commit``: the transaction has committed, and the 250 has not been sent.

This lets a test see what a sender sees when the server dies at either point, and what the ledger holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from centrala.ingest import smtp

CRASH_POINTS = ("before-commit", "after-commit")
# The exit status of a process killed by SIGKILL, as a shell reports it.
CRASH_EXIT_CODE = 137
REPO_ROOT = Path(__file__).resolve().parents[2]


def _die() -> None:
    sys.stderr.write("crashing_smtp: exiting at the crash point\n")
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


def _crash_before_commit() -> None:
    insert = smtp.record_inbound_emails

    def insert_then_die(**kwargs):
        insert(**kwargs)
        _die()

    smtp.record_inbound_emails = insert_then_die


def _crash_after_commit() -> None:
    write_group = smtp.InboundHandler._record_group

    def write_group_then_die(self, writes):
        write_group(self, writes)
        _die()

    smtp.InboundHandler._record_group = write_group_then_die


def start_crashing_smtp(point: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start the SMTP server that dies at ``point`` (one of ``CRASH_POINTS``), its output in ``log_path``."""
    log_file = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.crashing_smtp", point],
        env=env,
        cwd=REPO_ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def main(point: str) -> None:
    """Arm the crash at ``point`` and run ``centrala smtp``."""
    {"before-commit": _crash_before_commit, "after-commit": _crash_after_commit}[point]()
    from centrala.cli import main as centrala

    sys.argv = ["centrala", "smtp"]
    centrala()


if __name__ == "__main__":
    main(sys.argv[1])
