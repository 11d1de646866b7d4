"""SLA policies and business calendars in the API (admins): list, create, change. A change to a policy or a
calendar moves the open clocks under it in the same transaction, and their stale jobs do nothing."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from centrala.core import clock
from centrala.core.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from centrala.core.ids import BodyId, PathId
from centrala.tickets.api import CurrentAgentDep, SessionDep, get_current_agent
from centrala.tickets.models import (
    AgentRole,
    BusinessCalendarRow,
    Channel,
    Organization,
    Queue,
    SlaMetric,
    SlaPolicy,
    TicketPriority,
)
from centrala.tickets.sla_clocks import recompute_open_clocks

MAX_TARGET_MINUTES = 60 * 24 * 365


def require_admin(agent: CurrentAgentDep) -> None:
    if agent.role is not AgentRole.ADMIN:
        raise PermissionDeniedError("only admins change SLA policies and calendars")


router = APIRouter(prefix="/api/v1/sla", dependencies=[Depends(get_current_agent)], tags=["sla"])
AdminDep = Annotated[None, Depends(require_admin)]


# --- shapes -----------------------------------------------------------------------------------------------------


class CalendarWrite(BaseModel):
    """A business calendar: ``weekly_hours`` maps ``"0"``-``"6"`` (Monday 0) to ``[["08:00", "12:00"],
    ["13:00", "17:00"]]`` (an end of ``24:00`` is midnight); no entry for a day means closed."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    timezone: str = Field(max_length=64, examples=["Europe/Prague"])
    weekly_hours: dict[Literal["0", "1", "2", "3", "4", "5", "6"], list[tuple[str, str]]]
    holidays_country: str | None = Field(default=None, max_length=8, examples=["CZ"])
    holidays_subdiv: str | None = Field(default=None, max_length=16)
    extra_holidays: list[date] = Field(default_factory=list, max_length=500)


class CalendarRead(CalendarWrite):
    model_config = ConfigDict(from_attributes=True)

    id: int
    updated_at: datetime


class Escalation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on: Literal["warning", "breach"]
    action: Literal[
        "notify_assignee", "notify_team_lead", "notify_queue", "notify_address", "raise_priority", "reassign"
    ]
    queue_id: BodyId | None = None
    address: str | None = Field(default=None, max_length=320)


