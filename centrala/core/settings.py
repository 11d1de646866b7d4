"""The one settings object, read from ``CENTRALA_*`` environment variables or a ``.env`` file."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from centrala.core.errors import ConfigurationError

PLACEHOLDER_SECRET = "change-me-in-production"


class Settings(BaseSettings):
    """Effective configuration of one Centrala process."""

    model_config = SettingsConfigDict(env_prefix="CENTRALA_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    var_dir: Path = Path("var")
    database_url: str | None = None
    redis_url: str | None = None
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    public_url: str = "http://127.0.0.1:8000"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_hostname: str = "localhost"
    mailboxes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["support@localhost"])
    max_message_bytes: int = 25 * 1024 * 1024
    smtp_max_connections: int = 200

    default_region: str = "CZ"

    # How long a writer waits for a lock before giving up: SQLite's busy_timeout, PostgreSQL's lock_timeout.
    db_lock_timeout_ms: int = 5000

    queue_name: str = "centrala"
    workers: int = 1
    # Raw rows still unprocessed after this long are handed to the queue again by the sweeper.
    sweep_after_seconds: float = 60.0
    sweep_interval_seconds: float = 15.0
    job_timeout_seconds: int = 120

    log_level: str = "INFO"

    @field_validator("mailboxes", mode="before")
    @classmethod
    def _split_mailboxes(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("mailboxes")
    @classmethod
    def _normalise_mailboxes(cls, value: list[str]) -> list[str]:
        for address in value:
            if address.count("@") != 1 or not all(address.split("@")):
                raise ValueError(f"not a mailbox address: {address!r}")
        return [address.lower() for address in value]

    @field_validator("default_region")
    @classmethod
    def _upper_region(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        if self.environment == "production":
            if self.secret_key.get_secret_value() == PLACEHOLDER_SECRET or len(self.secret_key) < 32:
                raise ConfigurationError("CENTRALA_SECRET_KEY must be set to 32+ random characters in production")
            if not self.database_url:
                raise ConfigurationError("CENTRALA_DATABASE_URL must be set in production")
            if not self.redis_url:
                raise ConfigurationError("CENTRALA_REDIS_URL must be set in production")
        return self

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file under ``var_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'centrala.db').resolve()}"

    @property
    def embedded_redis_path(self) -> Path:
        """Where the embedded Redis keeps its data when ``CENTRALA_REDIS_URL`` is unset."""
        return (self.var_dir / "redis.db").resolve()

    @property
    def blob_dir(self) -> Path:
        return (self.var_dir / "blobs").resolve()

    def masked(self) -> dict[str, object]:
        """The configuration as plain values, secrets and URL passwords masked."""
        shown: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = "********"
            elif isinstance(value, str) and "://" in value and "@" in value:
                value = _mask_url_password(value)
            elif isinstance(value, Path):
                value = str(value)
            shown[name] = value
        shown["effective_database_url"] = _mask_url_password(self.effective_database_url)
        return shown


def _mask_url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:********@{host}"


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
