"""Process configuration: every environment variable, read once in main() into a frozen object."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

from caracal.redis_client import cluster_nodes, is_cluster_url

T = TypeVar("T")

MODES = ("dev", "rc", "stable")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "text")
TRACE_EXPORTERS = ("none", "console", "otlp")
_KEK_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
# Fields whose values never appear in a repr or a log line.
_SECRET_FIELD = re.compile(r"token|key|kek|bearer|secret|password")
_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.\-]*://[^:/@]*:)[^@]*@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
_SECRET_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "CARACAL_ADMIN_TOKEN",
    "CARACAL_KEK",
    "STREAMS_HMAC_KEY",
    "ZONE_KEK",
    "ZONE_KEK_OLD",
    "CARACAL_BUNDLE_SIGNING_KEY",
    "AUDIT_HMAC_KEY",
)


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***` (fit for logs and reprs)."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", url))


def _shown(name: str, value: object) -> str:
    if isinstance(value, str) and name.endswith("_url"):
        return repr(mask_url(value))
    if _SECRET_FIELD.search(name) and value is not None and not isinstance(value, KeyRing):
        return "'***'"
    return repr(value)


class SettingsError(ValueError):
    """A variable has a value the process cannot run with; the message names it."""


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Key-encryption keys by id; the first one wraps new DEKs, all of them unwrap."""

    keys: tuple[tuple[str, bytes], ...] = ()

    @property
    def active(self) -> tuple[str, bytes] | None:
        return self.keys[0] if self.keys else None

    def get(self, key_id: str) -> bytes | None:
        return next((key for kid, key in self.keys if kid == key_id), None)

    def __repr__(self) -> str:
        return f"KeyRing(ids={[kid for kid, _ in self.keys]})"  # ids only: the keys are secrets


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    port: int = 3000
    admin_token: str | None = None
    local_bootstrap_enabled: bool = False
    db_pool_max: int = 20
    db_pool_timeout_ms: int = 500
    api_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    auth_cache_ttl_ms: int = 1000
    redis_request_timeout_ms: int = 50
    db_statement_timeout_ms: int = 15000
    db_idle_tx_timeout_ms: int = 30000
    outbox_poll_ms: int = 250
    outbox_batch: int = 32
    outbox_batch_max: int = 512
    outbox_max_attempts: int = 100
    outbox_stream_maxlen: int = 100_000
    outbox_retention_hours: int = 168
    outbox_ready_dead_max: int = 0
    outbox_wait_replicas: int = 0
    outbox_wait_timeout_ms: int = 1000
    shutdown_timeout_ms: int = 15000
    kek: KeyRing = field(default_factory=KeyRing)
    streams_hmac_key: bytes | None = None
    # the admin audit chain's keys by id, the first sealing (docs/audit-chain.md, "Key rotation");
    # None when unset, which only dev mode allows
    audit_hmac_key: KeyRing | None = None
    zone_kek: bytes | None = None  # optional until providers hold secrets; caracal.sealing says so
    zone_kek_old: bytes | None = None  # only `caracal keys rotate-zone-kek` reads it: the key to leave
    mode: str = "stable"
    log_level: str = "info"
    log_format: str = "json"  # one JSON object per line; `caracal up` asks its children for text
    body_limit_bytes: int = 1_048_576
    v1_rate_limit_per_min: int = 600
    max_resources_per_zone: int = 100_000  # 0 disables the quota
    dcr_max_live_per_zone: int = 1000  # live DCR applications a zone may hold (CONTRACT.md §7.1)
    control_audience: str = "caracal-control"
    auth_fail_limit_per_min: int = 60
    ready_rate_limit_per_min: int = 120
    trust_proxy: bool = False
    trust_proxy_hops: int = 1
    metrics_bearer: str | None = None
    worker_id: str = ""
    data_dir: Path = Path(".caracal")
    reaper_interval_ms: int = 60_000
    otel_traces_exporter: str = "none"
    oauth_token_timeout_ms: int = 15_000  # the whole token exchange with a provider
    oauth_token_ca_file: str | None = None  # CAs for token endpoints; certifi's bundle when unset
    oauth_allow_loopback_token_hosts: bool = False  # tests only: refused outside dev mode
    bundle_signing_key: bytes | None = None  # Ed25519 seed of policy bundles; their routes need it
    sts_url: str | None = None  # where activation status asks the STS what it loaded
    rego_workers: int = 2  # Rego worker processes per API process (started on first use)
    rego_timeout_ms: int = 2000  # per parse or evaluation; the worker is killed past it
    rego_max_pending: int = 64  # Rego calls waiting or running per API process; then 503
    policy_max_bytes: int = 262_144  # larger policy content is 422 invalid_rego policy_too_large

    def __repr__(self) -> str:
        """Every field, secrets hidden by name (a field added later is covered without an edit)."""
        shown = ", ".join(f"{f.name}={_shown(f.name, getattr(self, f.name))}" for f in fields(self))
        return f"Settings({shown})"

    @property
    def dev(self) -> bool:
        return self.mode == "dev"

    def require_servers(self) -> tuple[str, str]:
        """The URLs every service needs; `caracal up` fills them before services start."""
        if not self.database_url:
            raise SettingsError("DATABASE_URL: required (postgresql://user:pass@host:port/db)")
        if not self.redis_url:
            raise SettingsError("REDIS_URL: required (redis://host:port/0)")
        return self.database_url, self.redis_url


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment; raises SettingsError naming the first bad variable."""
    env = _with_secret_files(dict(os.environ if env is None else env))
    reader = _Reader(env)
    settings = Settings(
        database_url=_postgres_url(reader.text("DATABASE_URL")),
        redis_url=_redis_url(reader.text("REDIS_URL")),
        port=reader.integer("PORT", 3000, 1, 65535),
        admin_token=_admin_token(reader.text("CARACAL_ADMIN_TOKEN")),
        local_bootstrap_enabled=reader.boolean("CARACAL_LOCAL_BOOTSTRAP_ENABLED", False),
        db_pool_max=reader.integer("CARACAL_DB_POOL_MAX", 20, 1, 1000),
        db_pool_timeout_ms=reader.integer("CARACAL_DB_POOL_TIMEOUT_MS", 500, 1, 60_000),
        api_workers=reader.integer("CARACAL_API_WORKERS", os.cpu_count() or 1, 1, 256),
        auth_cache_ttl_ms=reader.integer("CARACAL_AUTH_CACHE_TTL_MS", 1000, 0, 60_000),
        redis_request_timeout_ms=reader.integer("CARACAL_REDIS_REQUEST_TIMEOUT_MS", 50, 1, 10_000),
        db_statement_timeout_ms=reader.integer("CARACAL_DB_STATEMENT_TIMEOUT_MS", 15000, 0, 3_600_000),
        db_idle_tx_timeout_ms=reader.integer("CARACAL_DB_IDLE_TX_TIMEOUT_MS", 30000, 0, 3_600_000),
        outbox_poll_ms=reader.integer("CARACAL_OUTBOX_POLL_MS", 250, 10, 600_000),
        outbox_batch=reader.integer("CARACAL_OUTBOX_BATCH", 32, 1, 10_000),
        outbox_batch_max=reader.integer("CARACAL_OUTBOX_BATCH_MAX", 512, 1, 10_000),
        outbox_max_attempts=reader.integer("CARACAL_OUTBOX_MAX_ATTEMPTS", 100, 1, 1_000_000),
        outbox_stream_maxlen=reader.integer("CARACAL_OUTBOX_STREAM_MAXLEN", 100_000, 0, 10**9),
        outbox_retention_hours=reader.integer("CARACAL_OUTBOX_RETENTION_HOURS", 168, 0, 100_000),
        outbox_ready_dead_max=reader.integer("CARACAL_OUTBOX_READY_DEAD_MAX", 0, 0, 10**9),
        outbox_wait_replicas=reader.integer("CARACAL_OUTBOX_WAIT_REPLICAS", 0, 0, 16),
        outbox_wait_timeout_ms=reader.integer("CARACAL_OUTBOX_WAIT_TIMEOUT_MS", 1000, 1, 60_000),
        shutdown_timeout_ms=reader.integer("CARACAL_SHUTDOWN_TIMEOUT_MS", 15000, 0, 3_600_000),
        kek=reader.parsed("CARACAL_KEK", parse_kek, KeyRing()),
        streams_hmac_key=reader.parsed("STREAMS_HMAC_KEY", parse_hmac_key, None),
        audit_hmac_key=reader.parsed("AUDIT_HMAC_KEY", parse_hmac_ring, None),
        zone_kek=reader.parsed("ZONE_KEK", parse_zone_kek, None),
        zone_kek_old=reader.parsed("ZONE_KEK_OLD", parse_zone_kek, None),
        mode=reader.choice("CARACAL_MODE", "stable", MODES),
        log_level=reader.choice("LOG_LEVEL", "info", LOG_LEVELS),
        log_format=reader.choice("LOG_FORMAT", "json", LOG_FORMATS),
        body_limit_bytes=reader.integer("API_BODY_LIMIT_BYTES", 1_048_576, 1024, 1 << 30),
        v1_rate_limit_per_min=reader.integer("API_V1_RATE_LIMIT_PER_MIN", 600, 0, 10**9),
        max_resources_per_zone=reader.integer("API_MAX_RESOURCES_PER_ZONE", 100_000, 0, 10**9),
        dcr_max_live_per_zone=reader.integer("CARACAL_DCR_MAX_LIVE_PER_ZONE", 1000, 1, 10**9),
        control_audience=reader.text("CONTROL_AUDIENCE") or "caracal-control",
        auth_fail_limit_per_min=reader.integer("ADMIN_AUTH_FAIL_LIMIT_PER_MIN", 60, 0, 10**9),
        ready_rate_limit_per_min=reader.integer("READY_RATE_LIMIT_PER_MIN", 120, 0, 10**9),
        trust_proxy=reader.boolean("TRUST_PROXY", False),
        trust_proxy_hops=reader.integer("TRUST_PROXY_HOPS", 1, 1, 32),
        metrics_bearer=reader.text("METRICS_BEARER"),
        worker_id=reader.text("WORKER_ID") or f"{socket.gethostname()}:{os.getpid()}",
        data_dir=Path(reader.text("CARACAL_DATA_DIR") or ".caracal"),
        reaper_interval_ms=reader.integer("CARACAL_REAPER_INTERVAL_MS", 60_000, 10, 86_400_000),
        otel_traces_exporter=reader.choice(
            "OTEL_TRACES_EXPORTER",
            "otlp" if reader.text("OTEL_EXPORTER_OTLP_ENDPOINT") else "none",
            TRACE_EXPORTERS,
        ),
        oauth_token_timeout_ms=reader.integer("CARACAL_OAUTH_TOKEN_TIMEOUT_MS", 15_000, 100, 15_000),
        oauth_token_ca_file=_readable_file(
            "CARACAL_OAUTH_TOKEN_CA_FILE", reader.text("CARACAL_OAUTH_TOKEN_CA_FILE")
        ),
        oauth_allow_loopback_token_hosts=reader.boolean("CARACAL_OAUTH_ALLOW_LOOPBACK_TOKEN_HOSTS", False),
        bundle_signing_key=reader.parsed("CARACAL_BUNDLE_SIGNING_KEY", parse_zone_kek, None),
        sts_url=_http_url("STS_URL", reader.text("STS_URL")),
        rego_workers=reader.integer("CARACAL_REGO_WORKERS", 2, 1, 64),
        rego_timeout_ms=reader.integer("CARACAL_REGO_TIMEOUT_MS", 2000, 10, 600_000),
        rego_max_pending=reader.integer("CARACAL_REGO_MAX_PENDING", 64, 1, 100_000),
        policy_max_bytes=reader.integer("CARACAL_POLICY_MAX_BYTES", 262_144, 1024, 1_048_576),
    )
    _check_mode(settings)
    return settings


def _check_mode(settings: Settings) -> None:
    if settings.dev:
        return
    if settings.oauth_allow_loopback_token_hosts:
        raise SettingsError(
            "CARACAL_OAUTH_ALLOW_LOOPBACK_TOKEN_HOSTS: only for tests, refused when "
            f"CARACAL_MODE={settings.mode}"
        )
    if settings.streams_hmac_key is None:
        raise SettingsError(
            f"STREAMS_HMAC_KEY: required when CARACAL_MODE={settings.mode} (hex, >= 32 bytes)"
        )
    if settings.kek.active is None:
        raise SettingsError(f"CARACAL_KEK: required when CARACAL_MODE={settings.mode} (<id>:<64 hex>,...)")
    if settings.audit_hmac_key is None:  # DESIGN.md: the admin audit chain is not optional in production
        raise SettingsError(f"AUDIT_HMAC_KEY: required when CARACAL_MODE={settings.mode} (hex, >= 32 bytes)")


def parse_kek(raw: str) -> KeyRing:
    """`<id>:<64 hex>[,<id>:<64 hex>...]`; a bare 64-hex key gets the id `default`."""
    keys: list[tuple[str, bytes]] = []
    for part in (p.strip() for p in raw.split(",")):
        key_id, _, hexkey = part.rpartition(":") if ":" in part else ("default", "", part)
        if not _KEK_ID.match(key_id):
            raise ValueError(f"key id {key_id!r} must match [A-Za-z0-9_.-]{{1,64}}")
        if len(hexkey) != 64 or not _HEX.match(hexkey):
            raise ValueError(f"key {key_id!r} must be 64 hex characters (32 bytes)")
        if any(kid == key_id for kid, _ in keys):
            raise ValueError(f"key id {key_id!r} appears twice")
        keys.append((key_id, bytes.fromhex(hexkey)))
    return KeyRing(tuple(keys))


def parse_hmac_ring(raw: str) -> KeyRing:
    """`[<id>:]<hex>[,<id>:<hex>...]` (each at least 32 bytes); a bare key gets the id `default`."""
    keys: list[tuple[str, bytes]] = []
    for part in (p.strip() for p in raw.split(",")):
        key_id, _, hexkey = part.rpartition(":") if ":" in part else ("default", "", part)
        if not _KEK_ID.match(key_id):
            raise ValueError(f"key id {key_id!r} must match [A-Za-z0-9_.-]{{1,64}}")
        if any(kid == key_id for kid, _ in keys):
            raise ValueError(f"key id {key_id!r} appears twice")
        try:
            keys.append((key_id, parse_hmac_key(hexkey)))
        except ValueError as exc:
            raise ValueError(f"key {key_id!r} {exc}" if raw != part else str(exc)) from None
    return KeyRing(tuple(keys))


def parse_zone_kek(raw: str) -> bytes:
    """64 hex characters, not all zero (the key the STS opens provider secrets with)."""
    if len(raw) != 64 or not _HEX.match(raw):
        raise ValueError("must be 64 hex characters (32 bytes)")
    key = bytes.fromhex(raw)
    if not any(key):
        raise ValueError("must not be all zero")
    return key


def parse_hmac_key(raw: str) -> bytes:
    if not _HEX.match(raw) or len(raw) % 2:
        raise ValueError("must be an even number of hex characters")
    key = bytes.fromhex(raw)
    if len(key) < 32:
        raise ValueError(f"must decode to at least 32 bytes, got {len(key)}")
    return key


def _postgres_url(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not re.match(r"^postgres(ql)?(\+asyncpg)?://", raw):
        raise SettingsError("DATABASE_URL: must start with postgresql:// (or postgres://)")
    return raw


def _redis_url(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not re.match(r"^(redis|rediss|unix|redis\+cluster|rediss\+cluster)://", raw):
        raise SettingsError(
            "REDIS_URL: must start with redis://, rediss://, unix:// or (a cluster) redis+cluster://"
        )
    if is_cluster_url(raw):
        try:
            cluster_nodes(raw)
        except ValueError as exc:
            raise SettingsError(f"REDIS_URL: {exc} (redis+cluster://host:port[,host:port...])") from None
    return raw


def _http_url(name: str, raw: str | None) -> str | None:
    if raw is not None and not re.match(r"^https?://[^/?#]+", raw):
        raise SettingsError(f"{name}: must be an http:// or https:// URL")
    return raw.rstrip("/") if raw is not None else None


def _readable_file(name: str, path: str | None) -> str | None:
    if path is not None and not Path(path).is_file():
        raise SettingsError(f"{name}: {path} is not a readable file")
    return path


def _admin_token(raw: str | None) -> str | None:
    if raw is not None and not 16 <= len(raw) <= 4096:
        raise SettingsError("CARACAL_ADMIN_TOKEN: must be 16..4096 characters")
    return raw


def _with_secret_files(env: dict[str, str]) -> dict[str, str]:
    """Secret variables may come as <NAME>_FILE (content, trailing whitespace trimmed)."""
    for name in _SECRET_VARS:
        path = env.get(f"{name}_FILE")
        if path and not env.get(name):
            try:
                env[name] = Path(path).read_text(encoding="utf-8").rstrip()
            except OSError as exc:
                raise SettingsError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from exc
    return env


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def parsed(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from exc

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        if not re.fullmatch(r"-?\d+", raw):
            raise SettingsError(f"{name}: must be an integer, got {raw!r}")
        value = int(raw)
        if not low <= value <= high:
            raise SettingsError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in ("true", "1", "yes", "on"):
            return True
        if raw.lower() in ("false", "0", "no", "off"):
            return False
        raise SettingsError(f"{name}: must be true or false, got {raw!r}")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        raw = (self.text(name) or default).lower()
        if raw not in allowed:
            raise SettingsError(f"{name}: must be one of {', '.join(allowed)}, got {raw!r}")
        return raw
