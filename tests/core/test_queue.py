"""Scheduled jobs: rq keeps their times in whole seconds, so we schedule at the next whole second rather than
let the job run early and find nothing due."""

from __future__ import annotations

from datetime import UTC, datetime

from centrala.core.queue import PendingJob, enqueue_now, get_queue


def test_a_job_for_a_fraction_of_a_second_is_scheduled_at_the_next_whole_second(redis_url):
    queue = get_queue()
    registry = queue.scheduled_job_registry
    for job_id in registry.get_job_ids():
        registry.remove(job_id)
    at = datetime(2030, 1, 2, 9, 0, 3, 500_000, tzinfo=UTC)
    exact = datetime(2030, 1, 2, 9, 0, 5, tzinfo=UTC)
    enqueue_now(
        [
            PendingJob("centrala.workers.jobs.check_sla_clock", (1,), job_id="late-half", at=at),
            PendingJob("centrala.workers.jobs.check_sla_clock", (2,), job_id="exact", at=exact),
        ]
    )
    assert registry.get_scheduled_time("late-half") == datetime(2030, 1, 2, 9, 0, 4, tzinfo=UTC)
    assert registry.get_scheduled_time("exact") == exact
    for job_id in ("late-half", "exact"):
        registry.remove(job_id)


def test_jobs_for_later_and_for_now_sent_together_all_reach_the_queue(redis_url):
    # A new ticket's commit queues its SLA checks for later and then the outbox's drain for now.
    queue = get_queue()
    later = datetime(2030, 1, 2, 9, 0, tzinfo=UTC)
    sent = enqueue_now(
        [
            PendingJob("centrala.workers.jobs.check_sla_clock", (1,), job_id="check-later", at=later),
            PendingJob("centrala.workers.jobs.send_due_outbound_emails", job_id="send-now"),
            PendingJob("centrala.workers.jobs.check_sla_clock", (2,), job_id="check-later-too", at=later),
            PendingJob("centrala.workers.jobs.send_due_outbound_emails", job_id="send-now-too"),
        ]
    )
    assert sent == 4
    assert set(queue.scheduled_job_registry.get_job_ids()) >= {"check-later", "check-later-too"}
    assert {"send-now", "send-now-too"} <= set(queue.get_job_ids())
    for job_id in ("check-later", "check-later-too"):
        queue.scheduled_job_registry.remove(job_id)
    for job_id in ("send-now", "send-now-too"):
        queue.remove(job_id)
