"""The acceptance path, on the real processes of ``centrala up``: an e-mail becomes a ticket, a reply threads,
a new subject opens a second ticket, and Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import smtplib
import time

import httpx
import pytest

from tests.support.mails import make_mail
from tests.support.processes import free_port, port_is_open, run, service_env, start, stop, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture()
def service(tmp_path, committed_db, redis_url):
    """``centrala up`` on the run's database: the embedded default (SQLite file and embedded Redis in its own
    var folder) unless the run targets PostgreSQL and a Redis server."""
    embedded = "CENTRALA_TEST_SERVER_DATABASE_URL" not in os.environ
    http_port, smtp_port = free_port(), free_port()
    env = service_env(tmp_path / "var", http_port=http_port, smtp_port=smtp_port, embedded=embedded)
    process = start(["up"], env, tmp_path / "up.log")
    base_url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(lambda: httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200, timeout=60,
                   what="/healthz")
        wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
        token = run(["agents", "create", "--email", "e2e@localhost", "--role", "admin"], env).strip()
        yield {"process": process, "base_url": base_url, "smtp_port": smtp_port, "http_port": http_port,
               "token": token, "log": tmp_path / "up.log"}
    finally:
        if process.poll() is None:
            stop(process, sig=signal.SIGINT)
        print((tmp_path / "up.log").read_text(errors="replace")[-5000:])


def _inbound(ticket_detail: dict) -> list[dict]:
    return [i for i in ticket_detail["interactions"] if i["direction"] == "inbound"]


def _send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("jana@example.cz", ["support@localhost"], raw)


def test_mail_becomes_ticket_reply_threads_new_subject_opens_second_ticket(service):
    api = httpx.Client(base_url=service["base_url"], headers={"Authorization": f"Bearer {service['token']}"})

    sent_at = time.monotonic()
    _send(service["smtp_port"], make_mail(message_id="<e2e-1@example.cz>"))
    tickets = wait_until(lambda: api.get("/api/v1/tickets").json() or None, timeout=2, what="the first ticket")
    assert time.monotonic() - sent_at < 2
    [ticket] = tickets
    assert ticket["subject"] == "Nefunguje mi přihlášení"

    _send(service["smtp_port"], make_mail(subject="Re: Nefunguje mi přihlášení", message_id="<e2e-2@example.cz>",
                                          in_reply_to="<e2e-1@example.cz>", references="<e2e-1@example.cz>"))
    detail = wait_until(
        lambda: (d := api.get(f"/api/v1/tickets/{ticket['id']}").json()) and len(_inbound(d)) == 2 and d,
        timeout=5, what="the reply on the first ticket",
    )
    assert [i["external_id"] for i in _inbound(detail)] == ["e2e-1@example.cz", "e2e-2@example.cz"]
    # The first message was acknowledged (once: the reply to an existing ticket is not).
    assert [i["direction"] for i in detail["interactions"]] == ["inbound", "outbound", "inbound"]

    _send(service["smtp_port"], make_mail(subject="Faktura za listopad", message_id="<e2e-3@example.cz>"))
    tickets = wait_until(lambda: len(t := api.get("/api/v1/tickets").json()) == 2 and t, timeout=5,
                         what="a second ticket")
    assert {t["contact"]["id"] for t in tickets} == {ticket["contact"]["id"]}
    assert len(api.get("/api/v1/tickets").json()) == 2

    contacts = api.get("/api/v1/contacts", params={"email": "JANA@example.cz"}).json()
    assert len(contacts) == 1
    timeline = api.get(f"/api/v1/contacts/{contacts[0]['id']}").json()["timeline"]
    assert len([entry for entry in timeline if entry["direction"] == "inbound"]) == 3


def test_ctrl_c_stops_every_process(service):
    process = service["process"]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert not port_is_open(service["http_port"])
    assert not port_is_open(service["smtp_port"])
