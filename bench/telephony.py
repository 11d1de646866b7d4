"""The telephony benchmark: webhook latency under 50 concurrent calls, and ring -> screen-pop on an agent's
live stream.

    python -m bench.telephony --calls 50 --pops 100

Starts its own ``centrala up`` in a temporary folder (the embedded default, or the database and Redis of
``CENTRALA_DATABASE_URL``/``CENTRALA_REDIS_URL`` when set), with one phone line and one available agent
connected to ``/api/v1/live``. Every request is signed with the twilio library's ``RequestValidator``.

- webhook: ``--calls`` calls at once, each sending the whole sequence Twilio sends for a missed call
  (voice request, status callbacks of the call and of the agent's leg, dial result); the response time of
  every request, then the time until every call is on a ticket.
- screen-pop: ``--pops`` calls one after another; from sending the voice request to the ``screen-pop`` event
  for that call arriving on the agent's server-sent event stream (through the database, the queue, a
  worker, Redis pub/sub and the web process).

Prints one JSON line to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from twilio.request_validator import RequestValidator

from bench.portal import _drop, _scratch_database

TOKEN = "bench-twilio-auth-token"
ACCOUNT_SID = "AC" + "b" * 32
LINE = "+420222333444"


def _sid(prefix: str, name: str) -> str:
    return prefix + hashlib.md5(name.encode()).hexdigest()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _ms(value: float) -> float:
    return round(value * 1000, 1)


class Instance:
    """``centrala up`` in a temporary folder."""

    def __init__(self, var_dir: Path) -> None:
        self.http_port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CENTRALA_")}
        self.env.update(
            CENTRALA_VAR_DIR=str(var_dir),
            CENTRALA_HTTP_PORT=str(self.http_port),
            CENTRALA_SMTP_PORT=str(_free_port()),
            CENTRALA_PUBLIC_URL=self.base_url,
            CENTRALA_SECRET_KEY="bench-secret-key-" + "x" * 32,
            CENTRALA_QUEUE_NAME=f"bench-{os.getpid()}",
            CENTRALA_TWILIO_AUTH_TOKEN=TOKEN,
            CENTRALA_TWILIO_BACKEND="fake",
            CENTRALA_PHONE_LINES=json.dumps([{"number": LINE, "queue": "Hotline", "language": "cs"}]),
            CENTRALA_LOG_LEVEL="WARNING",
        )
        for name in ("CENTRALA_REDIS_URL", "CENTRALA_WORKERS"):
            if os.environ.get(name):
                self.env[name] = os.environ[name]
        # A PostgreSQL server gets a scratch database of the run's own, dropped at the end.
        self.database_url, self.admin_url = _scratch_database(os.environ.get("CENTRALA_DATABASE_URL"), var_dir)
        if self.admin_url:
            self.env["CENTRALA_DATABASE_URL"] = self.database_url
        self.log = (var_dir / "up.log").open("ab")
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "centrala", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return result.stdout

    def start(self) -> None:
        self.cli("migrate")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "centrala", "up"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("centrala up did not become healthy within 90 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Webhooks:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.validator = RequestValidator(TOKEN)
        self.client = httpx.Client(base_url=base_url, timeout=30, limits=httpx.Limits(max_connections=100))

    def post(self, kind: str, form: dict[str, str]) -> float:
        path = f"/twilio/{kind}"
        signature = self.validator.compute_signature(self.base_url + path, form)
        started = time.perf_counter()
        response = self.client.post(path, data=form, headers={"X-Twilio-Signature": signature})
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:200]}")
        return elapsed


def _inbound(call_sid: str, caller: str, **extra: str) -> dict[str, str]:
    form = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "Direction": "inbound",
        "From": caller,
        "To": LINE,
        "Caller": caller,
        "Called": LINE,
    }
    form.update(extra)
    return form


def missed_call(call_sid: str, caller: str, agent_id: int) -> list[tuple[str, dict[str, str]]]:
    leg_sid = _sid("CA", "leg-" + call_sid)

    def leg(status: str, sequence: int) -> dict[str, str]:
        return {
            "AccountSid": ACCOUNT_SID,
            "CallSid": leg_sid,
            "ParentCallSid": call_sid,
            "CallStatus": status,
            "Direction": "outbound-dial",
            "From": caller,
            "To": f"client:agent-{agent_id}",
            "SequenceNumber": str(sequence),
        }

    return [
        ("voice", _inbound(call_sid, caller, CallStatus="ringing")),
        ("status", _inbound(call_sid, caller, CallStatus="in-progress", SequenceNumber="1")),
        ("status", leg("initiated", 0)),
        ("status", leg("ringing", 1)),
        ("status", leg("no-answer", 2)),
        (
            "dial-result",
            _inbound(
                call_sid,
                caller,
                CallStatus="in-progress",
                DialCallStatus="no-answer",
                DialCallSid=leg_sid,
                DialCallDuration="0",
            ),
        ),
        ("status", _inbound(call_sid, caller, CallStatus="completed", SequenceNumber="2", CallDuration="25")),
    ]


def listen(
    base_url: str, token: str, arrivals: dict[str, float], connected: threading.Event, stop: threading.Event
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=base_url, timeout=httpx.Timeout(5, read=None)) as client,
        client.stream("GET", "/api/v1/live", headers=headers) as response,
    ):
        name = None
        for line in response.iter_lines():
            if stop.is_set():
                return
            if line.startswith(": connected"):
                connected.set()
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name == "screen-pop":
                arrivals.setdefault(json.loads(line[6:])["call"]["call_sid"], time.perf_counter())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=50, help="concurrent calls for the webhook figures")
    parser.add_argument("--pops", type=int, default=100, help="calls for the ring -> screen-pop figures")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="centrala-bench-telephony-") as folder:
        instance = Instance(Path(folder))
        try:
            instance.start()
            return _run(instance, args.calls, args.pops)
        finally:
            instance.stop()
            if instance.admin_url:
                _drop(instance.database_url, instance.admin_url)


def _run(instance: Instance, calls: int, pops: int) -> int:
    token = instance.cli("agents", "create", "--email", "bench@localhost", "--role", "admin").strip()
    api = httpx.Client(base_url=instance.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    agent_id = api.get("/api/v1/agents/me/phone").json()["id"]
    api.put(f"/api/v1/agents/{agent_id}/queues", json={"queues": ["Hotline"]}).raise_for_status()
    api.put("/api/v1/agents/me/availability", json={"availability": "available"}).raise_for_status()
    webhooks = Webhooks(instance.base_url)

    arrivals: dict[str, float] = {}
    connected, stop = threading.Event(), threading.Event()
    threading.Thread(
        target=listen, args=(instance.base_url, token, arrivals, connected, stop), daemon=True
    ).start()
    if not connected.wait(30):
        raise SystemExit("the live stream did not connect")

    # Ring -> screen-pop, one call at a time.
    print(f"ring -> screen-pop: {pops} calls", file=sys.stderr)
    pop_latencies = []
    for index in range(pops):
        call_sid = _sid("CA", f"pop-{index}")
        sent = time.perf_counter()
        webhooks.post("voice", _inbound(call_sid, f"+42060{index % 10}{index:06d}", CallStatus="ringing"))
        deadline = time.monotonic() + 30
        while call_sid not in arrivals and time.monotonic() < deadline:
            time.sleep(0.001)
        if call_sid not in arrivals:
            raise SystemExit(f"no screen-pop for {call_sid} within 30 s")
        pop_latencies.append(arrivals[call_sid] - sent)

    # Webhooks under concurrent calls.
    print(f"webhooks: {calls} concurrent calls", file=sys.stderr)
    sequences = [missed_call(_sid("CA", f"load-{i}"), f"+42077{i:07d}", agent_id) for i in range(calls)]
    latencies: list[float] = []
    lock = threading.Lock()

    def one_call(sequence: list[tuple[str, dict[str, str]]]) -> None:
        for kind, form in sequence:
            elapsed = webhooks.post(kind, form)
            with lock:
                latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=calls) as pool:
        list(pool.map(one_call, sequences))
    sent_all = time.perf_counter()
    expected = {sequence[0][1]["CallSid"] for sequence in sequences}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        log = api.get("/api/v1/calls", params={"outcome": "missed", "limit": 200}).json()
        done = {call["call_sid"] for call in log["calls"] if call["ticket_id"]}
        if expected <= done:
            break
        time.sleep(0.2)
    else:
        raise SystemExit("not every call reached a ticket within 300 s")
    drained = time.perf_counter()
    stop.set()

    result = {
        "benchmark": "telephony",
        "database": "postgresql" if "CENTRALA_DATABASE_URL" in instance.env else "sqlite",
        "webhook_requests": len(latencies),
        "concurrent_calls": calls,
        "webhook_p50_ms": _ms(statistics.median(latencies)),
        "webhook_p99_ms": _ms(_percentile(latencies, 0.99)),
        "webhook_max_ms": _ms(max(latencies)),
        "webhooks_per_s": round(len(latencies) / (sent_all - started), 1),
        "all_calls_on_tickets_s": round(drained - started, 2),
        "screen_pops": len(pop_latencies),
        "screen_pop_p50_ms": _ms(statistics.median(pop_latencies)),
        "screen_pop_p95_ms": _ms(_percentile(pop_latencies, 0.95)),
        "screen_pop_max_ms": _ms(max(pop_latencies)),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
