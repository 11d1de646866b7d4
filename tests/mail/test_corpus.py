"""Every message of the real-world corpus becomes a ParsedEmail or is rejected with a reason; none crashes.

The corpus (tests/mail/corpus, copied unchanged from mailgun/flanker and mailgun/talon, Apache-2.0) is broken
MIME, bad encodings, enclosed messages, bounces, complaints and replies as real clients write them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from centrala.core.errors import MessageRejected
from centrala.mail.classify import MailKind
from centrala.mail.parse import ParsedEmail, parse_email

CORPUS = Path(__file__).with_name("corpus")
MESSAGES = sorted(
    [*CORPUS.glob("flanker/*.eml"), *CORPUS.glob("flanker/bounce/*"), *CORPUS.glob("flanker/complaints/*"),
     *CORPUS.glob("flanker/spam/*"), *CORPUS.glob("talon/standard_replies/*.eml")]
)

# The corpus files that end in quarantine, and why. Both lack a From (and any Sender or Reply-To) header.
EXPECTED_REJECTIONS = {
    "flanker/attached-pdf.eml": "no usable sender address in From",
    "flanker/bounce/delayed-broken.eml": "no usable sender address in From",
}


def _name(path: Path) -> str:
    return path.relative_to(CORPUS).as_posix()


def _outcome(path: Path) -> ParsedEmail | MessageRejected:
    try:
        return parse_email(path.read_bytes())
    except MessageRejected as rejection:
        return rejection


def test_corpus_is_complete():
    assert len(MESSAGES) == 53, [_name(p) for p in MESSAGES]


@pytest.mark.parametrize("path", MESSAGES, ids=_name)
def test_corpus_message_parses_or_is_rejected_with_a_reason(path):
    outcome = _outcome(path)  # any other exception fails the test
    if isinstance(outcome, MessageRejected):
        assert EXPECTED_REJECTIONS.get(_name(path)) == str(outcome), f"{_name(path)} rejected: {outcome}"
        return
    assert _name(path) not in EXPECTED_REJECTIONS, f"{_name(path)} now parses"
    assert outcome.from_address and "@" in outcome.from_address
    assert len(outcome.subject) <= 500
    assert isinstance(outcome.text, str) and "\r" not in outcome.text
    if outcome.text.strip():
        assert outcome.visible_text.strip()
    if outcome.html is not None:
        lowered = outcome.html.lower()
        assert "<script" not in lowered and "javascript:" not in lowered and " src=\"http" not in lowered
    for attachment in outcome.attachments:
        assert isinstance(attachment.data, bytes) and attachment.filename
        assert "/" not in attachment.filename and "\\" not in attachment.filename


def test_corpus_rejections_are_exactly_the_known_ones():
    rejected = {
        _name(path): str(outcome)
        for path in MESSAGES
        if isinstance(outcome := _outcome(path), MessageRejected)
    }
    summary = "\n".join(f"  {name}: {reason}" for name, reason in sorted(rejected.items()))
    print(f"\ncorpus: {len(MESSAGES)} messages, {len(rejected)} rejected:\n{summary}")
    assert rejected == EXPECTED_REJECTIONS, summary


def test_huge_encoded_subject_is_decoded_and_truncated():
    parsed = parse_email((CORPUS / "flanker/long-header.eml").read_bytes())
    assert parsed.subject.startswith("Die heiße Zypernsonne quälte Max und Victoria ja böse auf dem Weg")
    assert len(parsed.subject) == 500


def test_enclosed_message_stays_an_attachment_and_out_of_the_body():
    parsed = parse_email((CORPUS / "flanker/enclosed.eml").read_bytes())
    assert parsed.text == "Hello"
    [enclosed] = parsed.attachments
    assert (enclosed.filename, enclosed.content_type) == ("thanks.eml", "message/rfc822")
    inner = parse_email(enclosed.data)
    assert inner.text and inner.text not in parsed.text


def test_legacy_8bit_from_header_is_decoded():
    parsed = parse_email((CORPUS / "flanker/from-encoding.eml").read_bytes())
    assert parsed.from_name == "Ingo Lütkebohle"
    assert any("8-bit header" in defect for defect in parsed.defects)


def test_top_level_file_without_body_is_kept_as_attachment():
    parsed = parse_email((CORPUS / "flanker/outlook-express.eml").read_bytes())
    [attachment] = parsed.attachments
    assert attachment.content_type == "application/octet-stream"
    assert attachment.data.decode("utf-8") == "текстовое вложение"


def test_mislabelled_alternative_prefers_the_first_plain_text():
    parsed = parse_email((CORPUS / "flanker/quoted-printable.eml").read_bytes())
    assert parsed.text.startswith("Hello Bob,")
    assert "<div" not in parsed.text


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("flanker/bounce/zed.eml", MailKind.BOUNCE),
        ("flanker/complaints/aol.eml", MailKind.COMPLAINT),
        ("flanker/from-encoding.eml", MailKind.LIST),  # Majordomo: Precedence: bulk, Sender: owner-…
        ("flanker/disposition-notification.eml", MailKind.AUTO_REPLY),  # a read receipt
        ("flanker/long-links.eml", MailKind.NORMAL),  # a person writing from postmaster@
        ("talon/standard_replies/gmail.eml", MailKind.NORMAL),
    ],
)
def test_parsed_email_carries_its_classification(name, kind):
    assert parse_email((CORPUS / name).read_bytes()).classification.kind == kind
