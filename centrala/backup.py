"""``centrala backup``: a consistent copy of the embedded default (the SQLite database and the blob store)
taken while the service runs.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tarfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from centrala.core.blobs import BlobStore
from centrala.core.errors import InvalidInputError

log = logging.getLogger(__name__)

DATABASE_FILE = "centrala.db"
BLOB_DIR = "blobs"


@dataclass(frozen=True)
class Backup:
    """Where a backup went and what it holds."""

    path: Path
    database_bytes: int
    blobs: int


def backup_directory_name(now: datetime) -> str:
    """``centrala-20261123T100000Z``: sorts by time, safe in any file system."""
    return f"centrala-{now:%Y%m%dT%H%M%SZ}"


def take_backup(*, database: Path, blob_dir: Path, target: Path, archive: bool = False) -> Backup:
    """Copy ``database`` and the blobs into the new directory ``target`` (or ``target``.tar.gz with
    ``archive``).

    The database is copied with SQLite's online backup API in one step, which reads one snapshot while other
    processes go on writing (WAL lets them), so the copy is consistent whatever the service does meanwhile.
    The blobs are copied after it: a blob is always written before the row naming it commits, so every blob
    the copied database names is already there.

    Raises:
        InvalidInputError: there is no database file, or ``target`` already exists.
    """
    if not database.is_file():
        raise InvalidInputError(f"there is no SQLite database at {database}")
    final = target.with_name(target.name + ".tar.gz") if archive else target
    if final.exists():
        raise InvalidInputError(f"{final} already exists: a backup never overwrites another")
    work = target.with_name(f".{target.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        copied_database = work / DATABASE_FILE
        _copy_database(database, copied_database)
        size = copied_database.stat().st_size
        blobs = _copy_blobs(BlobStore(blob_dir), BlobStore(work / BLOB_DIR))
        if archive:
            partial_archive = final.with_name(f".{final.name}.partial")
            with tarfile.open(partial_archive, "w:gz") as tar:
                tar.add(work, arcname=target.name)
            partial_archive.replace(final)
            shutil.rmtree(work)
        else:
            work.replace(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("backup written to %s (%d blobs)", final, blobs)
    return Backup(path=final, database_bytes=size, blobs=blobs)


def _copy_database(source: Path, target: Path) -> None:
    live = sqlite3.connect(source, timeout=30)
    copy = sqlite3.connect(target)
    try:
        # pages=-1: the whole database in one step, from one snapshot. Stepping in smaller pieces would
        # restart whenever another process writes in between, which on a busy service may be forever.
        live.backup(copy, pages=-1)
        # The copy is a standalone file: no WAL beside it to lose on the way to backup storage.
        copy.execute("PRAGMA journal_mode=DELETE")
        result = copy.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        copy.close()
        live.close()
    if result != "ok":
        raise RuntimeError(f"the copied database fails its integrity check: {result}")


def _copy_blobs(source: BlobStore, target: BlobStore) -> int:
    count = 0
    for digest in source.digests():
        destination = target.path_for(digest)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(source.path_for(digest), destination)
        except FileNotFoundError:
            # Deleted by the retention sweep after the database was copied: raw mail past its retention period.
            continue
        count += 1
    return count
