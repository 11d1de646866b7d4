"""Outbound mail on the real processes of ``centrala up``: an agent's reply reaches the Maildir ``var/outbox/``
through the worker, and the customer's answer to it threads back by our Message-ID."""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import signal
import smtplib

import httpx
import pytest

from tests.support.mails import make_mail
from tests.support.processes import free_port, port_is_open, run, service_env, start, stop, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture()
def service(tmp_path, committed_db, redis_url):
    embedded = "CENTRALA_TEST_SERVER_DATABASE_URL" not in os.environ
    http_port, smtp_port = free_port(), free_port()
    env = service_env(tmp_path / "var", http_port=http_port, smtp_port=smtp_port, embedded=embedded)
    process = start(["up"], env, tmp_path / "up.log")
    base_url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200,
            timeout=60,
            what="/healthz",
        )
        wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
        token = run(["agents", "create", "--email", "e2e@localhost", "--role", "admin"], env).strip()
        yield {
            "base_url": base_url,
            "smtp_port": smtp_port,
            "token": token,
            "outbox": tmp_path / "var" / "outbox",
        }
    finally:
        if process.poll() is None:
            stop(process, sig=signal.SIGINT)
        print((tmp_path / "up.log").read_text(errors="replace")[-5000:])


def _send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("jana@example.cz", ["support@localhost"], raw)


def test_reply_reaches_the_outbox_and_the_answer_threads_back(service):
    api = httpx.Client(base_url=service["base_url"], headers={"Authorization": f"Bearer {service['token']}"})
    _send(service["smtp_port"], make_mail(message_id="<e2e-out-1@example.cz>"))
    [ticket] = wait_until(lambda: api.get("/api/v1/tickets").json() or None, timeout=5, what="the ticket")

    response = api.post(f"/api/v1/tickets/{ticket['id']}/replies", json={"text": "Zkuste to prosím znovu."})
    assert response.status_code == 201
    assert response.json()["delivery_state"] == "queued"

    def delivered():
        detail = api.get(f"/api/v1/tickets/{ticket['id']}").json()
        return detail["interactions"][-1]["delivery_state"] == "sent" and detail

    wait_until(delivered, timeout=10, what="the reply to be sent")
    maildir = mailbox.Maildir(service["outbox"], create=False)
    sent = [email.message_from_bytes(maildir.get_bytes(key), policy=email.policy.default) for key in maildir.keys()]
    # The acknowledgement of the new ticket and the agent's reply.
    assert sorted(m["Auto-Submitted"] or "no" for m in sent) == ["auto-replied", "no"]
    [ours] = [m for m in sent if m["Auto-Submitted"] is None]
    assert ours["In-Reply-To"] == "<e2e-out-1@example.cz>"
    assert ours["Subject"] == f"Re: Nefunguje mi přihlášení [#{ticket['number']}]"

    _send(
        service["smtp_port"],
        make_mail(
            subject="Díky, funguje to",
            message_id="<e2e-out-2@example.cz>",
            in_reply_to=ours["Message-ID"],
            references=f"<e2e-out-1@example.cz> {ours['Message-ID']}",
        ),
    )
    detail = wait_until(
        lambda: (
            (d := api.get(f"/api/v1/tickets/{ticket['id']}").json()) and len(d["interactions"]) == 4 and d
        ),
        timeout=5,
        what="the customer's answer on the ticket",
    )
    assert detail["interactions"][-1]["external_id"] == "e2e-out-2@example.cz"
    assert detail["interactions"][-1]["thread_reason"] == "signed-reference"
    assert len(api.get("/api/v1/tickets").json()) == 1
