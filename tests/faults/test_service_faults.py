"""Faults of the workers and of the services behind them, on the real processes under load.

A drain killed by its job timeout, Redis gone for half a minute, PostgreSQL restarted, SQLite's write lock held
by someone else: each delays mail and must lose and duplicate none of it. Every test ends with one line of
counts (``tests/support/fault_report.py``): sent (messages the client had), accepted (250s), stored (ledger
rows), duplicates (inbound interactions sharing a Message-ID), and the 451s and processed rows where they matter.
"""

from __future__ import annotations

import smtplib
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import Engine, Select, func, select, text
from sqlalchemy.orm import Session

from centrala.core import clock
from centrala.core.db import READ_ONLY_OPTION, create_db_engine
from centrala.core.queue import get_queue
from centrala.core.settings import Settings
from centrala.ingest.ledger import DRAIN_EMAILS_JOB
from centrala.ingest.models import InboundEmail, InboundStatus
from tests.support.fault_report import report
from tests.support.ledger_counts import wait_all_processed
from tests.support.mails import make_mail
from tests.support.processes import (
    free_port,
    port_is_open,
    run,
    service_env,
    start,
    stop_all,
    wait_until,
)
from tests.support.services import running_postgres, running_redis

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

MAILBOX = "support@localhost"
SENDER = "jana@example.cz"
# After a 4xx the client tries again, as an MTA does (RFC 5321 §4.5.4.1), only far sooner.
RETRY_EVERY_SECONDS = 1.0
# Longer than any reply may take: a client still waiting this long has met a hang.
REPLY_TIMEOUT_SECONDS = 60.0
# The sweeper hands lost work out again this soon (production: after a minute), so that recovery fits a test.
FAST_SWEEP = {"CENTRALA_SWEEP_AFTER_SECONDS": "3", "CENTRALA_SWEEP_INTERVAL_SECONDS": "0.5"}


@dataclass(frozen=True)
class Attempt:
    """One SMTP transaction as the client saw it."""

    outcome: str  # accepted (250), 451, temporary (another 4xx), refused (5xx), unreachable (no answer)
    finished_at: float
    seconds: float


@dataclass
class Tally:
    """What the sending side saw, over any number of sending threads."""

    sent: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note_sent(self) -> None:
        with self._lock:
            self.sent += 1

    def note(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def count(self, outcome: str, *, between: tuple[float, float] = (0.0, float("inf"))) -> int:
        return sum(
            1 for a in self.attempts if a.outcome == outcome and between[0] <= a.finished_at < between[1]
        )

    @property
    def slowest_reply(self) -> float:
        return max((attempt.seconds for attempt in self.attempts), default=0.0)


def deliver(port: int, raw: bytes, tally: Tally, *, retry_for: float) -> bool:
    """Send ``raw`` like an MTA: after a 4xx or no answer, again every second for up to ``retry_for`` s."""
    tally.note_sent()
    deadline = time.monotonic() + retry_for
    while True:
        attempt = _attempt(port, raw)
        tally.note(attempt)
        if attempt.outcome == "accepted":
            return True
        if attempt.outcome == "refused" or time.monotonic() >= deadline:
            return False
        time.sleep(RETRY_EVERY_SECONDS)


def _attempt(port: int, raw: bytes) -> Attempt:
    started = time.monotonic()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=REPLY_TIMEOUT_SECONDS) as client:
            client.sendmail(SENDER, [MAILBOX], raw)
        outcome = "accepted"
    except smtplib.SMTPResponseException as error:
        outcome = _outcome_of(error.smtp_code)
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _message in error.recipients.values()]
        outcome = _outcome_of(max(codes))
    except OSError:
        outcome = "unreachable"
    finished = time.monotonic()
    return Attempt(outcome, finished, finished - started)


def _outcome_of(code: int) -> str:
    """RFC 5321 §4.2.1: 4yz is transient (the sender retries), 5yz permanent; 451 is our "database busy"."""
    if code == 451:
        return "451"
    return "temporary" if 400 <= code < 500 else "refused"


