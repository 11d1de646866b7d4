"""Mail transports: the SMTP relay against a real SMTP server, the Maildir, and the choice between them."""

from __future__ import annotations

import email
import email.policy
import mailbox
import ssl
import time
from datetime import UTC, datetime

import pytest

from centrala.core.errors import PermanentDeliveryError, TransientDeliveryError
from centrala.core.settings import Settings, get_settings
from centrala.mail.compose import MailAddress, compose_email
from centrala.mail.send import MaildirTransport, SmtpRelayTransport, transport_from_settings
from tests.support.smtp_sink import free_port, running_sink, self_signed_certificate

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def raw_message(message_id: str = "c.1.abc.def@localhost") -> bytes:
    return compose_email(
        sender=MailAddress("support@localhost", "Support"),
        to=[MailAddress("jana@example.cz", "Jana Nováková")],
        subject="Re: Nefunguje mi přihlášení [#T-1001]",
        message_id=message_id,
        date=NOW,
        text="Dobrý den,\n.\nřádek s tečkou výše.",
    ).as_bytes()


@pytest.fixture()
def sink():
    with running_sink() as server:
        yield server


# --- SMTP relay ---------------------------------------------------------------------------------------------


def test_relay_delivers_the_exact_bytes_with_our_envelope(sink):
    raw = raw_message()
    SmtpRelayTransport(sink.url()).send(raw=raw, mail_from="support@localhost", rcpt_tos=["jana@example.cz"])

    [received] = sink.handler.received
    assert received.mail_from == "support@localhost"
    assert received.rcpt_tos == ["jana@example.cz"]
    assert received.data.rstrip(b"\r\n") == raw.rstrip(b"\r\n")
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["Message-ID"] == "<c.1.abc.def@localhost>"
    assert ".\nřádek" in parsed.get_content().replace("\r\n", "\n")


def test_relay_sends_the_null_sender_as_empty_reverse_path(sink):
    SmtpRelayTransport(sink.url()).send(raw=raw_message(), mail_from="", rcpt_tos=["jana@example.cz"])
    assert sink.handler.received[0].mail_from in ("", "<>")  # aiosmtpd reports MAIL FROM:<> as "<>"


@pytest.mark.parametrize(
    ("where", "reply", "error_class", "code"),
    [
        ("rcpt", "451 4.3.0 Try again later", TransientDeliveryError, 451),
        ("rcpt", "450 4.2.1 Mailbox busy", TransientDeliveryError, 450),
        ("rcpt", "550 5.1.1 No such user", PermanentDeliveryError, 550),
        ("data", "452 4.3.1 Insufficient storage", TransientDeliveryError, 452),
        ("data", "554 5.7.1 Rejected as spam", PermanentDeliveryError, 554),
    ],
)
def test_relay_replies_map_to_transient_or_permanent(sink, where, reply, error_class, code):
    setattr(sink.handler, f"{where}_reply", reply)
    with pytest.raises(error_class) as raised:
        SmtpRelayTransport(sink.url()).send(
            raw=raw_message(), mail_from="support@localhost", rcpt_tos=["a@b.cz"]
        )
    assert raised.value.smtp_code == code
    assert reply.split(" ", 1)[1] in str(raised.value)
    assert sink.handler.received == []


def test_relay_connection_carries_several_messages(sink):
    """A burst of mail (the acknowledgements of a busy hour) goes over one connection, not one each."""
    with SmtpRelayTransport(sink.url()).connection() as relay:
        for number in range(3):
            relay.send(
                raw=raw_message(f"c.{number}@localhost"), mail_from="support@localhost", rcpt_tos=["a@b.cz"]
            )

    received = sink.handler.received
    assert [parse(mail)["Message-ID"] for mail in received] == [f"<c.{n}@localhost>" for n in range(3)]
    assert len({mail.peer for mail in received}) == 1


