"""Fixtures of the whole-system tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(autouse=True)
def _no_queue_marks_of_earlier_services():
    """Every test here starts a service of its own on the run's queue. A "drain waiting" mark that an earlier
    test's service left in a shared Redis (its worker killed, or stopped before the marked job ran) would keep
    this service's commits from queueing that drain until the mark expires (``COALESCE_SECONDS``): a reply or a
    sign-in mail then waited for the sweeper, past the test's patience."""
    url = os.environ.get("CENTRALA_REDIS_URL")
    if url:
        import redis

        client = redis.Redis.from_url(url)
        try:
            for key in client.scan_iter(match=f"centrala:{os.environ['CENTRALA_QUEUE_NAME']}:waiting:*"):
                client.delete(key)
        finally:
            client.close()
    yield


@pytest.fixture()
def browser():
    """Chromium through Playwright; skipped (a failure under CENTRALA_REQUIRE_ALL=1) when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield instance
        finally:
            instance.close()
