"""The soak benchmark: a steady stream of mail and signed Twilio webhooks for minutes on end, then what was
lost, duplicated, how long the SMTP answer took and whether the worker's memory stayed flat.

    python -m bench.soak [--minutes 10] [--rate 50] [--webhooks 10]

Starts its own ``centrala up`` in a temporary folder (the embedded default, or the servers of
``CENTRALA_DATABASE_URL``/``CENTRALA_REDIS_URL`` when set; a PostgreSQL server gets a scratch database), with one
phone line and one available agent. For ``--minutes``, ``--rate`` mails a second go out on four SMTP
connections, each at its planned instant (the bench.corpus corpus, its Message-IDs renamed per round so every
mail is new), and ``--webhooks`` signed requests a second replay missed calls, seven requests each, in order.
Then it waits until the database holds nothing pending. Prints one JSON line; progress on stderr.

- ``lost``: mails answered 250 with no processed ledger row, plus calls without their call row;
  ``duplicated``: Message-IDs with more than one inbound interaction, plus calls recorded twice.
- ``smtp_accept_p99_ms``: the duration of ``sendmail()`` (the 250 comes after the commit); ``send_late_p99_ms``
  how late the client itself got to the planned instants (if that grows, the client is the bottleneck).
- ``drained_after_s``: from the last mail and webhook to no raw mail and no call event pending.
- ``worker_rss_*``: the worker's resident memory, sampled every 5 s: the mean of the second minute against that
  of the last minute (the first minute holds the start-up growth).
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, event, text

from bench.corpus import generate_mails
from bench.ingest import percentile
from bench.memory import _centrala_children, _memory_kib
from bench.portal import _drop
from bench.telephony import Instance, Webhooks, _sid, missed_call

log = logging.getLogger("bench.soak")

CONNECTIONS = 4
CORPUS = 2000
SAMPLE_SECONDS = 5.0


def _ms(value: float) -> float:
    return round(value * 1000, 2)


class Mail:
    """The mail of one planned instant."""

    def __init__(self, due: float, raw: bytes, sender: str) -> None:
        self.due, self.raw, self.sender = due, raw, sender


def _plan(rate: float, seconds: float, start: float) -> list[Mail]:
    corpus = generate_mails(min(CORPUS, int(rate * seconds) + 1), 1)
    plan = []
    for index in range(int(rate * seconds)):
        round_, position = divmod(index, len(corpus))
        # Every Message-ID (and every reference to one) of round r reads soak-r-: new mail, threads intact.
        raw = corpus[position].raw.replace(b"<bench-1-", f"<soak-{round_}-".encode())
        plan.append(Mail(start + index / rate, raw, corpus[position].sender.address))
    return plan


class Mailer:
    """``CONNECTIONS`` threads sending the plan, each mail at its instant."""

    def __init__(self, port: int, plan: list[Mail]) -> None:
        self.port = port
        self.work: queue.SimpleQueue[Mail] = queue.SimpleQueue()
        for mail in plan:
            self.work.put(mail)
        self.latencies: list[float] = []
        self.late: list[float] = []
        self.accepted = 0
        self.failed: list[str] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        threads = [threading.Thread(target=self._sender, daemon=True) for _ in range(CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _sender(self) -> None:
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=120)
        try:
            while True:
                try:
                    mail = self.work.get_nowait()
                except queue.Empty:
                    return
                pause = mail.due - time.time()
                if pause > 0:
                    time.sleep(pause)
                started = time.time()
                try:
                    client.sendmail(mail.sender, ["support@localhost"], mail.raw)
                except (smtplib.SMTPException, OSError) as error:
                    with self.lock:
                        self.failed.append(repr(error))
                    client.close()
                    client = smtplib.SMTP("127.0.0.1", self.port, timeout=120)
                    continue
                elapsed = time.time() - started
                with self.lock:
                    self.latencies.append(elapsed)
                    self.late.append(max(0.0, started - mail.due))
                    self.accepted += 1
        finally:
            client.close()


class Caller:
    """Signed webhooks at a steady rate: missed calls, each call's seven requests in order."""

    def __init__(self, base_url: str, rate: float, seconds: float, start: float, agent_id: int) -> None:
        self.webhooks = Webhooks(base_url)
        self.requests = []
        self.calls = 0
        for index in range(int(rate * seconds / 7) + 1):
            self.requests += missed_call(_sid("CA", f"soak-{index}"), f"+42077{index:07d}", agent_id)
            self.calls += 1
        self.requests = self.requests[: int(rate * seconds)]
        self.calls = len({form["CallSid"] for kind, form in self.requests if kind == "voice"})
        self.rate, self.start = rate, start
        self.latencies: list[float] = []
        self.failed = 0

    def run(self) -> None:
        for index, (kind, form) in enumerate(self.requests):
            pause = self.start + index / self.rate - time.time()
            if pause > 0:
                time.sleep(pause)
            try:
                self.latencies.append(self.webhooks.post(kind, form))
            except httpx.HTTPError:
                self.failed += 1


def _database(instance: Instance, folder: Path):
    if instance.admin_url:
        return create_engine(instance.database_url, pool_size=2)
    engine = create_engine(f"sqlite:///{folder / 'centrala.db'}")

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    return engine


def _pending(engine) -> tuple[int, int]:
    with engine.connect() as connection:
        mails = connection.execute(
            text("SELECT count(*) FROM inbound_email WHERE status = 'received'")
        ).scalar()
        events = connection.execute(
            text("SELECT count(*) FROM call_event WHERE status = 'received'")
        ).scalar()
    return mails, events


