"""The inbound drain on committed rows: batches, reservations, concurrent drains, a bad message in a batch,
and the one drain job that any number of new rows queue."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from centrala.core import clock
from centrala.core.db import get_sessionmaker, is_postgresql
from centrala.core.queue import enqueue_after_commit, get_queue, savepoint
from centrala.core.settings import get_settings
from centrala.ingest import process
from centrala.ingest.ledger import DRAIN_EMAILS_JOB, ArrivedEmail, record_inbound_email, record_inbound_emails
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.ingest.process import PARENT_WAIT, reserve_pending_emails
from centrala.tickets.models import (
    ClockState,
    Contact,
    Direction,
    Interaction,
    OutboundEmail,
    OutboundKind,
    OutboundState,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    Ticket,
)
from centrala.tickets.outbox import SEND_DUE_JOB, queue_reply
from centrala.workers import jobs
from tests.factories import make_agent
from tests.support.mails import make_dsn, make_mail

SENDERS = 7


@pytest.fixture()
def db(committed_db, redis_url):
    """Sessions whose commits are real (and send their jobs to the run's Redis); tables emptied afterwards."""
    queue = get_queue()
    queue.empty()
    for key in (jobs.DRAIN_EMAILS_KEY, jobs.SEND_DUE_KEY):
        jobs.release_coalesced(key)
    yield get_sessionmaker()
    queue.empty()
    for key in (jobs.DRAIN_EMAILS_KEY, jobs.SEND_DUE_KEY):
        jobs.release_coalesced(key)


@pytest.fixture()
def job_settings(monkeypatch, tmp_path):
    """The settings the jobs read: the run's, with a private var folder and ``updates``."""

    def use(**updates):
        settings = get_settings().model_copy(
            update={"var_dir": tmp_path / "var", "mailboxes": ["support@localhost"], **updates}
        )
        monkeypatch.setattr(jobs, "get_settings", lambda: settings)
        return settings

    return use


def store(db, raws: list[bytes], blobs, *, mail_from: str = "customer@example.cz") -> list[int]:
    """Commit ``raws`` to the ledger as the SMTP server does, in one transaction; their ids."""
    with db() as session:
        ids = [
            record_inbound_email(
                session=session,
                raw=raw,
                mailbox="support@localhost",
                mail_from=mail_from,
                rcpt_tos=["support@localhost"],
                now=clock.now(),
                blobs=blobs,
            ).id
            for raw in raws
        ]
        session.commit()
    return ids


def is_reply(n: int) -> bool:
    return n >= SENDERS and n % 3 == 0


def conversation(count: int) -> list[bytes]:
    """``count`` mails from a few senders in turn; every third one after the first round replies to that
    sender's previous mail."""
    raws = []
    for n in range(count):
        parent = n - SENDERS if is_reply(n) else None
        raws.append(
            make_mail(
                sender=f"Zákazník {n % SENDERS} <customer{n % SENDERS}@example.cz>",
                subject=f"Re: Dotaz {parent}" if parent is not None else f"Dotaz {n}",
                message_id=f"<drain-{n}@example.cz>",
                in_reply_to=f"<drain-{parent}@example.cz>" if parent is not None else None,
            )
        )
    return raws


def new_tickets(count: int) -> int:
    return sum(not is_reply(n) for n in range(count))


def ledger(db) -> dict[str, object]:
    with db() as session:
        statuses = Counter(session.scalars(select(InboundEmail.status)))
        attempts = Counter(session.scalars(select(InboundEmail.attempts)))
        inbound = select(Interaction.external_id).where(Interaction.direction == Direction.INBOUND)
        return {
            "statuses": dict(statuses),
            "attempts": dict(attempts),
            "interactions": len(list(session.scalars(inbound))),
            "distinct_ids": len(set(session.scalars(inbound))),
            "tickets": session.scalar(select(func.count()).select_from(Ticket)),
            "contacts": session.scalar(select(func.count()).select_from(Contact)),
        }


def test_drain_processes_every_pending_row_in_batches_of_the_configured_size(db, job_settings, blobs):
    job_settings(ingest_batch_size=4)
    store(db, conversation(10), blobs)

    counts = jobs.drain_inbound_emails()

    assert counts == {"processed": 10}
    state = ledger(db)
    assert state["statuses"] == {InboundStatus.PROCESSED: 10}
    assert state["attempts"] == {1: 10}
    # Mails 9 replies to mail 2 (another batch); replies thread across batches and within one.
    assert state["tickets"] == new_tickets(10) == 9
    assert state["contacts"] == SENDERS


def test_a_message_without_a_sender_is_quarantined_and_the_rest_of_its_batch_is_processed(
    db, job_settings, blobs
):
    job_settings(ingest_batch_size=10)
    good = conversation(3)
    bad = b"Subject: nobody wrote this\r\nMessage-ID: <nobody@example.cz>\r\n\r\nNo From header.\r\n"
    [first, broken, *rest] = store(db, [good[0], bad, *good[1:]], blobs)

    counts = jobs.drain_inbound_emails()

    assert counts == {"processed": 3, "quarantined": 1}
    with db() as session:
        row = session.get(InboundEmail, broken)
        assert row.status == InboundStatus.QUARANTINED
        assert "sender" in row.reason
        assert row.raw == bad
        assert [session.get(InboundEmail, i).status for i in (first, *rest)] == [InboundStatus.PROCESSED] * 3


def test_rows_reserved_by_one_drain_are_passed_over_by_another_until_the_hold_ends(db, blobs):
    ids = store(db, conversation(6), blobs)
    hold = timedelta(seconds=60)
    now = clock.now()

    with db() as session:
        first = reserve_pending_emails(session=session, limit=4, now=now, hold=hold)
        session.commit()
    with db() as session:
        second = reserve_pending_emails(session=session, limit=4, now=now, hold=hold)
        session.commit()
    with db() as session:
        after_hold = reserve_pending_emails(session=session, limit=10, now=now + hold, hold=hold)
        session.commit()

    assert first == ids[:4]
    assert second == ids[4:]
    # A drain that died with its reservation: its rows come back once the hold is over.
    assert after_hold == ids


@pytest.mark.parametrize("drains", [2, 3])
def test_concurrent_drains_never_process_a_row_twice_nor_leave_one(db, job_settings, blobs, drains):
    job_settings(ingest_batch_size=5)
    count = 90
    store(db, conversation(count), blobs)
    start = threading.Barrier(drains)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            start.wait(10)
            results.append(jobs.drain_inbound_emails())
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=drain) for _ in range(drains)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert errors == []
    # A reply whose parent was still in another drain's batch waited; the scheduler would queue its drain.
    for _ in range(20):
        if not ledger(db)["statuses"].get(InboundStatus.RECEIVED):
            break
        time.sleep(PARENT_WAIT.total_seconds())
        results.append(jobs.drain_inbound_emails())
    # Every row counted once over all drains: none was processed by two of them.
    done = sum((Counter(result) for result in results), Counter())
    assert done["processed"] == count
    assert set(done) <= {"processed", "received"}
    state = ledger(db)
    assert state["statuses"] == {InboundStatus.PROCESSED: count}
    assert state["interactions"] == state["distinct_ids"] == count
    assert state["contacts"] == SENDERS
    assert state["tickets"] == new_tickets(count)
    if is_postgresql(get_sessionmaker()().get_bind()):
        # Row locks let the drains work side by side: each took a share.
        assert all(result.get("processed", 0) > 0 for result in results)


