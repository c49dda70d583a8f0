"""Configuration: one TOML file, validated once at start-up into frozen settings.

Every key is documented in ``config/crmcomms.example.toml``. Unknown keys and bad
values raise :class:`ConfigError` whose message names the dotted key path.
Secrets may be given inline, through a ``*_file`` key (the file's content, stripped)
or through an environment variable ``CRMCOMMS_<SECTION>_<KEY>`` (for mailboxes
``CRMCOMMS_MAILBOX_<NAME>_PASSWORD``); the environment wins over the file. They are
held as :class:`~pydantic.SecretStr` (the AMI secret, mailbox passwords, the database
and CDR URLs, which may hold a password, the URL signing key): a repr, a log line or
``check-config`` shows ``**********``; the code that uses one calls
``.get_secret_value()`` at the last moment.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.wrapup import DEFAULT_DISPOSITIONS

DEFAULT_CONFIG = Path("config/crmcomms.example.toml")

_HOSTNAME = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_ADDRESS = re.compile(r"[^@\s\x00-\x1f\x7f<>,;\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]{2,}")


def _host(value: str) -> str:
    """A host name or an IP address."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.fullmatch(value):
            raise ValueError(f"{value!r} is no host name or IP address") from None
    return value


def _address(value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise ValueError(f"{value!r} is no e-mail address")
    return value


Host = Annotated[str, AfterValidator(_host)]
EmailAddressText = Annotated[str, AfterValidator(_address)]


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneralSettings(_Section):
    """Region for phone numbers, where data lives, logging and UI language."""

    default_region: str = "DE"
    data_dir: Path = Path("data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    language: Literal["en", "de"] = "en"

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r} (use an ISO 3166 code such as DE)")
        return region


class DatabaseSettings(_Section):
    """SQLAlchemy async URL (a secret: it may hold the password); empty means SQLite in
    the data dir."""

    url: SecretStr = SecretStr("")

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url and not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value


class HttpSettings(_Section):
    """Where the web server listens and how long login tokens live."""

    host: Host = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    token_ttl_hours: Annotated[int, Field(ge=1, le=24 * 365)] = 12
    # reverse proxies whose X-Forwarded-For names the real client (addresses or networks)
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()
    # failed logins counted per user name and per client address over a sliding window
    login_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 900
    login_failures_per_user: Annotated[int, Field(ge=1, le=10_000)] = 10
    login_failures_per_address: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    # slow clients: the head of a request within this time, at most this many connections
    header_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 20.0
    max_connections: Annotated[int, Field(ge=16, le=1_000_000)] = 4096
    # at most this many connections from one client address (trusted proxies exempt)
    max_connections_per_address: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    # a request body must arrive within this time (a client trickling one is cut off)
    body_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # an open websocket re-checks its login token this often (a logout elsewhere)
    session_recheck_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # the key signing media URLs and websocket tickets ("": a key file in the data dir)
    signing_key: SecretStr = SecretStr("")
    signing_key_file: Path | None = None


class LookupSettings(_Section):
    """Caller lookup: exact E.164 first, then the last ``suffix_digits`` digits (0: off)."""

    suffix_digits: Annotated[int, Field(ge=0, le=15)] = 8


class WrapupSettings(_Section):
    """Wrap-up after a call: the disposition codes agents choose from, and how long an
    ended screen pop stays open (``fold_after_seconds``, 0: until closed by hand)."""

    dispositions: tuple[Annotated[str, Field(min_length=1, max_length=40)], ...] = (
        DEFAULT_DISPOSITIONS
    )
    fold_after_seconds: Annotated[int, Field(ge=0, le=3600)] = 60

    @field_validator("dispositions")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("must list at least one code, each once")
        return value


_CLI_NUMBER = re.compile(r"\+?[0-9]{2,20}")
_CLI_NAME_FORBIDDEN = frozenset('"\\,()[]')
"""Characters Asterisk's AMI ``Variable:`` header parsing would split or strip."""


class AmiSettings(_Section):
    """Asterisk Manager Interface connection and how agents are recognised."""

    enabled: bool = False
    host: Host = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5038
    username: str = "crm"
    secret: SecretStr = SecretStr("")
    secret_file: Path | None = None
    agent_channel_patterns: tuple[str, ...] = ("PJSIP/{ext}-", "SIP/{ext}-")
    extension_pattern: str = "[0-9]{1,15}"
    recordings_dir: Path = Path("/var/spool/asterisk/monitor")
    originate_context: str = "from-internal"
    originate_timeout: Annotated[int, Field(ge=5, le=300)] = 30
    outbound_callerid: str = ""
    outbound_callerid_name: Annotated[str, Field(max_length=64)] = ""
    transfer_context: str = ""  # transfers to extensions; "" = originate_context
    queue_context: str = "crm-queues"  # transfers to queues: Exten is the queue's name
    hold_context: str = "crm-hold"  # hold: s = music on hold, agent = silence
    # a black-holed link is found within ping_interval + ping_timeout (8 s)
    ping_interval: Annotated[float, Field(gt=0, le=600)] = 5.0
    ping_timeout: Annotated[float, Field(gt=0, le=600)] = 3.0
    reconnect_max_delay: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @field_validator("agent_channel_patterns")
    @classmethod
    def _has_placeholder(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if pattern.count("{ext}") != 1:
                raise ValueError(f"pattern {pattern!r} must contain {{ext}} exactly once")
        return value

    @field_validator("extension_pattern")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @field_validator("outbound_callerid")
    @classmethod
    def _cli_number(cls, value: str) -> str:
        if value and not _CLI_NUMBER.fullmatch(value):
            raise ValueError("must be a phone number of digits, optionally with a leading +")
        return value

    @field_validator("outbound_callerid_name")
    @classmethod
    def _cli_name(cls, value: str) -> str:
        if any(c in _CLI_NAME_FORBIDDEN or not c.isprintable() for c in value):
            raise ValueError("must not contain quotes, backslashes, commas or brackets")
        return value


_CDR_SCHEMES = (
    "postgresql://",
    "postgresql+asyncpg://",
    "postgres://",
    "mysql://",
    "mysql+aiomysql://",
    "mariadb://",
    "mariadb+aiomysql://",
)


class CdrSettings(_Section):
    """Asterisk's call detail records, read to fill in what the AMI link missed.

    Either ``csv`` (a cdr_custom file with the standard ``cdr`` columns) or
    ``url`` + ``table`` (the SQL table Asterisk writes). Times without a zone
    in the file or table are read in ``timezone`` (UTC by default).
    """

    csv: str = ""
    url: SecretStr = SecretStr("")  # it may hold the password
    url_file: Path | None = None
    table: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")] = "cdr"
    timezone: str = "UTC"
    margin_seconds: Annotated[int, Field(ge=0, le=24 * 3600)] = 120

    @field_validator("url")
    @classmethod
    def _sql_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url and not url.startswith(_CDR_SCHEMES):
            raise ValueError("must start with postgresql://, mysql:// or mariadb://")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use e.g. UTC or Europe/Berlin)"
            ) from exc
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CdrSettings:
        if self.csv and (self.url.get_secret_value() or self.url_file):
            raise ValueError("csv and url are exclusive: give one CDR source")
        return self

    @property
    def configured(self) -> bool:
        """A CDR source is configured (a file or an SQL table)."""
        return bool(self.csv or self.url.get_secret_value())