def thread_mail(prefix: str, n: int) -> bytes:
    """Message ``n`` of a load; every tenth answers the one before it, so threading is under test too."""
    parent = f"<{prefix}-{n - 1}@example.cz>" if n % 10 == 9 else None
    return make_mail(
        subject=f"Dotaz {prefix} {n}", message_id=f"<{prefix}-{n}@example.cz>", in_reply_to=parent
    )


def send_steadily(
    port: int, tally: Tally, *, prefix: str, count: int, per_second: float, retry_for: float
) -> None:
    """``count`` messages of ``thread_mail`` at ``per_second``, one after another, each retried until accepted."""
    began = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, began + n / per_second - time.monotonic()))
        deliver(port, thread_mail(prefix, n), tally, retry_for=retry_for)


def expected_tickets(count: int) -> int:
    return count - count // 10


def count_reserved_rows() -> Select[tuple[int]]:
    """Pending rows a drain has reserved: their ``queued_at`` moved into the future (``reserve_pending_emails``)."""
    return (
        select(func.count())
        .select_from(InboundEmail)
        .where(InboundEmail.status == InboundStatus.RECEIVED, InboundEmail.queued_at > clock.now())
    )


def reserved_rows(engine: Engine) -> int:
    with Session(engine.execution_options(**{READ_ONLY_OPTION: True})) as session:
        return session.scalar(count_reserved_rows())


def timed_out_drains() -> int:
    """Drain jobs in rq's failed registry that its job timeout stopped."""
    queue = get_queue()
    jobs = Job.fetch_many(
        queue.failed_job_registry.get_job_ids(), connection=queue.connection, serializer=JSONSerializer
    )
    return sum(1 for job in jobs if job is not None and job.func_name == DRAIN_EMAILS_JOB and _timed_out(job))


def _timed_out(job: Job) -> bool:
    result = job.latest_result()
    return result is not None and "exceeded maximum timeout value" in (result.exc_string or "")


@contextmanager
def service(tmp_path: Path, env: dict[str, str], *names: str) -> Iterator[dict[str, object]]:
    """Start ``centrala <name>`` for each name; stop them all afterwards and print the tail of their logs."""
    processes = {name: start([name], env, tmp_path / f"{name}.log") for name in names}
    try:
        yield processes
    finally:
        stop_all(processes.values(), tmp_path, timeout=30)


def engine_for(url: str) -> Engine:
    return create_db_engine(Settings(database_url=url))


# The drain's job timeout in the test below; its backlog takes a few seconds to parse, the lock far longer.
DRAIN_TIMEOUT_SECONDS = 5
EXPENSIVE_MESSAGES = 10
PLAIN_MESSAGES = 20


def expensive_mail(n: int) -> bytes:
    """A message with a thousand addresses in Cc (the parser's limit): about a tenth of a second to parse."""
    cc = ", ".join(f"Kolega {i} <kolega{i}@example.cz>" for i in range(1000))
    raw = make_mail(subject=f"Porada {n}", message_id=f"<cc-{n}@example.cz>", extra_headers={"Cc": cc})
    # On the wire in CRLF lines (RFC 5321 §2.3.8), as an MTA sends it: smtplib leaves the bytes it gets alone.
    return raw.replace(b"\n", b"\r\n")


@contextmanager
def lock_interactions_on_postgresql(engine: Engine) -> Iterator[None]:
    """Hold a lock that lets everyone read the timeline and nobody add to it, until the block ends."""
    with engine.connect() as connection:
        connection.execute(text("LOCK TABLE interaction IN SHARE MODE"))
        try:
            yield
        finally:
            connection.rollback()