def question_reserved_by_another_drain_and_its_reply(db, blobs) -> tuple[int, int]:
    """A question and a reply to it, stored; the question reserved by another worker's drain, which is still
    recording it. Their ledger ids."""
    parent, reply = store(
        db,
        [
            make_mail(message_id="<question@example.cz>"),
            make_mail(subject="Re: Nefunguje", message_id="<reply@example.cz>", in_reply_to="<question@example.cz>"),
        ],
        blobs,
    )
    with db() as session:
        assert reserve_pending_emails(session=session, limit=1, now=clock.now(), hold=timedelta(seconds=60)) == [
            parent
        ]
        session.commit()
    return parent, reply


def test_a_reply_whose_parent_another_drain_holds_goes_onto_its_ticket_in_the_same_drain(
    db, job_settings, blobs, monkeypatch
):
    job_settings()
    parent, _reply = question_reserved_by_another_drain_and_its_reply(db, blobs)
    pauses = []

    def the_other_drain_records_the_question_meanwhile() -> None:
        pauses.append(1)
        if len(pauses) == 2:
            assert jobs.process_inbound_email(parent)["status"] == "processed"

    monkeypatch.setattr(jobs, "_pause_for_parents", the_other_drain_records_the_question_meanwhile)

    assert jobs.drain_inbound_emails() == {"processed": 1}

    assert len(pauses) == 2
    with db() as session:
        question, answer = (
            session.scalars(select(Interaction).where(Interaction.external_id == f"{name}@example.cz")).one()
            for name in ("question", "reply")
        )
        assert answer.ticket_id == question.ticket_id
        assert answer.thread_reason == "reference"
    # Nothing left for a later drain.
    assert get_queue().scheduled_job_registry.get_job_ids() == []


