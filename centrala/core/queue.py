"""Background work: the Redis connection, rq queues, and jobs sent only after their rows are committed."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, Worker
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from centrala.core.settings import Settings, get_settings

log = logging.getLogger(__name__)

_PENDING_KEY = "centrala.pending_jobs"
# Lists of work kept in ``session.info`` until commit: ours, and others' (``core.live`` adds its own).
AFTER_COMMIT_LISTS: list[str] = [_PENDING_KEY]
# How long a coalesced job's mark keeps others of its key out of the queue at most.
COALESCE_SECONDS = 30

# Workers refresh their registration every WORKER_TTL_SECONDS / 3 or so (rq's heartbeat); one silent for longer
# than this is taken for dead even while its key has not expired yet.
WORKER_TTL_SECONDS = 30
WORKER_SILENT_AFTER_SECONDS = 2 * WORKER_TTL_SECONDS


@dataclass(frozen=True)
class PendingJob:
    """A job to enqueue once the surrounding transaction commits."""

    func: str
    args: tuple[Any, ...] = ()
    job_id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # When set, the job waits in rq's scheduled registry until then (moved by the `centrala scheduler` process).
    at: datetime | None = None
    # When set, the job is sent only if no job of the same key is waiting in the queue (see enqueue_coalesced_after_commit).
    coalesce_key: str | None = None


def connect_redis(settings: Settings) -> redis.Redis:
    """A Redis client for the configured server, or for the embedded one when none is configured.

    One retry, no back-off: redis-py's default (ten retries with growing waits) would make every commit that
    queues a job stall for seconds while Redis is down, although the sweeper makes the enqueue optional.
    """
    if settings.redis_url:
        return redis.Redis.from_url(
            settings.redis_url, socket_timeout=10, socket_connect_timeout=2, retry=Retry(NoBackoff(), 1)
        )
    from centrala.core.embedded import start_embedded_redis

    return start_embedded_redis(settings.embedded_redis_path)


@functools.cache
def get_redis() -> redis.Redis:
    """The process-wide Redis client."""
    return connect_redis(get_settings())


def connect_ahead() -> None:
    """Reach Redis now rather than on the first commit that queues a job (the embedded server's client alone
    takes a few hundred ms to import); a Redis away now is reported and tried again at that commit."""
    try:
        get_redis().ping()
    except (redis.RedisError, OSError) as error:
        log.warning("Redis is not reachable yet (%s); jobs are queued once it is, or found by the sweeper", error)


def get_queue(connection: redis.Redis | None = None) -> Queue:
    """The work queue; jobs are JSON-serialised (rq's default pickle would let Redis writers run code)."""
    settings = get_settings()
    return Queue(
        settings.queue_name,
        connection=connection or get_redis(),
        serializer=JSONSerializer,
        default_timeout=settings.job_timeout_seconds,
    )


def enqueue_after_commit(session: Session, func: str, *args: Any, job_id: str | None = None, **options: Any) -> None:
    """Send the job ``func(*args)`` to the queue when ``session`` commits; drop it if it rolls back.

    A ``job_id`` names one job: queued again before the commit, it is still sent once.
    """
    _add_pending(session, PendingJob(func, args, job_id, options))


def enqueue_at_after_commit(
    session: Session, at: datetime, func: str, *args: Any, job_id: str | None = None, **options: Any
) -> None:
    """Schedule the job ``func(*args)`` for ``at`` (an aware datetime) when ``session`` commits; a ``job_id``
    queued again before the commit is sent once, as in ``enqueue_after_commit``."""
    _add_pending(session, PendingJob(func, args, job_id, options, at))


def _add_pending(session: Session, job: PendingJob) -> None:
    """Keep ``job`` for the commit, unless a job of the same id, or of the same coalescing key, is kept already."""
    pending = session.info.setdefault(_PENDING_KEY, [])
    if job.job_id is not None and any(other.job_id == job.job_id for other in pending):
        return
    if job.coalesce_key is not None and any(other.coalesce_key == job.coalesce_key for other in pending):
        return
    pending.append(job)


def enqueue_coalesced_after_commit(session: Session, func: str, *args: Any, key: str, **options: Any) -> None:
    """Send the job ``func(*args)`` when ``session`` commits, unless a job of the same ``key`` is still waiting.

    For jobs that look for their work in the database (a drain of every pending row) one waiting job is
    enough, however many rows were committed: the job calls ``release_coalesced(key)`` as it starts, so a row
    committed after that start gets a job of its own. The mark expires after ``COALESCE_SECONDS``, so a job lost
    with Redis holds nothing up for longer than that (and the sweeper finds its rows anyway).
    """
    _add_pending(session, PendingJob(func, args, None, options, coalesce_key=key))


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """``session.begin_nested()`` whose rollback also forgets the jobs and events queued inside it.

    A savepoint rolled back within a transaction that then commits would otherwise send jobs for rows that
    were never written (and, on SQLite, whose ids a later row may take).
    """
    marks = {key: len(session.info.get(key, ())) for key in AFTER_COMMIT_LISTS}
    try:
        with session.begin_nested():
            yield
    except BaseException:
        for key, mark in marks.items():
            if key in session.info:
                del session.info[key][mark:]
        raise


def release_coalesced(key: str, connection: redis.Redis | None = None) -> None:
    """Let the next commit send a job of ``key`` again; called by that job as it starts."""
    try:
        (connection or get_redis()).delete(_coalesce_mark(key))
    except (redis.RedisError, OSError) as error:
        log.warning("could not release the queue mark %s: %s", key, error)


def _coalesce_mark(key: str) -> str:
    return f"centrala:{get_settings().queue_name}:waiting:{key}"


def enqueue_now(jobs: list[PendingJob], connection: redis.Redis | None = None) -> int:
    """Enqueue jobs at once; returns how many reached Redis. Failures are logged, never raised:
    the database holds the work and the sweeper re-enqueues what did not get through."""
    if not jobs:
        return 0
    try:
        queue = get_queue(connection)
        coalesced = [job for job in jobs if job.coalesce_key is not None]
        if coalesced:
            # SET NX: only the first commit since the job last started sends it.
            jobs = [job for job in jobs if job.coalesce_key is None] + [
                job
                for job in coalesced
                if queue.connection.set(_coalesce_mark(job.coalesce_key), b"1", nx=True, ex=COALESCE_SECONDS)
            ]
            if not jobs:
                return 0
        with queue.connection.pipeline() as pipe:
            # One MULTI for the lot, opened before any command: rq's enqueue opens it itself when the pipeline has
            # none, and refuses to when a scheduled job's commands are already in it, which lost every job of a
            # commit that queued a check for later and then a job for now.
            pipe.multi()
            for job in jobs:
                if job.at is not None:
                    queue.enqueue_at(
                        _whole_second_after(job.at), job.func, *job.args, job_id=job.job_id, pipeline=pipe,
                        **job.options,
                    )
                else:
                    queue.enqueue(job.func, *job.args, job_id=job.job_id, pipeline=pipe, **job.options)
            pipe.execute()
        return len(jobs)
    except (redis.RedisError, OSError) as error:
        log.warning("could not enqueue %d job(s), the sweeper will retry: %s", len(jobs), error)
        return 0


def _whole_second_after(moment: datetime) -> datetime:
    """``moment`` rounded up to a whole second: rq keeps scheduled times in whole seconds, truncated, so a job
    for 09:00:03.5 would run at 09:00:03 and find nothing due yet."""
    if moment.microsecond == 0:
        return moment
    return moment.replace(microsecond=0) + timedelta(seconds=1)


@event.listens_for(Session, "after_commit")
def _send_pending_jobs(session: Session) -> None:
    if session.in_nested_transaction():
        # SQLAlchemy reports a savepoint's release as a commit too; the rows are not committed yet.
        return
    jobs = session.info.pop(_PENDING_KEY, None)
    if jobs:
        enqueue_now(jobs)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending_jobs(session: Session, previous_transaction: SessionTransaction) -> None:
    # Only the whole transaction's rollback: a savepoint's (``savepoint``) keeps what was queued before it.
    if previous_transaction.parent is None:
        session.info.pop(_PENDING_KEY, None)


@dataclass(frozen=True)
class QueueState:
    """What Redis says about the work queue: jobs per registry, live workers, and whether a scheduler runs."""

    # queued (waiting), started (running), scheduled (waiting for their time), deferred, failed.
    jobs: dict[str, int]
    workers: int
    scheduler: bool


def read_queue_state(connection: redis.Redis, *, now: datetime | None = None) -> QueueState:
    """Read the queue's state without changing it (no registry clean-up); raises redis errors."""
    queue = get_queue(connection)
    jobs = {
        "queued": queue.count,
        "started": queue.started_job_registry.get_job_count(cleanup=False),
        "scheduled": queue.scheduled_job_registry.get_job_count(cleanup=False),
        "deferred": queue.deferred_job_registry.get_job_count(cleanup=False),
        "failed": queue.failed_job_registry.get_job_count(cleanup=False),
    }
    # A worker's key expires when its heartbeat stops; the age check covers one frozen without exiting.
    moment = now or datetime.now(UTC)
    live = [
        worker
        for worker in Worker.all(queue=queue, serializer=JSONSerializer)
        if worker.last_heartbeat is not None
        and (moment - worker.last_heartbeat).total_seconds() <= WORKER_SILENT_AFTER_SECONDS
    ]
    # The scheduler holds a lock per queue that it refreshes every round and that expires a minute after its
    # last refresh (rq.scheduler), so the lock is there exactly while a scheduler runs.
    scheduler = bool(connection.exists(RQScheduler.get_locking_key(queue.name)))
    return QueueState(jobs=jobs, workers=len(live), scheduler=scheduler)