def hold_sqlite_write_lock(path: str, seconds: float) -> None:
    """Take SQLite's one write lock and keep it ``seconds``, as another writer of the file would."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def hold_sqlite_write_lock_once_reserved(engine: Engine, seconds: float, *, timeout: float) -> int:
    """Take SQLite's one write lock, as another writer of the file would, at a moment when a drain has reserved
    rows and not recorded them yet, and keep it ``seconds``; how many rows were reserved then.

    The check is made under the lock: rows seen reserved and still pending there are rows whose drain has
    writes ahead of it, however quickly it parses, so that its next write waits for this lock.
    """
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as connection, connection.begin():  # BEGIN IMMEDIATE: the write lock
            reserved = connection.scalar(count_reserved_rows())
            if reserved:
                time.sleep(seconds)
                return reserved
        assert time.monotonic() < deadline, f"no drain reserved rows within {timeout} s"
        time.sleep(0.005)


def test_drain_stopped_by_its_job_timeout_leaves_its_rows_to_a_later_drain(tmp_path, committed_db, redis_url):
    """A drain that outlives ``CENTRALA_JOB_TIMEOUT_SECONDS`` is stopped by rq; the rows it had reserved wait
    out their hold and are processed by a later drain, each once.

    What holds the drain up is a real lock on what it writes, taken by the test after the drain reserved its
    rows: on PostgreSQL a table lock on the timeline (the worker waits for locks longer than its job may run),
    on SQLite the file's write lock, taken at a moment when reserved rows are still pending. rq's
    timeout is a signal, handled between Python bytecodes: on SQLite the drain waits for the lock in
    ``centrala.core.db``'s Python loop that tries ``BEGIN IMMEDIATE`` every millisecond, so it is stopped on time.
    """
    smtp_port = free_port()
    env = service_env(
        tmp_path / "var",
        http_port=free_port(),
        smtp_port=smtp_port,
        embedded=False,
        CENTRALA_JOB_TIMEOUT_SECONDS=str(DRAIN_TIMEOUT_SECONDS),
        **FAST_SWEEP,
    )
    postgresql = committed_db.dialect.name == "postgresql"
    messages = [expensive_mail(n) for n in range(EXPENSIVE_MESSAGES)]
    messages += [thread_mail("timeout", n) for n in range(PLAIN_MESSAGES)]
    tally = Tally()
    with service(tmp_path, env, "smtp", "scheduler") as processes:
        wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
        for raw in messages:
            deliver(smtp_port, raw, tally, retry_for=30)
        assert tally.count("accepted") == len(messages)
        # The worker waits for a lock up to a minute: what stops it is its job timeout, not a lock error.
        worker_env = {**env, "CENTRALA_DB_LOCK_TIMEOUT_MS": "60000"}
        blocker = lock_interactions_on_postgresql(committed_db) if postgresql else nullcontext()
        with blocker:
            processes["worker"] = start(["worker"], worker_env, tmp_path / "worker.log")
            if postgresql:
                reserved = wait_until(
                    lambda: reserved_rows(committed_db),
                    timeout=60,
                    interval=0.01,
                    what="a drain's reservation",
                )
            else:
                reserved = hold_sqlite_write_lock_once_reserved(
                    committed_db, DRAIN_TIMEOUT_SECONDS + 3, timeout=60
                )
            wait_until(timed_out_drains, timeout=45, interval=0.2, what="a drain stopped by its timeout")
        counts = wait_all_processed(committed_db, len(messages), timeout=120)
        timed_out = timed_out_drains()
        assert processes["worker"].poll() is None, "the worker itself must survive its job's timeout"
    report(
        "test_drain_stopped_by_its_job_timeout_leaves_its_rows_to_a_later_drain",
        sent=tally.sent,
        accepted=tally.count("accepted"),
        reserved=reserved,
        timed_out=timed_out,
        **counts,
    )
    assert reserved > 0
    assert counts == {
        "stored": len(messages),
        "processed": len(messages),
        "interactions": len(messages),
        "duplicates": 0,
        "tickets": EXPENSIVE_MESSAGES + expected_tickets(PLAIN_MESSAGES),
    }


REDIS_LOAD_SECONDS = 60
REDIS_DOWN_AT, REDIS_UP_AT = 15, 45
REDIS_RATE = 5


def test_redis_down_for_half_a_minute_delays_mail_and_loses_none(tmp_path, committed_db):
    """With Redis stopped for 30 s of a 60 s load the SMTP server still answers 250 to every message (the queue
    is optional: the row is committed first); once Redis is back, empty, the sweeper finds every pending row
    and the same worker processes each once."""
    smtp_port = free_port()
    tally = Tally()
    with running_redis(tmp_path / "redis") as redis_server:
        env = service_env(
            tmp_path / "var",
            http_port=free_port(),
            smtp_port=smtp_port,
            embedded=True,
            CENTRALA_DATABASE_URL=committed_db.url.render_as_string(hide_password=False),
            CENTRALA_REDIS_URL=redis_server.url,
            **FAST_SWEEP,
        )
        with service(tmp_path, env, "smtp", "worker", "scheduler") as processes:
            wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
            count = REDIS_LOAD_SECONDS * REDIS_RATE
            sender = threading.Thread(
                target=send_steadily,
                args=(smtp_port, tally),
                kwargs={"prefix": "redis", "count": count, "per_second": REDIS_RATE, "retry_for": 60},
            )
            began = time.monotonic()
            sender.start()
            time.sleep(max(0.0, began + REDIS_DOWN_AT - time.monotonic()))
            redis_server.stop()
            down_at = time.monotonic()
            time.sleep(max(0.0, began + REDIS_UP_AT - time.monotonic()))
            redis_server.start()
            up_at = time.monotonic()
            # What piled up while Redis was away: the worker and the sweeper must catch up, the load going on.
            backlog = tally.count("accepted")
            wait_all_processed(committed_db, backlog, timeout=120)
            recovered_after = time.monotonic() - up_at
            sender.join(timeout=REDIS_LOAD_SECONDS + 120)
            assert not sender.is_alive(), "the SMTP client hung"
            counts = wait_all_processed(committed_db, count, timeout=120)
            alive = {name: process.poll() is None for name, process in processes.items()}
    accepted_while_down = tally.count("accepted", between=(down_at, up_at))
    report(
        "test_redis_down_for_half_a_minute_delays_mail_and_loses_none",
        sent=tally.sent,
        accepted=tally.count("accepted"),
        accepted_while_down=accepted_while_down,
        answered_451=tally.count("451"),
        unreachable=tally.count("unreachable"),
        backlog_processed_after_s=round(recovered_after),
        **counts,
    )
    assert alive == {"smtp": True, "worker": True, "scheduler": True}
    assert tally.count("accepted") == count
    assert tally.count("451") == tally.count("temporary") == tally.count("unreachable") == 0
    assert accepted_while_down >= (REDIS_UP_AT - REDIS_DOWN_AT) * REDIS_RATE // 2
    assert tally.slowest_reply < 10, f"a reply took {tally.slowest_reply:.1f} s while Redis was down"
    assert counts == {
        "stored": count,
        "processed": count,
        "interactions": count,
        "duplicates": 0,
        "tickets": expected_tickets(count),
    }


PG_MESSAGES = 100
PG_RATE = 5
PG_DOWN_AT = 6
PG_DOWN_SECONDS = 5


def test_postgresql_restarted_mid_load_answers_451_then_recovers(tmp_path, redis_url):
    """PostgreSQL stopped for 5 s mid-load: the SMTP server answers 451 (the sender keeps the message and
    retries) rather than 250 or silence, and once the database is back every message is stored and processed
    once. The test runs its own cluster, whichever database the rest of the run uses."""
    smtp_port = free_port()
    tally = Tally()
    with running_postgres() as postgres:
        postgres.create_database("centrala")
        url = postgres.url("centrala")
        env = service_env(
            tmp_path / "var",
            http_port=free_port(),
            smtp_port=smtp_port,
            embedded=True,
            CENTRALA_DATABASE_URL=url,
            CENTRALA_REDIS_URL=redis_url,
            **FAST_SWEEP,
        )
        run(["migrate"], env)
        engine = engine_for(url)
        try:
            with service(tmp_path, env, "smtp", "worker", "scheduler") as processes:
                wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
                sender = threading.Thread(
                    target=send_steadily,
                    args=(smtp_port, tally),
                    kwargs={"prefix": "pg", "count": PG_MESSAGES, "per_second": PG_RATE, "retry_for": 120},
                )
                began = time.monotonic()
                sender.start()
                time.sleep(max(0.0, began + PG_DOWN_AT - time.monotonic()))
                postgres.stop("fast")
                down_at = time.monotonic()
                time.sleep(PG_DOWN_SECONDS)
                postgres.start()
                up_at = time.monotonic()
                sender.join(timeout=240)
                assert not sender.is_alive(), "the SMTP client hung"
                counts = wait_all_processed(engine, PG_MESSAGES, timeout=120)
                alive = {name: process.poll() is None for name, process in processes.items()}
        finally:
            engine.dispose()
    answered_451_while_down = tally.count("451", between=(down_at, up_at))
    # A second's grace either side: a commit just before the stop, a reply just before pg_ctl said "started".
    accepted_while_down = tally.count("accepted", between=(down_at + 1, up_at - 1))
    report(
        "test_postgresql_restarted_mid_load_answers_451_then_recovers",
        sent=tally.sent,
        accepted=tally.count("accepted"),
        answered_451=tally.count("451"),
        answered_451_while_down=answered_451_while_down,
        accepted_while_down=accepted_while_down,
        unreachable=tally.count("unreachable"),
        **counts,
    )
    assert alive == {"smtp": True, "worker": True, "scheduler": True}
    assert answered_451_while_down > 0
    assert accepted_while_down == 0
    assert tally.count("accepted") == PG_MESSAGES
    assert tally.count("refused") == tally.count("temporary") == tally.count("unreachable") == 0
    assert tally.slowest_reply < 30, f"a reply took {tally.slowest_reply:.1f} s"
    assert counts == {
        "stored": PG_MESSAGES,
        "processed": PG_MESSAGES,
        "interactions": PG_MESSAGES,
        "duplicates": 0,
        "tickets": expected_tickets(PG_MESSAGES),
    }


SQLITE_LOCK_SECONDS = 10
SQLITE_SENDERS = 3


def test_sqlite_write_lock_held_10_s_answers_451_not_a_hang(tmp_path, redis_url):
    """Another process holding SQLite's write lock for 10 s: a message gets 451 once the server's lock timeout
    (``CENTRALA_DB_LOCK_TIMEOUT_MS``, 5 s) is up, not a reply held until the lock goes, and its retry after the
    lock is released is stored once. Runs on a SQLite file of its own, whichever database the rest
    of the run uses."""
    smtp_port = free_port()
    var = tmp_path / "var"
    env = service_env(
        var, http_port=free_port(), smtp_port=smtp_port, embedded=True, CENTRALA_REDIS_URL=redis_url
    )
    run(["migrate"], env)
    database = var / "centrala.db"
    engine = engine_for(f"sqlite:///{database}")
    tally = Tally()
    try:
        with service(tmp_path, env, "smtp", "worker"):
            wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
            senders = [
                threading.Thread(
                    target=deliver, args=(smtp_port, thread_mail("lock", n), tally), kwargs={"retry_for": 60}
                )
                for n in range(SQLITE_SENDERS)
            ]
            lock_holder = threading.Thread(
                target=hold_sqlite_write_lock, args=(str(database), SQLITE_LOCK_SECONDS)
            )
            lock_holder.start()
            locked_at = time.monotonic()
            time.sleep(0.5)
            for sender in senders:
                sender.start()
            lock_holder.join()
            released_at = time.monotonic()
            for sender in senders:
                sender.join(timeout=90)
            assert not any(sender.is_alive() for sender in senders), "an SMTP client hung"
            counts = wait_all_processed(engine, SQLITE_SENDERS, timeout=60)
    finally:
        engine.dispose()
    answered_451_while_locked = tally.count("451", between=(locked_at, released_at))
    report(
        "test_sqlite_write_lock_held_10_s_answers_451_not_a_hang",
        sent=tally.sent,
        accepted=tally.count("accepted"),
        answered_451=tally.count("451"),
        answered_451_while_locked=answered_451_while_locked,
        **counts,
    )
    # The server answered 451 while the lock was still held, rather than keep its clients until it went. A
    # message queued behind both writer threads waits out their lock timeouts and its own: up to two of them.
    assert answered_451_while_locked >= 1
    bound = 2 * Settings().db_lock_timeout_ms / 1000 + 5
    assert tally.slowest_reply < bound, f"a reply took {tally.slowest_reply:.1f} s"
    assert tally.count("accepted") == SQLITE_SENDERS
    assert tally.count("refused") == tally.count("temporary") == tally.count("unreachable") == 0
    assert counts == {
        "stored": SQLITE_SENDERS,
        "processed": SQLITE_SENDERS,
        "interactions": SQLITE_SENDERS,
        "duplicates": 0,
        "tickets": SQLITE_SENDERS,
    }