class PolicyWrite(BaseModel):
    """An SLA policy. Conditions left null match anything; among the matching policies the lowest
    ``precedence`` applies, else the default. ``targets`` maps a priority or ``default`` to business minutes
    per metric (a metric left out gets no clock)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    precedence: int = Field(default=100, ge=0, le=1_000_000)
    is_default: bool = False
    is_active: bool = True
    queue_id: BodyId | None = None
    priority: TicketPriority | None = None
    organization_id: BodyId | None = None
    channel: Channel | None = None
    segment: str | None = Field(default=None, max_length=32)
    calendar_id: BodyId | None = Field(default=None, description="None: round the clock in UTC")
    targets: dict[str, dict[SlaMetric, int]]
    warn_before_minutes: int = Field(default=15, ge=0, le=MAX_TARGET_MINUTES)
    escalations: list[Escalation] = Field(default_factory=list, max_length=20)
    calls_count_as_response: bool = True

    @field_validator("targets")
    @classmethod
    def _check_targets(cls, value: dict[str, dict[SlaMetric, int]]) -> dict[str, dict[SlaMetric, int]]:
        allowed = {"default", *(priority.value for priority in TicketPriority)}
        for key, minutes in value.items():
            if key not in allowed:
                raise ValueError(f"targets are keyed by a priority or 'default', not {key!r}")
            for metric, target in minutes.items():
                if not 1 <= target <= MAX_TARGET_MINUTES:
                    raise ValueError(
                        f"the {metric.value} target of {key!r} must be 1 to {MAX_TARGET_MINUTES} minutes"
                    )
        return value


class PolicyRead(PolicyWrite):
    model_config = ConfigDict(from_attributes=True)

    id: int
    updated_at: datetime


class Recomputed(BaseModel):
    """What a change did to the clocks already running."""

    open_clocks_recomputed: int


class CalendarChanged(Recomputed):
    calendar: CalendarRead


class PolicyChanged(Recomputed):
    policy: PolicyRead


# --- calendars --------------------------------------------------------------------------------------------------


@router.get("/calendars")
def list_calendars(session: SessionDep) -> list[CalendarRead]:
    return [
        CalendarRead.model_validate(row)
        for row in session.scalars(select(BusinessCalendarRow).order_by(BusinessCalendarRow.name))
    ]


@router.post("/calendars", status_code=201)
def create_calendar(session: SessionDep, _: AdminDep, calendar: CalendarWrite) -> CalendarRead:
    row = BusinessCalendarRow(updated_at=clock.now())
    _fill_calendar(row, calendar)
    _save(session, row, f"a calendar named {calendar.name!r} exists")
    session.commit()
    return CalendarRead.model_validate(row)


@router.put("/calendars/{calendar_id}")
def update_calendar(
    session: SessionDep, _: AdminDep, calendar_id: PathId, calendar: CalendarWrite
) -> CalendarChanged:
    """Change a calendar; the open clocks of every policy using it are counted again under the new hours."""
    row = session.get(BusinessCalendarRow, calendar_id)
    if row is None:
        raise NotFoundError(f"no calendar {calendar_id}")
    _fill_calendar(row, calendar)
    row.updated_at = clock.now()
    _save(session, row, f"a calendar named {calendar.name!r} exists")
    moved = recompute_open_clocks(session=session, now=clock.now(), calendar_id=row.id)
    session.commit()
    return CalendarChanged(calendar=CalendarRead.model_validate(row), open_clocks_recomputed=moved)


def _fill_calendar(row: BusinessCalendarRow, calendar: CalendarWrite) -> None:
    row.name = calendar.name.strip()
    row.timezone = calendar.timezone
    row.weekly_hours = {
        day: [[start, end] for start, end in spans] for day, spans in calendar.weekly_hours.items()
    }
    row.holidays_country = calendar.holidays_country
    row.holidays_subdiv = calendar.holidays_subdiv
    row.extra_holidays = [day.isoformat() for day in calendar.extra_holidays]
    for spans in calendar.weekly_hours.values():
        for start, end in spans:
            for text in (start, end):
                if text not in ("24:00", "24:00:00"):
                    try:
                        time.fromisoformat(text)
                    except ValueError:
                        raise InvalidInputError(f"{text!r} is not a time of day like 08:30") from None
    row.to_calendar()  # raises InvalidInputError for an unknown zone or country, or overlapping hours


# --- policies ---------------------------------------------------------------------------------------------------


@router.get("/policies")
def list_policies(session: SessionDep) -> list[PolicyRead]:
    policies = session.scalars(select(SlaPolicy).order_by(SlaPolicy.precedence, SlaPolicy.id))
    return [PolicyRead.model_validate(policy) for policy in policies]


@router.post("/policies", status_code=201)
def create_policy(session: SessionDep, _: AdminDep, policy: PolicyWrite) -> PolicyRead:
    row = SlaPolicy(updated_at=clock.now())
    _fill_policy(session, row, policy)
    _save(session, row, f"a policy named {policy.name!r} exists")
    session.commit()
    return PolicyRead.model_validate(row)


@router.put("/policies/{policy_id}")
def update_policy(session: SessionDep, _: AdminDep, policy_id: PathId, policy: PolicyWrite) -> PolicyChanged:
    """Change a policy; its open clocks take the new targets, warning time and calendar at once."""
    row = session.get(SlaPolicy, policy_id)
    if row is None:
        raise NotFoundError(f"no policy {policy_id}")
    _fill_policy(session, row, policy)
    row.updated_at = clock.now()
    _save(session, row, f"a policy named {policy.name!r} exists")
    session.refresh(row)
    moved = recompute_open_clocks(session=session, now=clock.now(), policy=row)
    session.commit()
    return PolicyChanged(policy=PolicyRead.model_validate(row), open_clocks_recomputed=moved)


def _fill_policy(session: Session, row: SlaPolicy, policy: PolicyWrite) -> None:
    for name, model, value in (
        ("queue", Queue, policy.queue_id),
        ("organisation", Organization, policy.organization_id),
        ("calendar", BusinessCalendarRow, policy.calendar_id),
    ):
        if value is not None and session.get(model, value) is None:
            raise InvalidInputError(f"no {name} {value}")
    for escalation in policy.escalations:
        named_queue = escalation.queue_id
        if named_queue is not None and session.get(Queue, named_queue) is None:
            raise InvalidInputError(f"no queue {named_queue}")
        if escalation.action == "reassign" and escalation.queue_id is None:
            raise InvalidInputError("a reassign escalation names the queue (queue_id)")
        if escalation.action == "notify_address" and not escalation.address:
            raise InvalidInputError("a notify_address escalation names the address")
    row.name = policy.name.strip()
    row.precedence = policy.precedence
    row.is_default = policy.is_default
    row.is_active = policy.is_active
    row.queue_id = policy.queue_id
    row.priority = policy.priority
    row.organization_id = policy.organization_id
    row.channel = policy.channel
    row.segment = (policy.segment or "").strip().lower() or None
    row.calendar_id = policy.calendar_id
    row.targets = {
        key: {metric.value: minutes for metric, minutes in values.items()}
        for key, values in policy.targets.items()
    }
    row.warn_before_minutes = policy.warn_before_minutes
    row.escalations = [escalation.model_dump(exclude_none=True) for escalation in policy.escalations]
    row.calls_count_as_response = policy.calls_count_as_response


def _save(session: Session, row: object, conflict: str) -> None:
    """Write ``row`` (new or changed); a name another row has is a ConflictError, not a 500."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise ConflictError(conflict) from None
