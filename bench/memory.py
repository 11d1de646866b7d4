"""The memory benchmark: one large message with attachments, accepted over SMTP and processed by a worker, and
the peak resident memory of the SMTP and worker processes while they did it.

    python -m bench.memory [--mib 25] [--attachments 3]

Starts its own ``centrala up`` in a temporary folder (the embedded default, or the servers of
``CENTRALA_DATABASE_URL``/``CENTRALA_REDIS_URL`` when set; a PostgreSQL server gets a scratch database). A small
message goes first, so that both processes have loaded everything they use; then each process's peak (VmHWM)
is reset (``/proc/PID/clear_refs``) and the large message is sent. Prints one JSON line; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import smtplib
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from bench.portal import _drop
from bench.telephony import Instance

log = logging.getLogger("bench.memory")

MIB = 1024 * 1024
# base64 (RFC 2045 §6.8) turns 57 octets into a 76-character line and its CRLF.
BASE64_GROWTH = 78 / 57
ATTACHMENTS = (
    ("faktura-2026-11.pdf", "application", "pdf"),
    ("fotografie-poskozeni.png", "image", "png"),
    ("podklady.zip", "application", "zip"),
    ("export.xlsx", "application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
)


def large_message(size: int, attachments: int, seed: int = 1) -> bytes:
    """A multipart/mixed message of ``size`` octets at most (CRLF line ends): a text and an HTML body and
    ``attachments`` files of random (incompressible) bytes sharing the rest, base64-encoded."""
    rng = random.Random(seed)
    message = EmailMessage()
    message["From"] = "Jana Nováková <jana.novakova@example.cz>"
    message["To"] = "support@localhost"
    message["Subject"] = "Podklady k reklamaci (faktury, fotografie)"
    message["Message-ID"] = f"<bench-memory-{seed}@example.cz>"
    message.set_content("Dobrý den,\n\nv příloze posílám podklady k reklamaci.\n\nJana Nováková\n")
    message.add_alternative("<p>Dobrý den,</p><p>v příloze posílám podklady k reklamaci.</p>", subtype="html")
    share = int((size - 8 * 1024) / BASE64_GROWTH / attachments)
    for index in range(attachments):
        filename, maintype, subtype = ATTACHMENTS[index % len(ATTACHMENTS)]
        data = rng.randbytes(share)
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    raw = message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if len(raw) > size:
        raise SystemExit(f"bench.memory: built {len(raw)} octets for a limit of {size}")
    return raw


def _centrala_children(pid: int) -> dict[str, int]:
    """The ``centrala smtp`` and first ``centrala worker`` process under the supervisor ``pid``."""
    found: dict[str, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            if fields.get("PPid", "").strip() != str(pid):
                continue
            argv = (status.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        role = argv[3].decode() if len(argv) > 3 else ""
        if role in ("smtp", "worker") and role not in found:
            found[role] = int(status.parent.name)
    return found


def _memory_kib(pid: int) -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def _reset_peak(pid: int) -> None:
    # proc(5): writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current one.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _ledger(instance: Instance) -> dict[str, int]:
    return json.loads(instance.cli("mail", "ledger", "--json"))


def _wait_done(instance: Instance, expected: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = _ledger(instance)
        if counts["processed"] + counts["quarantined"] >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def _send(port: int, raw: bytes) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
        client.sendmail("jana.novakova@example.cz", ["support@localhost"], raw)
    return time.perf_counter() - started


def run(instance: Instance, *, size: int, attachments: int) -> dict[str, object]:
    port = int(instance.env["CENTRALA_SMTP_PORT"])
    assert instance.process is not None
    pids = _centrala_children(instance.process.pid)
    if set(pids) != {"smtp", "worker"}:
        raise SystemExit(f"bench.memory: found {pids} under centrala up")
    warm_up = large_message(64 * 1024, 1, seed=0)
    _send(port, warm_up)
    _wait_done(instance, 1, 120)
    before = {role: _memory_kib(pid) for role, pid in pids.items()}
    for pid in pids.values():
        _reset_peak(pid)
    raw = large_message(size, attachments)
    log.info("sending %.2f MiB with %d attachments", len(raw) / MIB, attachments)
    accept_s = _send(port, raw)
    started = time.monotonic()
    counts = _wait_done(instance, 2, 600)
    processed_s = time.monotonic() - started
    after = {role: _memory_kib(pid) for role, pid in pids.items()}
    result: dict[str, object] = {
        "bench": "memory",
        "database": "postgresql" if "CENTRALA_DATABASE_URL" in instance.env else "sqlite",
        "message_bytes": len(raw),
        "message_mib": round(len(raw) / MIB, 2),
        "attachments": attachments,
        "processed": counts["processed"] == 2,
        "quarantined": counts["quarantined"],
        "smtp_accept_s": round(accept_s, 2),
        "processed_after_accept_s": round(processed_s, 2),
    }
    for role in ("smtp", "worker"):
        rss_before = before[role]["VmRSS"] * 1024
        peak = after[role]["VmHWM"] * 1024
        result[f"{role}_rss_before_mib"] = round(rss_before / MIB, 1)
        result[f"{role}_peak_rss_mib"] = round(peak / MIB, 1)
        result[f"{role}_peak_over_size"] = round(peak / len(raw), 2)
        result[f"{role}_growth_over_size"] = round((peak - rss_before) / len(raw), 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=float, default=25.0, help="message size in MiB (default 25)")
    parser.add_argument("--attachments", type=int, default=3, help="attachments sharing it (default 3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    size = int(args.mib * MIB)
    with tempfile.TemporaryDirectory(prefix="centrala-bench-memory-") as folder:
        instance = Instance(Path(folder))
        # The SMTP size limit must let the message in; nothing else differs from the default.
        instance.env["CENTRALA_MAX_MESSAGE_BYTES"] = str(max(size, 25 * MIB))
        try:
            instance.start()
            result = run(instance, size=size, attachments=args.attachments)
        finally:
            instance.stop()
            if instance.admin_url:
                _drop(instance.database_url, instance.admin_url)
    print(json.dumps(result), flush=True)
    return 0 if result["processed"] else 1


if __name__ == "__main__":
    sys.exit(main())
