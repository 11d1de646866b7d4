"""Raw header lookups answer what Message.get and raw_items answer, and the Date what the header registry reads."""

import email.policy

import pytest

from centrala.mail.headers import RawHeaders, first_value
from centrala.mail.parse import PARSE_POLICY, parse_email

SECTION = (
    b"Received: from a\r\n\tby b\r\n"
    b"received: from c by d\r\n"
    b"SUBJECT:  Folded\r\n subject  \r\n"
    b"From: Jana <jana@example.cz>\r\n"
    b"X-Empty:\r\n"
    b"\r\nbody\r\n"
)


def test_raw_headers_answer_as_message_get_and_raw_items_do():
    message = email.message_from_bytes(SECTION, policy=PARSE_POLICY)
    headers = RawHeaders(message)

    assert headers.values("RECEIVED") == ["from a\tby b", "from c by d"]
    assert headers.first("subject") == first_value(message, "Subject") == "Folded subject"
    assert headers.stored("Subject") == "Folded\r\n subject  "  # as raw_items() has it
    assert headers.first("X-Empty") == "" and headers.stored("X-Empty") == ""
    assert headers.first("Missing") == first_value(message, "Missing") == ""
    assert headers.stored("Missing") is None and headers.parsed("Missing") is None
    assert headers.parsed("from") == message.get("From")
    assert headers.parsed("from").addresses[0].addr_spec == "jana@example.cz"


@pytest.mark.parametrize(
    "date",
    [
        "Mon, 4 Mar 2024 07:30:00 +0100",
        "4 Mar 2024 07:30 -0000",  # RFC 5322 §3.3: unknown zone, a naive datetime
        "Mon, 4 Mar 2024\r\n 07:30:00 GMT",
        "Mon, 31 Feb 2024 07:30:00 +0100",
        "Mon, 4 Mar 2024 07:30:00 +9999",
        "4 Mar 99 07:30:00 EST",
        "yesterday",
        "",
    ],
)
def test_date_is_what_the_header_registry_reads(date):
    raw = f"From: a@example.org\r\nDate: {date}\r\n\r\nbody\r\n".encode()
    registry = email.policy.default.header_fetch_parse("Date", date).datetime
    expected = registry if registry is not None and registry.tzinfo is not None else None

    assert parse_email(raw).date == expected
