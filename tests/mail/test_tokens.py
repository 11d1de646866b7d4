"""Signed Message-IDs and reply addresses: ours verify, forgeries and other secrets' tokens do not."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from centrala.mail.tokens import (
    make_message_id,
    make_reply_address,
    new_nonce,
    verify_message_id,
    verify_reply_address,
)

SECRET = "a-test-secret-of-some-length-1234567890"
OTHER_SECRET = "another-secret-of-some-length-0987654321"


def message_id(
    ticket_id: int = 42, nonce: str = "n0nce", secret: str = SECRET, domain: str = "example.com"
) -> str:
    return make_message_id(ticket_id=ticket_id, nonce=nonce, secret=secret, domain=domain)


# --- Message-IDs --------------------------------------------------------------------------------------------


def test_message_id_has_the_documented_shape_and_verifies_with_and_without_brackets():
    value = message_id()
    match = re.fullmatch(r"<c\.42\.n0nce\.([a-z2-7]+)@example\.com>", value)
    assert match is not None
    assert len(match.group(1)) * 5 >= 80
    assert verify_message_id(value, SECRET) == 42
    assert verify_message_id(value.strip("<>"), SECRET) == 42
    assert verify_message_id(f"  {value} ", SECRET) == 42


def test_message_ids_with_fresh_nonces_differ():
    assert message_id(nonce=new_nonce()) != message_id(nonce=new_nonce())


def test_message_id_with_changed_ticket_id_is_refused():
    forged = message_id(ticket_id=42).replace("c.42.", "c.43.")
    assert verify_message_id(forged, SECRET) is None


def test_message_id_with_leading_zero_ticket_id_is_refused():
    forged = message_id(ticket_id=42).replace("c.42.", "c.042.")
    assert verify_message_id(forged, SECRET) is None


def test_message_id_with_truncated_mac_is_refused():
    value = message_id().strip("<>")
    left, domain = value.split("@")
    assert verify_message_id(f"{left[:-1]}@{domain}", SECRET) is None
    assert verify_message_id(f"{left[:-10]}@{domain}", SECRET) is None


def test_message_id_with_flipped_mac_character_is_refused():
    value = message_id().strip("<>")
    left, domain = value.split("@")
    flipped = left[:-1] + ("a" if left[-1] != "a" else "b")
    assert verify_message_id(f"{flipped}@{domain}", SECRET) is None


def test_message_id_signed_with_another_secret_is_refused():
    assert verify_message_id(message_id(secret=OTHER_SECRET), SECRET) is None


def test_message_id_nonce_is_covered_by_the_mac():
    forged = message_id(nonce="n0nce").replace(".n0nce.", ".other.")
    assert verify_message_id(forged, SECRET) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "<>",
        "m1@example.cz",
        "c.42.x.y@z",
        "<c.42@example.com>",
        "c.-1.n.aaaa@example.com",
        "\r\n",
        "a" * 5000,
    ],
)
def test_foreign_message_ids_are_not_ours(value):
    assert verify_message_id(value, SECRET) is None


@pytest.mark.parametrize("ticket_id", [0, -1, True, 10**13])
def test_message_id_refuses_impossible_ticket_ids(ticket_id):
    with pytest.raises(ValueError):
        message_id(ticket_id=ticket_id)


@pytest.mark.parametrize("domain", ["", "exa mple.com", "example.com\r\nBcc: x@y", "a@b", "<x>"])
def test_message_id_refuses_bad_domains(domain):
    with pytest.raises(ValueError):
        message_id(domain=domain)


@given(st.integers(min_value=1, max_value=10**12 - 1))
def test_every_ticket_id_round_trips(ticket_id):
    assert verify_message_id(message_id(ticket_id=ticket_id, nonce=new_nonce()), SECRET) == ticket_id


# --- Reply addresses ----------------------------------------------------------------------------------------


def test_reply_address_names_mailbox_and_ticket():
    address = make_reply_address(mailbox="Support@Example.com", ticket_id=1042, secret=SECRET)
    assert re.fullmatch(r"support\+t1042-[a-z2-7]{16}@example\.com", address)
    assert verify_reply_address(address, SECRET) == ("support@example.com", 1042)


def test_reply_address_survives_a_relay_that_upper_cases_it():
    address = make_reply_address(mailbox="support@example.com", ticket_id=7, secret=SECRET)
    assert verify_reply_address(address.upper(), SECRET) == ("support@example.com", 7)


def test_reply_address_with_changed_ticket_id_is_refused():
    address = make_reply_address(mailbox="support@example.com", ticket_id=42, secret=SECRET)
    assert verify_reply_address(address.replace("+t42-", "+t43-"), SECRET) is None


def test_reply_address_moved_to_another_mailbox_is_refused():
    address = make_reply_address(mailbox="support@example.com", ticket_id=42, secret=SECRET)
    assert verify_reply_address(address.replace("support+", "sales+"), SECRET) is None
    assert verify_reply_address(address.replace("@example.com", "@example.org"), SECRET) is None


def test_reply_address_with_truncated_mac_is_refused():
    address = make_reply_address(mailbox="support@example.com", ticket_id=42, secret=SECRET)
    local, domain = address.split("@")
    assert verify_reply_address(f"{local[:-1]}@{domain}", SECRET) is None


def test_reply_address_of_another_secret_is_refused():
    address = make_reply_address(mailbox="support@example.com", ticket_id=42, secret=OTHER_SECRET)
    assert verify_reply_address(address, SECRET) is None


def test_message_id_mac_is_not_a_reply_address_mac():
    mac = message_id(ticket_id=42).split(".")[3].split("@")[0]
    assert verify_reply_address(f"support+t42-{mac[:16]}@example.com", SECRET) is None


@pytest.mark.parametrize(
    "address", ["support@example.com", "support+@example.com", "support+t42@example.com", "x", "", "+t1-a@b"]
)
def test_plain_and_malformed_addresses_are_not_reply_addresses(address):
    assert verify_reply_address(address, SECRET) is None


def test_reply_address_refuses_a_local_part_too_long_for_the_tag():
    with pytest.raises(ValueError):
        make_reply_address(mailbox=("x" * 50) + "@example.com", ticket_id=42, secret=SECRET)