def test_a_reply_whose_parent_stays_pending_is_left_to_a_later_drain_after_a_few_pauses(
    db, job_settings, blobs, monkeypatch
):
    job_settings()
    _parent, reply = question_reserved_by_another_drain_and_its_reply(db, blobs)
    pauses = []
    monkeypatch.setattr(jobs, "_pause_for_parents", lambda: pauses.append(1))

    assert jobs.drain_inbound_emails() == {"received": 1}

    assert len(pauses) == jobs.PARENT_PAUSES
    with db() as session:
        assert session.get(InboundEmail, reply).status == InboundStatus.RECEIVED
    assert len(get_queue().scheduled_job_registry.get_job_ids()) == 1


def test_many_committed_rows_queue_one_drain_and_a_started_drain_lets_the_next_row_queue_another(db, blobs):
    queue = get_queue()

    store(db, conversation(3), blobs)
    store(db, [make_mail(message_id="<later@example.cz>")], blobs)

    assert [job.func_name for job in queue.jobs] == [DRAIN_EMAILS_JOB]
    jobs.release_coalesced(jobs.DRAIN_EMAILS_KEY)  # what the drain does as it starts
    store(db, [make_mail(message_id="<after-start@example.cz>")], blobs)
    assert [job.func_name for job in queue.jobs] == [DRAIN_EMAILS_JOB, DRAIN_EMAILS_JOB]


def test_a_rolled_back_savepoint_forgets_the_jobs_queued_inside_it(db):
    queue = get_queue()
    with db() as session:
        enqueue_after_commit(session, "centrala.workers.jobs.check_sla_clock", 1, job_id="kept")
        with pytest.raises(RuntimeError), savepoint(session):
            enqueue_after_commit(session, "centrala.workers.jobs.check_sla_clock", 2, job_id="dropped")
            raise RuntimeError("this message cannot be processed")
        session.commit()

    assert queue.job_ids == ["kept"]


def test_jobs_queued_inside_a_released_savepoint_wait_for_the_real_commit(db):
    """SQLAlchemy reports a savepoint's release as a commit; a job sent then could run before its rows exist,
    or for rows a later rollback removes."""
    queue = get_queue()
    with db() as session:
        with savepoint(session):
            enqueue_after_commit(session, "centrala.workers.jobs.check_sla_clock", 1, job_id="after-commit")
        assert queue.job_ids == []
        session.rollback()
    assert queue.job_ids == []

    with db() as session:
        with savepoint(session):
            enqueue_after_commit(session, "centrala.workers.jobs.check_sla_clock", 1, job_id="after-commit")
        assert queue.job_ids == []
        session.commit()
    assert queue.job_ids == ["after-commit"]


