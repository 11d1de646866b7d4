"""Parsing raw MIME into what the ticket system needs."""

import base64
from email.message import EmailMessage

import pytest

from centrala.core.errors import MessageRejected
from centrala.mail.parse import ParseLimits, parse_email
from tests.support.mails import make_mail


def test_plain_message_yields_sender_subject_ids_and_text():
    parsed = parse_email(
        make_mail(in_reply_to="<a@x>", references="<root@x> <a@x>", message_id="<m1@example.cz>")
    )
    assert parsed.from_address == "jana@example.cz"
    assert parsed.from_name == "Jana Nováková"
    assert parsed.subject == "Nefunguje mi přihlášení"
    assert parsed.message_id == "m1@example.cz"
    assert parsed.referenced_ids == ["a@x", "root@x"]
    assert "nemohu se přihlásit" in parsed.text


def test_legacy_charset_body_is_decoded():
    raw = (
        "From: Petr <petr@example.cz>\r\nTo: support@localhost\r\nSubject: =?iso-8859-2?q?P=F8=EDloha?=\r\n"
        "Message-ID: <legacy@example.cz>\r\nContent-Type: text/plain; charset=iso-8859-2\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode("ascii") + "Žluťoučký kůň úpěl ďábelské ódy.\r\n".encode("iso-8859-2")
    parsed = parse_email(raw)
    assert parsed.subject == "Příloha"
    assert parsed.text == "Žluťoučký kůň úpěl ďábelské ódy."


def test_unknown_charset_falls_back_and_records_defect():
    raw = (
        b"From: a@example.org\r\nTo: support@localhost\r\nSubject: x\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nhello world\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.text == "hello world"
    assert any("LookupError" in defect for defect in parsed.defects)


def test_html_only_message_gets_text_and_sanitised_html():
    raw = (
        b"From: a@example.org\r\nTo: support@localhost\r\nSubject: x\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>Hello <b>there</b></p><script>alert(1)</script><p onclick='x()'>Second</p>\r\n"
    )
    parsed = parse_email(raw)
    assert "script" not in parsed.html and "onclick" not in parsed.html
    assert parsed.text.splitlines()[0] == "Hello there"
    assert "Second" in parsed.text


def test_attachments_are_returned_with_their_bytes():
    parsed = parse_email(make_mail(attachments=[("faktura.pdf", "application/pdf", b"%PDF-1.4 data")]))
    assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == [
        ("faktura.pdf", "application/pdf", b"%PDF-1.4 data")
    ]


@pytest.mark.parametrize(
    "from_header",
    [
        "",  # no From at all
        "undisclosed",
        "alice@example.org)<bob@example.org>",  # CVE-2023-27043: refuse rather than guess the author
        "a@example.org, b@example.org",
    ],
)
def test_message_without_one_clear_sender_is_rejected(from_header):
    raw = (f"From: {from_header}\r\n" if from_header else "").encode() + (
        b"To: support@localhost\r\nSubject: x\r\n\r\nbody\r\n"
    )
    with pytest.raises(MessageRejected):
        parse_email(raw)


# --- charsets --------------------------------------------------------------------------------------------

CZECH = "Příliš žluťoučký kůň úpěl ďábelské ódy. Šťastný Žluťásek."
POLISH = "Zażółć gęślą jaźń. Świętokrzyskie źródła."
UKRAINIAN = "Привіт! Будь ласка, надішліть рахунок за листопад. Дякую, Олена."


def _plain_mail(body: bytes, content_type: str = "text/plain", headers: str = "") -> bytes:
    return (
        f"From: a@example.org\r\nTo: support@localhost\r\nSubject: x\r\n{headers}"
        f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize(
    ("text", "encoding", "declared"),
    [
        (CZECH, "windows-1250", "windows-1250"),
        (CZECH, "windows-1250", None),  # undeclared 8-bit
        (CZECH, "windows-1250", "iso-8859-1"),  # mislabelled: š and ž are C1 controls in Latin-1
        (CZECH, "iso-8859-2", "utf-8"),  # mislabelled: not UTF-8
        (POLISH, "iso-8859-2", "x-unknown"),
        (POLISH, "windows-1250", None),
        (UKRAINIAN, "koi8-u", None),
        (UKRAINIAN, "windows-1251", "us-ascii"),
    ],
)
def test_8bit_legacy_body_is_decoded(text, encoding, declared):
    content_type = f"text/plain; charset={declared}" if declared else "text/plain"
    parsed = parse_email(_plain_mail(text.encode(encoding), content_type))
    assert parsed.text == text
    if declared != encoding:
        assert any(encoding in defect for defect in parsed.defects), parsed.defects


def test_utf8_with_a_broken_byte_stays_utf8():
    parsed = parse_email(_plain_mail("Děkuji ".encode() + b"\xff" + " za odpověď".encode(), "text/plain"))
    assert parsed.text == "Děkuji \ufffd za odpověď"


def test_html_charset_from_meta_when_mime_has_none():
    html = f'<html><head><meta charset="windows-1250"></head><body><p>{CZECH}</p></body></html>'
    parsed = parse_email(_plain_mail(html.encode("windows-1250"), "text/html"))
    assert parsed.text == CZECH


def test_format_flowed_is_unflowed():
    body = b"Dobry den, toto je dlouhy \r\nodstavec.\r\n> citace \r\n> pokracuje\r\n-- \r\nJana\r\n"
    parsed = parse_email(_plain_mail(body, "text/plain; charset=us-ascii; format=flowed"))
    assert parsed.text == "Dobry den, toto je dlouhy odstavec.\n> citace pokracuje\n-- \nJana"


# --- header encodings ------------------------------------------------------------------------------------


def test_rfc2047_display_name_and_subject_split_inside_a_character():
    word = "žluťoučký".encode()
    halves = [base64.b64encode(word[:3]).decode(), base64.b64encode(word[3:]).decode()]  # splits "ť"
    raw = (
        "From: =?iso-8859-2?q?Ji=F8=ED_Nov=E1k?= <jiri@example.cz>\r\nTo: support@localhost\r\n"
        f"Subject: =?utf-8?b?{halves[0]}?= =?utf-8?b?{halves[1]}?= =?x-unknown?q?k=C5=AF=C5=88?=\r\n\r\nx\r\n"
    ).encode()
    parsed = parse_email(raw)
    assert parsed.from_name == "Jiří Novák"
    assert parsed.subject == "žluťoučkýkůň"


def test_raw_8bit_legacy_headers_are_decoded():
    raw = "From: Jiří Novák <jiri@example.cz>\r\nTo: support@localhost\r\nSubject: Žluťoučký kůň\r\n\r\nx\r\n"
    parsed = parse_email(raw.encode("windows-1250"))
    assert (parsed.from_name, parsed.subject) == ("Jiří Novák", "Žluťoučký kůň")
    assert any("8-bit header" in defect for defect in parsed.defects)


def _mail_with_part(part_headers: bytes, body: bytes = b"%PDF-1.4") -> bytes:
    return (
        b'From: a@example.org\r\nTo: support@localhost\r\nSubject: x\r\nMIME-Version: 1.0\r\n'
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nV priloze.\r\n"
        b"--b\r\n" + part_headers + b"\r\n\r\n" + body + b"\r\n--b--\r\n"
    )


PDF = b"Content-Type: application/pdf\r\n"
ATTACHMENT = PDF + b"Content-Disposition: attachment; "
NAME_UTF8 = "žluťoučký.pdf".encode()
NAME_B64 = b"=?utf-8?B?xb5sdcWlb3XEjWvDvS5wZGY=?="


@pytest.mark.parametrize(
    "part_headers",
    [
        ATTACHMENT + b"filename*=utf-8''%C5%BElu%C5%A5ou%C4%8Dk%C3%BD.pdf",
        ATTACHMENT + b"filename*=iso-8859-2'cs'%BElu%BBou%E8k%FD.pdf",
        ATTACHMENT + b"filename*0*=utf-8''%C5%BElu; filename*1*=%C5%A5ou%C4%8Dk%C3%BD; filename*2=\".pdf\"",
        ATTACHMENT + b'filename="' + NAME_B64 + b'"',
        ATTACHMENT + b"filename=" + NAME_B64,
        b'Content-Type: application/pdf; name="' + NAME_B64 + b'"',
        ATTACHMENT + b'filename="' + NAME_UTF8 + b'"',
        ATTACHMENT + b'filename="' + "žluťoučký.pdf".encode("iso-8859-2") + b'"',
        ATTACHMENT + b'filename="..\\\\..\\\\tmp/' + NAME_UTF8 + b'"',
    ],
    ids=[
        "rfc2231", "rfc2231-latin2", "rfc2231-continued", "rfc2047-quoted", "rfc2047-bare", "ctype-name",
        "raw-utf8", "raw-latin2", "path",
    ],
)
def test_attachment_filename_is_decoded_and_safe(part_headers):
    [attachment] = parse_email(_mail_with_part(part_headers)).attachments
    assert (attachment.filename, attachment.data) == ("žluťoučký.pdf", b"%PDF-1.4")


# --- body and attachments --------------------------------------------------------------------------------


def test_alternative_keeps_plain_text_and_html():
    parsed = parse_email(make_mail(body="Dobrý den", html="<p>Dobrý <b>den</b></p>"))
    assert parsed.text == "Dobrý den"
    assert parsed.html == "<p>Dobrý <b>den</b></p>\n"


def test_winmail_dat_is_kept_as_an_attachment():
    tnef = b"\x78\x9f\x3e\x22" + bytes(range(256))
    parsed = parse_email(make_mail(attachments=[("winmail.dat", "application/ms-tnef", tnef)]))
    assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == [
        ("winmail.dat", "application/ms-tnef", tnef)
    ]


def test_enclosed_message_is_an_eml_attachment_and_not_part_of_the_body():
    inner = EmailMessage()
    inner["From"] = "petr@example.cz"
    inner["Subject"] = "Původní dotaz"
    inner["Message-ID"] = "<inner@example.cz>"
    inner.set_content("Tajný text přeposlané zprávy.")
    outer = EmailMessage()
    outer["From"] = "jana@example.cz"
    outer["To"] = "support@localhost"
    outer["Subject"] = "Fwd: Původní dotaz"
    outer.set_content("Přeposílám.")
    outer.add_attachment(inner)
    parsed = parse_email(outer.as_bytes())
    assert parsed.text == "Přeposílám."
    [attachment] = parsed.attachments
    assert (attachment.filename, attachment.content_type) == ("Původní dotaz.eml", "message/rfc822")
    enclosed = parse_email(attachment.data)
    assert (enclosed.message_id, enclosed.text) == ("inner@example.cz", "Tajný text přeposlané zprávy.")


def test_top_level_enclosed_message_is_kept():
    raw = (
        b"From: a@example.org\r\nSubject: x\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: b@example.org\r\nSubject: inner\r\n\r\ninner text\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.text == ""
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [("inner.eml", "message/rfc822")]


def _related_mail() -> bytes:
    message = EmailMessage()
    message["From"] = "jana@example.cz"
    message["To"] = "support@localhost"
    message["Subject"] = "Logo"
    message.set_content("Logo v příloze.")
    message.add_alternative('<p>Logo:</p><img src="cid:logo@acme.cz" alt="logo">', subtype="html")
    html = message.get_payload()[1]
    html.add_related(b"\x89PNG\r\n", maintype="image", subtype="png", cid="<logo@acme.cz>")
    return message.as_bytes()


def test_inline_image_is_an_inline_attachment_referenced_by_cid():
    parsed = parse_email(_related_mail())
    assert parsed.text == "Logo v příloze."
    [image] = parsed.attachments
    assert (image.content_type, image.content_id, image.is_inline, image.data) == (
        "image/png", "logo@acme.cz", True, b"\x89PNG\r\n"
    )
    assert 'src="cid:logo@acme.cz"' in parsed.html


def test_cid_references_are_rewritten_at_parse_or_after_storing():
    at_parse = parse_email(_related_mail(), cid_url=lambda content_id: f"/console/inline/{content_id}")
    assert 'src="/console/inline/logo@acme.cz"' in at_parse.html
    later = parse_email(_related_mail()).with_cid_urls({"logo@acme.cz": "/blobs/abc"})
    assert 'src="/blobs/abc"' in later.html


def test_inline_text_parts_around_an_image_are_all_body():
    raw = (
        b'From: a@example.org\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nPrvni cast\r\n"
        b"--b\r\nContent-Type: image/jpeg\r\nContent-Disposition: inline; filename=photo.jpg\r\n\r\nJPEG\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nDruha cast\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=log.txt\r\n\r\nlog\r\n"
        b"--b--\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.text == "Prvni cast\n\nDruha cast"
    files = [(a.filename, a.is_inline) for a in parsed.attachments]
    assert files == [("photo.jpg", True), ("log.txt", False)]


def test_reply_exposes_visible_text_and_classification():
    body = "Díky, funguje to.\n\nDne 19. 11. 2026 10:00 Podpora <support@localhost> napsal(a):\n> Zkuste to."
    parsed = parse_email(make_mail(body=body, extra_headers={"Auto-Submitted": "no"}))
    assert parsed.visible_text == "Díky, funguje to."
    assert "Zkuste to." in parsed.text
    assert parsed.classification.kind == "normal"


# --- bounds ----------------------------------------------------------------------------------------------


def _nested_multipart(depth: int) -> bytes:
    levels = range(depth)
    header = b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n'
    opening = b"".join(header % (n, n) for n in levels)
    closing = b"".join(b"\r\n--b%d--\r\n" % n for n in reversed(levels))
    body = b"Content-Type: text/plain\r\n\r\nhi"
    return b"From: a@example.org\r\nSubject: deep\r\n" + opening + body + closing


def _nested_messages(depth: int) -> bytes:
    enclosing = b"Content-Type: message/rfc822\r\n\r\nFrom: b@example.org\r\n" * depth
    return b"From: a@example.org\r\nSubject: deep\r\n" + enclosing + b"Content-Type: text/plain\r\n\r\nhi"


def test_nesting_within_the_limit_parses():
    assert parse_email(_nested_multipart(40)).text == "hi"
    assert len(parse_email(_nested_messages(40)).attachments) == 1


@pytest.mark.parametrize("raw", [_nested_multipart(51), _nested_multipart(1000), _nested_messages(51),
                                 _nested_messages(1000)], ids=["multipart-51", "multipart-1000", "rfc822-51",
                                                                "rfc822-1000"])
def test_deep_nesting_is_rejected_not_a_recursion_error(raw):
    with pytest.raises(MessageRejected, match="nesting exceeds"):
        parse_email(raw)


def test_ten_thousand_addresses_are_rejected_before_the_header_parser_sees_them():
    to = ", ".join(f"u{n}@example.org" for n in range(10_000))
    with pytest.raises(MessageRejected, match="To with 10000 addresses exceeds the limit of 1000"):
        parse_email(f"From: a@example.org\r\nTo: {to}\r\nSubject: x\r\n\r\nx".encode())


def test_address_limit_is_a_parameter():
    raw = b"From: a@example.org\r\nTo: b@x.cz, c@x.cz, d@x.cz, e@x.cz\r\nSubject: x\r\n\r\nx"
    assert len(parse_email(raw).to) == 4
    with pytest.raises(MessageRejected, match="exceeds"):
        parse_email(raw, limits=ParseLimits(max_addresses=3))


def test_too_many_header_fields_are_rejected():
    raw = b"From: a@example.org\r\n" + b"X-Spam: x\r\n" * 1000 + b"\r\nbody"
    with pytest.raises(MessageRejected, match="1001 header fields exceed the limit of 1000"):
        parse_email(raw)


def test_too_many_parts_are_rejected():
    parts = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 1001
    raw = b'From: a@example.org\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    with pytest.raises(MessageRejected, match="parts exceed the limit of 1000"):
        parse_email(raw)


def test_bare_cr_in_headers_does_not_hide_the_following_fields():
    raw = b"From: a@example.org\r\nSubject: first\rsecond\r\nTo: support@localhost\r\n\r\nbody\r\n"
    parsed = parse_email(raw)
    assert (parsed.subject, parsed.to, parsed.text) == ("first second", ["support@localhost"], "body")
    assert any("bare CR" in defect for defect in parsed.defects)


def test_5000_octet_header_line_is_parsed_and_noted():
    parsed = parse_email(b"From: a@example.org\r\nSubject: " + b"a" * 5000 + b"\r\n\r\nbody")
    assert parsed.subject == "a" * 500
    assert any("998 octets" in defect for defect in parsed.defects)


def test_deadline_rejects_the_message():
    with pytest.raises(MessageRejected, match="time limit of 0 s"):
        parse_email(make_mail(), limits=ParseLimits(seconds=0))


def test_deadline_is_checked_between_steps():
    ticks = iter(range(100))
    with pytest.raises(MessageRejected, match=r"time limit of 2.5 s \(at body\)"):
        parse_email(make_mail(), limits=ParseLimits(seconds=2.5), clock=lambda: next(ticks))


def test_charset_label_with_a_nul_is_unknown_not_a_crash():
    parsed = parse_email(_plain_mail(CZECH.encode("iso-8859-2"), 'text/plain; charset="iso\x00-8859-2"'))
    assert parsed.text == CZECH


def test_display_name_with_undecodable_encoded_word_does_not_crash():
    raw = b"From: =?UTF-8?B?Rcharset=m9vLCBCYXI=?= <foo.bar@example.com>\r\nSubject: x\r\n\r\nhello"
    assert parse_email(raw).from_address == "foo.bar@example.com"


def test_oversized_message_is_rejected_before_parsing():
    with pytest.raises(MessageRejected, match="exceeds the limit of 100"):
        parse_email(make_mail(body="x" * 200), limits=ParseLimits(max_bytes=100))


def test_huge_content_type_is_rejected_before_the_parser_reads_it():
    raw = b"From: a@example.org\r\nContent-Type: text/plain;\r\n " + b"a=b; " * 20_000 + b"\r\n\r\nx"
    with pytest.raises(MessageRejected, match="Content-Type of .* characters exceeds 8192"):
        parse_email(raw)


def test_mime_headers_are_bounded_in_total():
    part = b"--b\r\nContent-Type: text/plain; name=" + b"x" * 4000 + b"\r\n\r\nx\r\n"
    head = b'From: a@example.org\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    raw = head + part * 40 + b"--b--\r\n"
    with pytest.raises(MessageRejected, match="MIME headers exceed 131072 characters in total"):
        parse_email(raw)


def test_display_name_split_over_encoded_words_is_joined():
    # "Ірина Олійник" folded into two encoded words, as mail clients do; RFC 2047 §6.2 drops the space between.
    raw = (
        b"From: =?utf-8?b?0IbRgNC40L3QsCDQntC70ZbQuQ==?=\r\n =?utf-8?b?0L3QuNC6?= <irina@example.ua>\r\n"
        b"To: support@localhost\r\nSubject: x\r\n\r\nbody\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.from_name == "Ірина Олійник"
    assert parsed.from_address == "irina@example.ua"
