"""The call state machine: one pure, order-tolerant and idempotent transition function over ``CallEvent`` values.

Twilio's callbacks arrive out of order and may repeat (design.md, Known hazards). So a call is not advanced
step by step; every event contributes *facts*, and each fact is merged with a rule that is commutative,
associative and idempotent (a maximum, a minimum, a union). Any order and any number of repeats of the same
events therefore give the same snapshot, and the state and outcome are recomputed from the facts each time:

- the call's Twilio status is the greatest by (precedence, ``SequenceNumber``), where precedence is
  queued/initiated < ringing < in-progress < every terminal status. A late ``ringing`` cannot undo ``completed``,
  and a terminal state is never left (two conflicting terminal statuses, which Twilio does not send, resolve by
  sequence number and then by a fixed order, the same whatever the arrival order);
- legs created by ``<Dial>`` (an agent's browser client or phone) are kept per leg sid, from the ``<Dial action>``
  request (``DialCallSid``/``DialCallStatus``/``DialCallDuration``) and from the legs' own status callbacks;
- recordings per recording sid and transcriptions per transcription sid: they attach even after the call ended;
- times are the earliest seen of each kind (start, pick-up, end), durations the greatest reported.

Outcome once the call has ended: ``answered`` when a dialled leg connected (for a call we placed, when the callee
picked up), else ``voicemail`` when a message was recorded, else ``busy``/``failed`` from Twilio's status, else
``missed``. A recording reported after the end turns ``missed`` into ``voicemail``: that is the same result the
events give in any order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, Self, TypeVar

from centrala.core.errors import InvalidInputError
from centrala.telephony.events import (
    CallDirection,
    CallEvent,
    CallStatus,
    DialCallStatus,
    RecordingStatus,
    TranscriptionStatus,
    call_key,
)


class CallState(StrEnum):
    """Where a call is; the last five are terminal (Twilio's final status) and are never left."""

    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    TALKING = "talking"
    VOICEMAIL = "voicemail"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CANCELED = "canceled"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """Whether the call has ended."""
        return self in _TERMINAL_STATES


_TERMINAL_STATES = frozenset(
    {CallState.COMPLETED, CallState.BUSY, CallState.NO_ANSWER, CallState.CANCELED, CallState.FAILED}
)
_STATE_OF_TERMINAL_STATUS = {
    CallStatus.COMPLETED: CallState.COMPLETED,
    CallStatus.BUSY: CallState.BUSY,
    CallStatus.NO_ANSWER: CallState.NO_ANSWER,
    CallStatus.CANCELED: CallState.CANCELED,
    CallStatus.FAILED: CallState.FAILED,
}


class CallOutcome(StrEnum):
    """How an ended call went, from the caller's side."""

    ANSWERED = "answered"
    MISSED = "missed"
    VOICEMAIL = "voicemail"
    BUSY = "busy"
    FAILED = "failed"


# Precedence of Twilio statuses: progress only moves up, and every terminal status outranks every other.
_STATUS_RANK = {
    CallStatus.QUEUED: 0,
    CallStatus.INITIATED: 0,
    CallStatus.RINGING: 1,
    CallStatus.IN_PROGRESS: 2,
    CallStatus.COMPLETED: 3,
    CallStatus.BUSY: 3,
    CallStatus.NO_ANSWER: 3,
    CallStatus.CANCELED: 3,
    CallStatus.FAILED: 3,
}
# A fixed total order among statuses of equal rank and sequence, so conflicting reports resolve the same way.
_STATUS_ORDER = {status: index for index, status in enumerate(CallStatus)}
_DIAL_RANK = {
    DialCallStatus.IN_PROGRESS: 0,
    DialCallStatus.CANCELED: 1,
    DialCallStatus.NO_ANSWER: 2,
    DialCallStatus.BUSY: 3,
    DialCallStatus.FAILED: 4,
    DialCallStatus.ANSWERED: 5,
    DialCallStatus.COMPLETED: 6,
}
_RECORDING_RANK = {
    RecordingStatus.IN_PROGRESS: 0,
    RecordingStatus.COMPLETED: 1,
    RecordingStatus.ABSENT: 2,
    RecordingStatus.FAILED: 3,
}
_TRANSCRIPTION_RANK = {TranscriptionStatus.FAILED: 0, TranscriptionStatus.COMPLETED: 1}


@dataclass(frozen=True)
class DialedLeg:
    """A leg created by ``<Dial>``: an agent's browser client or phone being rung for this call."""

    call_sid: str
    identity: str | None = None
    status: CallStatus | None = None
    dial_status: DialCallStatus | None = None
    duration: int | None = None
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def connected(self) -> bool:
        """Whether the dialled party picked up (Twilio reports ``completed`` only for a leg that was answered)."""
        if self.dial_status is not None and self.dial_status.connected:
            return True
        return self.status in (CallStatus.IN_PROGRESS, CallStatus.COMPLETED)

    @property
    def finished(self) -> bool:
        """Whether the leg is over (a dial result arrives only when it ended)."""
        return self.dial_status is not None or (self.status is not None and self.status.is_terminal)

    def merged(self, other: DialedLeg) -> DialedLeg:
        """Both reports of the same leg combined."""
        return DialedLeg(
            call_sid=self.call_sid,
            identity=_max_opt(self.identity, other.identity),
            status=_max_status(self.status, other.status),
            dial_status=_max_ranked(self.dial_status, other.dial_status, _DIAL_RANK),
            duration=_max_opt(self.duration, other.duration),
            started_at=_min_opt(self.started_at, other.started_at),
            answered_at=_min_opt(self.answered_at, other.answered_at),
            ended_at=_min_opt(self.ended_at, other.ended_at),
        )


@dataclass(frozen=True)
class Recording:
    """A recording on the call; ``key`` is its sid (or, before the sid is known, derived from its URL)."""

    key: str
    url: str | None = None
    duration: int | None = None
    status: RecordingStatus | None = None

    @property
    def has_message(self) -> bool:
        """Whether it (may) hold a message: not absent or failed, and not zero seconds long."""
        return self.status not in (RecordingStatus.ABSENT, RecordingStatus.FAILED) and self.duration != 0

    def merged(self, other: Recording) -> Recording:
        """Both reports of the same recording combined."""
        return Recording(
            key=self.key,
            url=_max_opt(self.url, other.url),
            duration=_max_opt(self.duration, other.duration),
            status=_max_ranked(self.status, other.status, _RECORDING_RANK),
        )


@dataclass(frozen=True)
class Transcription:
    """A transcription of one of the call's recordings."""

    sid: str
    recording_key: str | None = None
    status: TranscriptionStatus | None = None
    text: str | None = None

    def merged(self, other: Transcription) -> Transcription:
        """Both reports of the same transcription combined."""
        return Transcription(
            sid=self.sid,
            recording_key=_max_opt(self.recording_key, other.recording_key),
            status=_max_ranked(self.status, other.status, _TRANSCRIPTION_RANK),
            text=_max_opt(self.text, other.text),
        )


@dataclass(frozen=True)
class CallSnapshot:
    """Everything known about one call: the merged facts, then the state and figures derived from them.

    Durations are whole seconds. ``talk_seconds`` is the time connected to agents (0 once an unanswered call
    ended); ``wait_seconds`` is the caller's time on the line not spent talking to an agent or recording a
    message (greeting, menu, ringing); ``ring_seconds`` how long the dialled legs rang before one was picked up
    (or until they gave up) -- known only with the legs' status callbacks -- or, for a call we placed, how long
    the callee's phone rang. A figure that cannot be known yet is None.
    """

    call_sid: str
    state: CallState = CallState.RINGING
    outcome: CallOutcome | None = None
    # --- facts from the call's own events
    status: CallStatus | None = None
    status_sequence: int | None = None
    account_sid: str | None = None
    direction: CallDirection | None = None
    from_number: str | None = None
    from_raw: str | None = None
    from_withheld: bool = False
    to_number: str | None = None
    to_raw: str | None = None
    caller_name: str | None = None
    queue: str | None = None
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    call_duration: int | None = None
    reached_in_progress: bool = False
    legs: tuple[DialedLeg, ...] = ()
    recordings: tuple[Recording, ...] = ()
    transcriptions: tuple[Transcription, ...] = ()
    # --- derived
    agent_identity: str | None = None
    agent_call_sid: str | None = None
    agent_answered_at: datetime | None = None
    ring_seconds: int | None = None
    wait_seconds: int | None = None
    talk_seconds: int | None = None
    recording_sid: str | None = None
    recording_url: str | None = None
    recording_duration: int | None = None
    recording_status: RecordingStatus | None = None
    transcription_sid: str | None = None
    transcription_text: str | None = None
    transcription_status: TranscriptionStatus | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the call has ended."""
        return self.state.is_terminal


def apply_event(snapshot: CallSnapshot | None, event: CallEvent) -> CallSnapshot:
    """The snapshot after ``event``: order-tolerant, idempotent, and never leaving a terminal state.

    ``snapshot`` None starts a new call. Events of a leg created by ``<Dial>`` belong to its parent call.

    Raises:
        InvalidInputError: the event belongs to another call.
    """
    sid = call_key(event)
    if snapshot is None:
        snapshot = CallSnapshot(call_sid=sid)
    elif snapshot.call_sid != sid:
        raise InvalidInputError(f"event of call {sid} applied to call {snapshot.call_sid}")
    facts = _merge_event(snapshot, event)
    return _derive(facts)


def replay_events(events: Iterable[CallEvent]) -> CallSnapshot | None:
    """The snapshot of a call from its stored events, in any order; None when there are none."""
    snapshot: CallSnapshot | None = None
    for event in events:
        snapshot = apply_event(snapshot, event)
    return snapshot


# --- merging facts ----------------------------------------------------------------------------------------------


def _merge_event(snapshot: CallSnapshot, event: CallEvent) -> CallSnapshot:
    changes: dict[str, object] = {}
    if event.is_dialed_leg:
        changes["legs"] = _merge_leg(snapshot.legs, _leg_from_leg_event(event))
    else:
        changes.update(_call_facts(snapshot, event))
        if event.dial_call_sid is not None or event.dial_call_status is not None:
            leg = DialedLeg(
                call_sid=event.dial_call_sid or "",
                dial_status=event.dial_call_status,
                duration=event.dial_call_duration,
            )
            changes["legs"] = _merge_leg(snapshot.legs, leg)
    recordings = snapshot.recordings
    key = event.recording_key
    if key is not None and not event.is_dialed_leg:
        recording = Recording(
            key=key, url=event.recording_url, duration=event.recording_duration, status=event.recording_status
        )
        recordings = _merge_keyed(recordings, recording, lambda item: item.key)
    changes["recordings"] = recordings
    if event.transcription_sid is not None:
        transcription = Transcription(
            sid=event.transcription_sid,
            recording_key=key,
            status=event.transcription_status,
            text=event.transcription_text,
        )
        changes["transcriptions"] = _merge_keyed(
            snapshot.transcriptions, transcription, lambda item: item.sid
        )
    return dataclasses.replace(snapshot, **changes)


def _call_facts(snapshot: CallSnapshot, event: CallEvent) -> dict[str, object]:
    status, sequence = snapshot.status, snapshot.status_sequence
    if event.call_status is not None and _status_key(event.call_status, event.sequence_number) > _status_key(
        status, sequence
    ):
        status, sequence = event.call_status, event.sequence_number
    at = event.timestamp
    in_progress = event.call_status is CallStatus.IN_PROGRESS
    ended = event.call_status is not None and event.call_status.is_terminal
    return {
        "status": status,
        "status_sequence": sequence,
        "account_sid": _max_opt(snapshot.account_sid, event.account_sid),
        "direction": _max_opt(snapshot.direction, event.direction),
        "from_number": _max_opt(snapshot.from_number, event.from_number),
        "from_raw": _max_opt(snapshot.from_raw, event.from_raw),
        "from_withheld": snapshot.from_withheld or event.from_withheld,
        "to_number": _max_opt(snapshot.to_number, event.to_number),
        "to_raw": _max_opt(snapshot.to_raw, event.to_raw),
        "caller_name": _max_opt(snapshot.caller_name, event.caller_name),
        "queue": _max_opt(snapshot.queue, event.queue),
        "started_at": _min_opt(snapshot.started_at, at),
        "answered_at": _min_opt(snapshot.answered_at, at if in_progress else None),
        "ended_at": _min_opt(snapshot.ended_at, at if ended else None),
        "call_duration": _max_opt(snapshot.call_duration, event.call_duration),
        "reached_in_progress": snapshot.reached_in_progress or in_progress,
    }


def _leg_from_leg_event(event: CallEvent) -> DialedLeg:
    at = event.timestamp
    status = event.call_status
    identity = event.to_client or event.to_number or event.to_raw
    return DialedLeg(
        call_sid=event.call_sid,
        identity=identity,
        status=status,
        duration=event.call_duration,
        started_at=at,
        answered_at=at if status is CallStatus.IN_PROGRESS else None,
        ended_at=at if status is not None and status.is_terminal else None,
    )


def _merge_leg(legs: tuple[DialedLeg, ...], leg: DialedLeg) -> tuple[DialedLeg, ...]:
    return _merge_keyed(legs, leg, lambda item: item.call_sid)


class _Mergeable(Protocol):
    def merged(self, other: Self) -> Self: ...


_M = TypeVar("_M", bound=_Mergeable)
_R = TypeVar("_R", bound=StrEnum)


def _merge_keyed(items: tuple[_M, ...], new: _M, key: Callable[[_M], str]) -> tuple[_M, ...]:
    """``items`` (sorted by ``key``) with ``new`` merged into the item of the same key, or added."""
    by_key = {key(item): item for item in items}
    new_key = key(new)
    by_key[new_key] = by_key[new_key].merged(new) if new_key in by_key else new
    return tuple(by_key[k] for k in sorted(by_key))


def _status_key(status: CallStatus | None, sequence: int | None) -> tuple[int, int, int]:
    if status is None:
        return (-1, -1, -1)
    return (_STATUS_RANK[status], -1 if sequence is None else sequence, _STATUS_ORDER[status])


def _max_status(a: CallStatus | None, b: CallStatus | None) -> CallStatus | None:
    return a if _status_key(a, None) >= _status_key(b, None) else b


def _max_ranked(a: _R | None, b: _R | None, rank: dict[_R, int]) -> _R | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if rank[a] >= rank[b] else b


def _max_opt(a: Any, b: Any) -> Any:
    """The greater of two values, None counting as nothing: a deterministic pick when reports disagree."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _min_opt(a: Any, b: Any) -> Any:
    """The smaller of two values, None counting as nothing."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


# --- deriving state and figures ---------------------------------------------------------------------------------


def _derive(facts: CallSnapshot) -> CallSnapshot:
    connected = [leg for leg in facts.legs if leg.connected]
    # The agent: the connected leg with the longest conversation (ties by leg sid), a stable choice.
    agent = max(connected, key=lambda leg: (leg.duration or 0, leg.call_sid), default=None)
    placed_by_us = facts.direction is CallDirection.OUTBOUND_API
    # A call we placed is answered when the callee picks up -- Twilio ends a call that was never picked up as
    # no-answer/busy/canceled/failed, never completed -- unless it then dialled someone, who must pick up too.
    answered = bool(connected) or (
        placed_by_us
        and not facts.legs
        and (facts.reached_in_progress or facts.status is CallStatus.COMPLETED)
    )
    messages = [recording for recording in facts.recordings if recording.has_message]
    recording = _pick_recording(facts.recordings)
    transcription = _pick_transcription(facts.transcriptions, recording)

    state = _state(facts, connected, recording=bool(messages))
    outcome = _outcome(facts, answered=answered, voicemail=bool(messages)) if state.is_terminal else None

    talk: int | None = None
    if connected:
        talk = sum(leg.duration or 0 for leg in connected)
    elif answered:
        talk = facts.call_duration
    elif state.is_terminal:
        talk = 0
    wait: int | None = None
    total = facts.call_duration
    if total is None and facts.ended_at is not None and facts.started_at is not None:
        total = _seconds(facts.started_at, facts.ended_at)
    if state.is_terminal and total is not None:
        message_seconds = sum(r.duration or 0 for r in messages) if not answered else 0
        wait = max(0, total - (talk or 0) - message_seconds)

    return dataclasses.replace(
        facts,
        state=state,
        outcome=outcome,
        agent_identity=agent.identity if agent else None,
        agent_call_sid=(agent.call_sid or None) if agent else None,
        agent_answered_at=agent.answered_at if agent else None,
        ring_seconds=_ring_seconds(facts, agent, placed_by_us),
        wait_seconds=wait,
        talk_seconds=talk,
        recording_sid=recording.key if recording and recording.key.startswith("RE") else None,
        recording_url=recording.url if recording else None,
        recording_duration=recording.duration if recording else None,
        recording_status=recording.status if recording else None,
        transcription_sid=transcription.sid if transcription else None,
        transcription_text=transcription.text if transcription else None,
        transcription_status=transcription.status if transcription else None,
    )


def _state(facts: CallSnapshot, connected: list[DialedLeg], *, recording: bool) -> CallState:
    status = facts.status
    if status is not None and status.is_terminal:
        return _STATE_OF_TERMINAL_STATUS[status]
    if not connected and recording:
        return CallState.VOICEMAIL
    if any(not leg.finished for leg in connected):
        return CallState.TALKING
    if status is CallStatus.IN_PROGRESS or facts.reached_in_progress or facts.legs:
        return CallState.IN_PROGRESS
    return CallState.RINGING


def _outcome(facts: CallSnapshot, *, answered: bool, voicemail: bool) -> CallOutcome:
    if answered:
        return CallOutcome.ANSWERED
    if voicemail:
        return CallOutcome.VOICEMAIL
    if facts.status is CallStatus.BUSY:
        return CallOutcome.BUSY
    if facts.status is CallStatus.FAILED:
        return CallOutcome.FAILED
    return CallOutcome.MISSED


def _ring_seconds(facts: CallSnapshot, agent: DialedLeg | None, placed_by_us: bool) -> int | None:
    if agent is not None:
        if agent.started_at is not None and agent.answered_at is not None:
            return _seconds(agent.started_at, agent.answered_at)
        return None
    rung = [
        _seconds(leg.started_at, leg.ended_at)
        for leg in facts.legs
        if leg.started_at is not None and leg.ended_at is not None
    ]
    if rung:
        return max(rung)
    if placed_by_us and facts.started_at is not None:
        until = facts.answered_at or facts.ended_at
        return _seconds(facts.started_at, until) if until is not None else None
    return None


def _pick_recording(recordings: tuple[Recording, ...]) -> Recording | None:
    """The recording to show: one holding a message before one that does not, then the longest, then by key."""
    return max(
        recordings,
        key=lambda r: (r.has_message, r.duration if r.duration is not None else -1, r.key),
        default=None,
    )


def _pick_transcription(
    transcriptions: tuple[Transcription, ...], recording: Recording | None
) -> Transcription | None:
    own = [t for t in transcriptions if recording is not None and t.recording_key == recording.key]
    candidates = own or list(transcriptions)
    return max(
        candidates,
        key=lambda t: (_TRANSCRIPTION_RANK.get(t.status, -1) if t.status else -1, t.text or "", t.sid),
        default=None,
    )


def _seconds(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds()))
