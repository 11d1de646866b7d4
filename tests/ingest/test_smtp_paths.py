"""The SMTP server reads a plain MAIL FROM / RCPT TO path itself and leaves every other to aiosmtpd: whatever
the client sends, the address and parameters it reads are the ones aiosmtpd's own parser reads."""

from __future__ import annotations

import asyncio

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from centrala.ingest.smtp import InboundSMTP, _Sessions

# Every character that changes how a path parses, and a few that do not.
PATH_CHARACTERS = "ab.Z9-+_=#'~@<>[]()\"\\:, \t;é"


@pytest.fixture(scope="module")
def server():
    loop = asyncio.new_event_loop()
    try:
        yield InboundSMTP(handler=object(), sessions=_Sessions(1), loop=loop)
    finally:
        loop.close()


@settings(max_examples=3000, deadline=None)
@given(arg=st.text(alphabet=PATH_CHARACTERS, max_size=40))
@example(arg="<alice@example.org>")
@example(arg="<alice@example.org> SIZE=20480 BODY=8BITMIME")
@example(arg="<a.b+c@x-y.example.com>\tSIZE=1")
@example(arg="<alice@example.org>  (comment)")
@example(arg="<alice@example.org>x")
@example(arg="<alice@example.org> ")
@example(arg="<alice@example.org>\n")
@example(arg=" <alice@example.org>")
@example(arg="<alice@example.>")
@example(arg="<.alice@example.org>")
@example(arg="<alice..b@example.org>")
@example(arg="<@relay.example:alice@example.org>")
@example(arg="<alice@[192.0.2.1]>")
@example(arg='<"alice smith"@example.org>')
@example(arg="<>")
@example(arg="")
def test_a_path_reads_as_aiosmtpd_reads_it(server, arg):
    assert read(InboundSMTP, server, arg) == read(SMTP, server, arg)


@pytest.mark.parametrize("limit", [0, 5, 64])
@pytest.mark.parametrize("local", ["alice", "alice.smith", "a" * 65])
def test_the_local_part_limit_holds_on_either_path(server, monkeypatch, limit, local):
    monkeypatch.setattr(server, "local_part_limit", limit)
    for arg in (f"<{local}@example.org>", f"<{local}@example.org> SIZE=10", f"< {local}@example.org>"):
        assert read(InboundSMTP, server, arg) == read(SMTP, server, arg)


def read(protocol: type[SMTP], server: SMTP, arg: str) -> object:
    """What ``protocol``'s reading of ``arg`` gives: the address and the rest, or the error it raises (aiosmtpd's
    parser fails on some input, such as a lone "<", which its command handlers then answer)."""
    try:
        return protocol._getaddr(server, arg)
    except Exception as error:  # noqa: BLE001 - the error is the result compared
        return type(error)
