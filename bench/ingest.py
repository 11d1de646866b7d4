"""The ingest benchmark: a seeded corpus sent over SMTP to a running instance, timed until the last ticket.

    python -m bench.ingest --n 1000 --seed 1 --smtp 127.0.0.1:2525 --rcpt support@localhost --concurrency 4

Run it with the same ``CENTRALA_*`` environment (and working directory, for the default ``var/``) as the
instance: it watches that instance's ``inbound_email`` ledger, read-only, to see when every message has been
processed. Prints one JSON line to stdout; progress goes to stderr. ``--floor`` adds the floor (bench.floor)
on the same corpus and the same kind of database, and the ratio of the two.

mails/s is counted from the first SMTP transaction to the largest ``processed_at`` among the corpus' ledger
rows (the database's own record of the last message done); ``wall_*`` is the same span ended by the poll that
first saw everything done. The SMTP accept latency is the duration of one ``sendmail()``: MAIL, RCPT, DATA
and the wait for the 250 that the server sends only after the raw message is committed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import queue
import smtplib
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, column, create_engine, event, func, select, table
from sqlalchemy.engine import make_url

from bench.corpus import CorpusMail, generate_mails

log = logging.getLogger("bench.ingest")

POLL_SECONDS = 0.2
PROGRESS_SECONDS = 5.0
SMTP_TIMEOUT_SECONDS = 120.0
# A 4xx reply (RFC 5321 §4.2.1) means "try again": the benchmark does, after these pauses.
TRANSIENT_RETRY_PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0)
ID_CHUNK = 400


# --- sending ---------------------------------------------------------------------------------------------


@dataclass
class SendReport:
    """What the SMTP side saw."""

    latencies: list[float] = field(default_factory=list)
    first_started_at: float | None = None  # wall clock (time.time()) just before the first transaction
    last_accepted_at: float | None = None
    accepted: list[int] = field(default_factory=list)  # corpus indices answered 250
    failed: dict[int, str] = field(default_factory=dict)  # corpus index -> last error
    retries: int = 0
    reconnects: int = 0


def send_corpus(
    mails: Sequence[CorpusMail], *, host: str, port: int, rcpt: str, concurrency: int
) -> SendReport:
    """Send every mail, one per transaction, over ``concurrency`` persistent SMTP connections."""
    work: queue.SimpleQueue[CorpusMail] = queue.SimpleQueue()
    for mail in mails:
        work.put(mail)
    report = SendReport()
    lock = threading.Lock()
    stop_progress = threading.Event()

    def progress() -> None:
        while not stop_progress.wait(PROGRESS_SECONDS):
            with lock:
                done, failed = len(report.accepted), len(report.failed)
            log.info("smtp: %d/%d accepted, %d failed", done, len(mails), failed)

    threads = [
        threading.Thread(
            target=_send_worker, args=(work, report, lock, host, port, rcpt), name=f"smtp-{i}", daemon=True
        )
        for i in range(concurrency)
    ]
    reporter = threading.Thread(target=progress, daemon=True)
    reporter.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop_progress.set()
    return report


def _send_worker(
    work: queue.SimpleQueue[CorpusMail],
    report: SendReport,
    lock: threading.Lock,
    host: str,
    port: int,
    rcpt: str,
) -> None:
    connection: smtplib.SMTP | None = None
    try:
        while True:
            try:
                mail = work.get_nowait()
            except queue.Empty:
                return
            connection = _send_one(connection, mail, report, lock, host, port, rcpt)
    finally:
        if connection is not None:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()


def _connect(host: str, port: int) -> smtplib.SMTP:
    connection = smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT_SECONDS)
    connection.ehlo("bench.example.net")
    return connection


def _send_one(
    connection: smtplib.SMTP | None,
    mail: CorpusMail,
    report: SendReport,
    lock: threading.Lock,
    host: str,
    port: int,
    rcpt: str,
) -> smtplib.SMTP | None:
    """Send one mail, retrying transient failures; returns the connection to use for the next one."""
    error = ""
    for attempt, pause in enumerate((0.0, *TRANSIENT_RETRY_PAUSES)):
        if attempt:
            with lock:
                report.retries += 1
            time.sleep(pause)
        try:
            if connection is None:
                connection = _connect(host, port)
                if attempt:
                    with lock:
                        report.reconnects += 1
            options = []
            if not mail.raw.isascii() and connection.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")  # RFC 6152
            started_wall = time.time()
            started = time.perf_counter()
            connection.sendmail(mail.sender.address, [rcpt], mail.raw, mail_options=options)
            elapsed = time.perf_counter() - started
            accepted_wall = time.time()
            with lock:
                report.latencies.append(elapsed)
                report.accepted.append(mail.index)
                if report.first_started_at is None or started_wall < report.first_started_at:
                    report.first_started_at = started_wall
                if report.last_accepted_at is None or accepted_wall > report.last_accepted_at:
                    report.last_accepted_at = accepted_wall
            return connection
        except smtplib.SMTPRecipientsRefused as refused:
            code, message = next(iter(refused.recipients.values()))
            error = f"RCPT {code} {message!r}"
            if not 400 <= code < 500:
                break
        except smtplib.SMTPResponseException as response:
            error = f"{response.smtp_code} {response.smtp_error!r}"
            if response.smtp_code == 421 and connection is not None:
                # 421: the server is closing this channel (RFC 5321 §3.8); the retry needs a new connection.
                connection.close()
                connection = None
            if not 400 <= response.smtp_code < 500:
                break
        except (smtplib.SMTPServerDisconnected, OSError) as lost:
            error = f"connection: {lost!r}"
            if connection is not None:
                connection.close()
            connection = None
    with lock:
        report.failed[mail.index] = error
    log.warning("mail %d not accepted: %s", mail.index, error)
    return connection


# --- watching the ledger ------------------------------------------------------------------------------------


def _ledger_table(datetime_type: Any) -> Any:
    return table(
        "inbound_email",
        column("id"),
        column("sha256", String),
        column("message_id", String),
        column("status", String),
        column("processed_at", datetime_type),
    )


def open_ledger_engine() -> tuple[Engine, Any]:
    """A read-only engine on the instance's database and the ``inbound_email`` table to query with it.

    On SQLite this deliberately avoids ``centrala.core.db.get_engine()``: its engine opens every transaction
    with BEGIN IMMEDIATE, i.e. takes the write lock, so polling through it would queue behind (and hold up)
    the SMTP server and the workers. Plain deferred read transactions in WAL mode never block a writer.
    """
    from centrala.core.db import UTCDateTime, create_db_engine
    from centrala.core.settings import get_settings

    settings = get_settings()
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or not Path(url.database).exists():
            raise SystemExit(
                f"bench.ingest: no database at {url.database}; run from the instance's directory"
            )
        engine = create_engine(url, connect_args={"timeout": settings.db_lock_timeout_ms / 1000})

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA query_only=ON")
            cursor.close()

    else:
        engine = create_db_engine(settings, pool_size=2)
    return engine, _ledger_table(UTCDateTime())


def active_sla_policies(engine: Engine) -> int:
    """How many SLA policies the instance applies: with none, no ticket starts SLA clocks and the figure
    leaves their cost out (``centrala seed``, which ``make run`` runs, adds the default one)."""
    policies = table("sla_policy", column("is_active"))
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(policies).where(policies.c.is_active))


@dataclass
class LedgerState:
    """Where the corpus stands in the instance's ``inbound_email`` ledger."""

    rows: int = 0
    pending: int = 0


