"""Moving an installation: every table and every blob as JSON lines, and back into an empty database.

The stream is one JSON object per line:

1. a header ``{"format": "centrala-export", "version": 1, "schema": "<migration>", "created_at": ...}``;
2. ``{"table": "<name>", "row": {...}}`` for every row of every table, tables in dependency order (parents
   first), rows by primary key; datetimes as ISO 8601 in UTC, bytes as base64, enums as their values;
3. ``{"blob": "<sha256>", "data": "<base64>"}`` for every file of the blob store (raw mail, attachments,
   recordings);
4. a trailer ``{"end": {"rows": {"<table>": n, ...}, "blobs": n}}``, so that a cut-off file is refused.

Tables come from the SQLAlchemy metadata, so a new table is exported without anyone remembering to add it.
The full-text search objects of migration 0012 are not tables of the metadata: SQLite's triggers and
PostgreSQL's expression index rebuild them as the rows go in.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, TextIO

from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, Table, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import JSON, Date, DateTime, Enum, LargeBinary, Time

from centrala.core import clock
from centrala.core.blobs import BlobStore
from centrala.core.db import READ_ONLY_OPTION
from centrala.core.errors import InvalidInputError
from centrala.schema import metadata

log = logging.getLogger(__name__)

FORMAT = "centrala-export"
VERSION = 1
BATCH_ROWS = 1000


@dataclass
class TransferSummary:
    """How many rows per table and how many blobs went out or came in."""

    rows: dict[str, int] = field(default_factory=dict)
    blobs: int = 0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


# --- Values -------------------------------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        # Enum members of our StrEnums are str already; json writes their value.
        return value.value if hasattr(value, "value") and isinstance(value, str) else value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "value"):  # an enum that is not a str
        return value.value
    raise TypeError(f"cannot export a value of type {type(value).__name__}")


def _decoder(column_type: Any) -> Callable[[Any], Any]:
    """How to turn an exported value of a column of ``column_type`` back into what the column takes."""
    if isinstance(column_type, JSON):
        return lambda value: value
    impl = getattr(column_type, "impl", column_type)  # a TypeDecorator (UTCDateTime) is read as its impl
    if isinstance(impl, DateTime):
        return datetime.fromisoformat
    if isinstance(impl, Date):
        return date.fromisoformat
    if isinstance(impl, Time):
        return time.fromisoformat
    if isinstance(impl, LargeBinary):
        return base64.b64decode
    if isinstance(impl, Enum) and impl.enum_class is not None:
        return impl.enum_class
    return lambda value: value


# --- Export -------------------------------------------------------------------------------------------------


def current_schema(connection: Connection) -> str | None:
    """The migration the database is at."""
    return MigrationContext.configure(connection).get_current_revision()


def export_installation(*, engine: Engine, blobs: BlobStore, out: TextIO) -> TransferSummary:
    """Write every row of every table and every blob to ``out``, from one consistent snapshot of the database.

    The service may keep running: the rows are read in one transaction (REPEATABLE READ on PostgreSQL, one
    read transaction on SQLite's WAL), and blobs are written before the rows that name them are committed,
    so every blob a row of the snapshot names is in the store when the blobs are read afterwards.
    """
    summary = TransferSummary()
    options: dict[str, Any] = {READ_ONLY_OPTION: True}
    if engine.dialect.name == "postgresql":
        options.update(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    with engine.connect().execution_options(**options) as connection, connection.begin():
        header = {
            "format": FORMAT,
            "version": VERSION,
            "schema": current_schema(connection),
            "created_at": clock.now().isoformat(),
            "source": engine.dialect.name,
        }
        _write(out, header)
        for table in metadata.sorted_tables:
            count = 0
            statement = select(table).order_by(*table.primary_key.columns)
            result = connection.execution_options(yield_per=BATCH_ROWS).execute(statement)
            for row in result.mappings():
                _write(out, {"table": table.name, "row": {key: _encode(value) for key, value in row.items()}})
                count += 1
            summary.rows[table.name] = count
    for digest in sorted(blobs.digests()):
        data = blobs.get(digest)
        _write(out, {"blob": digest, "data": base64.b64encode(data).decode("ascii")})
        summary.blobs += 1
    _write(out, {"end": {"rows": summary.rows, "blobs": summary.blobs}})
    log.info("exported %d rows and %d blobs", summary.total_rows, summary.blobs)
    return summary


def _write(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record, separators=(",", ":")))
    out.write("\n")


# --- Import -------------------------------------------------------------------------------------------------


def rows_in_database(connection: Connection) -> dict[str, int]:
    """The tables that hold rows, with how many."""
    counts = {}
    for table in metadata.sorted_tables:
        count = connection.execute(select(func.count()).select_from(table)).scalar_one()
        if count:
            counts[table.name] = count
    return counts


@dataclass
class _TablePlan:
    """How one table's rows go in: the columns filled in only after every row is in (they may point at a
    row of the same table, or of a table further on, that is not in yet)."""

    table: Table
    decoders: dict[str, Callable[[Any], Any]]
    later: tuple[str, ...]


def _plans() -> dict[str, _TablePlan]:
    order = {table.name: index for index, table in enumerate(metadata.sorted_tables)}
    plans = {}
    for table in metadata.sorted_tables:
        later = tuple(
            sorted(
                fk.parent.name
                for fk in table.foreign_keys
                if order.get(fk.column.table.name, -1) >= order[table.name]
            )
        )
        for name in later:
            if not table.c[name].nullable:
                raise RuntimeError(
                    f"{table.name}.{name} points forward in the table order and cannot be null"
                )
        decoders = {column.name: _decoder(column.type) for column in table.columns}
        plans[table.name] = _TablePlan(table, decoders, later)
    return plans


def import_installation(
    *,
    engine: Engine,
    blobs: BlobStore,
    lines: Iterable[str],
    progress: Callable[[int], None] | None = None,
) -> TransferSummary:
    """Load an export into the database of ``engine``, which must be migrated to the export's schema and empty.

    Everything goes in in one transaction: a bad or cut-off file leaves the database as empty as it was
    (blobs already written stay; they are named by their content and harm nothing). ``progress`` is called
    with the number of lines read so far, now and then.

    Raises:
        InvalidInputError: the file is not an export, is cut off or malformed, or is of another schema; or
            the database is not empty.
    """
    plans = _plans()
    records = _records(lines, progress)
    header = next(records, (0, None))[1]
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidInputError("this is not a Centrala export (its first line is not the export header)")
    if header.get("version") != VERSION:
        raise InvalidInputError(
            f"export format version {header.get('version')} is not supported (expected {VERSION})"
        )
    summary = TransferSummary(rows={table.name: 0 for table in metadata.sorted_tables})
    with engine.connect() as connection, connection.begin():
        schema = current_schema(connection)
        if header.get("schema") != schema:
            raise InvalidInputError(
                f"the export is of schema {header.get('schema')}, this database is at {schema}: "
                "run the same Centrala version on both sides (migrate the source first, or this one with "
                "`centrala migrate`)"
            )
        occupied = rows_in_database(connection)
        if occupied:
            listed = ", ".join(f"{name} ({count})" for name, count in list(occupied.items())[:5])
            raise InvalidInputError(
                f"the database is not empty ({listed}): import only into a new, migrated, empty database"
            )
        try:
            trailer = _load(connection, plans, records, blobs, summary)
        except IntegrityError as error:
            raise InvalidInputError(
                f"the export's rows do not fit together ({error.orig}); nothing was imported"
            ) from None
        if trailer is None:
            raise InvalidInputError(
                "the export ends early (no end line): it was cut off; nothing was imported"
            )
        expected_rows = {name: count for name, count in trailer.get("rows", {}).items() if count}
        if expected_rows != {name: count for name, count in summary.rows.items() if count}:
            raise InvalidInputError("the export's row counts do not match its end line; nothing was imported")
        if trailer.get("blobs") != summary.blobs:
            raise InvalidInputError(
                "the export's blob count does not match its end line; nothing was imported"
            )
        if connection.dialect.name == "postgresql":
            _restart_sequences(connection)
    log.info("imported %d rows and %d blobs", summary.total_rows, summary.blobs)
    return summary


def _records(lines: Iterable[str], progress: Callable[[int], None] | None) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(lines, start=1):
        if progress is not None and number % BATCH_ROWS == 0:
            progress(number)
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidInputError(
                f"line {number} is not JSON ({error.msg}); nothing was imported"
            ) from None


def _load(
    connection: Connection,
    plans: dict[str, _TablePlan],
    records: Iterator[tuple[int, Any]],
    blobs: BlobStore,
    summary: TransferSummary,
) -> dict[str, Any] | None:
    """Insert the rows and store the blobs; returns the trailer, or None when the stream ends without one."""
    order = [table.name for table in metadata.sorted_tables]
    position = 0
    batch: list[dict[str, Any]] = []
    batch_table: str | None = None
    fill_in_later: list[tuple[_TablePlan, dict[str, Any], dict[str, Any]]] = []

    def flush() -> None:
        if batch and batch_table is not None:
            connection.execute(plans[batch_table].table.insert(), batch)
            batch.clear()

    for number, record in records:
        if not isinstance(record, dict):
            raise InvalidInputError(f"line {number} is not an object; nothing was imported")
        if "table" in record:
            name = record["table"]
            if name not in plans:
                raise InvalidInputError(f"line {number}: unknown table {name!r}; nothing was imported")
            if order.index(name) < position:
                raise InvalidInputError(f"line {number}: table {name!r} out of order; nothing was imported")
            if name != batch_table:
                flush()
                batch_table, position = name, order.index(name)
            plan = plans[name]
            row = _decode_row(plan, record.get("row"), number)
            later = {column: row[column] for column in plan.later if row.get(column) is not None}
            if later:
                key = {column.name: row[column.name] for column in plan.table.primary_key.columns}
                fill_in_later.append((plan, key, later))
                row.update(dict.fromkeys(later))
            batch.append(row)
            summary.rows[name] += 1
            if len(batch) >= BATCH_ROWS:
                flush()
        elif "blob" in record:
            flush()
            _store_blob(blobs, record, number)
            summary.blobs += 1
        elif "end" in record:
            flush()
            for plan, key, values in fill_in_later:
                table = plan.table
                condition = [table.c[name] == value for name, value in key.items()]
                connection.execute(update(table).where(*condition).values(**values))
            return record["end"] if isinstance(record["end"], dict) else {}
        else:
            raise InvalidInputError(
                f"line {number} is neither a row, a blob nor the end; nothing was imported"
            )
    return None


def _decode_row(plan: _TablePlan, values: Any, number: int) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise InvalidInputError(f"line {number}: a row is an object of column values; nothing was imported")
    unknown = set(values) - set(plan.decoders)
    if unknown:
        raise InvalidInputError(
            f"line {number}: table {plan.table.name!r} has no column {min(unknown)!r}; nothing was imported"
        )
    try:
        return {name: None if value is None else plan.decoders[name](value) for name, value in values.items()}
    except (ValueError, TypeError) as error:
        raise InvalidInputError(
            f"line {number}: a value of {plan.table.name!r} is malformed: {error}"
        ) from None


def _store_blob(blobs: BlobStore, record: dict[str, Any], number: int) -> None:
    try:
        data = base64.b64decode(record.get("data", ""), validate=True)
    except ValueError:
        raise InvalidInputError(
            f"line {number}: the blob's data is not base64; nothing was imported"
        ) from None
    if blobs.put(data) != record["blob"]:
        raise InvalidInputError(
            f"line {number}: the blob's bytes do not match its name; nothing was imported"
        )


def _restart_sequences(connection: Connection) -> None:
    """PostgreSQL's id sequences do not move when ids are given explicitly: set each past the largest id, so
    that the next row the service inserts does not collide with an imported one."""
    for table in metadata.sorted_tables:
        columns = list(table.primary_key.columns)
        if len(columns) != 1 or not columns[0].autoincrement or columns[0].type.python_type is not int:
            continue
        column = columns[0].name
        connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                f'COALESCE((SELECT MAX("{column}") FROM "{table.name}"), 0) + 1, false)'
            ),
            {"table": table.name, "column": column},
        )
