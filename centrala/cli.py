"""The ``centrala`` command."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated

import typer
from sqlalchemy import func, select

from centrala.core import clock
from centrala.core.db import get_engine, session_scope
from centrala.core.settings import get_settings

app = typer.Typer(help="Centrala contact-centre service.", no_args_is_help=True, add_completion=False)
agents_app = typer.Typer(help="Agents and their API tokens.", no_args_is_help=True)
mail_app = typer.Typer(help="The inbound e-mail ledger.", no_args_is_help=True)
contacts_app = typer.Typer(help="Contacts.", no_args_is_help=True)
app.add_typer(agents_app, name="agents")
app.add_typer(mail_app, name="mail")
app.add_typer(contacts_app, name="contacts")

# Rows per transaction of a contact import: a failure costs little work, and SQLite's write lock is held briefly.
CONTACT_IMPORT_BATCH = 500


def _configure_logging() -> None:
    logging.basicConfig(
        level=get_settings().log_level,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # Per-plugin and per-job chatter; our own log lines name what happened to which message.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


@app.callback()
def _main() -> None:
    _configure_logging()


@app.command()
def up() -> None:
    """Migrate, then run web, SMTP, workers and the scheduler together until Ctrl-C."""
    from centrala.schema import upgrade_database
    from centrala.workers.supervisor import supervise

    upgrade_database()
    get_engine().dispose()
    raise typer.Exit(supervise(get_settings()))


@app.command()
def web() -> None:
    """Serve the web application (API, portal, console)."""
    import uvicorn
    from sqlalchemy.orm import configure_mappers

    from centrala.app import create_app
    from centrala.core.startup import freeze_loaded_objects

    settings = get_settings()
    application = create_app(settings)
    configure_mappers()
    # The console's lists of 200 tickets had a p95 several times their median (bench/console.py) before this:
    # full collections walked ~170,000 long-lived objects.
    freeze_loaded_objects()
    uvicorn.run(
        application,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )


@app.command()
def smtp() -> None:
    """Run the inbound SMTP server."""
    from centrala.ingest.smtp import serve_smtp

    serve_smtp(get_settings())


@app.command()
def imap() -> None:
    """Import new mail from the IMAP mailboxes of CENTRALA_IMAP_MAILBOXES (idles when there are none)."""
    from centrala.ingest.imap import serve_imap

    serve_imap(get_settings())


@app.command()
def worker(burst: Annotated[bool, typer.Option(help="Stop when the queue is empty.")] = False) -> None:
    """Run a background worker."""
    from centrala.workers.processes import run_worker

    run_worker(get_settings(), burst=burst)


@app.command()
def scheduler() -> None:
    """Run the periodic sweeps that find work whose job was lost."""
    from centrala.workers.processes import run_scheduler

    run_scheduler(get_settings())


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from centrala.schema import upgrade_database

    upgrade_database()
    typer.echo("database is up to date")


@app.command()
def seed(
    if_empty: Annotated[bool, typer.Option("--if-empty", help="Only when the database has no agents.")] = False,
) -> None:
    """Add demo data: a queue, an organisation, a few contacts, a default SLA policy over office hours and an
    admin agent (its token is printed)."""
    from centrala.tickets.seed import seed_demo_data

    settings = get_settings()
    with session_scope() as session:
        result = seed_demo_data(
            session=session,
            now=clock.now(),
            region=settings.default_region,
            timezone=settings.portal_timezone,
            only_if_empty=if_empty,
        )
    if result is None:
        typer.echo("database already has data; nothing seeded")
        return
    agent_email, token, password = result
    typer.echo(f"seeded demo data; admin agent {agent_email}, API token: {token}")
    typer.echo(f"console: {get_settings().public_url.rstrip('/')}/console, password: {password}")


@app.command()
def config() -> None:
    """Print the effective configuration, secrets masked."""
    typer.echo(json.dumps(get_settings().masked(), indent=2, default=str))


@agents_app.command("create")
def agents_create(
    email: Annotated[str, typer.Option(help="The agent's e-mail address.")],
    role: Annotated[str, typer.Option(help="agent, supervisor or admin.")] = "agent",
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Create an agent and print its API token (shown only once)."""
    from centrala.core.errors import CentralaError
    from centrala.tickets.agents import create_agent
    from centrala.tickets.models import AgentRole

    try:
        agent_role = AgentRole(role)
    except ValueError:
        raise typer.BadParameter(f"role must be one of: {', '.join(r.value for r in AgentRole)}") from None
    try:
        with session_scope() as session:
            agent, token = create_agent(session=session, email=email, name=name, role=agent_role, now=clock.now())
    except CentralaError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(token)


@agents_app.command("set-password")
def agents_set_password(
    email: Annotated[str, typer.Option(help="The agent's e-mail address.")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="The new console password.")
    ],
) -> None:
    """Set an agent's console password (at least 12 characters); signs them out everywhere."""
    from centrala.core.errors import CentralaError
    from centrala.tickets.agent_sessions import revoke_all, set_password
    from centrala.tickets.agents import get_agent_by_email_or_raise

    try:
        with session_scope() as session:
            agent = get_agent_by_email_or_raise(session=session, email=email)
            set_password(agent=agent, password=password)
            revoke_all(session=session, agent=agent, now=clock.now())
    except CentralaError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"console password set for {email}")


