"""Call recordings are downloaded by a worker job from a real HTTP server standing in for Twilio's API: a
failure is retried by rq (moved back by our scheduler), and the audio ends on the call's interaction."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from pydantic import SecretStr
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import select

from centrala.core.db import get_sessionmaker
from centrala.core.queue import get_queue
from centrala.core.settings import get_settings
from centrala.ingest import calls as call_ingest
from centrala.tickets.models import Attachment, Channel, Direction, Interaction
from centrala.tickets.phone_models import Call, CallerMatch
from centrala.workers import jobs, processes
from tests.factories import NOW, make_contact
from tests.telephony import forms

AUDIO = b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 40


class FlakyRecordings(BaseHTTPRequestHandler):
    """Twilio's recording endpoint that fails the first request with 503, then serves the MP3."""

    requests: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        FlakyRecordings.requests.append((self.path, self.headers.get("Authorization")))
        if len(FlakyRecordings.requests) == 1:
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Content-Length", str(len(AUDIO)))
        self.end_headers()
        self.wfile.write(AUDIO)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def recording_server():
    FlakyRecordings.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyRecordings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture()
def db(committed_db, redis_url):
    queue = get_queue()
    queue.empty()
    for job_id in queue.scheduled_job_registry.get_job_ids():
        queue.scheduled_job_registry.remove(job_id)
    yield get_sessionmaker()
    queue.empty()


def test_a_recording_server_that_fails_once_is_retried_and_the_audio_attached(
    db, recording_server, monkeypatch, tmp_path
):
    settings = get_settings().model_copy(
        update={
            "twilio_account_sid": forms.ACCOUNT_SID,
            "twilio_auth_token": SecretStr("secret-token"),
            "twilio_api_host": recording_server,
            "twilio_backend": "twilio",
            "var_dir": tmp_path,
            "sweep_interval_seconds": 0.2,
        }
    )
    monkeypatch.setattr(jobs, "get_settings", lambda: settings)
    url = (
        f"http://{recording_server}/2010-04-01/Accounts/{forms.ACCOUNT_SID}/Recordings/{forms.RECORDING_SID}"
    )
    with db() as session:
        contact = make_contact(session, phones=[forms.CALLER])
        interaction = Interaction(
            contact=contact,
            channel=Channel.PHONE,
            direction=Direction.INBOUND,
            text="voicemail",
            occurred_at=NOW,
            created_at=NOW,
        )
        session.add(interaction)
        session.flush()
        call = Call(
            call_sid=forms.CALL_SID,
            direction="inbound",
            state="completed",
            outcome="voicemail",
            recording_sid=forms.RECORDING_SID,
            recording_url=url,
            recording_duration=24,
            contact_id=contact.id,
            caller_match=CallerMatch.SINGLE,
            interaction_id=interaction.id,
            started_at=NOW,
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(call)
        session.flush()
        call_ingest.enqueue_recording_fetch(session, call.id)
        session.commit()
        call_id, interaction_id = call.id, interaction.id

    queue = get_queue()
    worker = SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer)
    worker.work(burst=True)
    assert len(FlakyRecordings.requests) == 1  # the 503
    with db() as session:
        assert session.get(Call, call_id).recording_sha256 is None
    assert queue.scheduled_job_registry.get_job_ids() == [f"recording-{call_id}"]

    stop = threading.Event()
    runner = threading.Thread(target=processes.run_scheduler, args=(settings, stop))
    runner.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not queue.job_ids:
            time.sleep(0.1)
    finally:
        stop.set()
        runner.join(timeout=10)
    worker.work(burst=True)

    assert len(FlakyRecordings.requests) == 2
    path, authorization = FlakyRecordings.requests[-1]
    assert path.endswith(f"/Recordings/{forms.RECORDING_SID}.mp3")
    assert authorization is not None and authorization.startswith("Basic ")
    with db() as session:
        call = session.get(Call, call_id)
        assert call.recording_size == len(AUDIO)
        [attachment] = session.scalars(
            select(Attachment).where(Attachment.interaction_id == interaction_id)
        ).all()
        assert attachment.content_type == "audio/mpeg" and attachment.size == len(AUDIO)
        assert attachment.sha256 == call.recording_sha256
    from centrala.core.blobs import BlobStore

    assert BlobStore(settings.blob_dir).get(call.recording_sha256) == AUDIO


def test_a_recording_url_off_the_configured_api_host_is_refused():
    from centrala.core.errors import InvalidInputError
    from centrala.telephony.client import check_recording_url

    with pytest.raises(InvalidInputError):
        check_recording_url(
            f"http://evil.example/2010-04-01/Accounts/x/Recordings/{forms.RECORDING_SID}", "127.0.0.1:9"
        )
    with pytest.raises(InvalidInputError):
        check_recording_url(f"http://api.twilio.com/2010-04-01/Accounts/x/Recordings/{forms.RECORDING_SID}")
    assert check_recording_url(
        f"http://127.0.0.1:9/2010-04-01/Accounts/x/Recordings/{forms.RECORDING_SID}", "127.0.0.1:9"
    )