def test_the_sweeper_queues_a_drain_for_rows_left_pending(db, job_settings, blobs, monkeypatch):
    job_settings(sweep_after_seconds=60.0)
    store(db, conversation(2), blobs)
    get_queue().empty()
    later = clock.now() + timedelta(minutes=5)
    monkeypatch.setattr(clock, "now", lambda: later)

    assert jobs.sweep_stale_emails() == 2
    assert [job.func_name for job in get_queue().jobs] == [DRAIN_EMAILS_JOB]


def fail_on_subject(monkeypatch, subject: str) -> None:
    """A bug in our code that only the message with ``subject`` meets, when it would open its ticket."""
    real_open_ticket = process.open_ticket

    def open_ticket(**kwargs):
        if kwargs["subject"] == subject:
            raise RuntimeError("a bug met by this message only")
        return real_open_ticket(**kwargs)

    monkeypatch.setattr(process, "open_ticket", open_ticket)


def test_a_message_our_code_fails_on_is_quarantined_and_its_batch_keeps_the_others_and_their_jobs(
    db, job_settings, blobs, monkeypatch
):
    job_settings(ingest_batch_size=10)
    fail_on_subject(monkeypatch, "Dotaz 1")
    first, failing, last = store(db, conversation(3), blobs)
    get_queue().empty()

    counts = jobs.drain_inbound_emails()

    assert counts == {"processed": 2, "quarantined": 1}
    with db() as session:
        assert session.get(InboundEmail, failing).reason == "processing failed: RuntimeError"
        assert session.get(InboundEmail, failing).status == InboundStatus.QUARANTINED
        assert [session.get(InboundEmail, i).status for i in (first, last)] == [InboundStatus.PROCESSED] * 2
        acknowledgements = session.scalars(select(OutboundEmail.id).order_by(OutboundEmail.id)).all()
    # The two acknowledgements and the drain that sends them survived the failed message's rollback.
    assert len(acknowledgements) == 2
    assert [job.func_name for job in get_queue().get_jobs()] == [SEND_DUE_JOB]


def test_one_message_delivered_twice_in_one_batch_becomes_one_interaction(db, job_settings, blobs):
    """The same Message-ID from the same sender twice, in different bytes (by SMTP and by IMAP, say), in one
    batch: the second finds the interaction the first made in the same transaction."""
    job_settings(ingest_batch_size=10)
    first = make_mail(subject="Dotaz", message_id="<twice@example.cz>")
    again = make_mail(subject="Dotaz", message_id="<twice@example.cz>", extra_headers={"X-Copy": "imap"})
    assert first != again
    store(db, [first, make_mail(subject="Jiný dotaz", message_id="<other@example.cz>"), again], blobs)

    assert jobs.drain_inbound_emails() == {"processed": 3}

    state = ledger(db)
    assert (state["interactions"], state["distinct_ids"], state["tickets"]) == (2, 2, 2)
    with db() as session:
        reasons = list(session.scalars(select(InboundEmail.reason).order_by(InboundEmail.id)))
    assert reasons == [None, None, "duplicate"]


def acknowledged(db) -> list[str]:
    """The subjects of the tickets acknowledged so far, in order."""
    with db() as session:
        return list(
            session.scalars(
                select(Ticket.subject)
                .join(OutboundEmail, OutboundEmail.ticket_id == Ticket.id)
                .where(OutboundEmail.kind == OutboundKind.ACKNOWLEDGEMENT)
                .order_by(OutboundEmail.id)
            )
        )


def questions(*subjects: str) -> list[bytes]:
    return [make_mail(subject=subject, message_id=f"<{subject.replace(' ', '-')}@example.cz>") for subject in subjects]


