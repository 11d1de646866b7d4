"""rq's job timeout, as the worker process sets it up."""

from __future__ import annotations

import time

import pytest

from centrala.workers.processes import JobDeathPenalty, JobTimeLimitExceeded


def test_job_timeout_passes_the_jobs_own_error_handlers():
    """A job's ``except Exception`` (quarantine the message, try the batch message by message) must not take the
    timeout for a fault of its own and go on working past it."""
    caught: list[Exception] = []
    started = time.monotonic()
    with pytest.raises(JobTimeLimitExceeded), JobDeathPenalty(1):
        try:
            time.sleep(30)
        except Exception as error:  # noqa: BLE001 - what a job's handler does
            caught.append(error)
    assert caught == []
    assert time.monotonic() - started < 20
