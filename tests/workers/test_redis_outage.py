"""The worker process outlives Redis going away, in every state rq can be in when it goes."""

from __future__ import annotations

import os

import pytest
import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from tests.support.processes import free_port, service_env, start, stop, wait_until
from tests.support.services import PrivateRedis, running_redis

pytestmark = pytest.mark.e2e


def _queue(server: PrivateRedis) -> Queue:
    connection = redis.Redis.from_url(server.url)
    return Queue(os.environ["CENTRALA_QUEUE_NAME"], connection=connection, serializer=JSONSerializer)


def _start_worker(tmp_path, server: PrivateRedis):
    env = service_env(
        tmp_path / "var",
        http_port=free_port(),
        smtp_port=free_port(),
        embedded=True,
        CENTRALA_REDIS_URL=server.url,
    )
    return start(["worker"], env, tmp_path / "worker.log")


def _log(tmp_path) -> str:
    return (tmp_path / "worker.log").read_text(errors="replace")


def test_redis_lost_while_a_job_runs_the_same_worker_works_on_once_it_is_back(tmp_path):
    """rq gives up when Redis goes while it finishes a job ("found an unhandled exception, quitting"); the
    process must not end with it, or mail waits for a person to restart the worker."""
    with running_redis(tmp_path / "redis") as server:
        worker = _start_worker(tmp_path, server)
        try:
            running = _queue(server).enqueue("time.sleep", 3)
            wait_until(
                lambda: running.get_status(refresh=True) == JobStatus.STARTED, timeout=60, what="job start"
            )
            server.stop()
            # The job ends with Redis away: rq cannot record it and drops out of its work loop.
            wait_until(lambda: "starting over" in _log(tmp_path), timeout=30, what="the worker to start over")
            assert worker.poll() is None, _log(tmp_path)
            server.start()
            # Redis came back empty, as it does without persistence; the next job must still find a worker.
            job = _queue(server).enqueue("os.getpid")
            wait_until(
                lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=60, what="the next job"
            )
            assert (
                Job.fetch(job.id, connection=job.connection, serializer=JSONSerializer).return_value()
                == worker.pid
            )
        finally:
            exit_code = stop(worker)
    assert exit_code == 0, _log(tmp_path)


def test_worker_told_to_stop_while_redis_is_away_stops(tmp_path):
    """SIGTERM (a deploy, `centrala up` shutting down) ends the worker even while it waits for Redis to return."""
    with running_redis(tmp_path / "redis") as server:
        worker = _start_worker(tmp_path, server)
        try:
            connection = redis.Redis.from_url(server.url)
            wait_until(
                lambda: Worker.count(connection=connection) == 1, timeout=60, what="the worker to register"
            )
            server.stop()
            wait_until(
                lambda: "could not connect to Redis" in _log(tmp_path), timeout=30, what="rq to miss Redis"
            )
        finally:
            exit_code = stop(worker, timeout=20)
    assert exit_code == 0, _log(tmp_path)