def test_relay_connection_after_a_421_opens_a_new_one_for_the_next_message(sink):
    with SmtpRelayTransport(sink.url()).connection() as relay:
        relay.send(raw=raw_message("c.1@localhost"), mail_from="support@localhost", rcpt_tos=["a@b.cz"])
        sink.handler.data_reply = "421 4.3.2 Closing for maintenance"
        with pytest.raises(TransientDeliveryError):
            relay.send(raw=raw_message("c.2@localhost"), mail_from="support@localhost", rcpt_tos=["a@b.cz"])
        sink.handler.data_reply = None
        relay.send(raw=raw_message("c.3@localhost"), mail_from="support@localhost", rcpt_tos=["a@b.cz"])

    first, third = sink.handler.received
    assert [parse(first)["Message-ID"], parse(third)["Message-ID"]] == ["<c.1@localhost>", "<c.3@localhost>"]
    assert first.peer != third.peer


def test_relay_connection_closed_by_the_relay_while_idle_is_opened_again():
    """Relays close idle connections; the next message must go out on a new one, once, not fail."""
    with running_sink(idle_timeout=0.3) as sink, SmtpRelayTransport(sink.url()).connection() as relay:
        relay.send(raw=raw_message("c.1@localhost"), mail_from="support@localhost", rcpt_tos=["a@b.cz"])
        time.sleep(1.0)
        relay.send(raw=raw_message("c.2@localhost"), mail_from="support@localhost", rcpt_tos=["a@b.cz"])
        received = list(sink.handler.received)

    assert [parse(mail)["Message-ID"] for mail in received] == ["<c.1@localhost>", "<c.2@localhost>"]
    assert received[0].peer != received[1].peer


def parse(mail) -> email.message.EmailMessage:
    return email.message_from_bytes(mail.data, policy=email.policy.default)