class LedgerWatch:
    """Finds the corpus' rows in ``inbound_email`` and tells when all of them have left ``received``.

    Polling stays on indexes so that watching costs the instance next to nothing: rows of this run are those
    above the largest id seen before the first mail was sent (the primary key), and the pending count comes
    from the (status, received_at) index. Which rows are ours, and their ``processed_at``, is read once at
    the end, by sha256 of the bytes sent or by Message-ID (as the worker stores it, without angle brackets).
    """

    def __init__(self, engine: Engine, ledger: Any, mails: Sequence[CorpusMail]) -> None:
        self.engine = engine
        self.ledger = ledger
        self.mails = mails
        self.by_sha256 = {hashlib.sha256(mail.raw).hexdigest(): mail.index for mail in mails}
        self.by_message_id: dict[str, int] = {}
        for mail in mails:
            self.by_message_id[mail.message_id] = mail.index
            self.by_message_id[mail.message_id.strip("<>")] = mail.index
        self.id_floor = 0

    def already_present(self, seed: int) -> int:
        """How many of the corpus' messages the ledger holds already (same bytes or this seed's Message-IDs).

        Either would make the run meaningless: identical bytes are dropped at the door (ON CONFLICT DO
        NOTHING), a known Message-ID is processed as a duplicate. Runs once, before the clock starts.
        """
        ledger = self.ledger
        found: set[int] = set()
        with self.engine.connect() as connection:
            for chunk in _chunks(list(self.by_sha256), ID_CHUNK):
                for value in connection.execute(
                    select(ledger.c.sha256).where(ledger.c.sha256.in_(chunk))
                ).scalars():
                    found.add(self.by_sha256[value])
            # One pass with a prefix match instead of many IN lists (the message_id index serves it on
            # PostgreSQL only with a text_pattern_ops operator class; it runs once, before the clock starts).
            pattern = f"bench-{seed}-%"
            statement = select(ledger.c.message_id).where(
                ledger.c.message_id.like(pattern) | ledger.c.message_id.like("<" + pattern)
            )
            for value in connection.execute(statement).scalars():
                if value in self.by_message_id:
                    found.add(self.by_message_id[value])
        return len(found)

    def mark_start(self) -> None:
        """Remember the largest ledger id before sending: this run's rows are above it."""
        with self.engine.connect() as connection:
            self.id_floor = connection.execute(
                select(func.coalesce(func.max(self.ledger.c.id), 0))
            ).scalar_one()

    def state(self) -> LedgerState:
        ledger = self.ledger
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(func.count()).select_from(ledger).where(ledger.c.id > self.id_floor)
            ).scalar_one()
            pending = connection.execute(
                select(func.count())
                .select_from(ledger)
                .where(ledger.c.status == "received", ledger.c.id > self.id_floor)
            ).scalar_one()
        return LedgerState(rows=rows, pending=pending)

    def wait(self, *, expected: int, timeout: float) -> tuple[bool, float]:
        """Poll until ``expected`` rows exist and none is pending; (finished, wall time when seen)."""
        deadline = time.monotonic() + timeout
        last_progress = 0.0
        while True:
            state = self.state()
            now = time.time()
            if state.rows >= expected and state.pending == 0:
                return True, now
            if time.monotonic() - last_progress >= PROGRESS_SECONDS:
                log.info("ledger: %d/%d rows, %d still received", state.rows, expected, state.pending)
                last_progress = time.monotonic()
            if time.monotonic() >= deadline:
                log.error("timed out: %d/%d rows, %d still received", state.rows, expected, state.pending)
                return False, now
            time.sleep(POLL_SECONDS)

    def outcome(self) -> dict[str, Any]:
        """The corpus' rows of this run: counts by status and the latest ``processed_at``."""
        ledger = self.ledger
        statement = select(
            ledger.c.id, ledger.c.sha256, ledger.c.message_id, ledger.c.status, ledger.c.processed_at
        ).where(ledger.c.id > self.id_floor)
        ours: dict[int, tuple[str, datetime | None]] = {}
        foreign = 0
        with self.engine.connect() as connection:
            for _row_id, sha256, message_id, status, processed_at in connection.execute(statement):
                index = self.by_sha256.get(sha256)
                if index is None and message_id is not None:
                    index = self.by_message_id.get(message_id)
                if index is None:
                    foreign += 1
                    continue
                ours[index] = (status, processed_at)
        statuses = [status for status, _ in ours.values()]
        finished = [at for status, at in ours.values() if status != "received" and at is not None]
        return {
            "rows": len(ours),
            "processed": statuses.count("processed"),
            "quarantined": statuses.count("quarantined"),
            "received": statuses.count("received"),
            "foreign_rows": foreign,
            "last_processed_at": max(finished) if finished else None,
        }


