"""Customer satisfaction: a rating from 1 to 5 with a comment, asked once per resolution of a ticket."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from centrala.core.errors import ConflictError, InvalidInputError
from centrala.core.settings import Settings
from centrala.tickets.models import Contact, CsatSurvey, Ticket, TicketStatus
from centrala.tickets.outbox import portal_ticket_url, queue_survey_request

log = logging.getLogger(__name__)

RATINGS = range(1, 6)
MAX_COMMENT_LENGTH = 2000


def portal_rating_url(*, ticket: Ticket, settings: Settings) -> str:
    """The portal's rating form of ``ticket``; reached through sign-in when the customer is signed out."""
    return f"{portal_ticket_url(ticket=ticket, settings=settings)}/rating"


def request_survey(*, session: Session, ticket: Ticket, now: datetime, settings: Settings) -> CsatSurvey:
    """Open the survey of the ticket's new resolution and e-mail the customer the link to it.

    A resolution still unanswered from before (the ticket was reopened and resolved again) is superseded:
    only the newest resolution can be rated.
    """
    cycle = 1 + (session.scalar(select(func.max(CsatSurvey.cycle)).where(CsatSurvey.ticket_id == ticket.id)) or 0)
    survey = CsatSurvey(ticket_id=ticket.id, cycle=cycle, requested_at=now)
    session.add(survey)
    session.flush()
    queue_survey_request(
        session=session, ticket=ticket, link=portal_rating_url(ticket=ticket, settings=settings), now=now,
        settings=settings,
    )
    log.info("survey %s of ticket %s requested", cycle, ticket.number)
    return survey


def get_open_survey(*, session: Session, ticket: Ticket) -> CsatSurvey | None:
    """The survey the customer may answer now: the newest one, unanswered, while the ticket stays resolved
    or closed; None otherwise."""
    if ticket.status not in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
        return None
    survey = session.scalar(
        select(CsatSurvey).where(CsatSurvey.ticket_id == ticket.id).order_by(CsatSurvey.cycle.desc()).limit(1)
    )
    return survey if survey is not None and survey.answered_at is None else None


def answer_survey(
    *, session: Session, ticket: Ticket, contact: Contact, rating: int, comment: str, now: datetime
) -> CsatSurvey:
    """Record the customer's rating of the ticket's latest resolution.

    Raises:
        InvalidInputError: the rating is not 1-5 or the comment is too long.
        ConflictError: there is nothing to rate: answered already, or the ticket is not resolved.
    """
    if rating not in RATINGS:
        raise InvalidInputError("the rating is a whole number from 1 to 5")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_LENGTH:
        raise InvalidInputError(f"the comment is longer than {MAX_COMMENT_LENGTH} characters")
    survey = get_open_survey(session=session, ticket=ticket)
    if survey is None:
        raise ConflictError("this resolution has been rated already or there is nothing to rate")
    # Conditional on still being unanswered: of two answers sent at once, only one is recorded.
    answered = session.execute(
        update(CsatSurvey)
        .where(CsatSurvey.id == survey.id, CsatSurvey.answered_at.is_(None))
        .values(rating=rating, comment=comment or None, answered_at=now, answered_by_contact_id=contact.id)
        .execution_options(synchronize_session=False)
    )
    if answered.rowcount != 1:
        raise ConflictError("this resolution has been rated already")
    session.refresh(survey)
    log.info("survey %s of ticket %s answered", survey.cycle, ticket.number)
    return survey


@dataclass(frozen=True)
class CsatSummary:
    """Ratings answered in a period: how many, their average, and how many of each score."""

    requested: int
    answered: int
    average: float | None
    counts: dict[int, int]


def summarize_csat(*, session: Session, since: datetime, until: datetime) -> CsatSummary:
    """The satisfaction report for surveys requested in ``[since, until)``."""
    in_period = (CsatSurvey.requested_at >= since, CsatSurvey.requested_at < until)
    requested = session.scalar(select(func.count()).select_from(CsatSurvey).where(*in_period)) or 0
    rows = session.execute(
        select(CsatSurvey.rating, func.count())
        .where(*in_period, CsatSurvey.rating.is_not(None))
        .group_by(CsatSurvey.rating)
    ).all()
    counts = {score: 0 for score in RATINGS} | {rating: count for rating, count in rows}
    answered = sum(counts.values())
    average = round(sum(score * count for score, count in counts.items()) / answered, 2) if answered else None
    return CsatSummary(requested=requested, answered=answered, average=average, counts=counts)
