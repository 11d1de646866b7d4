"""The floor: the ingest corpus parsed and inserted by a plain script, one commit per message.

Whatever the service does on top of this (SMTP, the queue, threading, contacts, tickets, SLA clocks) costs
throughput; this figure says how much the bare parse-and-commit loop on the same database can do, so the
ingest benchmark's mails/s can be read as a fraction of it.

    python -m bench.floor --n 1000 --seed 1                       # SQLite file in a temp dir, WAL
    python -m bench.floor --n 1000 --seed 1 --sqlite-journal default
    python -m bench.floor --n 1000 --seed 1 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Prints one JSON line: ``{"bench": "floor", "n", "database", "mails_per_s", "seconds", ...}``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, Text, create_engine, event
from sqlalchemy.engine import Engine, make_url

from bench.corpus import generate_corpus

log = logging.getLogger("bench.floor")

SQLITE_JOURNALS = ("wal", "default")


def parse_message(raw: bytes) -> dict[str, str | None]:
    """What a plain script takes from a message: sender, subject, Message-ID, body (None if unreadable)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    fields: dict[str, str | None] = {
        "sender": str(message.get("From", ""))[:998],
        "subject": str(message.get("Subject", "")),
        "message_id": str(message.get("Message-ID", ""))[:998],
    }
    try:
        body = message.get_body(("plain", "html"))
        fields["body"] = body.get_content() if body is not None else ""
    except (LookupError, UnicodeError, ValueError, AttributeError, KeyError) as error:
        # An unknown charset raises LookupError from get_content(); a plain script would skip the body.
        log.debug("body not readable: %s", error)
        fields["body"] = None
    return fields


def run_floor(
    corpus: Sequence[bytes],
    *,
    database_url: str | None = None,
    sqlite_journal: str = "wal",
    tmp_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Parse and insert every message of ``corpus``, committing after each; the timing as a result dict.

    Without ``database_url`` a fresh SQLite file is made in a temporary directory under ``tmp_dir`` (put it on
    the filesystem of the database you compare with: fsync cost is the point). The scratch table gets a unique
    name and is dropped afterwards, the temporary directory removed.
    """
    if sqlite_journal not in SQLITE_JOURNALS:
        raise ValueError(f"sqlite_journal must be one of {SQLITE_JOURNALS}")
    scratch_dir: str | None = None
    if database_url is None:
        scratch_dir = tempfile.mkdtemp(prefix="bench-floor-", dir=tmp_dir)
        database_url = f"sqlite:///{Path(scratch_dir) / 'floor.db'}"
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        label = "sqlite-wal" if sqlite_journal == "wal" else "sqlite-delete"
    else:
        label = backend
    engine = create_engine(url)
    if backend == "sqlite":
        _configure_sqlite(engine, sqlite_journal)

    metadata = MetaData()
    table = Table(
        f"bench_floor_{os.getpid()}_{secrets.token_hex(4)}",
        metadata,
        Column("id", Integer, primary_key=True),
        # Keyed by the digest of the bytes, like the real ledger ("inserts the bytes keyed by sha256").
        Column("sha256", String(64), nullable=False, unique=True),
        Column("raw", LargeBinary, nullable=False),
        Column("sender", String(998), nullable=False),
        Column("subject", Text, nullable=False),
        Column("message_id", String(998), nullable=False),
    )
    unreadable = 0
    try:
        metadata.create_all(engine)
        try:
            compression = _compress_like_the_ledger(engine, table)
            insert = table.insert()
            with engine.connect() as connection:
                started = time.perf_counter()
                for raw in corpus:
                    fields = parse_message(raw)
                    unreadable += fields["body"] is None
                    connection.execute(
                        insert,
                        {
                            "sha256": hashlib.sha256(raw).hexdigest(),
                            "raw": raw,
                            "sender": fields["sender"],
                            "subject": fields["subject"],
                            "message_id": fields["message_id"],
                        },
                    )
                    connection.commit()
                seconds = time.perf_counter() - started
        finally:
            metadata.drop_all(engine)
    finally:
        engine.dispose()
        if scratch_dir is not None:
            shutil.rmtree(scratch_dir, ignore_errors=True)
    n = len(corpus)
    return {
        "bench": "floor",
        "n": n,
        "database": label,
        "mails_per_s": round(n / seconds, 1) if seconds > 0 else None,
        "seconds": round(seconds, 3),
        "mean_kb": round(sum(map(len, corpus)) / max(n, 1) / 1024, 2),
        "bodies_unreadable": unreadable,
        **({"compression": compression} if compression else {}),
    }


def _configure_sqlite(engine: Engine, journal: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if journal == "wal":
            # The same durability trade as the service's own SQLite setup (centrala.core.db).
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        # "default" leaves SQLite's rollback journal (journal_mode=DELETE, synchronous=FULL) alone.
        cursor.close()


def _compress_like_the_ledger(engine: Engine, table: Table) -> str | None:
    """On PostgreSQL with LZ4, store ``raw`` compressed with it, as the service's ledger does (migration 0018):
    the floor pays for the same compression of the same bytes. The method used, None on SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.begin() as connection:
        offered = connection.exec_driver_sql(
            "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"
        ).scalar()
        if offered and "lz4" in offered:
            connection.exec_driver_sql(f"ALTER TABLE {table.name} ALTER COLUMN raw SET COMPRESSION lz4")
            return "lz4"
    return "pglz"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of mails (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    parser.add_argument("--database-url", help="SQLAlchemy URL; default: a fresh SQLite file in a temp dir")
    parser.add_argument(
        "--sqlite-journal",
        choices=SQLITE_JOURNALS,
        default="wal",
        help="SQLite journal: wal (WAL, synchronous=NORMAL; default) or default (rollback journal)",
    )
    parser.add_argument(
        "--tmp-dir", help="where the temporary SQLite file goes (default: the system temp dir)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")

    log.info("generating %d mails, seed %d", args.n, args.seed)
    corpus = generate_corpus(args.n, args.seed)
    result = run_floor(
        corpus, database_url=args.database_url, sqlite_journal=args.sqlite_journal, tmp_dir=args.tmp_dir
    )
    result["seed"] = args.seed
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