def _chunks(values: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --- the run ---------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile with linear interpolation between the two nearest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _floor_for(engine: Engine, corpus: Sequence[bytes]) -> dict[str, Any]:
    """The floor on the same kind of database: WAL SQLite beside the instance's file, or the same server."""
    from bench.floor import run_floor

    url = engine.url
    if url.get_backend_name() == "sqlite":
        # Same filesystem as the instance's database, so both pay the same fsync.
        directory = Path(url.database).resolve().parent if url.database else Path(tempfile.gettempdir())
        return run_floor(corpus, sqlite_journal="wal", tmp_dir=directory)
    return run_floor(corpus, database_url=url.render_as_string(hide_password=False))


def run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    host, _, port = args.smtp.rpartition(":")
    mails = generate_mails(args.n, args.seed, to=args.rcpt)
    log.info(
        "corpus: %d mails, %.1f KiB on average",
        len(mails),
        sum(len(m.raw) for m in mails) / max(len(mails), 1) / 1024,
    )

    engine, ledger = open_ledger_engine()
    database = engine.dialect.name
    watch = LedgerWatch(engine, ledger, mails)
    present = watch.already_present(args.seed)
    if present:
        raise SystemExit(
            f"bench.ingest: {present} of these mails are already in the ledger (seed {args.seed}); "
            "use another --seed or a fresh database"
        )
    sla_policies = active_sla_policies(engine)
    watch.mark_start()

    try:
        # Fail fast when nothing listens, rather than retrying every mail.
        _connect(host or "127.0.0.1", int(port)).quit()
    except (smtplib.SMTPException, OSError) as error:
        raise SystemExit(f"bench.ingest: cannot reach the SMTP server at {args.smtp}: {error!r}") from error
    log.info("sending to %s:%s over %d connections", host, port, args.concurrency)
    report = send_corpus(
        mails, host=host or "127.0.0.1", port=int(port), rcpt=args.rcpt, concurrency=args.concurrency
    )
    sent = len(report.accepted)
    if report.first_started_at is None or report.last_accepted_at is None:
        raise SystemExit(
            f"bench.ingest: no mail accepted; first error: {next(iter(report.failed.values()), '?')}"
        )
    send_seconds = report.last_accepted_at - report.first_started_at
    log.info(
        "smtp done: %d accepted in %.2f s, %d failed; waiting for the workers",
        sent,
        send_seconds,
        len(report.failed),
    )

    finished, seen_at = watch.wait(expected=sent, timeout=args.timeout)
    outcome = watch.outcome()
    done = outcome["processed"] + outcome["quarantined"]
    wall_seconds = seen_at - report.first_started_at
    last = outcome["last_processed_at"]
    if last is not None:
        seconds = last.astimezone(UTC).timestamp() - report.first_started_at
        clock = "db"
    else:
        seconds, clock = wall_seconds, "wall"
    result: dict[str, Any] = {
        "bench": "ingest",
        "n": args.n,
        "database": database,
        "sla_policies": sla_policies,
        "mails_per_s": round(done / seconds, 1) if seconds > 0 and done else 0.0,
        "smtp_accept_p50_ms": round(percentile(report.latencies, 0.50) * 1000, 2),
        "smtp_accept_p99_ms": round(percentile(report.latencies, 0.99) * 1000, 2),
        "processed": outcome["processed"],
        "quarantined": outcome["quarantined"],
        "seconds": round(seconds, 3),
        "clock": clock,
        "wall_seconds": round(wall_seconds, 3),
        "wall_mails_per_s": round(done / wall_seconds, 1) if wall_seconds > 0 and done else 0.0,
        "smtp_accepted": sent,
        "smtp_failed": len(report.failed),
        "smtp_retries": report.retries,
        "smtp_reconnects": report.reconnects,
        "smtp_seconds": round(send_seconds, 3),
        "smtp_mails_per_s": round(sent / send_seconds, 1) if send_seconds > 0 else None,
        "smtp_accept_max_ms": round(max(report.latencies) * 1000, 2),
        "still_received": outcome["received"],
        "unmatched_rows": outcome["foreign_rows"],
        "timed_out": not finished,
        "seed": args.seed,
        "concurrency": args.concurrency,
        "mean_kb": round(sum(len(m.raw) for m in mails) / max(len(mails), 1) / 1024, 2),
    }
    engine.dispose()
    if args.floor:
        log.info("running the floor on the same corpus")
        floor = _floor_for(engine, [mail.raw for mail in mails])
        result["floor_database"] = floor["database"]
        result["floor_mails_per_s"] = floor["mails_per_s"]
        if "compression" in floor:
            result["floor_compression"] = floor["compression"]
        result["ratio_to_floor"] = (
            round(result["mails_per_s"] / floor["mails_per_s"], 3) if floor["mails_per_s"] else None
        )
    status = 0 if finished and not report.failed else 1
    return result, status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of mails (default 1000)")
    parser.add_argument(
        "--seed", type=int, default=1, help="corpus seed; a seed can be sent once per database"
    )
    parser.add_argument(
        "--smtp", default=None, help="HOST:PORT of the instance (default from CENTRALA_SMTP_*)"
    )
    parser.add_argument(
        "--rcpt", default=None, help="envelope recipient (default: the first CENTRALA_MAILBOXES)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="parallel SMTP connections (default 4)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for processing (default 600)"
    )
    parser.add_argument("--floor", action="store_true", help="also run bench.floor and report the ratio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if args.smtp is None or args.rcpt is None:
        from centrala.core.settings import get_settings

        settings = get_settings()
        args.smtp = args.smtp or f"{settings.smtp_host}:{settings.smtp_port}"
        args.rcpt = args.rcpt or settings.mailboxes[0]
    if args.concurrency < 1 or args.n < 1:
        parser.error("--n and --concurrency must be positive")
    result, status = run(args)
    print(json.dumps(result), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
