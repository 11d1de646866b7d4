"""What the database holds after mail went through the service: the counts fault and load tests assert on."""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from centrala.core.db import READ_ONLY_OPTION
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.tickets.models import Direction, Interaction, Ticket
from tests.support.processes import wait_until


def ledger_counts(engine: Engine) -> dict[str, int]:
    """Ledger rows, processed rows, inbound interactions, those beyond one per Message-ID, tickets.

    Read-only: on SQLite it takes no write lock and so never waits for (or blocks) the service's writers.
    Inbound interactions only: our acknowledgements are on the timeline too.
    """
    with Session(engine.execution_options(**{READ_ONLY_OPTION: True})) as session:
        by_status = dict(
            session.execute(select(InboundEmail.status, func.count()).group_by(InboundEmail.status)).all()
        )
        inbound = Interaction.direction == Direction.INBOUND
        interactions = session.scalar(select(func.count()).select_from(Interaction).where(inbound))
        distinct_ids = session.scalar(
            select(func.count(func.distinct(Interaction.external_id))).where(inbound)
        )
        return {
            "stored": sum(by_status.values()),
            "processed": by_status.get(InboundStatus.PROCESSED, 0),
            "interactions": interactions,
            "duplicates": interactions - distinct_ids,
            "tickets": session.scalar(select(func.count()).select_from(Ticket)),
        }


def wait_all_processed(engine: Engine, count: int, *, timeout: float) -> dict[str, int]:
    """The counts once ``count`` rows are processed; fails after ``timeout`` seconds."""
    return wait_until(
        lambda: (counts := ledger_counts(engine))["processed"] >= count and counts,
        timeout=timeout,
        interval=0.2,
        what=f"all {count} messages processed",
    )
