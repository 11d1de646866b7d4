"""The FastAPI composition root: routers, the error tree mapped to HTTP statuses, and the health check.

Run with ``uvicorn --factory centrala.app:create_app``; creating the app connects to neither the
database nor Redis.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal
from urllib.parse import urlencode

import redis
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from centrala import __version__
from centrala.console import manage as console_manage
from centrala.console import web as console
from centrala.core.embedded import embedded_redis_url
from centrala.core.errors import (
    AuthenticationError,
    CentralaError,
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    TemporaryFailure,
)
from centrala.core.queue import get_redis, read_queue_state
from centrala.core.settings import Settings, get_settings
from centrala.ingest import api as ingest_api
from centrala.ingest import phone_api, twilio
from centrala.ingest.ledger import LedgerQuarantine
from centrala.ingest.twilio_spool import SpoolDrainer
from centrala.metrics import CONTENT_TYPE, MetricsExporter, WebhookTiming
from centrala.portal import views as portal_views
from centrala.tickets import api as tickets_api
from centrala.tickets import attachments, sla_api
from centrala.tickets.api import SessionDep, SettingsDep

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 2.0

# The one place where errors become HTTP statuses; a subclass takes the status of its nearest listed ancestor.
ERROR_STATUS: dict[type[CentralaError], int] = {
    NotFoundError: 404,
    InvalidInputError: 422,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    ConflictError: 409,
    TemporaryFailure: 503,
    # A feature the operator has not configured (e.g. calls without Twilio credentials): unavailable here,
    # not a fault of the request nor a crash.
    ConfigurationError: 503,
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The web application with every router; ``settings`` default to the process-wide ones."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Twilio events spooled while the database was unavailable are stored by the process that spooled them.
        drainer = SpoolDrainer(settings, lambda item: twilio.store_spooled(item, settings))
        drainer.start()
        try:
            yield
        finally:
            drainer.stop()

    app = FastAPI(title="Centrala", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    for error_class in ERROR_STATUS:
        app.add_exception_handler(error_class, _error_response)
    app.include_router(health_router)
    app.include_router(tickets_api.router)
    app.include_router(sla_api.router)
    app.include_router(attachments.router)
    app.include_router(ingest_api.router)
    app.include_router(phone_api.router)
    app.include_router(phone_api.live_router)
    app.include_router(twilio.router)
    app.state.quarantine = LedgerQuarantine()
    app.include_router(console.router)
    app.include_router(console_manage.router)
    app.mount("/console/static", console.static, name="console-static")
    app.add_exception_handler(console.SignInRequired, _to_sign_in)
    app.include_router(portal_views.router)
    app.add_middleware(portal_views.SecurityHeaders, hsts=app.state.settings.public_url_is_https)
    app.state.metrics = MetricsExporter(app.state.settings.metrics_cache_seconds)
    app.include_router(metrics_router)
    app.add_middleware(WebhookTiming)
    return app


async def _to_sign_in(request: Request, error: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?{urlencode({'next': target})}", status_code=303)


async def _error_response(request: Request, error: Exception) -> Response:
    status_code = next(ERROR_STATUS[cls] for cls in type(error).__mro__ if cls in ERROR_STATUS)
    if request.url.path.startswith("/console/"):
        return console.error_page(request, request.app.state.settings, status_code, str(error))
    if request.url.path == "/portal" or request.url.path.startswith("/portal/"):
        # Customers get pages (a 401 becomes the sign-in page), in their language.
        return portal_views.error_response(request, request.app.state.settings, status_code, str(error))
    headers = None
    if status_code == 401:
        # RFC 6750 §3: a 401 names the scheme the client should use.
        headers = {"WWW-Authenticate": "Bearer"}
    elif status_code == 503:
        log.warning("%s %s answered 503: %s", request.method, request.url.path, error)
    return JSONResponse({"detail": str(error)}, status_code=status_code, headers=headers)


# --- Health -------------------------------------------------------------------------------------------------

health_router = APIRouter(tags=["health"])


class HealthRead(BaseModel):
    """Whether the process and the services it needs answer.

    ``database`` and ``redis`` are ``ok`` or ``unavailable``; ``workers`` and ``scheduler`` are ``ok``,
    ``none`` (nothing registered with a recent heartbeat) or ``unknown`` (Redis does not answer).
    """

    status: str = Field(examples=["ok"])
    database: str = Field(examples=["ok"])
    redis: str = Field(examples=["ok"])
    workers: str = Field(examples=["ok"])
    worker_count: int | None = Field(default=None, examples=[2])
    scheduler: str = Field(examples=["ok"])


def get_health_redis(settings: SettingsDep) -> Iterator[redis.Redis | None]:
    """A Redis client for one health check that tries once (a dependency, so tests can point it elsewhere).

    Not the shared client: redis-py retries a failed command ten times with back-off by default, which would
    turn a down Redis into a health check that hangs for a minute instead of answering 503.
    """
    try:
        url = settings.redis_url or embedded_redis_url(get_redis())
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=HEALTH_TIMEOUT_SECONDS,
            socket_timeout=HEALTH_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), retries=0),
        )
    except Exception:
        log.warning("health check: no Redis client", exc_info=True)
        yield None
        return
    try:
        yield client
    finally:
        client.close()


def database_answers(session: SessionDep) -> bool:
    """Whether the database answers ``SELECT 1``."""
    try:
        session.execute(text("SELECT 1"))
        return True
    except (SQLAlchemyError, OSError) as error:
        log.warning("health check: database unavailable: %s", error)
        return False


def redis_answers(client: redis.Redis | None) -> bool:
    """Whether Redis answers PING."""
    if client is None:
        return False
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError) as error:
        log.warning("health check: Redis unavailable: %s", error)
        return False


HealthPart = Literal["workers", "scheduler"]


@health_router.get("/healthz", responses={503: {"model": HealthRead, "description": "A dependency is down"}})
def healthz(
    response: Response,
    database_ok: Annotated[bool, Depends(database_answers)],
    redis_client: Annotated[redis.Redis | None, Depends(get_health_redis)],
    require: Annotated[
        list[HealthPart],
        Query(description="Also answer 503 when these are down (a probe of the whole service)"),
    ] = [],  # noqa: B006  (FastAPI copies the default)
) -> HealthRead:
    """200 when the database and Redis answer (and what ``require`` names runs); 503 naming what does not.

    Workers and the scheduler are always reported; they make the answer 503 only when required, because a
    web process whose workers are down still takes in mail and webhooks safely (the work waits in the database).
    """
    redis_ok = redis_answers(redis_client)
    state = None
    if redis_ok and redis_client is not None:
        try:
            state = read_queue_state(redis_client)
        except (redis.RedisError, OSError) as error:
            log.warning("health check: could not read the queue's state: %s", error)
    workers = "unknown" if state is None else ("ok" if state.workers else "none")
    scheduler = "unknown" if state is None else ("ok" if state.scheduler else "none")
    needed = [database_ok, redis_ok]
    needed += [workers == "ok"] if "workers" in require else []
    needed += [scheduler == "ok"] if "scheduler" in require else []
    health = HealthRead(
        status="ok" if all(needed) else "unavailable",
        database="ok" if database_ok else "unavailable",
        redis="ok" if redis_ok else "unavailable",
        workers=workers,
        worker_count=None if state is None else state.workers,
        scheduler=scheduler,
    )
    if health.status != "ok":
        response.status_code = 503
    return health


# --- Metrics ------------------------------------------------------------------------------------------------

metrics_router = APIRouter(tags=["health"], include_in_schema=False)


@metrics_router.get("/metrics")
def metrics(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    redis_client: Annotated[redis.Redis | None, Depends(get_health_redis)],
) -> Response:
    """Prometheus metrics, for a scraper holding ``CENTRALA_METRICS_TOKEN``; off (404) while it is unset."""
    if settings.metrics_token is None:
        raise NotFoundError("metrics are off: set CENTRALA_METRICS_TOKEN to turn them on")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    expected = settings.metrics_token.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise AuthenticationError("send the metrics token as Authorization: Bearer <token>")
    body = request.app.state.metrics.render(session=session, redis_client=redis_client)
    return Response(body, media_type=CONTENT_TYPE)
