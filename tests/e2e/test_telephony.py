"""Telephony on the real processes of ``centrala up``: signed webhooks answered by the web process, events
processed by the workers, the screen-pop pushed to a connected agent over server-sent events, and the call on
the customer's ticket with a call-back."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.support.processes import free_port, port_is_open, run, service_env, start, stop, wait_until
from tests.telephony import forms

pytestmark = pytest.mark.e2e

TOKEN = "e2e-twilio-auth-token"


def _start(tmp_path, **extra_env: str):
    embedded = "CENTRALA_TEST_SERVER_DATABASE_URL" not in os.environ
    http_port, smtp_port = free_port(), free_port()
    defaults = {
        "CENTRALA_TWILIO_AUTH_TOKEN": TOKEN,
        "CENTRALA_TWILIO_BACKEND": "fake",
        "CENTRALA_PHONE_LINES": json.dumps(
            [{"number": forms.OUR_NUMBER, "queue": "Hotline", "language": "pl"}]
        ),
    }
    env = service_env(
        tmp_path / "var",
        http_port=http_port,
        smtp_port=smtp_port,
        embedded=embedded,
        **{**defaults, **extra_env},
    )
    process = start(["up"], env, tmp_path / "up.log")
    base_url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200,
            timeout=60,
            what="/healthz",
        )
        wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
        token = run(["agents", "create", "--email", "hotline@localhost", "--role", "admin"], env).strip()
        yield {"base_url": base_url, "token": token, "public_url": env["CENTRALA_PUBLIC_URL"]}
    finally:
        if process.poll() is None:
            stop(process, sig=signal.SIGINT)
        print((tmp_path / "up.log").read_text(errors="replace")[-5000:])


@pytest.fixture()
def service(tmp_path, committed_db, redis_url):
    yield from _start(tmp_path)


def _listen(base_url: str, token: str, events: queue.Queue, stop_flag: threading.Event) -> None:
    """An agent's browser: read the live stream and hand each event (and the opening comment) over."""
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=base_url, timeout=httpx.Timeout(5, read=60)) as client,
        client.stream("GET", "/api/v1/live", headers=headers) as response,
    ):
        name = None
        for line in response.iter_lines():
            if stop_flag.is_set():
                return
            if line.startswith(": connected"):
                events.put(("connected", None))
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                events.put((name, json.loads(line[6:])))
                name = None


def _next(events: queue.Queue, wanted: str) -> dict:
    """The data of the next live event named ``wanted``; the stream carries other news too (new messages)."""
    while True:
        name, data = events.get(timeout=20)
        if name == wanted:
            return data


