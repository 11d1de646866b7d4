"""The Procfile scaled: two SMTP servers and two workers on one database store and process each message once."""

from __future__ import annotations

import smtplib
import threading

import pytest

from tests.support.fault_report import report
from tests.support.ledger_counts import wait_all_processed
from tests.support.mails import make_mail
from tests.support.processes import free_port, port_is_open, service_env, start, stop_all, wait_until

pytestmark = pytest.mark.e2e

SENDERS = 4
PER_SENDER = 40
# Every fifth message is delivered to both SMTP servers, as a sending MTA retries at the next MX after a
# timeout: the second copy must be recognised, not stored or processed again.
TWICE_EVERY = 5


def _mail(sender: int, n: int) -> bytes:
    return make_mail(
        sender=f"Zákazník {sender} <scale{sender}@example.cz>",
        subject=f"Dotaz {sender}-{n}",
        message_id=f"<scale-{sender}-{n}@example.cz>",
    )


def test_two_smtp_servers_and_two_workers_store_and_process_each_message_once(
    tmp_path, committed_db, redis_url
):
    smtp_ports = [free_port(), free_port()]
    env = service_env(tmp_path / "var", http_port=free_port(), smtp_port=smtp_ports[0], embedded=False)
    processes = [
        start(["smtp"], {**env, "CENTRALA_SMTP_PORT": str(port)}, tmp_path / f"smtp-{n}.log")
        for n, port in enumerate(smtp_ports)
    ]
    processes += [start(["worker"], env, tmp_path / f"worker-{n}.log") for n in range(2)]
    processes.append(start(["scheduler"], env, tmp_path / "scheduler.log"))
    accepted: list[int] = []
    errors: list[BaseException] = []
    try:
        for port in smtp_ports:
            wait_until(lambda port=port: port_is_open(port), timeout=30, what=f"SMTP port {port}")

        def send(sender: int) -> None:
            # Each sender talks to both servers in turn, so both store into the same ledger at once.
            try:
                clients = [smtplib.SMTP("127.0.0.1", port, timeout=30) for port in smtp_ports]
                for n in range(PER_SENDER):
                    raw = _mail(sender, n)
                    targets = clients if n % TWICE_EVERY == 0 else [clients[n % 2]]
                    for client in targets:
                        client.sendmail(f"scale{sender}@example.cz", ["support@localhost"], raw)
                        accepted.append(1)
                for client in clients:
                    client.quit()
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        senders = [threading.Thread(target=send, args=(sender,)) for sender in range(SENDERS)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(120)
        assert errors == []

        messages = SENDERS * PER_SENDER
        counts = wait_all_processed(committed_db, messages, timeout=120)
        report(
            "scale_out_two_smtp_two_workers",
            sent=messages,
            deliveries=len(accepted),
            accepted=len(accepted),
            stored=counts["stored"],
            duplicates=counts["duplicates"],
            processed=counts["processed"],
            tickets=counts["tickets"],
        )
        assert len(accepted) == messages + messages // TWICE_EVERY
        assert counts == {
            "stored": messages,
            "processed": messages,
            "interactions": messages,
            "duplicates": 0,
            "tickets": messages,
        }
    finally:
        stop_all(processes, tmp_path)
