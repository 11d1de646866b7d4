"""The composition root: health check, error mapping, OpenAPI document."""

from __future__ import annotations

import socket
import time

import pytest
import redis
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from centrala.app import create_app, get_health_redis
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
from centrala.core.settings import Settings


class AnsweringRedis:
    """Stands in for a Redis server that answers PING."""

    def ping(self) -> bool:
        return True


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
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_healthz_answers_503_naming_redis_at_once_when_it_does_not_answer(app, client):
    app.state.settings = Settings(redis_url=f"redis://127.0.0.1:{unused_port()}/0")
    started = time.monotonic()
    response = client.get("/healthz")
    assert time.monotonic() - started < 2, "the health check must not wait out redis-py's retries"
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "redis": "unavailable"}


def test_healthz_answers_503_when_the_embedded_redis_does_not_start(app, client, monkeypatch):
    def broken() -> redis.Redis:
        raise OSError("embedded Redis did not start")

    app.state.settings = Settings(redis_url=None)
    monkeypatch.setattr("centrala.app.get_redis", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"] == "unavailable"


def test_healthz_answers_503_naming_the_database_when_it_does_not_answer(app, client, tmp_path):
    unreachable = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'centrala.db'}")

    def broken_session():
        with Session(unreachable) as session:
            yield session

    app.dependency_overrides[get_db] = broken_session
    app.dependency_overrides[get_health_redis] = AnsweringRedis
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unavailable", "redis": "ok"}
    unreachable.dispose()


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