def test_one_batch_keeps_to_the_acknowledgement_limit_of_a_sender(db, job_settings, blobs):
    """A sender who opens many tickets at once (or an auto-responder that does not say so) gets at most
    ``ack_max_per_recipient`` acknowledgements in the window, counting those before the batch and in it."""
    job_settings(ingest_batch_size=10, ack_max_per_recipient=3)
    store(db, questions("Dotaz 1"), blobs)
    jobs.drain_inbound_emails()
    store(db, questions("Dotaz 2", "Dotaz 3", "Dotaz 4", "Dotaz 5"), blobs)

    assert jobs.drain_inbound_emails() == {"processed": 4}

    assert acknowledged(db) == ["Dotaz 1", "Dotaz 2", "Dotaz 3"]


def test_a_bounce_in_a_batch_keeps_later_mail_from_that_address_unacknowledged(db, job_settings, blobs):
    job_settings(ingest_batch_size=10)
    store(db, questions("Dotaz 1"), blobs)
    jobs.drain_inbound_emails()
    with db() as session:
        first_ack = session.scalars(select(OutboundEmail)).one()
        first_ack.state = OutboundState.SENT
        message_id = first_ack.message_id
        session.commit()
    # One batch: our acknowledgement bounces, then the same address opens another ticket.
    store(db, [make_dsn(original_message_id=f"<{message_id}>")], blobs, mail_from="")
    store(db, questions("Dotaz 2"), blobs)

    assert jobs.drain_inbound_emails() == {"processed": 2}

    assert acknowledged(db) == ["Dotaz 1"]
    assert ledger(db)["tickets"] == 2


def test_an_acknowledgement_rolled_back_with_its_batch_does_not_count_against_the_sender(
    db, job_settings, blobs, monkeypatch
):
    """A batch that fails as a whole is done again one message at a time: what the failed attempt queued is
    gone, and must not use up the sender's acknowledgements."""
    job_settings(ingest_batch_size=10, ack_max_per_recipient=1)
    fail_on_subject(monkeypatch, "Dotaz 2")
    store(db, questions("Dotaz 1", "Dotaz 2", "Dotaz 3"), blobs)

    assert jobs.drain_inbound_emails() == {"processed": 2, "quarantined": 1}

    assert acknowledged(db) == ["Dotaz 1"]


def test_a_reply_whose_parent_is_in_the_next_batch_waits_for_that_batch_not_for_a_later_drain(
    db, job_settings, blobs
):
    """Two SMTP commits that overlap can give a message that arrived later a smaller id. The drain takes rows in
    order of arrival, so the parent (smaller id, arrived later) is in the batch after its reply's: the reply is
    tried again right after that batch, within the same drain, and lands on the parent's ticket."""
    job_settings(ingest_batch_size=2)
    start = clock.now()
    parent = make_mail(subject="Dotaz", message_id="<parent@example.cz>")
    reply = make_mail(subject="Re: Dotaz", message_id="<reply@example.cz>", in_reply_to="<parent@example.cz>")
    other = make_mail(sender="Petr <petr@example.cz>", subject="Jiný dotaz", message_id="<other@example.cz>")
    last = make_mail(sender="Eva <eva@example.cz>", subject="Třetí dotaz", message_id="<last@example.cz>")
    # ids: other, parent, reply, last; by arrival: reply, other, parent, last.
    arrived = [(other, 2), (parent, 3), (reply, 1), (last, 4)]
    with db() as session:
        record_inbound_emails(
            session=session,
            emails=[
                ArrivedEmail(
                    raw, "support@localhost", "jana@example.cz", ["support@localhost"],
                    received_at=start + timedelta(milliseconds=ms),
                )
                for raw, ms in arrived
            ],
            now=start,
            blobs=blobs,
        )
        session.commit()

    assert jobs.drain_inbound_emails() == {"processed": 4}

    with db() as session:
        tickets = dict(
            session.execute(
                select(Interaction.external_id, Interaction.ticket_id).where(
                    Interaction.direction == Direction.INBOUND
                )
            ).all()
        )
    assert tickets["reply@example.cz"] == tickets["parent@example.cz"]
    assert len(set(tickets.values())) == 3


