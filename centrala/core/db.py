"""SQLAlchemy engine, sessions, the declarative base and the column types every table shares."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Table,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from centrala.core.settings import Settings, get_settings

# Execution option marking a connection whose transactions only read.
READ_ONLY_OPTION = "centrala_read_only"
# How long a writer waits for the lock in this transaction, in ms, instead of ``db_lock_timeout_ms``: work that has
# somewhere else to go (a spool) gives up quickly rather than keep its caller waiting.
LOCK_TIMEOUT_OPTION = "centrala_lock_timeout_ms"
_BATCH_CACHE_KEY = "centrala.batch_cache"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every Centrala table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


ModelT = TypeVar("ModelT", bound=Base)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC; SQLite hands back naive values, which are UTC by construction."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware datetime")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC so that text comparisons order correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def create_db_engine(settings: Settings, **kwargs: Any) -> Engine:
    """An engine for the configured database, tuned per backend."""
    url = make_url(settings.effective_database_url)
    timeout_ms = settings.db_lock_timeout_ms
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": timeout_ms / 1000, "check_same_thread": False}, **kwargs
        )
        _configure_sqlite(engine, timeout_ms)
        return engine
    if url.get_backend_name() == "postgresql":
        options = f"-c lock_timeout={timeout_ms} -c idle_in_transaction_session_timeout=60000"
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 10)
        return create_engine(url, connect_args={"options": options, "connect_timeout": 5}, **kwargs)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that BEGIN IMMEDIATE below is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY when another
        # writer committed in between (busy_timeout cannot help there); taking the write lock up front
        # makes writers queue on busy_timeout instead. Read-only work keeps WAL's lock-free reads.
        options = connection.get_execution_options()
        read_only = options.get(READ_ONLY_OPTION, False)
        wanted = int(options.get(LOCK_TIMEOUT_OPTION, busy_timeout_ms))
        if read_only:
            connection.exec_driver_sql("BEGIN")
        else:
            _begin_immediate(connection, timeout_ms=wanted, busy_timeout_ms=busy_timeout_ms)


# How often a writer waiting for SQLite's write lock tries again.
WRITE_LOCK_POLL_SECONDS = 0.001


def _begin_immediate(connection: Any, *, timeout_ms: int, busy_timeout_ms: int) -> None:
    """Take SQLite's write lock, trying every millisecond until ``timeout_ms`` is up.

    SQLite's own busy handler sleeps ever longer between tries (up to 100 ms), so a writer waiting behind a
    run of short transactions (a drain's) kept missing the moments the lock was free, and an SMTP commit that
    should take a millisecond waited hundreds. Polling often takes the lock within a millisecond of its release.
    """
    raw = connection.connection.driver_connection
    deadline = time.monotonic() + timeout_ms / 1000
    raw.execute("PRAGMA busy_timeout=0")
    try:
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
            time.sleep(WRITE_LOCK_POLL_SECONDS)
        # Once more through SQLAlchemy, which raises its OperationalError for callers to answer (451, a retry).
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        raw.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")


@functools.cache
def get_engine() -> Engine:
    """The process-wide engine for the configured database."""
    return create_db_engine(get_settings())


@functools.cache
def get_sessionmaker() -> sessionmaker[Session]:
    """The process-wide session factory."""
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@functools.cache
def get_read_sessionmaker() -> sessionmaker[Session]:
    """Sessions for work that only reads: on SQLite they never wait for a writer."""
    return sessionmaker(bind=get_engine().execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_db(request: Request) -> Iterator[Session]:
    """FastAPI dependency: a session for one request; the handler commits what it changes.

    GET and HEAD requests only read (RFC 9110 §9.2.1), so they get read-only sessions.
    """
    factory = get_read_sessionmaker() if request.method in ("GET", "HEAD") else get_sessionmaker()
    session = factory()
    try:
        yield session
    finally:
        session.close()


def get_read_db() -> Iterator[Session]:
    """FastAPI dependency: a read-only session beside the request's own, for a POST that must answer from what is
    committed even while a writer holds the lock (on SQLite, reads never wait for writers)."""
    session = get_read_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


def begin_quick_write(session: Session, lock_timeout_ms: int) -> None:
    """Start ``session``'s write transaction waiting at most ``lock_timeout_ms`` for a lock, so that a caller
    with a fallback gets OperationalError quickly instead of waiting out the usual timeout."""
    if is_postgresql(session):
        session.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
    else:
        session.connection(execution_options={LOCK_TIMEOUT_OPTION: int(lock_timeout_ms)})


@contextmanager
def batch_cache_scope(session: Session, cache: dict[Any, Any] | None = None) -> Iterator[dict[Any, Any]]:
    """Within the block, lookups that a batch repeats for every item (the agents of a queue, the SLA policy for
    a kind of ticket) are remembered in ``session``, by their callers, through ``batch_cache``.

    Pass the same ``cache`` to the blocks of several transactions to remember across them: what is kept there is
    plain values (ids), never objects of one session. Only for work that reads these and does not change them,
    and for a few seconds (a drain job): a change made meanwhile is seen by the next job.
    """
    cache = {} if cache is None else cache
    session.info[_BATCH_CACHE_KEY] = cache
    try:
        yield cache
    finally:
        session.info.pop(_BATCH_CACHE_KEY, None)


def batch_cache(session: Session) -> dict[Any, Any] | None:
    """The cache of the ``batch_cache_scope`` that ``session`` is in, else None (look it up every time)."""
    return session.info.get(_BATCH_CACHE_KEY)


def is_postgresql(session_or_engine: Session | Engine) -> bool:
    """Whether the session or engine talks to PostgreSQL."""
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


def lz4_available(connection: Connection) -> bool:
    """Whether the database compresses column values with LZ4 on request: PostgreSQL 14 or later built with it
    (Debian's and the official images are). SQLite stores values as they come."""
    if connection.dialect.name != "postgresql":
        return False
    offered = connection.exec_driver_sql(
        "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"
    ).scalar()
    return offered is not None and "lz4" in offered


def autoflush_only_for(session: Session, *models: type[Base]) -> AbstractContextManager[object]:
    """Around a lookup whose answer only pending rows of ``models`` can change: the session's autoflush stays on
    while such a row is pending (added, changed or deleted), else it is off, and what the caller has pending is
    written by its own next flush (the inbound drain's, for a whole batch) rather than one of the lookup's."""
    if has_pending(session, *models):
        return nullcontext()
    return session.no_autoflush


def has_pending(session: Session, *models: type[Base]) -> bool:
    """Whether a row of ``models`` is added, changed or deleted in ``session`` and not written yet."""
    return any(isinstance(row, models) for row in (*session.new, *session.dirty, *session.deleted))


def next_id(session: Session, model: type[Base]) -> int:
    """The id of a ``model`` row about to be added in the session's transaction, known before it is written."""
    return next_ids(session, model, 1)[0]


def added_rows(session: Session, model: type[ModelT]) -> list[ModelT]:
    """The rows of ``model`` added to ``session`` and not written yet: an inbound drain writes a whole batch
    at its end, and a lookup that must see them looks here instead of writing them first."""
    return [row for row in session.new if isinstance(row, model)]


def next_ids(session: Session, model: type[Base], count: int) -> list[int]:
    """Ids for ``count`` rows of ``model`` about to be added in the session's transaction, known before they
    are written: their jobs and the mail quoting them are queued in the same transaction, without a flush.

    Only for a model whose primary key is an autoincrementing ``id``. PostgreSQL: the next values of the
    table's sequence, which concurrent transactions never share. SQLite: the ids SQLite itself would give, past
    the largest, counting the rows of the model given ids here and not written yet. A write transaction holds
    SQLite's only write lock from its first statement (``BEGIN IMMEDIATE``), so no other connection adds a row
    meanwhile.
    """
    if count <= 0:
        return []
    table = model.__tablename__
    # On the session's connection, not through the session: nothing pending needs writing for this (a
    # session query would flush it first).
    connection = session.connection()
    if is_postgresql(session):
        return list(
            connection.execute(
                text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, :count)"),
                {"count": count},
            ).scalars()
        )
    pending = added_rows(session, model)
    if any(row.id is None for row in pending):
        # Made without an id: SQLite numbers it when it is written, and could give it one of ours. Write it first.
        session.flush()
        pending = []
    largest = connection.exec_driver_sql(f"SELECT max(id) FROM {table}").scalar() or 0
    first = max([largest, *(row.id for row in pending)]) + 1
    return list(range(first, first + count))


@functools.cache
def _numbered_id(model: type) -> tuple[Table, str] | None:
    """The table and attribute of ``model``'s primary key when it is an autoincrementing integer ``id`` of
    the model's own table, else None."""
    mapper = inspect(model)
    keys = mapper.primary_key
    if mapper.inherits is not None or len(keys) != 1:
        return None
    (key,) = keys
    if key.name != "id" or not isinstance(key.type, Integer) or key.autoincrement not in (True, "auto"):
        return None
    return mapper.local_table, mapper.get_property_by_column(key).key


@event.listens_for(Session, "before_flush")
def _number_new_rows_on_sqlite(session: Session, _flush_context: object, _instances: object) -> None:
    """SQLite: give the rows a flush is about to insert their ids first, wherever a table has two or more of
    them, so that each such table's rows go in with one ``executemany``.

    SQLite cannot hand back the ids of a many-row insert in the order of its rows, so SQLAlchemy inserts each
    row without an id by a statement of its own to learn it (about six a mail in an inbound drain). The ids are
    those SQLite would give: past the largest written, or given by ``next_ids`` and not written yet. A write
    transaction holds SQLite's only write lock from its first statement (``BEGIN IMMEDIATE``), so no other
    connection adds a row meanwhile. A table with a row given its id beforehand is numbered whatever its count:
    SQLite could otherwise give a row without one the same id. (PostgreSQL inserts such rows in one statement
    and gives them ids from the table's sequence as it does: numbering them first there saved no time.)
    """
    if not session.new or session.get_bind().dialect.name != "sqlite":
        return
    wanting: dict[Table, tuple[str, list[Any]]] = {}
    given: dict[Table, int] = {}
    for row in session.new:
        numbered = _numbered_id(type(row))
        if numbered is None:
            continue
        table, attribute = numbered
        value = getattr(row, attribute)
        if value is None:
            wanting.setdefault(table, (attribute, []))[1].append(row)
        else:
            given[table] = max(given.get(table, 0), value)
    tables = [table for table, (_attribute, rows) in wanting.items() if len(rows) > 1 or table in given]
    if not tables:
        return
    largest = (
        session.connection()
        .execute(select(*(select(func.max(table.c.id)).scalar_subquery() for table in tables)))
        .one()
    )
    for table, written in zip(tables, largest, strict=True):
        attribute, rows = wanting[table]
        first = max(written or 0, given.get(table, 0)) + 1
        for number, row in enumerate(rows, first):
            setattr(row, attribute, number)


def hide_sql_parameters(error: BaseException | None) -> None:
    """Keep SQLAlchemy from printing bound parameters (message bytes, addresses) when ``error`` is logged."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, StatementError):
            error.hide_parameters = True
        error = error.__cause__ or error.__context__
