"""A rep's own mail on the real processes of ``centrala up`` with a real Dovecot: the rep answers a customer from
their mail program, BCCs the log address, and the Sent folder is synced too. The answer is one entry on the
customer's ticket, by the rep, nobody gets mail from it, and the rep's Sent folder is left as it was."""

from __future__ import annotations

import json
import mailbox
import os
import signal
import smtplib
from datetime import UTC, datetime

import httpx
import pytest

from tests.support.mails import make_mail
from tests.support.processes import free_port, port_is_open, run, service_env, start, stop, wait_until

pytestmark = pytest.mark.e2e

REP = "petra@localhost"


def wire(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def sent_folder(dovecot) -> dict[int, tuple[bytes, ...]]:
    with dovecot.client() as client:
        client.select_folder("Sent", readonly=True)
        return {uid: tuple(sorted(flags)) for uid, flags in client.get_flags(client.search(["ALL"])).items()}


@pytest.fixture()
def service(tmp_path, dovecot, committed_db, redis_url):
    """``centrala up`` with a log address and Petra's Sent folder configured, already holding older mail."""
    with dovecot.client() as client:
        client.create_folder("Sent")
        client.append("Sent", wire(make_mail(sender=REP, to="jana@example.cz", message_id="<old@localhost>")))
    embedded = "CENTRALA_TEST_SERVER_DATABASE_URL" not in os.environ
    http_port, smtp_port = free_port(), free_port()
    sources = [{"name": "petra-sent", "url": dovecot.url("Sent"), "kind": "sent"}]
    env = service_env(
        tmp_path / "var",
        http_port=http_port,
        smtp_port=smtp_port,
        embedded=embedded,
        CENTRALA_LOG_MAILBOXES="log@localhost",
        CENTRALA_IMAP_MAILBOXES=json.dumps(sources),
    )
    log = tmp_path / "up.log"
    process = start(["up"], env, log)
    base_url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200, timeout=60, what="/healthz"
        )
        wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
        wait_until(
            lambda: "petra-sent: first pass" in log.read_text(errors="replace"),
            timeout=30,
            what="the first pass over the Sent folder",
        )
        token = run(["agents", "create", "--email", "admin@localhost", "--role", "admin"], env).strip()
        run(["agents", "create", "--email", REP, "--name", "Petra Malá"], env)
        yield {
            "base_url": base_url,
            "smtp_port": smtp_port,
            "token": token,
            "env": env,
            "outbox": tmp_path / "var" / "outbox",
        }
    finally:
        if process.poll() is None:
            stop(process, sig=signal.SIGINT)
        print(log.read_text(errors="replace")[-5000:])


def _send(port: int, sender: str, recipient: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, [recipient], raw)


def _delivered(outbox) -> list[bytes]:
    if not outbox.exists():
        return []
    maildir = mailbox.Maildir(outbox, create=False)
    return [maildir.get_bytes(key) for key in maildir.keys()]


def test_a_reply_from_the_reps_mail_program_is_one_entry_by_the_rep_and_mails_nobody(service, dovecot):
    api = httpx.Client(base_url=service["base_url"], headers={"Authorization": f"Bearer {service['token']}"})
    _send(service["smtp_port"], "jana@example.cz", "support@localhost", make_mail(message_id="<q1@example.cz>"))
    [ticket] = wait_until(lambda: api.get("/api/v1/tickets").json() or None, timeout=10, what="the ticket")
    wait_until(lambda: len(_delivered(service["outbox"])) == 1, timeout=10, what="the acknowledgement")

    # Petra answers in her own mail program with a BCC to the log address; it keeps a copy in Sent.
    reply = make_mail(
        sender=f"Petra Malá <{REP}>",
        to="Jana Nováková <jana@example.cz>",
        subject="Re: Nefunguje mi přihlášení",
        body="Dobrý den,\nheslo jsme Vám obnovili.\nPetra",
        message_id="<petra-1@localhost>",
        in_reply_to="<q1@example.cz>",
        references="<q1@example.cz>",
        date=datetime.now(UTC),
    )
    with dovecot.client() as client:
        client.append("Sent", wire(make_mail_with_bcc(reply, "log@localhost")))
    before = sent_folder(dovecot)
    _send(service["smtp_port"], REP, "log@localhost", reply)

    def both_copies_processed() -> dict | None:
        counts = json.loads(run(["mail", "ledger", "--json"], service["env"]))
        return counts if counts["received"] == 0 and counts["processed"] == 3 else None

    counts = wait_until(both_copies_processed, timeout=30, interval=0.5, what="both copies processed")
    assert counts["quarantined"] == 0

    detail = api.get(f"/api/v1/tickets/{ticket['id']}").json()
    answers = [i for i in detail["interactions"] if i["external_id"] == "petra-1@localhost"]
    assert len(answers) == 1
    [answer] = answers
    assert (answer["direction"], answer["author_address"], answer["delivery_state"]) == ("outbound", REP, None)
    assert answer["agent_id"] is not None
    assert detail["status"] == "pending"
    assert len(detail["interactions"]) == 3  # the question, our acknowledgement, Petra's answer
    assert len(api.get("/api/v1/tickets").json()) == 1  # the older mail in Sent was left out
    assert len(_delivered(service["outbox"])) == 1  # nobody was mailed because of Petra's answer
    assert sent_folder(dovecot) == before


def make_mail_with_bcc(raw: bytes, bcc: str) -> bytes:
    """``raw`` as a mail program keeps it in Sent: with the Bcc header it left out of what it sent."""
    return f"Bcc: {bcc}\r\n".encode() + raw
