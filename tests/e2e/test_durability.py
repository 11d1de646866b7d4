"""Nothing is lost and nothing duplicated when a worker is killed with SIGKILL while mail arrives."""

from __future__ import annotations

import signal
import smtplib
import threading
import time

import pytest

from tests.support.fault_report import report
from tests.support.ledger_counts import ledger_counts, wait_all_processed
from tests.support.mails import make_mail
from tests.support.processes import (
    children_of,
    free_port,
    is_running,
    port_is_open,
    service_env,
    start,
    stop_all,
    wait_until,
)

pytestmark = pytest.mark.e2e

MESSAGES = 60


def test_worker_killed_mid_load_loses_and_duplicates_nothing(tmp_path, committed_db, redis_url):
    smtp_port = free_port()
    # Sweep fast so that the job the killed worker held is handed out again within seconds, not a minute.
    env = service_env(
        tmp_path / "var",
        http_port=free_port(),
        smtp_port=smtp_port,
        embedded=False,
        CENTRALA_SWEEP_AFTER_SECONDS="2",
        CENTRALA_SWEEP_INTERVAL_SECONDS="0.5",
    )
    smtp = start(["smtp"], env, tmp_path / "smtp.log")
    scheduler = start(["scheduler"], env, tmp_path / "scheduler.log")
    worker = start(["worker"], env, tmp_path / "worker-1.log")
    processes = [smtp, scheduler, worker]
    accepted: list[int] = []
    try:
        wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")

        def send_all() -> None:
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
                for n in range(MESSAGES):
                    # Every tenth message continues the previous one's thread.
                    reply_to = f"<kill-{n - 1}@example.cz>" if n % 10 == 9 else None
                    raw = make_mail(
                        subject=f"Dotaz {n}", message_id=f"<kill-{n}@example.cz>", in_reply_to=reply_to
                    )
                    client.sendmail("jana@example.cz", ["support@localhost"], raw)
                    accepted.append(n)

        sender = threading.Thread(target=send_all)
        sender.start()
        wait_until(lambda: ledger_counts(committed_db)["processed"] >= 10, timeout=30, what="the first ten processed")
        children = children_of(worker.pid)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        # Nothing the killed worker started may live on (an orphan would go on taking jobs unseen).
        time.sleep(0.5)
        assert [pid for pid in children if is_running(pid)] == []
        sender.join(timeout=60)
        assert len(accepted) == MESSAGES

        worker = start(["worker"], env, tmp_path / "worker-2.log")
        processes.append(worker)
        counts = wait_all_processed(committed_db, MESSAGES, timeout=90)
        report(
            "test_worker_killed_mid_load_loses_and_duplicates_nothing",
            sent=MESSAGES,
            accepted=len(accepted),
            stored=counts["stored"],
            duplicates=counts["duplicates"],
            processed=counts["processed"],
            tickets=counts["tickets"],
        )
        assert counts == {
            "stored": MESSAGES,
            "processed": MESSAGES,
            "interactions": MESSAGES,
            "duplicates": 0,
            "tickets": MESSAGES - MESSAGES // 10,
        }
    finally:
        stop_all(processes, tmp_path)
