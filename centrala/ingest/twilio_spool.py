"""The webhook spool: a signed Twilio event that cannot be written because the database is locked or down is
kept in a file (written whole and synced before the caller hears the answer) and stored once the database
takes writes again.

The spool lives on the web process's own disk (``var/spool/twilio``); the process that wrote a file drains it,
every second while it runs and at its next start, so no file waits on another machine. Storing is idempotent
(events are unique on their natural key), so a file stored but not yet removed when the process dies is stored
again harmlessly.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from centrala.core.settings import Settings

log = logging.getLogger(__name__)

DRAIN_EVERY_SECONDS = 1.0


def spool_dir(settings: Settings) -> Path:
    return (settings.var_dir / "spool" / "twilio").resolve()


def spool_event(
    settings: Settings,
    *,
    kind: str,
    form: dict[str, str],
    params: dict[str, str],
    context: dict[str, object],
    received_at: datetime,
) -> Path:
    """Keep one event on disk, durably (written to a temporary name, synced, renamed, directory synced)."""
    directory = spool_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{received_at.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex}.json"
    payload = json.dumps(
        {
            "kind": kind,
            "form": form,
            "params": params,
            "context": context,
            "received_at": received_at.isoformat(),
        }
    ).encode()
    temporary = directory / f".{name}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    final = directory / name
    os.replace(temporary, final)
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return final


def spooled(settings: Settings) -> list[Path]:
    """The spooled events, oldest first."""
    directory = spool_dir(settings)
    if not directory.is_dir():
        return []
    return sorted(
        path for path in directory.iterdir() if path.suffix == ".json" and not path.name.startswith(".")
    )


def drain_spool(settings: Settings, store: Callable[[dict[str, object]], None]) -> int:
    """Store every spooled event with ``store`` and remove its file; stop at the first failure (the database
    is still unavailable) and leave the rest for the next round. Returns how many were stored."""
    stored = 0
    for path in spooled(settings):
        try:
            item = json.loads(path.read_bytes())
        except (OSError, ValueError) as error:
            log.error("unreadable spooled Twilio event %s kept aside: %s", path.name, error)
            path.rename(path.with_suffix(".unreadable"))
            continue
        try:
            store(item)
        except Exception as error:  # noqa: BLE001 (any failure: keep the file, try again later)
            log.warning("spooled Twilio events wait: %s", error)
            break
        path.unlink(missing_ok=True)
        stored += 1
    if stored:
        log.info("stored %d spooled Twilio event(s)", stored)
    return stored


class SpoolDrainer:
    """A thread of the web process that drains the spool every second until stopped."""

    def __init__(self, settings: Settings, store: Callable[[dict[str, object]], None]) -> None:
        self._settings, self._store = settings, store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twilio-spool", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            if spooled(self._settings):
                drain_spool(self._settings, self._store)
            self._stop.wait(DRAIN_EVERY_SECONDS)