def test_a_batch_of_replies_finds_their_tickets_parents_and_clocks_in_a_fixed_number_of_queries(
    db, job_settings, blobs
):
    """Every reply of a batch is threaded onto its parent's ticket, and the lookups that find the parent (written
    or still pending) and its ticket's SLA clocks are made once for the batch: eight replies cost the queries
    that two do."""
    job_settings(ingest_transaction_ms=60_000)
    parents = [
        make_mail(sender=f"Zákazník {n} <customer{n}@example.cz>", subject=f"Dotaz {n}",
                  message_id=f"<parent-{n}@example.cz>")
        for n in range(4)
    ]
    store(db, parents, blobs)
    assert jobs.drain_inbound_emails() == {"processed": 4}
    engine = get_sessionmaker().kw["bind"]

    def lookups_for_replies(first: int, count: int) -> int:
        replies = [
            make_mail(sender=f"Zákazník {n % 4} <customer{n % 4}@example.cz>", subject=f"Re: Dotaz {n % 4}",
                      message_id=f"<reply-{n}@example.cz>", in_reply_to=f"<parent-{n % 4}@example.cz>")
            for n in range(first, first + count)
        ]
        store(db, replies, blobs)
        statements = []

        def seen(_conn, _cursor, statement, *_args):
            if statement.lstrip().upper().startswith("SELECT") and any(
                f"FROM {table}" in statement for table in ("interaction", "inbound_email", "sla_clock")
            ):
                statements.append(statement)

        event.listen(engine, "before_cursor_execute", seen)
        try:
            assert jobs.drain_inbound_emails() == {"processed": count}
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        return len(statements)

    assert lookups_for_replies(0, 2) == lookups_for_replies(2, 8)
    with db() as session:
        ticket_of = dict(session.execute(select(Interaction.external_id, Interaction.ticket_id)).all())
    for n in range(10):
        assert ticket_of[f"reply-{n}@example.cz"] == ticket_of[f"parent-{n % 4}@example.cz"]


def test_a_reply_threads_onto_a_message_of_its_own_batch_written_before_it_by_a_flush(db, job_settings, blobs):
    """A message with an inline image is written at once (its HTML must name the image's stored id), and with it
    everything the batch had recorded: a reply later in the batch to one of those messages still finds it."""
    job_settings(ingest_transaction_ms=60_000)
    question = make_mail(subject="Dotaz", message_id="<question@example.cz>")
    screenshot = (
        b"From: petr@example.cz\r\nTo: support@localhost\r\nSubject: screenshot\r\nMessage-ID: <shot@example.cz>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=rel\r\n\r\n"
        b'--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>See <img src="cid:shot1@example.cz"></p>\r\n'
        b"--rel\r\nContent-Type: image/png\r\nContent-ID: <shot1@example.cz>\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: inline; filename=shot.png\r\n\r\niVBORw0KGgo=\r\n--rel--\r\n"
    )
    reply = make_mail(subject="Re: Dotaz", message_id="<answer@example.cz>", in_reply_to="<question@example.cz>")
    store(db, [question, screenshot, reply], blobs)

    assert jobs.drain_inbound_emails() == {"processed": 3}

    with db() as session:
        ticket_of = dict(session.execute(select(Interaction.external_id, Interaction.ticket_id)).all())
    assert ticket_of["answer@example.cz"] == ticket_of["question@example.cz"]
    assert ticket_of["shot@example.cz"] != ticket_of["question@example.cz"]


def add_round_the_clock_policy(db) -> None:
    """The default SLA policy of these tests: first response 1 h, next response 2 h, resolution 8 h, all day."""
    with db() as session:
        session.add(SlaPolicy(
            name="Round the clock", is_default=True, precedence=100, warn_before_minutes=15, escalations=[],
            targets={"default": {"first_response": 60, "next_response": 120, "resolution": 480}},
            updated_at=clock.now(),
        ))
        session.commit()


