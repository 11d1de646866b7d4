"""The console's tests talk HTTPS to the app (its cookies are Secure), each request in the test's session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from centrala.core.queue import get_redis


@pytest.fixture()
def web(session, redis_url) -> Iterator[TestClient]:
    from centrala.app import create_app
    from centrala.core.db import get_db, get_read_db

    def _request_session():
        session.commit()
        session.expire_all()
        try:
            yield session
        except Exception:
            session.rollback()
            raise

    for key in get_redis().scan_iter("centrala:console-login:*"):
        get_redis().delete(key)
    application = create_app()
    application.dependency_overrides[get_db] = _request_session
    application.dependency_overrides[get_read_db] = _request_session
    with TestClient(application, base_url="https://testserver", follow_redirects=False) as client:
        yield client