def test_a_call_pops_the_callers_card_and_a_missed_call_becomes_a_ticket_with_a_call_back(service):
    base_url, public_url = service["base_url"], service["public_url"]
    api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {service['token']}"}, timeout=10)
    me = api.get("/api/v1/agents/me/phone").json()
    assert api.put(f"/api/v1/agents/{me['id']}/queues", json={"queues": ["Hotline"]}).status_code == 200
    assert api.put("/api/v1/agents/me/availability", json={"availability": "available"}).status_code == 200
    contact = api.post(
        "/api/v1/contacts",
        json={"name": "Piotr Kowalski", "emails": ["piotr@example.pl"], "phones": ["00420 601 123 456"]},
    ).json()

    def webhook(kind: str, form: dict[str, str], query: str = "") -> httpx.Response:
        path = f"/twilio/{kind}" + (f"?{query}" if query else "")
        signature = RequestValidator(TOKEN).compute_signature(public_url + path, form)
        return httpx.post(base_url + path, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)

    forged = httpx.post(
        base_url + "/twilio/voice",
        data=forms.voice_request(),
        headers={"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
    )
    assert forged.status_code == 403

    events: queue.Queue = queue.Queue()
    stop_flag = threading.Event()
    listener = threading.Thread(
        target=_listen, args=(base_url, service["token"], events, stop_flag), daemon=True
    )
    listener.start()
    assert events.get(timeout=20) == ("connected", None)

    leg = lambda status, seq, seconds: forms.leg_status(
        forms.ALICE_LEG, f"client:agent-{me['id']}", status, seq, seconds
    )
    answer = webhook("voice", forms.voice_request())
    assert answer.status_code == 200
    assert f"agent-{me['id']}" in answer.text and 'language="pl-PL"' in answer.text

    pop = _next(events, "screen-pop")
    assert pop["call"]["call_sid"] == forms.CALL_SID
    assert [card["name"] for card in pop["contacts"]] == ["Piotr Kowalski"]
    assert pop["contacts"][0]["id"] == contact["id"]

    rest = [
        ("status", forms.call_status("in-progress", 1, 1)),
        ("status", leg("initiated", 0, 6)),
        ("status", leg("ringing", 1, 6)),
        ("status", leg("canceled", 2, 31)),
        (
            "dial-result",
            forms.dial_result("canceled", leg_sid=forms.ALICE_LEG, duration=0, parent_status="completed"),
        ),
        ("status", forms.call_status("completed", 2, 31, CallDuration="30")),
    ]
    delivered = rest + rest[:3]
    random.Random(7).shuffle(delivered)
    for kind, form in delivered:
        assert webhook(kind, form).status_code == 200

    call = wait_until(
        lambda: (c := api.get(f"/api/v1/calls/{forms.CALL_SID}").json()).get("ticket_number") and c,
        timeout=20,
        what="the missed call on a ticket",
    )
    assert call["outcome"] == "missed" and call["contact_id"] == contact["id"]
    assert call["callback"]["state"] == "pending"
    ticket = api.get(f"/api/v1/tickets/{call['ticket_id']}").json()
    assert ticket["subject"] == "Missed call from Piotr Kowalski"
    assert [i["channel"] for i in ticket["interactions"]] == ["phone"]
    assert _next(events, "call-ended") == {"call_sid": forms.CALL_SID, "outcome": "missed"}
    log = api.get("/api/v1/calls", params={"outcome": "missed"}).json()
    assert log["missed_not_called_back"] == 1
    stop_flag.set()


def test_numbers_in_any_form_answered_calls_notes_click_to_call_and_the_caller_log(service):
    base_url, public_url = service["base_url"], service["public_url"]
    api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {service['token']}"}, timeout=10)
    me = api.get("/api/v1/agents/me/phone").json()
    api.put(f"/api/v1/agents/{me['id']}/queues", json={"queues": ["Hotline"]}).raise_for_status()
    api.put("/api/v1/agents/me/availability", json={"availability": "available"}).raise_for_status()
    contact = api.post(
        "/api/v1/contacts", json={"name": "Olena Shevchenko", "emails": [], "phones": ["+420 601 123 456"]}
    ).json()

    def webhook(kind: str, form: dict[str, str], query: str = "") -> httpx.Response:
        path = f"/twilio/{kind}" + (f"?{query}" if query else "")
        signature = RequestValidator(TOKEN).compute_signature(public_url + path, form)
        response = httpx.post(
            base_url + path, data=form, headers={"X-Twilio-Signature": signature}, timeout=10
        )
        assert response.status_code == 200, response.text
        return response

    # The same person, however the number reaches us.
    sids = []
    for index, written in enumerate(["+420 601 123 456", "00420601123456", "601123456", "(601) 123-456"]):
        call_sid = forms.sid("CA", f"format-{index}")
        sids.append(call_sid)
        webhook("voice", {**forms.voice_request(From=written, Caller=written), "CallSid": call_sid})
    for call_sid in sids:
        call = wait_until(
            lambda sid=call_sid: (
                api.get(f"/api/v1/calls/{sid}").json().get("contact_id")
                and api.get(f"/api/v1/calls/{sid}").json()
            ),
            timeout=20,
            what="the caller matched",
        )
        assert (call["contact_id"], call["caller_match"]) == (contact["id"], "single")

    # An answered call: on a ticket, answered by the agent, with the agent's note.
    answered = forms.sid("CA", "answered")

    def leg(status: str, seq: int, seconds: int, **extra: str) -> dict[str, str]:
        return {
            **forms.leg_status(forms.ALICE_LEG, f"client:agent-{me['id']}", status, seq, seconds, **extra),
            "ParentCallSid": answered,
        }

    for kind, form in [
        ("voice", forms.voice_request()),
        ("status", forms.call_status("in-progress", 1, 2)),
        ("status", leg("ringing", 1, 8)),
        ("status", leg("in-progress", 2, 20)),
        ("status", leg("completed", 3, 140, CallDuration="120")),
        ("status", forms.call_status("completed", 2, 141, CallDuration="141")),
    ]:
        webhook(kind, {**form, "CallSid": answered} if form.get("CallSid") == forms.CALL_SID else form)
    call = wait_until(
        lambda: (c := api.get(f"/api/v1/calls/{answered}").json()).get("ticket_id") and c,
        timeout=20,
        what="the answered call on a ticket",
    )
    assert (call["outcome"], call["agent_id"], call["talk_seconds"]) == ("answered", me["id"], 120)
    noted = api.patch(
        f"/api/v1/calls/{answered}", json={"note": "Asked about the invoice", "agent_outcome": "solved"}
    )
    assert noted.status_code == 200
    ticket = api.get(f"/api/v1/tickets/{call['ticket_id']}").json()
    [interaction] = [i for i in ticket["interactions"] if i["external_id"] == answered]
    assert "Note: Asked about the invoice" in interaction["text"]

    # Click-to-call from the ticket: the fake Twilio client places it; Twilio's callbacks then log it.
    placed = api.post("/api/v1/calls", json={"ticket_id": call["ticket_id"]})
    assert placed.status_code == 201, placed.text
    placed_sid = placed.json()["call_sid"]
    assert placed.json()["to_number"] == "+420601123456"
    ringing_agent = webhook(
        "voice",
        {**forms.callback_call_status("in-progress", 1, 5), "CallSid": placed_sid},
        query=f"agent={me['id']}",
    )
    assert f"agent-{me['id']}" in ringing_agent.text
    webhook(
        "status", {**forms.callback_call_status("completed", 2, 65, CallDuration="60"), "CallSid": placed_sid}
    )
    back = wait_until(
        lambda: (c := api.get(f"/api/v1/calls/{placed_sid}").json()).get("outcome") and c,
        timeout=20,
        what="the placed call's outcome",
    )
    assert (back["direction"], back["outcome"], back["ticket_id"]) == (
        "outbound",
        "answered",
        call["ticket_id"],
    )

    log = api.get("/api/v1/calls", params={"agent_id": me["id"]}).json()
    assert {c["call_sid"] for c in log["calls"]} >= {answered, placed_sid}
    everything = api.get("/api/v1/calls").json()
    assert (
        everything["total_inbound"] == 1 and everything["answer_rate"] == 1.0
    )  # ringing calls have not ended


class _FlakyRecordings(BaseHTTPRequestHandler):
    """Twilio's recording endpoint: 503 for the first request, then the MP3."""

    audio = b"ID3" + bytes(range(256)) * 20
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _FlakyRecordings.requests.append(self.path)
        if len(_FlakyRecordings.requests) == 1:
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.audio)))
        self.end_headers()
        self.wfile.write(self.audio)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def recordings():
    _FlakyRecordings.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyRecordings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture()