def _parse_moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date or time such as 2026-11-01 or 2026-11-01T08:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@mail_app.command("ledger")
def mail_ledger(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object for all mailboxes.")] = False,
    since: Annotated[str | None, typer.Option(help="Only mail received at or after this (ISO date/time, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Only mail received before this (ISO date/time, UTC).")] = None,
) -> None:
    """Count received, processed and quarantined inbound e-mails, per mailbox."""
    from centrala.ingest.models import InboundEmail, InboundStatus

    statement = select(InboundEmail.mailbox, InboundEmail.status, func.count()).group_by(
        InboundEmail.mailbox, InboundEmail.status
    )
    if (start := _parse_moment(since)) is not None:
        statement = statement.where(InboundEmail.received_at >= start)
    if (end := _parse_moment(until)) is not None:
        statement = statement.where(InboundEmail.received_at < end)
    with session_scope() as session:
        rows = session.execute(statement).all()
    totals = {status.value: 0 for status in InboundStatus}
    per_mailbox: dict[str, dict[str, int]] = {}
    for mailbox, status, count in rows:
        totals[status.value] += count
        per_mailbox.setdefault(mailbox, {s.value: 0 for s in InboundStatus})[status.value] += count
    if as_json:
        typer.echo(json.dumps(totals))
        return
    typer.echo(f"{'mailbox':40} {'received':>9} {'processed':>9} {'quarantined':>11}")
    for mailbox, counts in sorted(per_mailbox.items()):
        typer.echo(f"{mailbox:40} {counts['received']:>9} {counts['processed']:>9} {counts['quarantined']:>11}")


@mail_app.command("replay")
def mail_replay(inbound_id: int) -> None:
    """Process one stored inbound e-mail again (e.g. a quarantined one after a fix)."""
    from centrala.ingest.models import InboundEmail, InboundStatus
    from centrala.workers.jobs import process_inbound_email

    with session_scope() as session:
        row = session.get(InboundEmail, inbound_id)
        if row is None:
            typer.echo(f"no inbound e-mail {inbound_id}", err=True)
            raise typer.Exit(1)
        if row.status == InboundStatus.PROCESSED:
            typer.echo(f"inbound e-mail {inbound_id} is already processed")
            return
        row.status, row.reason, row.processed_at = InboundStatus.RECEIVED, None, None
    typer.echo(json.dumps(process_inbound_email(inbound_id)))


def _progress(*, total: int | None, what: str):  # type: ignore[no-untyped-def]
    """A progress bar on standard error when it is a terminal (silent in scripts and logs)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    if total is None:
        columns = [TextColumn(what), TextColumn("{task.completed} lines")]
    return Progress(*columns, console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=True)


@contextmanager
def _open_text(path: Path, mode: str) -> Iterator[IO[str]]:
    """``path`` as UTF-8 text, gzip-compressed when its name ends in .gz; ``-`` is standard input/output."""
    if str(path) == "-":
        yield sys.stdout if "w" in mode else sys.stdin
        return
    if path.name.endswith(".gz"):
        with gzip.open(path, mode + "t", encoding="utf-8") as handle:
            yield handle
    else:
        with path.open(mode, encoding="utf-8", newline="") as handle:
            yield handle


@app.command("export")
def export_command(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write (.gz to compress); - for standard output.")
    ] = Path("-"),
) -> None:
    """Write the whole installation (every table, every attachment and raw message) as JSON lines."""
    from centrala.core.blobs import BlobStore
    from centrala.transfer import export_installation

    target = output if str(output) == "-" else output.with_name(f".partial-{output.name}")
    try:
        with _open_text(target, "w") as handle:
            summary = export_installation(
                engine=get_engine(), blobs=BlobStore(get_settings().blob_dir), out=handle
            )
    except BaseException:
        if target != output:
            target.unlink(missing_ok=True)
        raise
    if target != output:
        target.replace(output)
    typer.echo(f"exported {summary.total_rows} rows and {summary.blobs} files", err=True)


@app.command("import")
def import_command(
    source: Annotated[
        Path, typer.Argument(help="An export of `centrala export` (.gz read as such); - for stdin.")
    ],
) -> None:
    """Load an export into this installation's database, which must be empty (it is migrated first)."""
    from centrala.core.blobs import BlobStore
    from centrala.core.errors import InvalidInputError
    from centrala.schema import upgrade_database
    from centrala.transfer import import_installation

    if str(source) != "-" and not source.is_file():
        raise typer.BadParameter(f"there is no file {source}")
    upgrade_database()
    try:
        with _open_text(source, "r") as handle, _progress(total=None, what="importing") as bar:
            task = bar.add_task("import")
            summary = import_installation(
                engine=get_engine(),
                blobs=BlobStore(get_settings().blob_dir),
                lines=handle,
                progress=lambda lines: bar.update(task, completed=lines),
            )
    except InvalidInputError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"imported {summary.total_rows} rows and {summary.blobs} files")


