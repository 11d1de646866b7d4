"""The drain benchmark: the worker's cost per mail, in one process, with nothing else running.

    python -m bench.drain [--n 1000] [--seed 1] [--repeat 3] [--no-sla-policy] [--db sqlite|postgresql]
                          [--database-url URL]

End to end (``bench.ingest``) the figure moves by 15 % or more from one run to the next on a small shared
machine, and it mixes the worker with the SMTP server and the client. This one isolates the worker, which is
the limit of the pipeline: the seeded corpus is stored in the ledger as the SMTP server stores it, then
``drain_inbound_emails`` (the job a worker runs) is called until nothing is pending, and the CPU time of this
process is counted. Each repetition empties the tables and stores the corpus again. Before each drain the
objects alive are frozen out of the cyclic collector, as a worker freezes what it loaded before its first job
(``core.startup``); figures from before that (2026-11-25) include full collections walking them, 0.3-0.4 ms a
mail.

The database and Redis are set up as ``bench.sla`` does: SQLite in a temporary folder (the service's engine)
or a scratch database on the PostgreSQL server of ``--database-url`` or ``CENTRALA_DATABASE_URL``; the embedded
Redis, or an empty logical database of ``CENTRALA_REDIS_URL``'s server. Nothing is sent: the acknowledgements
stay queued in the outbox. The default SLA policy that ``centrala seed`` gives a new installation is in place
(office hours), so every new ticket starts its clocks, unless ``--no-sla-policy``.

Prints one JSON line on stdout (progress on stderr):

- ``cpu_ms_per_mail``: the drain's CPU time (``time.process_time``, this process: with the parse helper on,
  parsing runs in the helper and is not counted) ÷ mails, median over ``--repeat`` runs
  (each run in ``cpu_ms_per_mail_runs``); ``wall_ms_per_mail`` the same on the wall clock: on PostgreSQL the
  difference is mostly the wait for the server;
- ``parse_cpu_ms_per_mail``: ``parse_email`` alone over the same corpus, the share of the drain that is parsing;
- ``statements_per_mail``, ``flushes_per_mail``: SQL statements sent and ORM flushes made by the drain (last
  run). They vary by a percent or two (a write transaction ends after ``ingest_transaction_ms``, so how many
  mails share its claim and commit follows the clock), and say what a change to the record path did without
  the noise of the clock.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.corpus import generate_corpus
from bench.portal import _log
from bench.sla import add_database_arguments, chosen_database, scratch_instance

# Rows stored per ledger transaction, as the SMTP server's group commit stores them.
STORE_BATCH = 50


@dataclass
class Counts:
    """SQL statements and ORM flushes seen while counting is on."""

    statements: int = 0
    flushes: int = 0
    on: bool = False


def _count_statements_and_flushes(counts: Counts) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    @event.listens_for(Engine, "before_cursor_execute")
    def _statement(*_args: Any) -> None:
        if counts.on:
            counts.statements += 1

    @event.listens_for(Session, "after_flush")
    def _flush(*_args: Any) -> None:
        if counts.on:
            counts.flushes += 1


def _store(corpus: list[bytes]) -> None:
    from centrala.core import clock
    from centrala.core.blobs import BlobStore
    from centrala.core.db import session_scope
    from centrala.core.settings import get_settings
    from centrala.ingest.ledger import ArrivedEmail, record_inbound_emails

    blobs = BlobStore(get_settings().blob_dir)
    for start in range(0, len(corpus), STORE_BATCH):
        arrived = [
            ArrivedEmail(raw, "support@localhost", "customer@example.com", ["support@localhost"])
            for raw in corpus[start : start + STORE_BATCH]
        ]
        with session_scope() as session:
            record_inbound_emails(session=session, emails=arrived, now=clock.now(), blobs=blobs)


def _add_sla_policy() -> None:
    """The default policy a new installation is seeded with, as a team that measures its SLA has one."""
    from centrala.core import clock
    from centrala.core.db import session_scope
    from centrala.core.settings import get_settings
    from centrala.tickets.seed import demo_sla_policy

    settings = get_settings()
    with session_scope() as session:
        session.add(
            demo_sla_policy(region=settings.default_region, timezone=settings.portal_timezone, now=clock.now())
        )


def _empty_tables() -> None:
    from centrala.core.db import get_engine
    from centrala.schema import metadata

    with get_engine().begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())


def _drain(counts: Counts) -> tuple[dict[str, int], float, float]:
    """Run drains until one finds nothing; the outcome counts, CPU seconds and wall seconds."""
    from centrala.core.startup import freeze_loaded_objects
    from centrala.workers.jobs import drain_inbound_emails

    # As a worker does once it has loaded everything: what is alive now stays out of the full collections.
    freeze_loaded_objects()
    outcomes: dict[str, int] = {}
    counts.on = True
    cpu, wall = time.process_time(), time.perf_counter()
    while done := drain_inbound_emails():
        for status, number in done.items():
            outcomes[status] = outcomes.get(status, 0) + number
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    counts.on = False
    return outcomes, cpu, wall


def _parse_cpu(corpus: list[bytes]) -> float:
    from centrala.mail.parse import parse_email

    started = time.process_time()
    for raw in corpus:
        parse_email(raw, mail_from="customer@example.com")
    return time.process_time() - started


def _run(args: argparse.Namespace, database: str) -> dict[str, Any]:
    from centrala.core.queue import get_redis
    from centrala.schema import upgrade_database

    upgrade_database()
    get_redis().ping()
    corpus = generate_corpus(args.n, args.seed)
    counts = Counts()
    _count_statements_and_flushes(counts)
    cpu_runs: list[float] = []
    wall_runs: list[float] = []
    outcomes: dict[str, int] = {}
    for repeat in range(args.repeat):
        if repeat:
            _empty_tables()
        if args.sla_policy:
            _add_sla_policy()
        _store(corpus)
        counts.statements = counts.flushes = 0
        outcomes, cpu, wall = _drain(counts)
        cpu_runs.append(cpu * 1000 / args.n)
        wall_runs.append(wall * 1000 / args.n)
        _log(f"run {repeat + 1}/{args.repeat}: {cpu_runs[-1]:.2f} ms CPU a mail, {outcomes}")
    return {
        "bench": "drain",
        "n": args.n,
        "seed": args.seed,
        "database": database,
        "sla_policy": args.sla_policy,
        "cpu_ms_per_mail": round(statistics.median(cpu_runs), 2),
        "cpu_ms_per_mail_runs": [round(value, 2) for value in cpu_runs],
        "wall_ms_per_mail": round(statistics.median(wall_runs), 2),
        "parse_cpu_ms_per_mail": round(_parse_cpu(corpus) * 1000 / args.n, 2),
        "statements_per_mail": round(counts.statements / args.n, 2),
        "flushes_per_mail": round(counts.flushes / args.n, 2),
        **outcomes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="number of mails (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is reported (default 3)")
    parser.add_argument(
        "--no-sla-policy",
        dest="sla_policy",
        action="store_false",
        help="run without the seeded default SLA policy (no ticket starts SLA clocks)",
    )
    add_database_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    database, server_url = chosen_database(parser, args)
    if args.n < 1 or args.repeat < 1:
        parser.error("--n and --repeat must be positive")

    with scratch_instance("drain", database, server_url, CENTRALA_LOG_LEVEL="WARNING") as redis:
        result = _run(args, database)
        result["redis"] = redis
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
