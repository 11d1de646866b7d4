"""Settings: IMAP sources from the environment, their defaults, their validation and their masking."""

from __future__ import annotations

import json
from datetime import date

import pytest
from pydantic import ValidationError

from centrala.core.errors import ConfigurationError
from centrala.core.settings import ImapSource, Settings


def settings_with(monkeypatch: pytest.MonkeyPatch, sources: list[dict[str, str]], **env: str) -> Settings:
    monkeypatch.setenv("CENTRALA_IMAP_MAILBOXES", json.dumps(sources))
    for name, value in env.items():
        monkeypatch.setenv(f"CENTRALA_{name.upper()}", value)
    return Settings(_env_file=None)


def test_imap_sources_are_read_from_json_with_their_parts_and_defaults(monkeypatch):
    settings = settings_with(
        monkeypatch,
        [
            {"name": "support", "url": "imaps://jana%40example.cz:p%40ss@imap.example.cz/INBOX"},
            {
                "name": "sales",
                "url": "imap://sales:pw@mail.example.cz:1143/Sales%20In?starttls=1",
                "mailbox": "Sales@Example.cz",
                "after_import": "move:Done",
            },
        ],
        mailboxes="support@example.cz,sales@example.cz",
    )

    support, sales = settings.imap_mailboxes
    assert (support.host, support.port) == ("imap.example.cz", 993)
    assert (support.use_tls, support.starttls) == (True, False)
    assert (support.username, support.password, support.folder) == ("jana@example.cz", "p@ss", "INBOX")
    assert (support.mailbox, support.after_import, support.move_to) == ("support@example.cz", "seen", None)
    assert (sales.host, sales.port, sales.use_tls, sales.starttls) == ("mail.example.cz", 1143, False, True)
    assert (sales.folder, sales.mailbox, sales.move_to) == ("Sales In", "sales@example.cz", "Done")
    assert settings.imap_idle_renew_seconds == 29 * 60
    assert settings.imap_poll_seconds == 60


def test_no_imap_sources_by_default(monkeypatch):
    monkeypatch.delenv("CENTRALA_IMAP_MAILBOXES", raising=False)
    assert Settings(_env_file=None).imap_mailboxes == []


def test_imap_passwords_are_masked_and_kept_out_of_repr(monkeypatch):
    source = {"name": "support", "url": "imaps://agent:hunter2@imap.example.cz/INBOX"}
    settings = settings_with(monkeypatch, [source])

    shown = json.dumps(settings.masked())

    assert "hunter2" not in shown
    assert "imaps://agent:********@imap.example.cz/INBOX" in shown
    assert "hunter2" not in repr(settings.imap_mailboxes)


@pytest.mark.parametrize(
    "source",
    [
        {"name": "support", "url": "pop3://agent:pw@host/INBOX"},
        {"name": "support", "url": "imaps://host/INBOX"},
        {"name": "support", "url": "imaps://agent@host/INBOX"},
        {"name": "support", "url": "imaps://agent:pw@host/INBOX?starttls=1"},
        {"name": "support", "url": "imap://agent:pw@host/INBOX?verify=0"},
        {"name": "support", "url": "imap://agent:pw@host:99999/INBOX"},
        {"name": "support", "url": "imap://agent:pw@host/INBOX", "after_import": "delete"},
        {"name": "support", "url": "imap://agent:pw@host/INBOX", "after_import": "move:"},
        {"name": "support", "url": "imap://agent:pw@host/INBOX", "mailbox": "not-an-address"},
        {"name": "sup port", "url": "imap://agent:pw@host/INBOX"},
    ],
)
def test_invalid_imap_sources_are_refused(source):
    with pytest.raises(ValidationError):
        ImapSource(**source)


def test_an_invalid_imap_source_url_is_refused_without_echoing_its_password(monkeypatch):
    source = {"name": "support", "url": "imap://agent:hunter2@host/INBOX?verify=0"}

    with pytest.raises(ValidationError, match="starttls") as refused:
        settings_with(monkeypatch, [source])
    with pytest.raises(ValidationError) as refused_alone:
        ImapSource(**source)

    assert "hunter2" not in str(refused.value) and "hunter2" not in str(refused_alone.value)


