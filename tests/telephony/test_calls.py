"""The call state machine: right outcome per scenario, whatever order and however often Twilio calls back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from centrala.core.errors import InvalidInputError
from centrala.telephony.calls import CallOutcome, CallSnapshot, CallState, apply_event, replay_events
from centrala.telephony.events import CallDirection, CallEvent, CallStatus, RecordingStatus, parse_call_event
from tests.telephony import forms
from tests.telephony.forms import ALICE_LEG, BOB_LEG, CALL_SID, RECORDING_SID, RECORDING_URL, T0


def events_of(sequence: list[tuple[str, dict[str, str]]], queue: str | None = None) -> list[CallEvent]:
    return [parse_call_event(kind, form, default_region="CZ", queue=queue) for kind, form in sequence]


def run(sequence: list[tuple[str, dict[str, str]]]) -> CallSnapshot:
    snapshot = replay_events(events_of(sequence))
    assert snapshot is not None
    return snapshot


def event(kind: str, form: dict[str, str]) -> CallEvent:
    return parse_call_event(kind, form, default_region="CZ")


# --- the scenarios in Twilio's order ---------------------------------------------------------------------------


def test_answered_call_names_the_agent_and_splits_ring_wait_and_talk():
    call = run(forms.ANSWERED)
    assert call.call_sid == CALL_SID
    assert (call.state, call.outcome) == (CallState.COMPLETED, CallOutcome.ANSWERED)
    assert call.direction is CallDirection.INBOUND
    assert (call.from_number, call.to_number, call.caller_name) == (
        "+420601123456",
        "+420222333444",
        "NOVAK JAN",
    )
    assert (call.agent_identity, call.agent_call_sid) == ("alice", ALICE_LEG)
    assert call.started_at == T0 + timedelta(seconds=2)
    assert call.answered_at == T0 + timedelta(seconds=2)
    assert call.agent_answered_at == T0 + timedelta(seconds=20)
    assert call.ended_at == T0 + timedelta(seconds=141)
    assert call.ring_seconds == 12
    assert call.talk_seconds == 120
    assert call.wait_seconds == 21
    assert call.call_duration == 141
    assert call.recording_sid is None
    assert {leg.call_sid for leg in call.legs} == {ALICE_LEG, BOB_LEG}


def test_missed_call_when_the_caller_hangs_up_while_agents_ring():
    call = run(forms.MISSED)
    assert (call.state, call.outcome) == (CallState.COMPLETED, CallOutcome.MISSED)
    assert call.agent_identity is None
    assert (call.ring_seconds, call.wait_seconds, call.talk_seconds) == (25, 30, 0)


def test_voicemail_call_keeps_recording_and_transcription():
    call = run(forms.VOICEMAIL)
    assert (call.state, call.outcome) == (CallState.COMPLETED, CallOutcome.VOICEMAIL)
    assert (call.recording_sid, call.recording_url, call.recording_duration) == (
        RECORDING_SID,
        RECORDING_URL,
        24,
    )
    assert call.recording_status is RecordingStatus.COMPLETED
    assert call.transcription_text == "Hi, this is Jan Novak, please call me back about my order."
    assert (call.talk_seconds, call.wait_seconds) == (0, 65 - 24)
    # The <Record action> request (URL only) and the recording status callbacks name one recording.
    assert len(call.recordings) == 1


def test_busy_call_back():
    call = run(forms.BUSY)
    assert (call.state, call.outcome) == (CallState.BUSY, CallOutcome.BUSY)
    assert call.direction is CallDirection.OUTBOUND_API
    assert call.to_number == "+420601123456"


def test_failed_call_back():
    call = run(forms.FAILED)
    assert (call.state, call.outcome) == (CallState.FAILED, CallOutcome.FAILED)


def test_call_back_answered_by_the_customer_counts_talk_time():
    call = run(
        [
            ("status", forms.callback_call_status("initiated", 0, 0)),
            ("status", forms.callback_call_status("ringing", 1, 1)),
            ("status", forms.callback_call_status("in-progress", 2, 7)),
            ("status", forms.callback_call_status("completed", 3, 67, CallDuration="60")),
        ]
    )
    assert (call.state, call.outcome) == (CallState.COMPLETED, CallOutcome.ANSWERED)
    assert (call.ring_seconds, call.talk_seconds, call.wait_seconds) == (7, 60, 0)


def test_call_back_not_picked_up_is_missed():
    call = run(
        [
            ("status", forms.callback_call_status("initiated", 0, 0)),
            ("status", forms.callback_call_status("ringing", 1, 1)),
            ("status", forms.callback_call_status("no-answer", 2, 31, CallDuration="0")),
        ]
    )
    assert (call.state, call.outcome, call.ring_seconds) == (CallState.NO_ANSWER, CallOutcome.MISSED, 31)


def test_caller_hanging_up_before_we_answer_is_missed():
    call = run([("voice", forms.voice_request()), ("status", forms.call_status("canceled", 1, 3))])
    assert (call.state, call.outcome) == (CallState.CANCELED, CallOutcome.MISSED)


def test_silent_voicemail_is_a_missed_call():
    call = run(
        [
            ("voice", forms.voice_request()),
            (
                "dial-result",
                forms.dial_result("no-answer", leg_sid=ALICE_LEG, duration=0, parent_status="in-progress"),
            ),
            ("recording", forms.recording_status("in-progress")),
            ("status", forms.call_status("completed", 2, 50, CallDuration="50")),
            ("recording", forms.recording_status("absent", 0)),
        ]
    )
    assert (call.outcome, call.recording_status, call.wait_seconds) == (
        CallOutcome.MISSED,
        RecordingStatus.ABSENT,
        50,
    )


# --- states along the way --------------------------------------------------------------------------------------


def test_states_follow_the_call():
    states = []
    snapshot = None
    for item in events_of(forms.ANSWERED):
        snapshot = apply_event(snapshot, item)
        states.append(snapshot.state)
    assert states[0] is CallState.RINGING
    assert states[1] is CallState.IN_PROGRESS
    assert CallState.TALKING in states
    assert states[-1] is CallState.COMPLETED
    assert all(state is not CallState.COMPLETED for state in states[:-1])


def test_voicemail_state_while_the_message_is_recorded():
    snapshot = replay_events(events_of(forms.VOICEMAIL[:4]))
    assert snapshot is not None
    assert (snapshot.state, snapshot.outcome) == (CallState.VOICEMAIL, None)


def test_late_progress_never_leaves_a_terminal_state():
    ended = run(forms.ANSWERED)
    for late in (
        event("status", forms.call_status("ringing", 0, 0)),
        event("status", forms.call_status("in-progress", 1, 2)),
        event("voice", forms.voice_request()),
    ):
        after = apply_event(ended, late)
        assert after.state is CallState.COMPLETED and after.outcome is CallOutcome.ANSWERED
        assert after.status is CallStatus.COMPLETED


def test_late_recording_and_transcription_still_attach_after_the_end():
    ended = run(forms.VOICEMAIL[:6])
    assert (ended.state, ended.outcome) == (CallState.COMPLETED, CallOutcome.VOICEMAIL)
    assert ended.transcription_text is None
    snapshot = ended
    for item in events_of(forms.VOICEMAIL[6:]):
        snapshot = apply_event(snapshot, item)
    assert snapshot.state is CallState.COMPLETED
    assert snapshot.transcription_text is not None and snapshot.recording_status is RecordingStatus.COMPLETED


def test_missed_becomes_voicemail_when_the_recording_arrives_after_the_end():
    events = events_of(forms.VOICEMAIL)
    without_recording = [e for e in events if e.kind not in ("recording", "transcription")]
    ended = replay_events(without_recording)
    assert ended is not None and ended.outcome is CallOutcome.MISSED
    assert apply_event(ended, events_of([forms.VOICEMAIL[6]])[0]).outcome is CallOutcome.VOICEMAIL


def test_applying_an_event_twice_changes_nothing():
    snapshot = None
    for item in events_of(forms.VOICEMAIL):
        snapshot = apply_event(snapshot, item)
        assert apply_event(snapshot, item) == snapshot


def test_event_of_another_call_is_refused():
    call = run(forms.BUSY)
    other = event("voice", forms.voice_request(CallSid=forms.sid("CA", "other")))
    with pytest.raises(InvalidInputError):
        apply_event(call, other)


def test_queue_given_with_the_events_is_recorded():
    snapshot = replay_events(events_of(forms.ANSWERED[-2:], queue="support"))
    assert snapshot is not None and snapshot.queue == "support"


def test_replaying_nothing_is_none():
    assert replay_events([]) is None


# --- order and repetition do not matter (Twilio's callbacks are unordered and repeat) -------------------------


@st.composite
def shuffled_with_repeats(draw: st.DrawFn) -> tuple[str, list[int]]:
    name = draw(st.sampled_from(sorted(forms.SCENARIOS)))
    size = len(forms.SCENARIOS[name])
    repeats = draw(st.lists(st.integers(min_value=0, max_value=size - 1), max_size=size))
    order = draw(st.permutations(list(range(size)) + repeats))
    return name, order


ORDERED = {name: replay_events(events_of(sequence)) for name, sequence in forms.SCENARIOS.items()}
EVENTS = {name: events_of(sequence) for name, sequence in forms.SCENARIOS.items()}


@settings(deadline=None, max_examples=300)
@given(shuffled_with_repeats())
def test_any_order_and_any_repeats_give_the_snapshot_of_the_ordered_events(case: tuple[str, list[int]]):
    name, order = case
    snapshot = None
    seen_terminal = False
    for index in order:
        snapshot = apply_event(snapshot, EVENTS[name][index])
        if seen_terminal:
            assert snapshot.state.is_terminal, "a terminal state was left"
        seen_terminal = snapshot.state.is_terminal
    assert snapshot == ORDERED[name]


def test_expected_outcome_of_each_scenario():
    assert {name: snapshot.outcome for name, snapshot in ORDERED.items() if snapshot} == {
        "answered": CallOutcome.ANSWERED,
        "missed": CallOutcome.MISSED,
        "voicemail": CallOutcome.VOICEMAIL,
        "busy": CallOutcome.BUSY,
        "failed": CallOutcome.FAILED,
    }


def test_call_back_picked_up_but_no_agent_connected_is_missed():
    call = run(
        [
            ("status", forms.callback_call_status("initiated", 0, 0)),
            ("status", forms.callback_call_status("in-progress", 1, 5)),
            (
                "dial-result",
                {
                    **forms.dial_result(
                        "no-answer", leg_sid=ALICE_LEG, duration=0, parent_status="in-progress"
                    ),
                    "Direction": "outbound-api",
                    "From": forms.OUR_NUMBER,
                    "To": forms.CALLER,
                },
            ),
            ("status", forms.callback_call_status("completed", 2, 40, CallDuration="35")),
        ]
    )
    assert (call.state, call.outcome, call.talk_seconds, call.wait_seconds) == (
        CallState.COMPLETED,
        CallOutcome.MISSED,
        0,
        35,
    )
    assert (call.from_number, call.to_number) == (forms.OUR_NUMBER, forms.CALLER)
