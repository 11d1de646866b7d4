"""Live events for connected agents: published on Redis after the rows they describe are committed.

Each agent has one channel; the web process relays it to the agent's server-sent event stream. Delivery is
best effort (an agent who is not connected misses the push): every event describes data that stays in the
database and is served by the JSON API as well.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction
from starlette.requests import Request
from starlette.responses import StreamingResponse

from centrala.core.embedded import embedded_redis_url
from centrala.core.queue import AFTER_COMMIT_LISTS, get_redis
from centrala.core.settings import Settings, get_settings

log = logging.getLogger(__name__)

_PENDING_KEY = "centrala.pending_live_events"
AFTER_COMMIT_LISTS.append(_PENDING_KEY)


@dataclass(frozen=True)
class LiveEvent:
    """One push: its SSE event name and JSON data."""

    name: str
    data: dict[str, Any]


def agent_channel(agent_id: int, settings: Settings | None = None) -> str:
    """The Redis channel of one agent's live events."""
    return f"{(settings or get_settings()).queue_name}:live:agent:{agent_id}"


def publish_after_commit(session: Session, agent_ids: list[int], live_event: LiveEvent) -> None:
    """Push ``live_event`` to each of ``agent_ids`` once ``session`` commits; nothing if it rolls back."""
    pending = session.info.setdefault(_PENDING_KEY, [])
    pending.extend((agent_id, live_event) for agent_id in agent_ids)


def publish_now(events: list[tuple[int, LiveEvent]], connection: redis.Redis | None = None) -> int:
    """Publish at once; returns how many reached Redis. Failures are logged, not raised."""
    if not events:
        return 0
    try:
        client = connection or get_redis()
        with client.pipeline(transaction=False) as pipe:
            for agent_id, live_event in events:
                message = json.dumps({"event": live_event.name, "data": live_event.data}, default=str)
                pipe.publish(agent_channel(agent_id), message)
            pipe.execute()
        return len(events)
    except (redis.RedisError, OSError) as error:
        log.warning("could not publish %d live event(s): %s", len(events), error)
        return 0


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    if session.in_nested_transaction():
        # A savepoint's release, which SQLAlchemy reports as a commit: what it announces is not committed yet.
        return
    events = session.info.pop(_PENDING_KEY, None)
    if events:
        publish_now(events)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction: SessionTransaction) -> None:
    # Only the whole transaction's rollback: a savepoint's (``savepoint``) keeps what was queued before it.
    if previous_transaction.parent is None:
        session.info.pop(_PENDING_KEY, None)


async def subscribe(
    url: str, agent_id: int, *, heartbeat_seconds: float = 15.0
) -> AsyncIterator[LiveEvent | None]:
    """The agent's live events as they are published: None once subscribed, then None every
    ``heartbeat_seconds`` without an event."""
    client = redis.asyncio.Redis.from_url(url)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(agent_channel(agent_id))
        yield None
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=heartbeat_seconds)
            if message is None:
                yield None
                continue
            try:
                payload = json.loads(message["data"])
                yield LiveEvent(name=str(payload["event"]), data=dict(payload["data"]))
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a malformed live event on %s", agent_channel(agent_id))
    finally:
        await pubsub.aclose()
        await client.aclose()


def event_stream_response(request: Request, settings: Settings, agent_id: int) -> StreamingResponse:
    """The agent's live events as a ``text/event-stream`` response (server-sent events).

    It opens with the comment ``: connected`` once subscribed, sends a comment every 15 s to keep proxies from
    closing it, and ends when the client goes away.
    """
    url = settings.redis_url or embedded_redis_url(get_redis())

    async def stream() -> AsyncIterator[bytes]:
        subscribed = False
        async for live_event in subscribe(url, agent_id):
            if not subscribed:
                subscribed = True
                yield b": connected\n\n"
                continue
            if await request.is_disconnected():
                break
            if live_event is None:
                yield b": keep-alive\n\n"
                continue
            data = json.dumps(live_event.data, default=str, ensure_ascii=False)
            yield f"event: {live_event.name}\ndata: {data}\n\n".encode()

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
