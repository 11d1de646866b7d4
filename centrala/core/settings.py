"""The one settings object, read from ``CENTRALA_*`` environment variables or a ``.env`` file."""

from __future__ import annotations

import functools
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from centrala.core.errors import ConfigurationError
from centrala.core.phone_lines import PhoneLine

PLACEHOLDER_SECRET = "change-me-in-production"

_IMAP_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class ImapSource(BaseModel):
    """One IMAP folder to import mail from, and the Centrala mailbox its messages are filed under.

    ``url`` is ``imaps://user:password@host:993/Folder`` (TLS from the start), or ``imap://...`` (plain, or
    upgraded with ``?starttls=1``); user and password are percent-encoded, the folder defaults to INBOX.
    ``after_import`` is done only once the message is committed: ``seen`` sets ``\\Seen``, ``move:Folder``
    moves it, ``none`` leaves it as it is.

    ``kind`` is ``inbox`` (mail to us, processed as customers' mail) or ``sent``: a rep's own Sent folder,
    whose mail to known customers is logged on their history as the rep's, as mail to a log address is. A Sent
    folder is only read, never changed: its ``after_import`` is ``none``, and its folder is named in the URL.

    ``start`` says where a folder read for the first time begins: ``all`` (every message in it), ``now`` (only
    messages arriving from now on) or a date ``YYYY-MM-DD`` (messages the server received on or after it). It
    defaults to ``all`` for an inbox and to ``now`` for a Sent folder, and is read once, when the source is
    first polled; a source under a new name starts again.
    """

    # Errors must not echo the input: a url carries a password.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str
    # The URL carries the password: kept out of repr (logs, tracebacks); ``Settings.masked`` masks it.
    url: str = Field(repr=False)
    mailbox: str | None = None
    kind: Literal["inbox", "sent"] = "inbox"
    after_import: str = "seen"
    start: str = "all"

    @model_validator(mode="before")
    @classmethod
    def _sent_folder_defaults(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("kind") == "sent":
            # What a rep expects of a newly connected Sent folder: untouched, and only new mail logged.
            return {"after_import": "none", "start": "now", **data}
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _IMAP_SOURCE_NAME.fullmatch(value):
            raise ValueError("an IMAP source name is 1-100 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("imap", "imaps"):
            raise ValueError("an IMAP source url starts with imap:// or imaps://")
        if not parts.hostname or not parts.username or parts.password is None:
            raise ValueError("an IMAP source url names the host, the user and the password")
        if parts.port == 0:  # (reading .port raises ValueError for a port out of range)
            raise ValueError("an IMAP source url has a port from 1 to 65535")
        options = parse_qs(parts.query)
        if set(options) - {"starttls"} or options.get("starttls", ["0"])[-1] not in ("0", "1"):
            raise ValueError("the only option of an IMAP source url is starttls=0|1")
        if parts.scheme == "imaps" and options.get("starttls", ["0"])[-1] == "1":
            raise ValueError("imaps:// is TLS from the start; starttls=1 goes with imap://")
        return value

    @field_validator("mailbox")
    @classmethod
    def _check_mailbox(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.count("@") != 1 or not all(value.split("@")):
            raise ValueError(f"not a mailbox address: {value!r}")
        return value.lower()

    @field_validator("kind")
    @classmethod
    def _check_sent_folder_is_named(cls, value: str, info: ValidationInfo) -> str:
        url = info.data.get("url")
        if value == "sent" and url is not None and not unquote(urlsplit(url).path.lstrip("/")):
            # INBOX, the default folder, is the one folder that surely is not the rep's sent mail.
            raise ValueError(
                f"IMAP source {info.data.get('name')!r} is a Sent folder (kind 'sent'): name the folder in "
                "the url, e.g. imaps://user:password@host/Sent"
            )
        return value

    @field_validator("after_import")
    @classmethod
    def _check_after_import(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("kind") == "sent" and value != "none":
            # A rep's Sent folder is theirs: a \Seen flag or a move would change what their mail client shows.
            raise ValueError(
                f"IMAP source {info.data.get('name')!r} is a Sent folder (kind 'sent'), which Centrala only "
                f"reads: after_import must be 'none' or left out, not {value!r}"
            )
        if value in ("seen", "none") or (value.startswith("move:") and value[len("move:"):].strip()):
            return value
        raise ValueError("after_import is 'seen', 'none' or 'move:<folder>'")

    @field_validator("start")
    @classmethod
    def _check_start(cls, value: str) -> str:
        if value in ("all", "now"):
            return value
        try:
            if _ISO_DATE.fullmatch(value):
                date.fromisoformat(value)
                return value
        except ValueError:
            pass
        raise ValueError(f"start is 'all', 'now' or a date YYYY-MM-DD, not {value!r}")

    @property
    def is_sent_folder(self) -> bool:
        """A rep's own Sent folder: its mail is the rep's, logged on customers' history, not acknowledged."""
        return self.kind == "sent"

    @property
    def start_date(self) -> date | None:
        """The day a folder read for the first time begins at, when ``start`` is a date."""
        return None if self.start in ("all", "now") else date.fromisoformat(self.start)

    @property
    def _parts(self) -> SplitResult:
        return urlsplit(self.url)

    @property
    def host(self) -> str:
        return self._parts.hostname or ""

    @property
    def port(self) -> int:
        return self._parts.port or (993 if self.use_tls else 143)

    @property
    def use_tls(self) -> bool:
        """TLS from the first byte (imaps://, RFC 8314 implicit TLS)."""
        return self._parts.scheme == "imaps"

    @property
    def starttls(self) -> bool:
        """Plain connection upgraded with STARTTLS before login (RFC 3501 §6.2.1)."""
        return parse_qs(self._parts.query).get("starttls", ["0"])[-1] == "1"

    @property
    def username(self) -> str:
        return unquote(self._parts.username or "")

    @property
    def password(self) -> str:
        return unquote(self._parts.password or "")

    @property
    def folder(self) -> str:
        """The folder to import from, as the server names it."""
        return unquote(self._parts.path.lstrip("/")) or "INBOX"

    @property
    def move_to(self) -> str | None:
        """The folder imported messages are moved to, when ``after_import`` is ``move:<folder>``."""
        return self.after_import[len("move:"):].strip() if self.after_import.startswith("move:") else None



class Settings(BaseSettings):
    """Effective configuration of one Centrala process."""

    # Errors must not echo the input: URLs (IMAP sources, the SMTP relay, the database) carry passwords.
    model_config = SettingsConfigDict(
        env_prefix="CENTRALA_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

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
    # Addresses reps BCC or forward their own mail to: it is logged on the customer's timeline, nobody answered.
    log_mailboxes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A customer's follow-up to a ticket closed at most this many days ago reopens it; later ones open a new,
    # linked ticket.
    reopen_within_days: int = 14
    max_message_bytes: int = 25 * 1024 * 1024
    smtp_max_connections: int = 200

    # IMAP folders to import from, as a JSON list: CENTRALA_IMAP_MAILBOXES='[{"name": "support",
    # "url": "imaps://user:pass@host/INBOX", "mailbox": "support@example.com", "after_import": "seen"}]';
    # a rep's Sent folder: {"name": "jana-sent", "url": "imaps://jana:pass@host/Sent", "kind": "sent"}.
    imap_mailboxes: list[ImapSource] = Field(default_factory=list)
    # RFC 2177: a server may log out a client idle for 30 minutes, so IDLE is renewed before that.
    imap_idle_renew_seconds: float = 29 * 60
    # How often a server without IDLE is asked for new mail.
    imap_poll_seconds: float = 60.0

    default_region: str = "CZ"

    # Twilio: webhooks are verified with the Auth Token against CENTRALA_PUBLIC_URL; recordings are downloaded
    # from twilio_api_host with the account's credentials. twilio_backend "fake" places no real calls (the
    # requests are only logged): for development and tests.
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_api_host: str = "api.twilio.com"
    twilio_backend: Literal["twilio", "fake"] = "twilio"
    # Our numbers, as a JSON list (see core.phone_lines.PhoneLine).
    phone_lines: list[PhoneLine] = Field(default_factory=list)
    # A missed call or voicemail asks for a call-back within the ticket's SLA response due; without a
    # running clock, within this many minutes.
    callback_within_minutes: int = Field(default=120, ge=1)
    # A call with no news for this long is looked up in Twilio's REST API (its final callback may be lost).
    call_reconcile_after_minutes: int = Field(default=30, ge=1)
    # An answered call with no open ticket of the caller's in its queue opens one (else it is only logged
    # on the contact's timeline).
    answered_call_opens_ticket: bool = True

    # How long a writer waits for a lock before giving up: SQLite's busy_timeout, PostgreSQL's lock_timeout.
    db_lock_timeout_ms: int = 5000

    queue_name: str = "centrala"
    workers: int = 1
    # Raw rows still unprocessed after this long are handed to the queue again by the sweeper.
    sweep_after_seconds: float = 60.0
    sweep_interval_seconds: float = 15.0
    # rq stops any job, a drain of inbound mail included, that runs longer than this; the rows a stopped drain
    # had reserved wait out their hold (sweep_after_seconds) and go to a later drain.
    job_timeout_seconds: int = 120
    # Pending raw e-mails a worker takes per transaction, and how long one drain job runs before it hands
    # the rest to a fresh job, so that sends and SLA checks queued behind it get their turn.
    ingest_batch_size: int = Field(default=50, ge=1, le=1000)
    ingest_drain_seconds: float = Field(default=5.0, gt=0)
    # A drain's write transaction begins no further message after this long (SQLite: the SMTP server's commits
    # wait for it).
    ingest_transaction_ms: int = Field(default=50, ge=1)
    # Each worker parses the batch a drain records next in a helper process of its own, on another core while
    # it records the current one (ingest.parse_ahead); off, the worker parses every message itself.
    ingest_parse_helper: bool = True

    log_level: str = "INFO"

    # GET /metrics (Prometheus) answers only requests with "Authorization: Bearer <this token>"; unset, it is
    # off (404). Counts read from the database and Redis are kept this many seconds between scrapes.
    metrics_token: SecretStr | None = None
    metrics_cache_seconds: float = Field(default=10.0, ge=0)

    # Retention. Closed tickets are archived (kept, left out of work lists) this many days after they closed;
    # the raw bytes of processed inbound e-mail are deleted this many days after they arrived (the parsed
    # interaction and the ledger row stay; quarantined and unprocessed mail is never deleted). None: never.
    archive_closed_after_days: int | None = Field(default=180, ge=1)
    raw_mail_retention_days: int | None = Field(default=None, ge=1)
    retention_interval_seconds: float = Field(default=3600.0, gt=0)

    # Outbound mail goes to this relay (smtp://user:pass@host:587?starttls=1, or smtps://... for TLS from the
    # start; user and password percent-encoded); unset, it is written to the Maildir var/outbox/.
    smtp_relay_url: str | None = None
    smtp_relay_timeout_seconds: float = 30.0
    # The display name on mail from our mailboxes: "Support" <support@example.com>.
    mail_from_name: str = "Support"
    # Custom templates: <dir>/<mailbox>/acknowledgement.<language>.txt, else the shipped ones.
    mail_template_dir: Path | None = None
    # Acknowledgements of new tickets: at most this many per recipient within the window, and one per ticket.
    ack_enabled: bool = True
    ack_max_per_recipient: int = Field(default=3, ge=0)
    ack_window_minutes: int = Field(default=60, ge=1)

    # Customer portal: sign-in links live this many minutes, sessions this many hours; dates are shown in
    # this time zone. Sign-in requests are limited per address and per client address within the window.
    portal_link_minutes: int = Field(default=10, ge=1, le=60)
    portal_session_hours: int = Field(default=12, ge=1, le=24 * 30)
    portal_timezone: str = "Europe/Prague"
    portal_rate_window_seconds: int = Field(default=900, ge=1)
    portal_sign_in_per_address: int = Field(default=5, ge=1)
    portal_sign_in_per_client: int = Field(default=30, ge=1)

    @field_validator("mailboxes", "log_mailboxes", mode="before")
    @classmethod
    def _split_mailboxes(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("mailboxes", "log_mailboxes")
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

    @field_validator("smtp_relay_url")
    @classmethod
    def _check_smtp_relay_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("the SMTP relay URL is smtp://[user:password@]host[:port] or smtps://...")
        return value

    @field_validator("mail_from_name")
    @classmethod
    def _check_mail_from_name(cls, value: str) -> str:
        # It becomes part of the From header of every message we send (CVE-2024-6923).
        if any(not char.isprintable() for char in value) or len(value) > 100:
            raise ValueError("the mail display name must be printable, on one line, at most 100 characters")
        return value.strip()

    @model_validator(mode="after")
    def _complete_imap_sources(self) -> Settings:
        names = [source.name for source in self.imap_mailboxes]
        if len(names) != len(set(names)):
            raise ValueError("IMAP source names must be unique")
        if self.imap_mailboxes and not self.mailboxes:
            raise ValueError("IMAP sources need a mailbox: set one per source or CENTRALA_MAILBOXES")
        self.imap_mailboxes = [
            source if source.mailbox else source.model_copy(update={"mailbox": self.mailboxes[0]})
            for source in self.imap_mailboxes
        ]
        return self

    @field_validator("twilio_api_host")
    @classmethod
    def _check_twilio_api_host(cls, value: str) -> str:
        host = value.strip().lower()
        if not re.fullmatch(r"[a-z0-9.-]+(:[0-9]{1,5})?", host):
            raise ValueError("the Twilio API host is a host name, optionally with :port")
        return host

    @model_validator(mode="after")
    def _check_phone_lines(self) -> Settings:
        numbers = [line.number for line in self.phone_lines]
        if len(numbers) != len(set(numbers)):
            raise ValueError("each phone line number may appear once")
        return self

    def phone_line(self, number: str | None) -> PhoneLine | None:
        """The configured line for our number ``number`` (E.164), if any."""
        return next((line for line in self.phone_lines if line.number == number), None)

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        if self.environment == "production":
            if self.secret_key.get_secret_value() == PLACEHOLDER_SECRET or len(self.secret_key) < 32:
                raise ConfigurationError("CENTRALA_SECRET_KEY must be set to 32+ random characters in production")
            if not self.database_url:
                raise ConfigurationError("CENTRALA_DATABASE_URL must be set in production")
            if not self.redis_url:
                raise ConfigurationError("CENTRALA_REDIS_URL must be set in production")
            for source in self.imap_mailboxes:
                if not (source.use_tls or source.starttls) and source.host not in _LOOPBACK_HOSTS:
                    raise ConfigurationError(
                        f"IMAP source {source.name!r} would send its password in clear text: "
                        "use imaps:// or ?starttls=1 in production"
                    )
        return self

    @property
    def public_url_is_https(self) -> bool:
        """Whether the public address is served over TLS: the portal then asks for HSTS."""
        return urlsplit(self.public_url).scheme == "https"

    @property
    def public_origin(self) -> str:
        """``scheme://host[:port]`` of the public URL, as browsers send it in the Origin header."""
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}".lower()

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

    @property
    def outbox_dir(self) -> Path:
        """The Maildir outbound mail is written to when no SMTP relay is configured."""
        return (self.var_dir / "outbox").resolve()

    def masked(self) -> dict[str, object]:
        """The configuration as plain values, secrets and URL passwords masked."""
        shown = {name: _masked_value(value) for name, value in self.model_dump().items()}
        shown["effective_database_url"] = _mask_url_password(self.effective_database_url)
        return shown


def _masked_value(value: object) -> object:
    """``value`` with secrets and URL passwords masked, nested lists and mappings (IMAP sources) included."""
    if isinstance(value, SecretStr):
        return "********"
    if isinstance(value, str) and "://" in value and "@" in value:
        return _mask_url_password(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: _masked_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked_value(item) for item in value]
    return value


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