class MailboxSettings(_Section):
    """One mailbox mirrored over IMAP and used for sending over SMTP."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")]
    address: EmailAddressText
    display_name: Annotated[str, Field(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")] = ""
    imap_host: Host = "127.0.0.1"
    imap_port: Annotated[int, Field(ge=1, le=65535)] = 993
    imap_tls: Literal["implicit", "starttls", "none"] = "implicit"
    username: str = ""
    password: SecretStr = SecretStr("")
    password_file: Path | None = None
    folders: tuple[str, ...] = ()
    smtp_host: Host = "127.0.0.1"  # required in a config file (load_settings)
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    smtp_tls: Literal["implicit", "starttls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_password_file: Path | None = None
    poll_interval: Annotated[float, Field(gt=0, le=3600)] = 60.0
    idle_timeout: Annotated[float, Field(ge=10, le=29 * 60)] = 25 * 60.0
    idle_connections: Annotated[int, Field(ge=0, le=50)] = 4
    folder_poll_interval: Annotated[float, Field(ge=0.2, le=3600)] = 1.0
    create_unknown_contacts: bool = False
    # who of the agents reads its mail (supervisors and admins read all): "team" every
    # agent (a shared inbox), "addressed" the agents in To/Cc and the sender, "linked"
    # every agent when the message is linked to a contact, else as "addressed"
    visibility: Literal["linked", "team", "addressed"] = "linked"
    max_attachment_bytes: Annotated[int, Field(ge=0)] = 25 * 2**20


class WallSettings(_Section):
    """The supervisor wall's figures."""

    service_level_seconds: Annotated[int, Field(ge=1, le=3600)] = 20


class RetentionSettings(_Section):
    """How long data is kept; applied once a day (0 keeps it forever)."""

    tasks_done_days: Annotated[int, Field(ge=0, le=36500)] = 365
    mail_bodies_days: Annotated[int, Field(ge=0, le=36500)] = 0
    calls_days: Annotated[int, Field(ge=0, le=36500)] = 0