def _outcome(engine) -> dict[str, int]:
    with engine.connect() as connection:
        scalar = lambda sql: connection.execute(text(sql)).scalar()
        return {
            "ledger_rows": scalar("SELECT count(*) FROM inbound_email"),
            "processed": scalar("SELECT count(*) FROM inbound_email WHERE status = 'processed'"),
            "quarantined": scalar("SELECT count(*) FROM inbound_email WHERE status = 'quarantined'"),
            "duplicated_mails": scalar(
                "SELECT count(*) FROM (SELECT external_id FROM interaction WHERE direction = 'inbound' "
                "AND channel = 'email' GROUP BY external_id HAVING count(*) > 1) AS twice"
            ),
            "calls": scalar("SELECT count(*) FROM call"),
            "duplicated_calls": scalar(
                "SELECT count(*) FROM (SELECT call_sid FROM call GROUP BY call_sid HAVING count(*) > 1) AS twice"
            ),
            "call_events_pending": scalar("SELECT count(*) FROM call_event WHERE status = 'received'"),
        }


def run(
    instance: Instance, folder: Path, *, minutes: float, rate: float, webhook_rate: float
) -> dict[str, object]:
    token = instance.cli("agents", "create", "--email", "soak@localhost", "--role", "admin").strip()
    api = httpx.Client(base_url=instance.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    agent_id = api.get("/api/v1/agents/me/phone").json()["id"]
    api.put(f"/api/v1/agents/{agent_id}/queues", json={"queues": ["Hotline"]}).raise_for_status()
    api.put("/api/v1/agents/me/availability", json={"availability": "available"}).raise_for_status()
    assert instance.process is not None
    worker = _centrala_children(instance.process.pid)["worker"]
    engine = _database(instance, folder)

    seconds = minutes * 60
    start = time.time() + 5
    log.info("planning %d mails and %d webhooks", int(rate * seconds), int(webhook_rate * seconds))
    mailer = Mailer(int(instance.env["CENTRALA_SMTP_PORT"]), _plan(rate, seconds, start))
    caller = Caller(instance.base_url, webhook_rate, seconds, start, agent_id)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            samples.append((time.time() - start, _memory_kib(worker)["VmRSS"]))
            if len(samples) % 12 == 0:
                log.info(
                    "%.0f s: %d mails accepted, worker RSS %.1f MiB, pending %s",
                    time.time() - start,
                    mailer.accepted,
                    samples[-1][1] / 1024,
                    _pending(engine),
                )

    threads = [threading.Thread(target=target, daemon=True) for target in (mailer.run, caller.run, sample)]
    for thread in threads:
        thread.start()
    threads[0].join()
    threads[1].join()
    ended = time.time()
    while _pending(engine) != (0, 0) and time.time() - ended < 600:
        time.sleep(0.2)
    drained_after = time.time() - ended
    stop.set()
    outcome = _outcome(engine)
    engine.dispose()

    second_minute = [rss for at, rss in samples if 60 <= at < 120] or [rss for _, rss in samples[:12]]
    last_minute = [rss for at, rss in samples if at >= seconds - 60] or [rss for _, rss in samples[-12:]]
    rss_start, rss_end = statistics.mean(second_minute) / 1024, statistics.mean(last_minute) / 1024
    lost_mails = mailer.accepted - outcome["processed"] - outcome["quarantined"]
    return {
        "bench": "soak",
        "database": "postgresql" if instance.admin_url else "sqlite",
        "minutes": minutes,
        "mail_rate": rate,
        "webhook_rate": webhook_rate,
        "mails_accepted": mailer.accepted,
        "mails_failed": len(mailer.failed),
        "processed": outcome["processed"],
        "quarantined": outcome["quarantined"],
        "lost": max(0, lost_mails) + max(0, caller.calls - outcome["calls"]),
        "duplicated": outcome["duplicated_mails"] + outcome["duplicated_calls"],
        "smtp_accept_p50_ms": _ms(percentile(mailer.latencies, 0.5)),
        "smtp_accept_p99_ms": _ms(percentile(mailer.latencies, 0.99)),
        "smtp_accept_max_ms": _ms(max(mailer.latencies)),
        "send_late_p99_ms": _ms(percentile(mailer.late, 0.99)),
        "webhooks_sent": len(caller.latencies),
        "webhooks_failed": caller.failed,
        "webhook_p99_ms": _ms(percentile(caller.latencies, 0.99)),
        "calls": caller.calls,
        "calls_recorded": outcome["calls"],
        "drained_after_s": round(drained_after, 2),
        "worker_rss_second_minute_mib": round(rss_start, 1),
        "worker_rss_last_minute_mib": round(rss_end, 1),
        "worker_rss_change_pct": round((rss_end - rss_start) / rss_start * 100, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to send (default 10)")
    parser.add_argument("--rate", type=float, default=50.0, help="mails a second (default 50)")
    parser.add_argument("--webhooks", type=float, default=10.0, help="webhook requests a second (default 10)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="centrala-bench-soak-") as folder:
        instance = Instance(Path(folder))
        try:
            instance.start()
            result = run(
                instance, Path(folder), minutes=args.minutes, rate=args.rate, webhook_rate=args.webhooks
            )
        finally:
            instance.stop()
            if instance.admin_url:
                _drop(instance.database_url, instance.admin_url)
    print(json.dumps(result), flush=True)
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
