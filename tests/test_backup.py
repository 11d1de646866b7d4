"""``centrala backup``: a copy of the embedded database and blob store taken while the service writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tarfile
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from centrala.backup import take_backup
from centrala.core.blobs import BlobStore
from centrala.core.db import create_db_engine
from centrala.core.errors import InvalidInputError
from centrala.core.settings import Settings
from centrala.schema import upgrade_database
from centrala.tickets.models import Organization
from tests.support.processes import run, service_env

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _count(path) -> int:
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return connection.execute("SELECT count(*) FROM organization").fetchone()[0]
    finally:
        connection.close()


def test_a_backup_taken_during_writes_opens_and_has_the_committed_rows(tmp_path):
    database = tmp_path / "live" / "centrala.db"
    engine = create_db_engine(Settings(database_url=f"sqlite:///{database}"))
    upgrade_database(engine)
    blobs = BlobStore(tmp_path / "live" / "blobs")
    digests = [blobs.put(f"attachment {n}".encode()) for n in range(5)]
    committed = 0
    stop = threading.Event()
    started = threading.Event()

    def write() -> None:
        nonlocal committed
        while not stop.is_set():
            with Session(engine) as session:
                session.add_all(
                    Organization(name=f"Firma {committed}-{n}", created_at=NOW) for n in range(20)
                )
                session.commit()
            committed += 20
            if committed >= 200:
                started.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert started.wait(30), "the writer did not get going"
        before = committed
        made = take_backup(database=database, blob_dir=blobs.root, target=tmp_path / "backups" / "one")
        during = committed
    finally:
        stop.set()
        writer.join()
    copied = _count(made.path / "centrala.db")
    assert before <= copied <= during + 20
    assert copied % 20 == 0, "a transaction is in the copy whole or not at all"
    assert sorted(BlobStore(made.path / "blobs").digests()) == sorted(digests)
    assert made.blobs == 5
    copy_engine = create_db_engine(Settings(database_url=f"sqlite:///{made.path / 'centrala.db'}"))
    with Session(copy_engine) as session:
        assert session.scalar(select(func.count()).select_from(Organization)) == copied
    copy_engine.dispose()
    engine.dispose()


def test_an_archive_backup_holds_the_database_and_blobs_and_never_overwrites(tmp_path):
    database = tmp_path / "centrala.db"
    engine = create_db_engine(Settings(database_url=f"sqlite:///{database}"))
    upgrade_database(engine)
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put(b"%PDF invoice")
    made = take_backup(
        database=database, blob_dir=blobs.root, target=tmp_path / "b" / "nightly", archive=True
    )
    assert made.path.name == "nightly.tar.gz"
    with tarfile.open(made.path) as archive:
        names = archive.getnames()
    assert "nightly/centrala.db" in names and f"nightly/blobs/{digest[:2]}/{digest[2:4]}/{digest}" in names
    with pytest.raises(InvalidInputError, match="already exists"):
        take_backup(database=database, blob_dir=blobs.root, target=tmp_path / "b" / "nightly", archive=True)
    with pytest.raises(InvalidInputError, match="no SQLite database"):
        take_backup(database=tmp_path / "none.db", blob_dir=blobs.root, target=tmp_path / "b" / "other")
    engine.dispose()


def test_the_command_backs_up_the_embedded_default_and_refuses_postgresql(tmp_path):
    env = service_env(tmp_path / "var", http_port=1, smtp_port=1, embedded=True)
    run(["migrate"], env)
    printed = run(["backup"], env).strip()
    assert printed.startswith(str(tmp_path / "var" / "backups" / "centrala-"))
    assert _count(f"{printed}/centrala.db") == 0

    env["CENTRALA_DATABASE_URL"] = "postgresql+psycopg://postgres@127.0.0.1:5432/anything"
    refused = subprocess.run(
        [sys.executable, "-m", "centrala", "backup"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "pg_dump" in refused.stderr