@contacts_app.command("import")
def contacts_import(
    source: Annotated[
        Path, typer.Argument(help="CSV file with a header row: name, email, phone, organisation, segment.")
    ],
    rejects: Annotated[
        Path | None,
        typer.Option(help="Also write the rejected rows, with row number and reason, to this CSV file."),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(help="Region for numbers without a country code (default CENTRALA_DEFAULT_REGION)."),
    ] = None,
) -> None:
    """Create or update contacts from a CSV file; rows that cannot be imported are reported, the rest goes in."""
    from centrala.core.errors import InvalidInputError
    from centrala.tickets.contact_import import ContactCsv, ImportOutcome

    if not source.is_file():
        raise typer.BadParameter(f"there is no file {source}")
    region = (region or get_settings().default_region).upper()
    try:
        with source.open(encoding="utf-8-sig", newline="") as handle:
            total = sum(1 for _ in ContactCsv(handle))
            handle.seek(0)
            rows = ContactCsv(handle)
            with _progress(total=total, what="importing contacts") as bar:
                task = bar.add_task("contacts", total=total)
                counts, rejected = _import_contact_rows(
                    rows, region=region, advance=lambda done: bar.update(task, completed=done)
                )
    except UnicodeDecodeError:
        typer.echo("error: the file is not UTF-8 text (save it from the spreadsheet as CSV UTF-8)", err=True)
        raise typer.Exit(1) from None
    except InvalidInputError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    for number, reason, _cells in rejected:
        typer.echo(f"row {number}: {reason}", err=True)
    if rejects is not None:
        with rejects.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["row", "reason", *rows.header])
            for number, reason, cells in rejected:
                writer.writerow([number, reason, *cells])
    typer.echo(
        f"created {counts[ImportOutcome.CREATED]}, updated {counts[ImportOutcome.UPDATED]}, "
        f"unchanged {counts[ImportOutcome.UNCHANGED]}, rejected {len(rejected)}"
    )


def _import_contact_rows(rows, *, region: str, advance):  # type: ignore[no-untyped-def]
    """Import each row in a savepoint, committing every CONTACT_IMPORT_BATCH rows; returns the count per
    outcome and the rejected rows as (row number, reason, cells)."""
    from sqlalchemy.exc import IntegrityError

    from centrala.core.db import get_sessionmaker
    from centrala.core.errors import InvalidInputError
    from centrala.tickets.contact_import import ImportOutcome, import_contact

    counts = dict.fromkeys(ImportOutcome, 0)
    rejected: list[tuple[int, str, list[str]]] = []
    session = get_sessionmaker()()
    try:
        for done, row in enumerate(rows, start=1):
            try:
                with session.begin_nested():
                    outcome = import_contact(session=session, row=row, region=region, now=clock.now())
                counts[outcome] += 1
            except InvalidInputError as error:
                rejected.append((row.number, str(error), row.raw))
            except IntegrityError:
                # A worker made a contact with the same address a moment ago; a second run updates it.
                rejected.append((row.number, "an address was taken by another contact meanwhile", row.raw))
            if done % CONTACT_IMPORT_BATCH == 0:
                session.commit()
            advance(done)
        session.commit()
    finally:
        session.close()
    return counts, rejected


@app.command()
def backup(
    directory: Annotated[
        Path | None, typer.Option(help="Where backups go (default: var/backups under CENTRALA_VAR_DIR).")
    ] = None,
    archive: Annotated[
        bool, typer.Option("--archive", help="One .tar.gz file instead of a directory.")
    ] = False,
) -> None:
    """Copy the SQLite database and the attachment store, consistently, while the service runs."""
    from sqlalchemy.engine import make_url

    from centrala.backup import backup_directory_name, take_backup
    from centrala.core.errors import InvalidInputError

    settings = get_settings()
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        typer.echo(
            "error: the database is not the embedded SQLite file: back PostgreSQL up with pg_dump and copy "
            f"{settings.blob_dir} (see the README's chapter on backups), or move it with `centrala export`",
            err=True,
        )
        raise typer.Exit(1)
    target_dir = directory or settings.var_dir / "backups"
    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        made = take_backup(
            database=Path(url.database),
            blob_dir=settings.blob_dir,
            target=target_dir / backup_directory_name(clock.now()),
            archive=archive,
        )
    except InvalidInputError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(made.path))


@app.command()
def retention() -> None:
    """Archive old closed tickets and delete old raw mail now (the scheduler does it every hour)."""
    from centrala.workers.jobs import apply_retention

    report = apply_retention()
    counts = {"archived_tickets": report.archived_tickets, "raw_mail_deleted": report.raw_mail_deleted}
    typer.echo(json.dumps(counts))


def main() -> None:
    """Entry point of the console script."""
    app()
