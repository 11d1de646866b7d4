"""Test configuration: a fresh database and Redis per run, on the embedded default or on the servers
named by ``CENTRALA_DATABASE_URL`` / ``CENTRALA_REDIS_URL``; each test runs in a savepoint that is rolled back."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

_RUN_ID = uuid.uuid4().hex[:10]


def pytest_configure(config: pytest.Config) -> None:
    """Point every Centrala setting at throw-away state before any Centrala module reads it."""
    base = Path(config.rootpath) / "var" / "test-runs" / _RUN_ID
    base.mkdir(parents=True, exist_ok=True)
    os.environ["CENTRALA_VAR_DIR"] = str(base)
    os.environ.setdefault("CENTRALA_SECRET_KEY", "test-secret-" + _RUN_ID)
    os.environ["CENTRALA_QUEUE_NAME"] = f"centrala-test-{_RUN_ID}"
    server_url = os.environ.get("CENTRALA_DATABASE_URL")
    if server_url and make_url(server_url).get_backend_name() == "postgresql":
        os.environ["CENTRALA_TEST_SERVER_DATABASE_URL"] = server_url
        database = f"centrala_test_{_RUN_ID}"
        with _admin_engine(server_url).connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        os.environ["CENTRALA_DATABASE_URL"] = make_url(server_url).set(database=database).render_as_string(
            hide_password=False
        )
    config.stash[_state_key] = {"base": base, "server_url": server_url}


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_state_key, None)
    if not state:
        return
    from centrala.core.db import get_engine

    get_engine().dispose()
    server_url = state["server_url"]
    if server_url and make_url(server_url).get_backend_name() == "postgresql":
        database = make_url(os.environ["CENTRALA_DATABASE_URL"]).database
        with _admin_engine(server_url).connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    _forget_redis_state()
    import shutil

    shutil.rmtree(state["base"], ignore_errors=True)


_state_key = pytest.StashKey[dict]()


def _admin_engine(url: str) -> Engine:
    return create_engine(url, isolation_level="AUTOCOMMIT")


def _forget_redis_state() -> None:
    """Delete this run's keys from a shared Redis server; the embedded one goes away with its folder."""
    if not os.environ.get("CENTRALA_REDIS_URL") or os.environ.get("CENTRALA_TEST_EMBEDDED_REDIS"):
        return
    import redis

    client = redis.Redis.from_url(os.environ["CENTRALA_REDIS_URL"])
    for key in client.scan_iter(match=f"*centrala-test-{_RUN_ID}*", count=1000):
        client.delete(key)
    for key in client.scan_iter(match="rq:*", count=1000):
        client.delete(key)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """With ``CENTRALA_REQUIRE_ALL=1`` (CI) a test that would skip for a missing tool fails instead."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CENTRALA_REQUIRE_ALL") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CENTRALA_REQUIRE_ALL=1 turns this skip into a failure: {reason}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis URL every process of the test run can reach: the configured server or an embedded one."""
    if os.environ.get("CENTRALA_REDIS_URL"):
        return os.environ["CENTRALA_REDIS_URL"]
    from centrala.core.embedded import embedded_redis_url, start_embedded_redis
    from centrala.core.settings import get_settings

    client = start_embedded_redis(get_settings().embedded_redis_path)
    url = embedded_redis_url(client)
    os.environ["CENTRALA_REDIS_URL"] = url
    os.environ["CENTRALA_TEST_EMBEDDED_REDIS"] = "1"
    _reset_caches()
    _embedded_clients.append(client)
    return url


_embedded_clients: list[object] = []


def _reset_caches() -> None:
    from centrala.core.db import get_engine, get_read_sessionmaker, get_sessionmaker
    from centrala.core.queue import get_redis
    from centrala.core.settings import get_settings

    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    get_read_sessionmaker.cache_clear()
    get_redis.cache_clear()


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The run's database, migrated to head."""
    from centrala.core.db import get_engine
    from centrala.schema import upgrade_database

    _reset_caches()
    upgrade_database()
    yield get_engine()


@pytest.fixture()
def session(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test; commits become savepoints."""
    connection = engine.connect()
    transaction = connection.begin()
    db = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield db
    finally:
        db.close()
        transaction.rollback()
        connection.close()


@pytest.fixture()
def committed_db(engine: Engine) -> Iterator[Engine]:
    """For tests whose work must really commit (other processes, SMTP threads): every table emptied afterwards."""
    yield engine
    from centrala.schema import metadata

    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture()
def blobs(tmp_path: Path):
    from centrala.core.blobs import BlobStore

    return BlobStore(tmp_path / "blobs")


@pytest.fixture()
def dovecot(tmp_path: Path):
    """A private Dovecot IMAP server on a free port with one user (``tests/support/dovecot.py``)."""
    from tests.support.dovecot import running_dovecot

    with running_dovecot(tmp_path / "dovecot") as server:
        yield server


@pytest.fixture()
def app(session: Session):
    """The web application, its requests served from the test's rolled-back session.

    Each request starts from committed setup (as a real request would see it) and rolls back what it
    changed when it fails, like ``get_db``'s session closing without a commit.
    """
    from centrala.app import create_app
    from centrala.core.db import get_db, get_read_db

    def _request_session() -> Iterator[Session]:
        session.commit()
        session.expire_all()
        try:
            yield session
        except Exception:
            session.rollback()
            raise

    application = create_app()
    application.dependency_overrides[get_db] = _request_session
    application.dependency_overrides[get_read_db] = _request_session
    return application


@pytest.fixture()
def client(app):
    """An HTTP client for ``app``."""
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client
