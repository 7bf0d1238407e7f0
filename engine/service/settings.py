"""The service's settings: one typed object, built at the edge from a config file and
environment variables (CAREPATH_*, nested with `__`), and passed down. A bad value is reported
with its key; nothing below the entry point reads the environment.

Example config file (YAML):

    db: postgresql://carepath@db/carepath
    pathways: /etc/carepath/pathways
    host: 0.0.0.0
    port: 8080
    default_timezone: Europe/London
    holidays: [2026-12-25, 2026-12-28]
    tokens:
      - name: adt-feed
        role: ingest
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    adapters:
      default: console
      actions: {book_follow_up: fhir, escalate: email}
    fhir: {base_url: https://fhir.example.org/r4}
    smtp: {host: smtp.example.org, port: 25, sender: carepath@example.org}
    role_addresses: {hf_nurse: hf-nurses@example.org}
    mllp: {host: 0.0.0.0, port: 2575}
"""

from __future__ import annotations

import hashlib
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import CarepathError
from engine.runtime import SNAPSHOT_EVERY


class Role(StrEnum):
    INGEST = "ingest"  # post events
    CLINICIAN = "clinician"  # read patients' pathways and instances
    AUTHOR = "author"  # load pathways
    AUDITOR = "auditor"  # read-only: audit, replay


class Token(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 hex of the token")


class MllpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(2575, ge=0, le=65535)


class FhirSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str
    timeout_seconds: float = 10.0


class SmtpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "carepath@localhost"


class AdapterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str = "console"
    actions: dict[str, str] = Field(default_factory=dict)


class ConfigError(CarepathError):
    """The service's configuration is invalid (the message names the key)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CAREPATH_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Path("data")
    db: str | None = None  # default: SQLite under data_dir
    pathways: Path = Path("pathways")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # the zone of HL7 v2 timestamps without an offset and of FHIR dates without a time
    default_timezone: str = "UTC"
    holidays: list[date] = Field(default_factory=list)
    tokens: list[Token] = Field(default_factory=list)
    insecure_dev: bool = False
    adapters: AdapterSettings = Field(default_factory=AdapterSettings)
    fhir: FhirSettings | None = None
    smtp: SmtpSettings | None = None
    role_addresses: dict[str, str] = Field(default_factory=dict)
    mllp: MllpSettings | None = None
    dispatch: bool = True  # run the outbox dispatcher in this process
    prefect_home: Path | None = None  # embedded Prefect's home; default: <data_dir>/prefect
    batch_size: int = Field(500, ge=1)
    # inputs between snapshots of the instance states: a restart after a crash re-decides at
    # most this many; a clean stop always takes one
    snapshot_every: int = Field(SNAPSHOT_EVERY, ge=1)
    dispatch_batch: int = Field(500, ge=1)
    dispatch_interval_seconds: float = Field(1.0, gt=0)
    timer_interval_seconds: float = Field(1.0, gt=0)
    # -- limits: bounded work under load and hostile input (docs/operations.md) --
    # events queued for or being decided by the single writer; past it, HTTP 503 with
    # Retry-After and HL7 `AR` ("send again later")
    max_inflight_events: int = Field(5_000, ge=1)
    # how long a request may wait (to be read, or in the writer's queue) before new ones are
    # answered "send again later": what keeps the answers of those taken fast under overload
    max_queue_seconds: float = Field(0.25, gt=0)
    # what Retry-After says, in seconds
    retry_after_seconds: int = Field(1, ge=1)
    # the largest request body taken (a whole-patient FHIR Bundle fits); past it, HTTP 413
    max_request_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    mllp_max_frame_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    mllp_idle_timeout_seconds: float = Field(30.0, gt=0)
    mllp_max_connections: int = Field(64, ge=1)
    # SIGTERM: stop intake at once, finish or refuse what is in flight, snapshot, exit 0,
    # all within this
    shutdown_grace_seconds: float = Field(20.0, gt=0)
    # an event that occurred further in the future than this is refused (the sender's clock
    # is wrong, or the time is)
    clock_skew_seconds: float = Field(300.0, ge=0)

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not a time zone name such as 'Europe/London'") from None
        return value

    @property
    def store_url(self) -> str:
        from engine.store import default_url

        return self.db or default_url(self.data_dir)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.default_timezone)

    def role_of(self, token: str) -> Role | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        for known in self.tokens:
            if _equal(known.sha256, digest):
                return known.role
        return None


def _equal(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a, b)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the config file (if any), then environment variables, then `overrides`
    (the command line). Raises ConfigError naming the bad key."""
    values: dict[str, Any] = {}
    if config is not None:
        try:
            loaded = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{config}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config}: the config file must be a mapping of settings")
        values.update(loaded)
    try:
        from_env = Settings()
        values.update(from_env.model_dump(include=from_env.model_fields_set))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


def hash_token(token: str) -> str:
    """The sha256 to put in the config file for a token."""
    return hashlib.sha256(token.encode()).hexdigest()