def menu_service(tmp_path, committed_db, redis_url, recordings):
    lines = [
        {
            "number": forms.OUR_NUMBER,
            "queue": "Hotline",
            "language": "en",
            "menu": {
                "1": {"label": "Orders", "queue": "Hotline"},
                "2": {"label": "Complaints", "queue": "Complaints"},
            },
        }
    ]
    yield from _start(
        tmp_path,
        CENTRALA_PHONE_LINES=json.dumps(lines),
        CENTRALA_TWILIO_API_HOST=recordings,
        CENTRALA_TWILIO_ACCOUNT_SID=forms.ACCOUNT_SID,
    )


def test_a_menu_then_voicemail_with_its_recording_fetched_after_a_failure(menu_service, recordings):
    base_url, public_url = menu_service["base_url"], menu_service["public_url"]
    api = httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {menu_service['token']}"}, timeout=10
    )

    def webhook(kind: str, form: dict[str, str], query: str = "") -> httpx.Response:
        path = f"/twilio/{kind}" + (f"?{query}" if query else "")
        signature = RequestValidator(TOKEN).compute_signature(public_url + path, form)
        response = httpx.post(
            base_url + path, data=form, headers={"X-Twilio-Signature": signature}, timeout=10
        )
        assert response.status_code == 200, response.text
        return response

    me = api.get("/api/v1/agents/me/phone").json()
    api.put(
        f"/api/v1/agents/{me['id']}/queues", json={"queues": ["Complaints"]}
    ).raise_for_status()  # offline
    menu = webhook("voice", forms.voice_request())
    assert "<Gather" in menu.text and "Complaints: press 2." in menu.text
    # Nobody takes complaints calls right now: the caller goes to voicemail, in the line's language.
    chosen = webhook("voice", forms.voice_request(Digits="2"), query="menu=1")
    assert (
        "<Record" in chosen.text and "queue=Complaints" in chosen.text and 'language="en-US"' in chosen.text
    )

    url = f"http://{recordings}/2010-04-01/Accounts/{forms.ACCOUNT_SID}/Recordings/{forms.RECORDING_SID}"
    for kind, form, query in [
        ("status", forms.call_status("in-progress", 1, 1), ""),
        (
            "recording",
            {**forms.record_action(24, parent_status="completed"), "RecordingUrl": url},
            "step=action&queue=Complaints",
        ),
        ("status", forms.call_status("completed", 2, 66, CallDuration="65"), ""),
        ("recording", {**forms.recording_status("completed", 24), "RecordingUrl": url}, "queue=Complaints"),
        (
            "transcription",
            {**forms.transcription("Please call me back about order 4711."), "RecordingUrl": url},
            "",
        ),
    ]:
        webhook(kind, form, query)

    call = wait_until(
        # Events and the download are processed in the background, in whatever order the queue gives them.
        lambda: (c := api.get(f"/api/v1/calls/{forms.CALL_SID}").json()).get("recording_download")
        and c.get("transcription")
        and c,
        timeout=60,
        what="the recording downloaded after the retry, and the transcription",
    )
    assert call["outcome"] == "voicemail" and call["queue"] == "Complaints"
    assert call["transcription"] == "Please call me back about order 4711."
    assert call["callback"]["state"] == "pending"
    assert len(_FlakyRecordings.requests) >= 2
    audio = api.get(call["recording_download"])
    assert audio.content == _FlakyRecordings.audio
    assert audio.headers["content-disposition"].startswith("attachment;")
    ticket = api.get(f"/api/v1/tickets/{call['ticket_id']}").json()
    [interaction] = ticket["interactions"]
    assert "Transcription: Please call me back about order 4711." in interaction["text"]
    assert [a["content_type"] for a in interaction["attachments"]] == ["audio/mpeg"]
