"""The long-running worker and scheduler processes."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import redis.exceptions
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.timeouts import UnixSignalDeathPenalty

from centrala.core.queue import WORKER_TTL_SECONDS, get_queue, get_redis
from centrala.core.settings import Settings
from centrala.core.startup import freeze_loaded_objects
from centrala.workers.jobs import (
    PARSE_HELPER,
    apply_retention,
    sweep_call_events,
    sweep_due_outbound,
    sweep_sla_clocks,
    sweep_stale_emails,
    warm_up,
)

log = logging.getLogger(__name__)

# A round of retention stops after this long, so that a first run on a large installation does not hold up
# the scheduled jobs this loop moves; the rest follows a sweep interval later.
RETENTION_BUDGET_SECONDS = 2.0
# A worker that lost Redis starts over after this pause, doubled on each failure up to the maximum.
REDIS_RETRY_FIRST_SECONDS = 1.0
REDIS_RETRY_MAX_SECONDS = 10.0


class JobTimeLimitExceeded(SystemExit):
    """Raised inside a job whose rq timeout (``CENTRALA_JOB_TIMEOUT_SECONDS``) is up.

    rq raises an ordinary Exception there, which the jobs' own handlers take for a fault of the message at hand
    (quarantined) or of the batch (tried again message by message, past the timeout). Not an Exception, it ends
    the job instead; a SystemExit because psycopg then cancels the statement in progress, leaving a connection
    that can roll back (on any other exception it stays busy and the rollback fails).
    """


class JobDeathPenalty(UnixSignalDeathPenalty):
    """rq's SIGALRM job timeout, raising ``JobTimeLimitExceeded`` whatever exception rq asks for."""

    def __init__(
        self, timeout: int, exception: type[BaseException] = JobTimeLimitExceeded, **kwargs: object
    ) -> None:
        super().__init__(timeout, JobTimeLimitExceeded, **kwargs)


class CentralaWorker(SimpleWorker):
    """rq's in-process worker that also tells ``run_worker`` when SIGINT or SIGTERM asked it to stop."""

    stop_requested: threading.Event

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested.set()
        super().request_stop(signum, frame)

    def set_shutdown_requested_date(self) -> None:
        # Called from the signal handler while a job runs; with Redis away, rq's write would raise inside the
        # job, which would take the error for its own. The stop itself needs no Redis.
        try:
            super().set_shutdown_requested_date()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            log.warning("stopping after the job at hand; Redis is away, so rq's worker list will not say so")


def run_worker(settings: Settings, *, burst: bool = False) -> None:
    """Work the queue until told to stop. Jobs run in this process (no fork per job): they are short and
    idempotent, and a worker that dies mid-job only delays that job until rq or the sweeper hands it out again.

    Losing Redis does not end the process. rq's work loop retries a lost connection only while it waits for a
    job; lost anywhere else (finishing a job, registering, its heartbeat) rq gives up, and a worker process
    that exits leaves mail waiting until someone restarts it. So a fresh rq worker takes over, after a pause
    that grows to ``REDIS_RETRY_MAX_SECONDS``, until SIGINT or SIGTERM says stop.
    """
    stop = threading.Event()
    pause = REDIS_RETRY_FIRST_SECONDS
    if settings.ingest_parse_helper:
        PARSE_HELPER.start()
    warm_up()
    freeze_loaded_objects()
    while not stop.is_set():
        worked = False
        try:
            # rq installs its own SIGINT/SIGTERM handlers in work(): the first finishes the job at hand, a second
            # ends the process at once (SystemExit).
            worked = _new_worker(stop).work(burst=burst, logging_level=_rq_log_level(settings))
            # work() also returns after an error it logged itself ("found an unhandled exception, quitting");
            # only a stop request or the end of a burst means the work is over.
            if burst or stop.is_set():
                return
            log.warning("the rq work loop ended without a stop request; starting over in %.0f s", pause)
        except StopRequested:
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            if stop.is_set():
                return
            log.warning("lost Redis (%s); starting over in %.0f s", error, pause)
        finally:
            # Between two rq work loops a signal is ours to take, not rq's (its handler calls Redis).
            _stop_on_signal(stop)
        stop.wait(pause)
        pause = REDIS_RETRY_FIRST_SECONDS if worked else min(pause * 2, REDIS_RETRY_MAX_SECONDS)