class Settings(_Section):
    """The whole validated configuration."""

    general: GeneralSettings = GeneralSettings()
    database: DatabaseSettings = DatabaseSettings()
    http: HttpSettings = HttpSettings()
    lookup: LookupSettings = LookupSettings()
    wrapup: WrapupSettings = WrapupSettings()
    ami: AmiSettings = AmiSettings()
    cdr: CdrSettings = CdrSettings()
    wall: WallSettings = WallSettings()
    retention: RetentionSettings = RetentionSettings()
    mailboxes: tuple[MailboxSettings, ...] = ()

    @property
    def database_url(self) -> str:
        """The configured URL, or SQLite in the data dir."""
        if url := self.database.url.get_secret_value():
            return url
        path = (self.general.data_dir / "crmcomms.sqlite3").resolve()
        return f"sqlite+aiosqlite:///{path}"


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, resolve secrets in and validate the TOML file at ``path``."""
    path = path or DEFAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    settings = parse_settings(raw, os.environ if env is None else env, base=path.parent)
    for index, box in enumerate(settings.mailboxes):
        if "smtp_host" not in box.model_fields_set:
            raise ConfigError(
                f"mailboxes.{index}.smtp_host: required (the SMTP server {box.name} sends through)"
            )
    return relative_to(settings, path.parent)


def relative_to(settings: Settings, base: Path) -> Settings:
    """Relative paths (data dir, recordings, CDR file) taken from ``base``, the config's dir."""

    def at(path: Path) -> Path:
        return path if path.is_absolute() else base / path

    general = settings.general.model_copy(update={"data_dir": at(settings.general.data_dir)})
    ami = settings.ami.model_copy(update={"recordings_dir": at(settings.ami.recordings_dir)})
    csv = str(at(Path(settings.cdr.csv))) if settings.cdr.csv else ""
    cdr = settings.cdr.model_copy(update={"csv": csv})
    return settings.model_copy(update={"general": general, "ami": ami, "cdr": cdr})


def parse_settings(raw: dict[str, Any], env: Mapping[str, str], base: Path = Path()) -> Settings:
    """Validate an already parsed TOML document; secrets are resolved from files and env."""
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    return _with_secrets(settings, env, base)


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"{key}: {reason}")
    return "; ".join(lines)


def _read_secret(key: str, file: Path | None, base: Path) -> str | None:
    if file is None:
        return None
    target = file if file.is_absolute() else base / file
    try:
        return target.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {target}: {exc.strerror}") from exc


def _with_secrets(settings: Settings, env: Mapping[str, str], base: Path) -> Settings:
    ami_secret = (
        env.get("CRMCOMMS_AMI_SECRET")
        or _read_secret("ami.secret_file", settings.ami.secret_file, base)
        or settings.ami.secret.get_secret_value()
    )
    signing_key = (
        env.get("CRMCOMMS_HTTP_SIGNING_KEY")
        or _read_secret("http.signing_key_file", settings.http.signing_key_file, base)
        or settings.http.signing_key.get_secret_value()
    )
    mailboxes = tuple(
        _mailbox_with_secrets(index, box, env, base) for index, box in enumerate(settings.mailboxes)
    )
    database_url = env.get("CRMCOMMS_DATABASE_URL") or settings.database.url.get_secret_value()
    return settings.model_copy(
        update={
            "ami": settings.ami.model_copy(update={"secret": SecretStr(ami_secret)}),
            "http": settings.http.model_copy(update={"signing_key": SecretStr(signing_key)}),
            "mailboxes": mailboxes,
            "database": settings.database.model_copy(update={"url": SecretStr(database_url)}),
            "cdr": _cdr_with_secrets(settings.cdr, env, base),
        }
    )


def _cdr_with_secrets(cdr: CdrSettings, env: Mapping[str, str], base: Path) -> CdrSettings:
    url = (
        env.get("CRMCOMMS_CDR_URL")
        or _read_secret("cdr.url_file", cdr.url_file, base)
        or cdr.url.get_secret_value()
    )
    if url and not url.startswith(_CDR_SCHEMES):
        raise ConfigError("cdr.url: must start with postgresql://, mysql:// or mariadb://")
    if url and cdr.csv:
        raise ConfigError("cdr: csv and url are exclusive: give one CDR source")
    return cdr.model_copy(update={"url": SecretStr(url)})


def _mailbox_with_secrets(
    index: int, box: MailboxSettings, env: Mapping[str, str], base: Path
) -> MailboxSettings:
    prefix = f"CRMCOMMS_MAILBOX_{box.name.upper().replace('-', '_')}"
    password = (
        env.get(f"{prefix}_PASSWORD")
        or _read_secret(f"mailboxes.{index}.password_file", box.password_file, base)
        or box.password.get_secret_value()
    )
    smtp_password = (
        env.get(f"{prefix}_SMTP_PASSWORD")
        or _read_secret(f"mailboxes.{index}.smtp_password_file", box.smtp_password_file, base)
        or box.smtp_password.get_secret_value()
        or password
    )
    return box.model_copy(
        update={"password": SecretStr(password), "smtp_password": SecretStr(smtp_password)}
    )
