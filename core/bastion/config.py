"""Settings: defaults, then the data directory's bastion.toml, then BASTION_* variables."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

CONFIG_FILE_NAME = "bastion.toml"
ENV_PREFIX = "BASTION_"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Everything an operator can configure. Field names map to BASTION_<NAME> variables."""

    data_dir: Path = Path("bastion-data")
    database_url: str = ""
    log_level: str = "INFO"
    # How many reverse proxies in front of Bastion to trust for X-Forwarded-* headers,
    # and the addresses or networks they connect from (comma separated).
    trusted_proxy_count: int = 0
    trusted_proxies: str = "127.0.0.1, ::1"
    # "auto" marks cookies Secure when the request came over HTTPS.
    secure_cookies: str = "auto"
    session_idle_minutes: int = 30
    session_absolute_hours: int = 12
    # Argon2id cost (RFC 9106 second recommended option by default).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    password_min_length: int = 12
    # Sensitive actions (role changes, MFA reset, exports, tokens) need a sign-in or
    # re-authentication this recent.
    reauth_minutes: int = 10
    # The address users reach Bastion at (https://crm.example.org); links in emails are
    # built from it, never from a request's Host header.
    public_url: str = ""
    # Outgoing mail for password resets and invitations; nothing is sent without smtp_host.
    smtp_host: str = ""
    smtp_port: int = 587
    # starttls, tls (implicit, port 465) or none (only for a relay on this machine)
    smtp_security: str = "starttls"
    smtp_username: str = ""
    smtp_password: str = ""
    mail_from: str = ""
    password_reset_minutes: int = 30
    invitation_hours: int = 72
    # Country whose numbering plan applies to phone numbers typed without "+" (ISO
    # 3166 code such as "DE" or "US"); empty: every number needs its country code.
    phone_region: str = ""
    # Currency of amounts entered without a code, unless the field names its own.
    default_currency: str = "EUR"
    # "thread": each server process keeps the search index up to date in a background
    # thread (one of them writes at a time); "off": only `bastion search reindex` does.
    search_indexer: str = "thread"
    # Audit entries older than this many days may be moved to signed archive files by
    # `bastion audit archive` (0: keep every entry in the database).
    audit_retention_days: int = 0
    # Also send each audit checkpoint to syslog: "/dev/log" or "host:port" (empty: don't).
    audit_syslog: str = ""
    # The master key file that wraps the data encryption keys; empty means
    # <data_dir>/secrets/master.key. Unused when BASTION_MASTER_KEY or a plugin supplies it.
    master_key_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "bastion.db"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path.resolve()}"

    @property
    def mail_enabled(self) -> bool:
        return bool(self.smtp_host)

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


def _coerce(name: str, kind: type, raw: Any) -> Any:
    try:
        if kind is Path:
            return Path(raw).expanduser()
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"The setting {name} has the value {raw!r}, which is not a valid {kind.__name__}."
        ) from None


#: INSERT/UPDATE/DELETE ... RETURNING arrived in SQLite 3.35 (2021).
MIN_SQLITE = (3, 35)


def _validate(settings: Settings) -> Settings:
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(
            f"log_level is {settings.log_level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL."
        )
    if settings.secure_cookies not in {"auto", "always", "never"}:
        raise ConfigError(
            f"secure_cookies is {settings.secure_cookies!r}; use auto, always or never."
        )
    url = settings.database_url
    if url and not (url.startswith("sqlite") or url.startswith("postgresql")):
        raise ConfigError(
            "database_url must start with sqlite:// or postgresql+psycopg://; "
            f"{url.split(':', 1)[0]!r} databases are not supported."
        )
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        raise ConfigError(
            "database_url must name the psycopg driver: write postgresql+psycopg://..."
        )
    if settings.is_sqlite and sqlite3.sqlite_version_info < MIN_SQLITE:
        raise ConfigError(
            f"This Python uses SQLite {sqlite3.sqlite_version}; Bastion needs "
            f"{'.'.join(map(str, MIN_SQLITE))} or newer (for RETURNING). Use a Python built "
            "against a newer SQLite, or PostgreSQL (database_url)."
        )
    if settings.search_indexer not in {"thread", "off"}:
        raise ConfigError(f"search_indexer is {settings.search_indexer!r}; use thread or off.")
    if settings.password_min_length < 8:
        raise ConfigError("password_min_length cannot be below 8.")
    if settings.smtp_security not in {"starttls", "tls", "none"}:
        raise ConfigError(
            f"smtp_security is {settings.smtp_security!r}; use starttls, tls or none."
        )
    if settings.smtp_host and not (settings.public_url and settings.mail_from):
        raise ConfigError(
            "smtp_host is set, so public_url (such as https://crm.example.org) and mail_from "
            "must be set too: emailed links are built from public_url."
        )
    if settings.public_url and not settings.public_url.startswith(("https://", "http://")):
        raise ConfigError(f"public_url {settings.public_url!r} must start with https://.")
    if settings.trusted_proxy_count < 0:
        raise ConfigError("trusted_proxy_count cannot be negative.")
    from bastion.web.proxies import parse_networks

    try:
        parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"trusted_proxies: {exc}; list addresses such as 127.0.0.1.") from None
    for name in (
        "session_idle_minutes",
        "session_absolute_hours",
        "reauth_minutes",
        "password_reset_minutes",
        "invitation_hours",
        "smtp_port",
        "argon2_time_cost",
        "argon2_memory_kib",
        "argon2_parallelism",
    ):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1.")
    return settings


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """BASTION_* variables that name no setting: most likely misspelled."""
    known = {f"{ENV_PREFIX}{f.name.upper()}" for f in dataclasses.fields(Settings)}
    known.discard(f"{ENV_PREFIX}EXTRA")
    # The master key itself is deliberately not a setting (settings get printed).
    known.add(f"{ENV_PREFIX}MASTER_KEY")
    # The test suite's own variables are not settings of an installation.
    return sorted(
        name
        for name in environ
        if name.startswith(ENV_PREFIX)
        and name not in known
        and not name.startswith("BASTION_TEST_")
    )


def load_settings(
    data_dir: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, the config file, the environment and overrides."""
    environ = dict(os.environ if environ is None else environ)
    hints = get_type_hints(Settings)
    known = {f.name for f in dataclasses.fields(Settings)} - {"extra"}

    if data_dir is None:
        data_dir = environ.get(f"{ENV_PREFIX}DATA_DIR") or Settings.data_dir
    base = Path(data_dir).expanduser()

    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    config_path = base / CONFIG_FILE_NAME
    if config_path.is_file():
        try:
            parsed = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path} is not valid TOML: {exc}.") from None
        for key, raw in parsed.items():
            if key == "data_dir":
                raise ConfigError(f"{config_path} cannot move the data directory itself.")
            if key in known:
                values[key] = _coerce(key, hints[key], raw)
            else:
                extra[key] = raw

    for key in known:
        raw = environ.get(f"{ENV_PREFIX}{key.upper()}")
        if raw is not None and key != "data_dir":
            values[key] = _coerce(f"{ENV_PREFIX}{key.upper()}", hints[key], raw)

    for key, raw in (overrides or {}).items():
        if key not in known:
            raise ConfigError(f"Unknown setting {key!r}.")
        values[key] = _coerce(key, hints[key], raw)

    values["data_dir"] = base
    return _validate(Settings(**values, extra=extra))