def test_two_customer_replies_in_one_batch_start_one_next_response_clock(db, job_settings, blobs):
    """After our answer, the customer writes twice before a drain runs: the first reply resumes the resolution
    clock and starts next response, the second finds that clock (started in the same batch) and starts none."""
    settings = job_settings(ingest_transaction_ms=60_000)
    add_round_the_clock_policy(db)
    store(db, [make_mail(subject="Dotaz", message_id="<question@example.cz>")], blobs)
    assert jobs.drain_inbound_emails() == {"processed": 1}
    with db() as session:
        ticket = session.scalars(select(Ticket)).one()
        agent, _ = make_agent(session)
        queue_reply(session=session, ticket=ticket, agent=agent, text="Zkuste to znovu.", html=None,
                    now=clock.now(), settings=settings)
        session.commit()
        ticket_id = ticket.id
    store(db, [
        make_mail(subject="Re: Dotaz", message_id=f"<again-{n}@example.cz>", in_reply_to="<question@example.cz>")
        for n in range(2)
    ], blobs)

    assert jobs.drain_inbound_emails() == {"processed": 2}

    with db() as session:
        clocks = [
            (c.metric, c.cycle, c.state)
            for c in session.scalars(select(SlaClock).where(SlaClock.ticket_id == ticket_id).order_by(SlaClock.id))
        ]
    assert clocks == [
        (SlaMetric.FIRST_RESPONSE, 0, ClockState.MET),
        (SlaMetric.RESOLUTION, 0, ClockState.RUNNING),
        (SlaMetric.NEXT_RESPONSE, 1, ClockState.RUNNING),
    ]


def test_replies_to_tickets_opened_in_their_own_batch_are_written_with_it(db, job_settings, blobs):
    """Two questions and three replies to them in one batch, under an SLA policy: each reply reads its new
    ticket's clocks (started earlier in the batch, not written yet) without writing the batch first, so the batch
    is written as often as a batch of five questions; and the clocks come out as the questions started them."""
    job_settings(ingest_transaction_ms=60_000)
    add_round_the_clock_policy(db)
    flushes: list[int] = []

    def count(*_args) -> None:
        flushes.append(1)

    event.listen(Session, "after_flush", count)
    try:
        store(db, [make_mail(subject=f"Otázka {n}", message_id=f"<alone-{n}@example.cz>") for n in range(5)], blobs)
        assert jobs.drain_inbound_emails() == {"processed": 5}
        five_questions = len(flushes)
        flushes.clear()
        store(db, [
            make_mail(subject="Dotaz 1", message_id="<q1@example.cz>"),
            make_mail(subject="Dotaz 2", message_id="<q2@example.cz>"),
            make_mail(subject="Re: Dotaz 1", message_id="<r1@example.cz>", in_reply_to="<q1@example.cz>"),
            make_mail(subject="Re: Dotaz 2", message_id="<r2@example.cz>", in_reply_to="<q2@example.cz>"),
            make_mail(subject="Re: Dotaz 1", message_id="<r3@example.cz>", in_reply_to="<q1@example.cz>"),
        ], blobs)
        assert jobs.drain_inbound_emails() == {"processed": 5}
    finally:
        event.remove(Session, "after_flush", count)
    assert len(flushes) == five_questions

    with db() as session:
        ticket_of = dict(session.execute(select(Interaction.external_id, Interaction.ticket_id)).all())
        for question, replies in (("q1", ("r1", "r3")), ("q2", ("r2",))):
            ticket_id = ticket_of[f"{question}@example.cz"]
            assert {ticket_of[f"{reply}@example.cz"] for reply in replies} == {ticket_id}
            states = session.execute(
                select(SlaClock.metric, SlaClock.state).where(SlaClock.ticket_id == ticket_id).order_by(SlaClock.id)
            ).all()
            assert states == [(SlaMetric.FIRST_RESPONSE, ClockState.RUNNING), (SlaMetric.RESOLUTION, ClockState.RUNNING)]