def test_relay_that_is_not_listening_is_a_transient_failure():
    transport = SmtpRelayTransport(f"smtp://127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(TransientDeliveryError):
        transport.send(raw=raw_message(), mail_from="support@localhost", rcpt_tos=["jana@example.cz"])


def test_relay_logs_in_with_percent_encoded_credentials():
    with running_sink(credentials=("mailer", "p@ss/word")) as sink:
        transport = SmtpRelayTransport(sink.url(credentials="mailer:p%40ss%2Fword"))
        transport.send(raw=raw_message(), mail_from="support@localhost", rcpt_tos=["jana@example.cz"])
        assert sink.handler.received[0].login == "mailer"
        assert "p@ss" not in repr(transport)


def test_relay_refusing_our_login_keeps_the_message_for_later():
    with running_sink(credentials=("mailer", "right")) as sink:
        transport = SmtpRelayTransport(sink.url(credentials="mailer:wrong"))
        with pytest.raises(TransientDeliveryError) as raised:
            transport.send(raw=raw_message(), mail_from="support@localhost", rcpt_tos=["jana@example.cz"])
        assert raised.value.smtp_code == 535
        assert "wrong" not in str(raised.value)


@pytest.fixture()
def certificate(tmp_path):
    made = self_signed_certificate(tmp_path)
    if made is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    return made


def _contexts(certificate) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


def test_relay_upgrades_with_starttls_before_logging_in(certificate):
    server_context, client_context = _contexts(certificate)
    with running_sink(credentials=("mailer", "secret"), starttls_context=server_context) as sink:
        transport = SmtpRelayTransport(
            sink.url(credentials="mailer:secret", query="starttls=1"), ssl_context=client_context
        )
        transport.send(raw=raw_message(), mail_from="support@localhost", rcpt_tos=["jana@example.cz"])
        assert sink.handler.received[0].login == "mailer"


def test_relay_with_implicit_tls(certificate):
    server_context, client_context = _contexts(certificate)
    with running_sink(implicit_tls_context=server_context) as sink:
        SmtpRelayTransport(sink.url("smtps"), ssl_context=client_context).send(
            raw=raw_message(), mail_from="support@localhost", rcpt_tos=["jana@example.cz"]
        )
        assert len(sink.handler.received) == 1


def test_relay_with_an_untrusted_certificate_is_a_transient_failure(certificate):
    server_context, _client_context = _contexts(certificate)
    with running_sink(implicit_tls_context=server_context) as sink, pytest.raises(TransientDeliveryError):
        SmtpRelayTransport(sink.url("smtps"), timeout=5).send(
            raw=raw_message(), mail_from="support@localhost", rcpt_tos=["jana@example.cz"]
        )


@pytest.mark.parametrize(
    ("mail_from", "rcpt_tos"),
    [
        ("support@localhost", ["jana@example.cz\r\nRCPT TO:<victim@example.org>"]),
        ("support@localhost\r\nRSET", ["jana@example.cz"]),
        ("support@localhost", []),
    ],
)
def test_relay_refuses_an_envelope_that_would_smuggle_commands(sink, mail_from, rcpt_tos):
    with pytest.raises(PermanentDeliveryError):
        SmtpRelayTransport(sink.url()).send(raw=raw_message(), mail_from=mail_from, rcpt_tos=rcpt_tos)
    assert sink.handler.received == []


@pytest.mark.parametrize(
    ("url", "host", "port", "implicit_tls", "starttls"),
    [
        ("smtp://relay.example.com", "relay.example.com", 25, False, False),
        ("smtp://u:p@relay.example.com:587?starttls=1", "relay.example.com", 587, False, True),
        ("smtps://relay.example.com", "relay.example.com", 465, True, False),
    ],
)
def test_relay_url_is_read(url, host, port, implicit_tls, starttls):
    transport = SmtpRelayTransport(url)
    assert (transport.host, transport.port, transport.implicit_tls, transport.starttls) == (
        host,
        port,
        implicit_tls,
        starttls,
    )


# --- Maildir and the choice ---------------------------------------------------------------------------------


def test_maildir_keeps_each_message_with_its_envelope(tmp_path):
    transport = MaildirTransport(tmp_path / "outbox")
    transport.send(
        raw=raw_message(), mail_from="support@localhost", rcpt_tos=["jana@example.cz", "b@example.cz"]
    )

    maildir = mailbox.Maildir(tmp_path / "outbox", create=False)
    [key] = list(maildir.keys())
    assert (tmp_path / "outbox" / "new" / key).exists()
    parsed = email.message_from_bytes(maildir.get_bytes(key), policy=email.policy.default)
    assert parsed["Return-Path"] == "<support@localhost>"
    assert parsed.get_all("Delivered-To") == ["jana@example.cz", "b@example.cz"]
    assert parsed["Message-ID"] == "<c.1.abc.def@localhost>"


def test_settings_choose_the_maildir_by_default_and_the_relay_when_configured():
    settings = get_settings()
    assert isinstance(
        transport_from_settings(settings.model_copy(update={"smtp_relay_url": None})), MaildirTransport
    )
    relay = transport_from_settings(
        settings.model_copy(update={"smtp_relay_url": "smtp://u:secret@relay.example.com:587?starttls=1"})
    )
    assert isinstance(relay, SmtpRelayTransport)
    assert relay.port == 587


def test_relay_url_password_is_masked_in_the_printed_configuration(monkeypatch):
    monkeypatch.setenv("CENTRALA_SMTP_RELAY_URL", "smtp://mailer:s3cret@relay.example.com:587?starttls=1")
    shown = Settings().masked()
    assert shown["smtp_relay_url"] == "smtp://mailer:********@relay.example.com:587?starttls=1"


@pytest.mark.parametrize("url", ["http://relay.example.com", "smtp://", "relay.example.com:25"])
def test_settings_refuse_a_relay_url_that_is_not_smtp(monkeypatch, url):
    monkeypatch.setenv("CENTRALA_SMTP_RELAY_URL", url)
    with pytest.raises(ValueError):
        Settings()
