"""The SLA benchmark: a million open clocks, the sweep that finds the due ones, firing them, and the lag from
due to breach recorded through the real scheduled-job path.

    python -m bench.sla --clocks 1000000 --due 1000 --lag-clocks 100

SQLite in a temporary folder by default (WAL, as the service runs it); PostgreSQL in a scratch database of its own
on the server of ``CENTRALA_DATABASE_URL`` (dropped afterwards). Redis: ``CENTRALA_REDIS_URL``, else the embedded
one in the temporary folder. Prints one JSON line; progress on stderr.

- ``sweep_due_ms``: ``find_due_clocks`` returning the ``--due`` clocks already due among all the open ones, and
  ``sweep_idle_ms`` the same query when nothing is due: both follow the ``next_check_at`` index (``plan``), so
  they cost the number of due clocks, not the number of open tickets.
- ``fire_per_s``: ``check_clock`` on each due clock, one transaction each as the job runs it (breach recorded,
  escalation written to the outbox).
- ``lag_*_ms``: ``--lag-clocks`` clocks falling due a few seconds after they are scheduled with rq ``enqueue_at``;
  our scheduler moves each job when due and a worker runs it; the lag is ``breached_at - due_at``, measured with
  the queue otherwise idle (a backlog of other jobs on the one queue delays checks as much as it takes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.portal import _drop, _log, _percentile, _scratch_database

CHUNK = 20_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clocks", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--lag-clocks", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="centrala-bench-sla-") as folder:
        url, admin_url = _scratch_database(os.environ.get("CENTRALA_DATABASE_URL"), Path(folder))
        os.environ.update(
            CENTRALA_DATABASE_URL=url,
            CENTRALA_VAR_DIR=folder,
            CENTRALA_QUEUE_NAME=f"bench-sla-{uuid.uuid4().hex[:8]}",
        )
        try:
            print(json.dumps(_run(args, "postgresql" if admin_url else "sqlite")))
        finally:
            from centrala.core.db import get_engine

            get_engine().dispose()
            if admin_url:
                _drop(url, admin_url)
    return 0


def _run(args: argparse.Namespace, database: str) -> dict[str, object]:
    from centrala.core.db import get_engine, get_sessionmaker
    from centrala.core.settings import get_settings
    from centrala.schema import upgrade_database
    from centrala.tickets.sla_clocks import check_clock, find_due_clocks

    engine = get_engine()
    upgrade_database(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    _fill(engine, clocks=args.clocks, due=args.due, now=now)
    setup_s = time.perf_counter() - started
    _log(f"{args.clocks} open clocks in {setup_s:.1f} s")

    sessions = get_sessionmaker()
    with sessions() as session:
        find_due_clocks(
            session=session, now=now, grace=timedelta(0), limit=1
        )  # connection and plan warmed up
        started = time.perf_counter()
        idle = find_due_clocks(
            session=session, now=now - timedelta(days=1), grace=timedelta(0), limit=args.due
        )
        sweep_idle_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        due = find_due_clocks(session=session, now=now, grace=timedelta(0), limit=args.due)
        sweep_due_ms = (time.perf_counter() - started) * 1000
        plan = _plan(session, now)
    assert not idle and len(due) == args.due, (len(idle), len(due))

    settings = get_settings()
    started = time.perf_counter()
    fired = 0
    for clock_id in due:
        with sessions() as session:
            fired += "breach" in check_clock(session=session, clock_id=clock_id, now=now, settings=settings)
            session.commit()
    fire_s = time.perf_counter() - started
    assert fired == args.due, fired
    _log(f"fired {fired} breaches in {fire_s:.2f} s")

    lags = _lag(args.lag_clocks, sessions)
    return {
        "benchmark": "sla",
        "database": database,
        "open_clocks": args.clocks,
        "setup_s": round(setup_s, 1),
        "due": args.due,
        "sweep_due_ms": round(sweep_due_ms, 2),
        "sweep_idle_ms": round(sweep_idle_ms, 2),
        "fire_total_s": round(fire_s, 2),
        "fire_per_s": round(args.due / fire_s, 1),
        "lag_clocks": len(lags),
        "lag_p50_ms": round(statistics.median(lags), 1),
        "lag_p95_ms": round(_percentile(lags, 0.95), 1),
        "lag_max_ms": round(max(lags), 1),
        "plan": plan,
    }


def _fill(engine, *, clocks: int, due: int, now: datetime) -> None:  # type: ignore[no-untyped-def]
    """One policy and contact; ``clocks`` tickets, each with a running first-response clock; the first ``due``
    already due, the others due over the coming weeks."""
    from sqlalchemy import insert

    from centrala.tickets.models import Contact, SlaClock, SlaPolicy, Ticket

    with engine.begin() as connection:
        connection.execute(
            insert(SlaPolicy).values(
                id=1,
                name="Bench",
                precedence=100,
                is_default=True,
                is_active=True,
                targets={"default": {"first_response": 60}},
                warn_before_minutes=0,
                escalations=[{"on": "breach", "action": "notify_address", "address": "lead@example.net"}],
                calls_count_as_response=True,
                updated_at=now,
            )
        )
        connection.execute(
            insert(Contact).values(
                id=1, name="Bench", is_provisional=False, is_org_manager=False, created_at=now, updated_at=now
            )
        )
    for start in range(1, clocks + 1, CHUNK):
        ids = range(start, min(start + CHUNK, clocks + 1))
        tickets = [
            {
                "id": i,
                "subject": f"Ticket {i}",
                "status": "open",
                "priority": "normal",
                "channel": "email",
                "contact_id": 1,
                "created_at": now,
                "updated_at": now,
            }
            for i in ids
        ]
        rows = []
        for i in ids:
            due_at = now - timedelta(minutes=1) if i <= due else now + timedelta(hours=1, seconds=i)
            rows.append(
                {
                    "id": i,
                    "ticket_id": i,
                    "policy_id": 1,
                    "metric": "first_response",
                    "cycle": 0,
                    "state": "running",
                    "target_minutes": 60,
                    "warn_before_minutes": 0,
                    "achieved_minutes": 0.0,
                    "started_at": now,
                    "running_since": now,
                    "due_at": due_at,
                    "warn_at": due_at,
                    "warned_at": due_at,
                    "next_check_at": due_at,
                }
            )
        with engine.begin() as connection:
            connection.execute(insert(Ticket), tickets)
            connection.execute(insert(SlaClock), rows)
        if start % 200_000 < CHUNK:
            _log(f"  {start + len(ids) - 1} clocks")
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            for table in ("ticket", "sla_clock"):
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {clocks})"
                )
            connection.exec_driver_sql("ANALYZE")
    else:
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")


def _plan(session, now: datetime) -> str:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    if session.get_bind().dialect.name == "postgresql":
        rows = (
            session.execute(
                text(
                    "EXPLAIN SELECT id FROM sla_clock WHERE next_check_at <= :now ORDER BY next_check_at, id LIMIT 1000"
                ),
                {"now": now},
            )
            .scalars()
            .all()
        )
    else:
        rows = [
            row[-1]
            for row in session.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT id FROM sla_clock WHERE next_check_at <= :now ORDER BY next_check_at, id "
                    "LIMIT 1000"
                ),
                {"now": now.isoformat()},
            )
        ]
    return " | ".join(str(row).strip() for row in rows)[:300]


def _lag(count: int, sessions) -> list[float]:  # type: ignore[no-untyped-def]
    """Clocks due 3-5 s from now, their checks scheduled with rq; our scheduler and a worker do the rest."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer
    from sqlalchemy import select

    from centrala.core.queue import PendingJob, enqueue_now, get_queue
    from centrala.core.settings import get_settings
    from centrala.tickets.models import SlaClock
    from centrala.tickets.sla_clocks import CHECK_JOB
    from centrala.workers.processes import run_scheduler

    queue = get_queue()
    # The firing above queued one notification e-mail per breach; sending them is not what is measured here.
    queue.empty()
    with sessions() as session:
        chosen = session.scalars(
            select(SlaClock)
            .where(SlaClock.breached_at.is_(None))
            .order_by(SlaClock.next_check_at.desc())
            .limit(count)
        ).all()
        # The due instants are set only now that the clocks are chosen: choosing may take a while.
        start = datetime.now(UTC) + timedelta(seconds=3)
        for index, clock in enumerate(chosen):
            due_at = start + timedelta(milliseconds=2000 * index / max(1, count))
            clock.due_at = clock.warn_at = clock.warned_at = clock.next_check_at = due_at
        session.commit()
        schedule = [(clock.id, clock.due_at) for clock in chosen]
    enqueue_now([PendingJob(CHECK_JOB, (clock_id,), at=due_at) for clock_id, due_at in schedule])
    stop = threading.Event()
    settings = get_settings().model_copy(update={"sweep_interval_seconds": 3600.0})
    scheduler = threading.Thread(target=run_scheduler, args=(settings, stop), daemon=True)
    scheduler.start()
    worker = SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer)
    deadline = time.monotonic() + 60
    ids = [clock_id for clock_id, _ in schedule]
    try:
        while time.monotonic() < deadline:
            worker.work(burst=True, logging_level="WARNING")
            with sessions() as session:
                pending = session.scalar(
                    select(SlaClock.id).where(SlaClock.id.in_(ids), SlaClock.breached_at.is_(None)).limit(1)
                )
            if pending is None:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        scheduler.join(timeout=10)
    with sessions() as session:
        rows = session.execute(
            select(SlaClock.due_at, SlaClock.breached_at).where(SlaClock.id.in_(ids))
        ).all()
    return [(breached - due).total_seconds() * 1000 for due, breached in rows if breached is not None]


if __name__ == "__main__":
    sys.exit(main())
