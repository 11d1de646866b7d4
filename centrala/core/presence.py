"""Who else has a ticket open: each console page showing a ticket reports its agent every few seconds, as
viewing or typing, and hears about the others. Kept in Redis only, with a short life: presence is a hint for
colleagues (do not answer the same customer twice), never a lock, and nothing is lost when Redis forgets it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from centrala.core.queue import get_redis
from centrala.core.settings import get_settings

# A page reports every 5 s; an agent who has not reported for this long has left the ticket.
PRESENCE_SECONDS = 15
STATES = ("viewing", "typing")


@dataclass(frozen=True)
class Presence:
    agent_id: int
    name: str
    state: str


def _key(ticket_id: int) -> str:
    return f"{get_settings().queue_name}:presence:ticket:{ticket_id}"


def report_presence(
    *, ticket_id: int, agent_id: int, name: str, state: str, connection: redis.Redis | None = None
) -> list[Presence]:
    """Record that ``agent_id`` is viewing or typing on the ticket now, and return the other agents there."""
    client = connection or get_redis()
    key, now = _key(ticket_id), time.time()
    payload = json.dumps({"agent_id": agent_id, "name": name, "state": state if state in STATES else "viewing"})
    pipe = client.pipeline()
    # One member per agent: remove their previous report (any state) before adding the new one.
    pipe.zremrangebyscore(key, "-inf", now - PRESENCE_SECONDS)
    pipe.zrange(key, 0, -1)
    results = pipe.execute()
    stale = [member for member in results[1] if json.loads(member)["agent_id"] == agent_id]
    pipe = client.pipeline()
    if stale:
        pipe.zrem(key, *stale)
    pipe.zadd(key, {payload: now})
    pipe.expire(key, PRESENCE_SECONDS * 2)
    pipe.execute()
    return [item for item in present(ticket_id=ticket_id, connection=client) if item.agent_id != agent_id]


def leave(*, ticket_id: int, agent_id: int, connection: redis.Redis | None = None) -> None:
    """The agent closed the ticket's page."""
    client = connection or get_redis()
    key = _key(ticket_id)
    stale = [member for member in client.zrange(key, 0, -1) if json.loads(member)["agent_id"] == agent_id]
    if stale:
        client.zrem(key, *stale)


def present(*, ticket_id: int, connection: redis.Redis | None = None) -> list[Presence]:
    """The agents who reported on the ticket within ``PRESENCE_SECONDS``, typing ones first."""
    client = connection or get_redis()
    members = client.zrangebyscore(_key(ticket_id), time.time() - PRESENCE_SECONDS, "+inf")
    found = [Presence(**json.loads(member)) for member in members]
    return sorted(found, key=lambda item: (item.state != "typing", item.name))
