"""The IMAP ingest benchmark: a Dovecot mailbox holding the seeded corpus, imported by the IMAP poller and
processed by the workers, timed until the last ticket, beside the floor on the same corpus.

    python -m bench.imap [--n 1000] [--seed 1] [--floor]

Starts a private Dovecot (``tests/support/dovecot.py``; the ``dovecot`` binary must be installed), appends the
corpus to the INBOX of its user, then starts its own ``centrala up`` in a temporary folder (the embedded
default, or the servers of ``CENTRALA_DATABASE_URL``/``CENTRALA_REDIS_URL`` when set; a PostgreSQL server gets
a scratch database) with that INBOX as its one IMAP source. Prints one JSON line; progress on stderr.

- ``mails_per_s``: mails processed ÷ ``seconds``, the span from the first message the poller committed to the
  ledger (its ``received_at``) to the last ``processed_at``: the database's own clock, so the start-up of the
  processes is not counted.
- ``import_seconds``: first to last ``received_at``: how fast the poller alone takes the folder in.
- ``floor_*``, ``ratio_to_floor``: with ``--floor``, bench.floor on the same corpus and kind of database.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from bench.corpus import generate_corpus
from bench.floor import run_floor
from bench.portal import _drop
from bench.soak import _database
from bench.telephony import Instance
from tests.support.dovecot import DOVECOT, DovecotServer

log = logging.getLogger("bench.imap")

APPEND_PROGRESS = 250


def _fill(server: DovecotServer, corpus: list[bytes]) -> None:
    with server.client() as client:
        for index, raw in enumerate(corpus, 1):
            client.append("INBOX", raw)
            if index % APPEND_PROGRESS == 0:
                log.info("appended %d/%d", index, len(corpus))


def run(instance: Instance, folder: Path, *, n: int, timeout: float) -> dict[str, object]:
    engine = _database(instance, folder)
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT count(*) FROM inbound_email")).scalar()
            pending = connection.execute(
                text("SELECT count(*) FROM inbound_email WHERE status = 'received'")
            ).scalar()
        if rows >= n and pending == 0:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.imap: {rows}/{n} imported, {pending} pending after {timeout:.0f} s")
        if time.monotonic() - last_report > 5:
            log.info("ledger: %d/%d rows, %d pending", rows, n, pending)
            last_report = time.monotonic()
        time.sleep(0.2)
    with engine.connect() as connection:
        first, last_received, last_processed, processed, quarantined = connection.execute(
            text(
                "SELECT min(received_at), max(received_at), max(processed_at), "
                "sum(CASE WHEN status = 'processed' THEN 1 ELSE 0 END), "
                "sum(CASE WHEN status = 'quarantined' THEN 1 ELSE 0 END) FROM inbound_email"
            )
        ).one()
    engine.dispose()
    first, last_received, last_processed = (_aware(value) for value in (first, last_received, last_processed))
    seconds = (last_processed - first).total_seconds()
    return {
        "bench": "imap",
        "n": n,
        "database": "postgresql" if instance.admin_url else "sqlite",
        "mails_per_s": round((processed + quarantined) / seconds, 1),
        "seconds": round(seconds, 3),
        "processed": processed,
        "quarantined": quarantined,
        "import_seconds": round((last_received - first).total_seconds(), 3),
        "import_mails_per_s": round(n / max((last_received - first).total_seconds(), 1e-9), 1),
    }


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.imap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of mails (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    parser.add_argument("--floor", action="store_true", help="also run bench.floor and report the ratio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not DOVECOT.exists():
        raise SystemExit(f"bench.imap: Dovecot is not installed at {DOVECOT}")
    corpus = generate_corpus(args.n, args.seed)
    with tempfile.TemporaryDirectory(prefix="centrala-bench-imap-") as folder:
        server = DovecotServer(Path(folder) / "dovecot")
        instance = Instance(Path(folder))
        try:
            server.start()
            log.info("appending %d mails to the INBOX", len(corpus))
            _fill(server, corpus)
            instance.env["CENTRALA_IMAP_MAILBOXES"] = json.dumps(
                [{"name": "bench", "url": server.url(), "after_import": "seen"}]
            )
            instance.start()
            result = run(instance, Path(folder), n=args.n, timeout=args.timeout)
        finally:
            instance.stop()
            server.close()
            if instance.admin_url:
                _drop(instance.database_url, instance.admin_url)
        if args.floor:
            if instance.admin_url:
                floor = run_floor(corpus, database_url=instance.admin_url)
            else:
                floor = run_floor(corpus, sqlite_journal="wal", tmp_dir=Path(folder))
            result["floor_database"] = floor["database"]
            result["floor_mails_per_s"] = floor["mails_per_s"]
            result["ratio_to_floor"] = round(result["mails_per_s"] / floor["mails_per_s"], 3)
    result["seed"] = args.seed
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
