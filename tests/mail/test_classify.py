"""Auto-replies, bounces, lists and complaints are told from people's mail, with what a bounce reports."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from centrala.mail.classify import MailKind, classify_email
from centrala.mail.parse import parse_email
from tests.support.mails import make_mail

CORPUS = Path(__file__).with_name("corpus")
BOUNCES = sorted(CORPUS.glob("flanker/bounce/*"))


def _message(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def _classify(raw: bytes, mail_from: str | None = None):
    return classify_email(_message(raw), mail_from)


# file -> (permanent, original Message-ID where the file contains it)
EXPECTED_BOUNCES = {
    "broken-mime.eml": (True, None),  # "Delivery failed", the original's headers carry no Message-ID
    "delayed-broken.eml": (False, None),
    "delayed.eml": (False, None),  # Status 4.0.0 (RFC 3463: persistent transient), enclosed message has no id
    "gmail-invalid-address.eml": (True, "CAKsfaBUUGqVZiaMrmH3TRPfq1odQPtM7Ey5YW1SgyJJRHtAjgw@mail.gmail.com"),
    "gmail-no-dns.eml": (True, None),
    "no-mx.eml": (False, "19E44CA63F984902B7D654F8FF40F89D@bo"),  # from its text/rfc822-headers part
    "zed.eml": (True, "20090708054735.GC7578@example.com"),  # from its message/rfc822 part
}


def test_every_corpus_bounce_has_an_expectation():
    assert sorted(path.name for path in BOUNCES) == sorted(EXPECTED_BOUNCES)


@pytest.mark.parametrize("path", BOUNCES, ids=lambda path: path.name)
def test_corpus_bounce_is_recognised_with_permanence_and_original_id(path):
    classification = _classify(path.read_bytes())
    assert classification.kind == MailKind.BOUNCE, classification.reasons
    permanent, original_message_id = EXPECTED_BOUNCES[path.name]
    assert classification.bounce.permanent is permanent
    assert classification.bounce.original_message_id == original_message_id


def test_dsn_recipient_fields_follow_rfc_3464():
    bounce = _classify((CORPUS / "flanker/bounce/zed.eml").read_bytes()).bounce
    [recipient] = bounce.recipients
    assert recipient.address == "asdfasdfasdfasdfasdfasdfewrqertrtyrthsfgdfgadfqeadvxzvz@gmail.com"
    assert (recipient.action, recipient.status, recipient.permanent) == ("failed", "5.1.1", True)
    assert recipient.diagnostic.startswith("smtp; 550-5.1.1 The email account")


def test_delayed_dsn_recipient_is_transient():
    bounce = _classify((CORPUS / "flanker/bounce/no-mx.eml").read_bytes()).bounce
    [recipient] = bounce.recipients
    assert (recipient.address, recipient.action, recipient.status) == ("user@example.com", "delayed", "4.4.4")
    assert recipient.permanent is False


def test_bounce_without_dsn_takes_recipients_from_x_failed_recipients():
    bounce = _classify((CORPUS / "flanker/bounce/gmail-invalid-address.eml").read_bytes()).bounce
    recipients = [(r.address, r.status) for r in bounce.recipients]
    assert recipients == [("awfawfawfawfawfaw@someserverhere.com", "5.1.0")]


def test_bounce_through_parse_email_with_null_envelope_sender():
    parsed = parse_email((CORPUS / "flanker/bounce/zed.eml").read_bytes(), mail_from="")
    assert parsed.classification.kind == MailKind.BOUNCE
    assert parsed.classification.bounce.original_message_id == "20090708054735.GC7578@example.com"


def test_null_envelope_sender_alone_means_bounce():
    raw = make_mail(sender="Mail System <mailer@example.org>", subject="Message not delivered", body="Sorry.")
    assert _classify(raw, mail_from="<>").kind == MailKind.BOUNCE
    assert _classify(raw, mail_from="jana@example.cz").kind == MailKind.NORMAL


def test_arf_complaint_is_a_complaint_with_the_reported_message():
    classification = _classify((CORPUS / "flanker/complaints/aol.eml").read_bytes())
    assert classification.kind == MailKind.COMPLAINT
    assert classification.complaint.feedback_type == "abuse"
    assert classification.complaint.original_message_id == "20101117174130.28884.55421@luna"


AUTO_REPLIES = {
    "exchange_en": {
        "subject": "Automatic reply: Invoice 2026/114",
        "extra_headers": {
            "Auto-Submitted": "auto-replied",
            "X-Auto-Response-Suppress": "All",
            "Thread-Topic": "Invoice 2026/114",
        },
        "body": "I am out of the office until Monday.",
    },
    "gmail_vacation": {
        "subject": "Dovolená",
        "extra_headers": {"Auto-Submitted": "auto-replied", "Precedence": "bulk"},
        "body": "Jsem na dovolené do 3. 12.",
    },
    "exchange_cs": {
        "subject": "Automatická odpověď: Re: Objednávka 1234",
        "extra_headers": {"X-Auto-Response-Suppress": "All"},
        "body": "Dobrý den, do 5. 12. jsem mimo kancelář.",
    },
    "polish_autoresponder": {
        "subject": "Odpowiedź automatyczna: Zamówienie",
        "extra_headers": {"X-Autoreply": "yes"},
        "body": "Jestem na urlopie.",
    },
    "ukrainian_rfc3834": {
        "subject": "Автоматична відповідь: Замовлення",
        "extra_headers": {"Auto-Submitted": "auto-replied; owner-email=olena@example.ua"},
        "body": "Я у відпустці до понеділка.",
    },
    "freshdesk": {"subject": "Ticket received", "extra_headers": {"X-FC-MachineGenerated": "true"}},
    "autorespond_header": {"subject": "Re: Dotaz", "extra_headers": {"X-Autorespond": "Dotaz"}},
    "oof_token": {"subject": "Re: Dotaz", "extra_headers": {"X-Auto-Response-Suppress": "DR, OOF"}},
}


@pytest.mark.parametrize("sample", sorted(AUTO_REPLIES))
def test_out_of_office_samples_are_auto_replies(sample):
    classification = _classify(make_mail(**AUTO_REPLIES[sample]))
    assert classification.kind == MailKind.AUTO_REPLY, classification.reasons
    assert classification.certain and classification.is_automated


@pytest.mark.parametrize(
    "subject",
    ["Out of Office: Re: Faktura", "Automatická odpověď: Re: Faktura", "Odpowiedź automatyczna: Faktura",
     "Автоматична відповідь: Рахунок", "=?utf-8?q?Automatick=C3=A1_odpov=C4=9B=C4=8F=3A_Re=3A_Faktura?="],
)
def test_auto_reply_subject_alone_is_a_weak_signal(subject):
    raw = make_mail(subject="placeholder").replace(b"Subject: placeholder", b"Subject: " + subject.encode())
    classification = _classify(raw)
    assert classification.kind == MailKind.AUTO_REPLY
    assert classification.certain is False


def test_auto_reply_with_null_sender_is_an_auto_reply_not_a_bounce():
    raw = make_mail(subject="Automatic reply: Dotaz", extra_headers={"Auto-Submitted": "auto-replied"})
    assert _classify(raw, mail_from="").kind == MailKind.AUTO_REPLY  # RFC 3834 §3.3 asks for MAIL FROM:<>


@pytest.mark.parametrize(
    "extra_headers",
    [{"Auto-Submitted": "no"}, {"X-Auto-Response-Suppress": "RN, NRN"}, {"X-Autoreply": "no"}],
)
def test_headers_that_do_not_mean_auto_reply(extra_headers):
    assert _classify(make_mail(extra_headers=extra_headers)).kind == MailKind.NORMAL


def test_list_mail_is_list_with_its_id():
    raw = make_mail(
        subject="[uzivatele] Nová verze",
        extra_headers={"List-Id": "Uživatelé <uzivatele.lists.example.cz>",
                       "List-Unsubscribe": "<mailto:uzivatele-leave@lists.example.cz>", "Precedence": "list"},
    )
    classification = _classify(raw)
    assert classification.kind == MailKind.LIST
    assert classification.list_id == "uzivatele.lists.example.cz"


def test_ordinary_mail_is_normal():
    classification = _classify(make_mail())
    assert classification.kind == MailKind.NORMAL and not classification.is_automated
    assert classification.reasons == ()


@pytest.mark.parametrize(
    "path", sorted(CORPUS.glob("talon/standard_replies/*.eml")), ids=lambda path: path.name
)
def test_corpus_replies_are_normal(path):
    assert _classify(path.read_bytes()).kind == MailKind.NORMAL