def _new_worker(stop: threading.Event) -> CentralaWorker:
    connection = get_redis()
    worker = CentralaWorker(
        [get_queue(connection)],
        connection=connection,
        serializer=JSONSerializer,
        worker_ttl=WORKER_TTL_SECONDS,
    )
    worker.stop_requested = stop
    worker.death_penalty_class = JobDeathPenalty
    # No with_scheduler in work(): rq would fork a scheduler child that outlives a worker killed with SIGKILL.
    return worker


def _rq_log_level(settings: Settings) -> str:
    # rq logs three lines per job at INFO; ours says what happened to which message, so keep rq's to warnings.
    return "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"


def _stop_on_signal(stop: threading.Event) -> None:
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())


def run_scheduler(settings: Settings, stop: threading.Event | None = None) -> None:
    """Run periodic sweeps until SIGINT/SIGTERM (or ``stop``): lost jobs are found in the database, not Redis."""
    stop = stop or threading.Event()
    _stop_on_signal(stop)
    log.info("scheduler sweeping every %.0f s", settings.sweep_interval_seconds)
    # rq's scheduler moves jobs scheduled with enqueue_at (SLA checks) to the queue. It runs here, in this
    # loop, not forked by a worker (see run_worker); its Redis lock keeps a second scheduler process idle.
    connection = get_redis()
    rq_scheduler = RQScheduler([get_queue(connection)], connection=connection, serializer=JSONSerializer)
    # Its full collections walked as many objects as a worker's (80-140 ms each), on the cores the SMTP server
    # and the workers share.
    freeze_loaded_objects()
    try:
        _run_sweeps(settings, stop, rq_scheduler)
    finally:
        try:
            rq_scheduler.release_locks()
        except Exception:
            log.exception("could not release the rq scheduler lock")


def _run_sweeps(settings: Settings, stop: threading.Event, rq_scheduler: RQScheduler) -> None:
    # Scheduled jobs are moved every tick (a quarter of a second late at most); the database sweeps run every
    # interval.
    tick = min(settings.sweep_interval_seconds, 0.25)
    last_sweep: float | None = None
    next_retention = time.monotonic()
    while not stop.is_set():
        try:
            rq_scheduler.acquire_locks()
            if rq_scheduler.acquired_locks:
                rq_scheduler.enqueue_scheduled_jobs()
        except Exception:
            log.exception("moving scheduled jobs failed; trying again next round")
        if last_sweep is None or time.monotonic() - last_sweep >= settings.sweep_interval_seconds:
            last_sweep = time.monotonic()
            _sweep_once()
        if time.monotonic() >= next_retention:
            next_retention = time.monotonic() + _retain(settings)
        stop.wait(tick)


def _retain(settings: Settings) -> float:
    """One round of retention, here in the scheduler but within a time budget, so that scheduled jobs keep
    moving; returns how long until the next round (soon while a backlog remains)."""
    try:
        report = apply_retention(max_seconds=RETENTION_BUDGET_SECONDS)
    except Exception:
        log.exception("retention failed; trying again next round")
        return settings.sweep_interval_seconds
    if report.archived_tickets or report.raw_mail_deleted:
        log.info(
            "retention: archived %d ticket(s), deleted the raw bytes of %d e-mail(s)",
            report.archived_tickets,
            report.raw_mail_deleted,
        )
    return settings.retention_interval_seconds if report.finished else settings.sweep_interval_seconds


def _sweep_once() -> None:
    try:
        sweep_stale_emails()
    except Exception:
        log.exception("sweep failed; trying again next round")
    try:
        sweep_due_outbound()
    except Exception:
        log.exception("outbound sweep failed; trying again next round")
    try:
        sweep_sla_clocks()
    except Exception:
        log.exception("sla sweep failed; trying again next round")
    try:
        sweep_call_events()
    except Exception:
        log.exception("call event sweep failed; trying again next round")