def test_a_sent_folder_is_only_read_and_starts_with_mail_sent_from_now_on(monkeypatch):
    settings = settings_with(
        monkeypatch,
        [
            {"name": "support", "url": "imaps://support:pw@imap.example.cz/INBOX"},
            {"name": "jana-sent", "url": "imaps://jana:hunter2@imap.example.cz/Sent%20Items", "kind": "sent"},
            {
                "name": "petr-sent",
                "url": "imaps://petr:pw@imap.example.cz/Sent",
                "kind": "sent",
                "start": "2026-11-01",
                "mailbox": "sales@example.cz",
            },
        ],
    )

    support, jana, petr = settings.imap_mailboxes
    assert (support.kind, support.after_import, support.start, support.is_sent_folder) == (
        "inbox", "seen", "all", False
    )
    assert (jana.kind, jana.after_import, jana.start, jana.is_sent_folder) == ("sent", "none", "now", True)
    assert (jana.folder, jana.mailbox, jana.start_date) == ("Sent Items", settings.mailboxes[0], None)
    assert (petr.start_date, petr.mailbox) == (date(2026, 11, 1), "sales@example.cz")
    shown = json.dumps(settings.masked())
    assert "hunter2" not in shown and "imaps://jana:********@imap.example.cz/Sent%20Items" in shown


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"after_import": "move:Archive"}, "Sent folder .* only reads: after_import must be 'none'"),
        ({"after_import": "seen"}, "Sent folder .* only reads: after_import must be 'none'"),
        ({"url": "imaps://jana:hunter2@imap.example.cz"}, "name the folder in the url"),
        ({"url": "imaps://jana:hunter2@imap.example.cz/"}, "name the folder in the url"),
        ({"start": "yesterday"}, "start is 'all', 'now' or a date YYYY-MM-DD"),
        ({"start": "2026-02-30"}, "start is 'all', 'now' or a date YYYY-MM-DD"),
        ({"start": "20261101"}, "start is 'all', 'now' or a date YYYY-MM-DD"),
        ({"kind": "outbox"}, "'inbox' or 'sent'"),
    ],
)
def test_a_sent_folder_misconfigured_is_refused_with_a_clear_reason(monkeypatch, source, message):
    sent = {"name": "jana-sent", "url": "imaps://jana:hunter2@imap.example.cz/Sent", "kind": "sent", **source}

    with pytest.raises(ValidationError, match=message) as refused:
        settings_with(monkeypatch, [sent])

    assert "hunter2" not in str(refused.value)


def test_an_inbox_may_start_with_mail_arriving_from_now_on(monkeypatch):
    [source] = settings_with(
        monkeypatch, [{"name": "support", "url": "imaps://s:pw@imap.example.cz/INBOX", "start": "now"}]
    ).imap_mailboxes
    assert (source.kind, source.start, source.after_import) == ("inbox", "now", "seen")


def test_imap_source_names_are_unique(monkeypatch):
    source = {"name": "support", "url": "imaps://agent:pw@host/INBOX"}
    with pytest.raises(ValidationError, match="unique"):
        settings_with(monkeypatch, [source, source])


def test_production_refuses_a_password_in_clear_text_to_a_remote_server(monkeypatch):
    production = {
        "environment": "production",
        "secret_key": "x" * 40,
        "database_url": "postgresql+psycopg://db/centrala",
        "redis_url": "redis://redis:6379/0",
    }
    with pytest.raises(ConfigurationError, match="clear text"):
        settings_with(monkeypatch, [{"name": "support", "url": "imap://agent:pw@imap.example.cz/"}],
                      **production)

    for url in ("imaps://agent:pw@imap.example.cz/", "imap://agent:pw@imap.example.cz/?starttls=1",
                "imap://agent:pw@127.0.0.1:1143/"):
        settings_with(monkeypatch, [{"name": "support", "url": url}], **production)
