"""The portal benchmark: page latency for a customer with 500 cases in a database of 200,000 tickets.

    python -m bench.portal [--tickets 200000] [--cases 500] [--requests 200] [--database-url URL]

Builds a scratch database (a SQLite file in a temporary folder, or a database ``bench_portal_<pid>`` on the
PostgreSQL server of ``--database-url``), migrated to head and filled in bulk (executemany in batches;
COPY on PostgreSQL): contacts, tickets spread over them, a thread of three messages per ticket of the
measured customer and one for every other ticket, and running SLA clocks on the customer's open cases. Then
it signs the customer in (a session row, like the sign-in does) and requests, in process through the whole
ASGI stack, the first and a middle page of the list and a case with its thread, ``--requests`` times each.
Prints one JSON line to stdout; progress goes to stderr. The scratch database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def _scratch_database(server_url: str | None, folder: Path) -> tuple[str, str | None]:
    """``(url, admin_url)`` of an empty database; admin_url is set for PostgreSQL (to drop it afterwards)."""
    if not server_url:
        return f"sqlite:///{folder / 'portal-bench.db'}", None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_portal_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False), server_url


def _drop(url: str, admin_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def _fill(engine, *, tickets: int, cases: int, now: datetime) -> dict[str, int]:
    """Insert the data set in bulk; returns the measured customer's id and a case id of theirs."""
    from sqlalchemy import insert

    from centrala.core.db import is_postgresql
    from centrala.tickets.models import Contact, ContactEmail, Interaction, SlaClock, Ticket

    contacts = max(1000, tickets // 10)
    batch = 10_000
    started = time.monotonic()

    def bulk(connection, table, rows) -> None:
        for start in range(0, len(rows), batch):
            connection.execute(insert(table), rows[start:start + batch])

    with engine.begin() as connection:
        bulk(connection, Contact.__table__, [
            {"id": i, "name": f"Customer {i}", "language": "cs", "is_provisional": False, "is_org_manager": False,
             "created_at": now, "updated_at": now}
            for i in range(1, contacts + 1)
        ])
        bulk(connection, ContactEmail.__table__, [
            {"id": i, "contact_id": i, "address": f"customer{i}@example.net"} for i in range(1, contacts + 1)
        ])
    _log(f"{contacts} contacts in {time.monotonic() - started:.1f} s")
    customer = 1
    statuses = ("new", "open", "pending", "resolved", "closed")
    # The customer's cases first (ids 1..cases), then everybody else's spread over the other contacts.
    ticket_rows = []
    for i in range(1, tickets + 1):
        owner = customer if i <= cases else 2 + (i * 7919) % (contacts - 1)
        moment = now - timedelta(minutes=(tickets - i) * 3)
        ticket_rows.append({
            "id": i, "subject": f"Case {i}: the delivery did not arrive", "status": statuses[i % 5],
            "priority": "normal", "channel": "email", "mailbox": "support@example.net", "contact_id": owner,
            "created_at": moment, "updated_at": moment,
        })
    interaction_rows = []
    next_id = 1
    for row in ticket_rows:
        for n in range(3 if row["contact_id"] == customer else 1):
            interaction_rows.append({
                "id": next_id, "ticket_id": row["id"], "contact_id": row["contact_id"], "channel": "email",
                "direction": "inbound" if n % 2 == 0 else "outbound", "external_id": f"bench-{next_id}@example.net",
                "author_name": "Customer", "subject": row["subject"],
                "text": "Hello,\nthe parcel has not arrived yet. Could you check it, please?\n" * 3,
                "thread_reason": "", "classification": "normal", "cc_addresses": [],
                "occurred_at": row["created_at"] + timedelta(minutes=n), "created_at": row["created_at"],
            })
            next_id += 1
    clock_rows = [
        {"ticket_id": row["id"], "metric": "first_response", "cycle": 0, "state": "running", "target_minutes": 240,
         "warn_before_minutes": 15, "achieved_minutes": 0.0, "started_at": row["created_at"],
         "running_since": row["created_at"], "due_at": now + timedelta(hours=4)}
        for row in ticket_rows[:cases] if row["status"] in ("new", "open")
    ]
    with engine.begin() as connection:
        if is_postgresql(engine):
            _copy(connection, "ticket", ticket_rows)
            _copy(connection, "interaction", interaction_rows)
        else:
            bulk(connection, Ticket.__table__, ticket_rows)
            bulk(connection, Interaction.__table__, interaction_rows)
        bulk(connection, SlaClock.__table__, clock_rows)
    _log(f"{tickets} tickets, {len(interaction_rows)} interactions in {time.monotonic() - started:.1f} s")
    if is_postgresql(engine):
        with engine.begin() as connection:
            for table in ("contact", "contact_email", "ticket", "interaction"):
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
            connection.exec_driver_sql("ANALYZE")
    else:
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    return {"customer": customer, "case": cases // 2, "interactions": len(interaction_rows)}


def _copy(connection, table: str, rows: list[dict]) -> None:
    """COPY rows into a PostgreSQL table (JSON columns as text, datetimes as ISO)."""
    columns = list(rows[0])
    raw = connection.connection.dbapi_connection
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([json.dumps(v) if isinstance(v, list) else v for v in row.values()])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=200_000)
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server URL (default: SQLite)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="centrala-portal-bench-"))
    url, admin_url = _scratch_database(args.database_url, folder)
    os.environ.update(CENTRALA_DATABASE_URL=url, CENTRALA_VAR_DIR=str(folder),
                      CENTRALA_SECRET_KEY=secrets.token_urlsafe(32))
    try:
        from fastapi.testclient import TestClient

        from centrala.app import create_app
        from centrala.core.db import get_engine, is_postgresql
        from centrala.portal.auth import SESSION_COOKIE, hash_secret
        from centrala.portal.models import PortalSession
        from centrala.schema import upgrade_database
        from centrala.tickets.models import format_ticket_number

        engine = get_engine()
        upgrade_database(engine)
        now = datetime.now(UTC)
        filled = _fill(engine, tickets=args.tickets, cases=args.cases, now=now)
        secret = secrets.token_urlsafe(32)
        with engine.begin() as connection:
            connection.execute(PortalSession.__table__.insert(), {
                "session_hash": hash_secret(secret), "contact_id": filled["customer"], "created_at": now,
                "expires_at": now + timedelta(hours=1),
            })
        pages = {
            "list_first": "/portal/tickets",
            "list_middle": f"/portal/tickets?p={max(1, args.cases // 25 // 2)}",
            "case": f"/portal/tickets/{format_ticket_number(filled['case'])}",
        }
        timings: dict[str, list[float]] = {name: [] for name in pages}
        with TestClient(create_app(), base_url="https://bench") as client:
            client.cookies.set(SESSION_COOKIE, secret)
            for name, path in pages.items():
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code, response.text[:300])
                for _ in range(5):
                    client.get(path)  # warm caches (templates, statements)
            _log(f"measuring {args.requests} requests of each page")
            for _ in range(args.requests):
                for name, path in pages.items():
                    started = time.perf_counter()
                    response = client.get(path)
                    timings[name].append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200
        everything = [value for values in timings.values() for value in values]
        result = {
            "bench": "portal",
            "database": "postgresql" if is_postgresql(engine) else "sqlite",
            "tickets": args.tickets,
            "customer_cases": args.cases,
            "interactions": filled["interactions"],
            "requests": len(everything),
            "page_p50_ms": round(statistics.median(everything), 2),
            "page_p95_ms": round(_percentile(everything, 0.95), 2),
            "page_max_ms": round(max(everything), 2),
            **{f"{name}_p95_ms": round(_percentile(values, 0.95), 2) for name, values in timings.items()},
        }
        get_engine().dispose()
        print(json.dumps(result), flush=True)
        return 0
    finally:
        if admin_url:
            _drop(url, admin_url)
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
