"""A drain's helper process parses exactly what the worker would, and losing it costs no message."""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import signal

import pytest

from bench.corpus import generate_corpus
from centrala.core.blobs import BlobStore
from centrala.ingest.parse_ahead import (
    HELPER_MAX_BYTES,
    ParseHelper,
    ParsingAhead,
    RawEmail,
    parse_raw_emails,
)
from tests.support.mails import make_mail
from tests.support.processes import children_of, free_port, is_running, service_env, start, wait_until


@pytest.fixture
def helper():
    helper = ParseHelper()
    yield helper
    helper.close()


def _emails() -> list[RawEmail]:
    raws = [
        *generate_corpus(30, 7),
        # Refused by the parser: the reason must come back from the helper.
        make_mail(sender="", message_id="<nobody@example.cz>"),
        # Too large for the helper: parsed by the worker itself.
        make_mail(attachments=[("scan.pdf", "application/pdf", os.urandom(HELPER_MAX_BYTES))]),
    ]
    return [RawEmail(number, f"{number:064x}", raw, "jana@example.cz") for number, raw in enumerate(raws, 1)]


def test_the_helper_parses_every_message_as_the_worker_would(helper):
    emails = _emails()
    assert len(emails[-1].raw) > HELPER_MAX_BYTES

    parsed = ParsingAhead(helper, emails).result()

    assert helper.process_id() not in (None, os.getpid())
    assert parsed == parse_raw_emails(emails)
    assert set(parsed) == {email.inbound_id for email in emails}
    assert parsed[31].parsed is None and "sender" in parsed[31].rejection
    assert parsed[32].parsed.attachments[0].filename == "scan.pdf"


def test_the_helper_keeps_what_it_loaded_out_of_the_collector(helper):
    # Its modules and classes live as long as it does; a full collection walking them all cost ~100 ms.
    future = helper._call(gc.get_freeze_count)

    assert future is not None
    assert future.result() > 10_000


def test_parsing_ahead_stores_the_attachments_before_any_transaction(helper, tmp_path):
    emails = _emails()
    blobs = BlobStore(tmp_path / "blobs")

    parsed = ParsingAhead(helper, emails, blobs).result()

    attachments = [a for row in parsed.values() if row.parsed for a in row.parsed.attachments]
    # The corpus' files (stored by the helper) and the large scan (by the worker).
    assert len(attachments) > 2 and any(a.filename == "scan.pdf" for a in attachments)
    for attachment in attachments:
        assert blobs.get(hashlib.sha256(attachment.data).hexdigest()) == attachment.data
    assert set(blobs.digests()) == {hashlib.sha256(a.data).hexdigest() for a in attachments}


def test_a_helper_that_dies_leaves_the_batch_to_the_worker(helper, caplog):
    emails = _emails()[:10]
    os.kill(helper.process_id(), signal.SIGKILL)

    with caplog.at_level(logging.WARNING, logger="centrala.ingest.parse_ahead"):
        parsed = ParsingAhead(helper, emails).result()

    assert parsed == parse_raw_emails(emails)
    assert "parse helper failed" in caplog.text
    # For a while after, batches are parsed by the worker without trying to start a process each time.
    assert helper.submit(emails) is None


@pytest.mark.e2e
def test_a_worker_killed_takes_its_helper_with_it(tmp_path):
    """kill -9 of a worker (the OOM killer, a host going down) must not leave its helper running."""
    env = service_env(tmp_path / "var", http_port=free_port(), smtp_port=free_port(), embedded=True)
    worker = start(["worker"], env, tmp_path / "worker.log")
    try:
        children = wait_until(lambda: children_of(worker.pid), timeout=60, what="the parse helper to start")
    finally:
        worker.kill()
        worker.wait()
    wait_until(lambda: not any(is_running(pid) for pid in children), timeout=30, what="the helper to exit")
