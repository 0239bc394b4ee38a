"""Settings: every ``CONFIDE_*`` environment variable, parsed into one Struct.

A bad value stops start-up with a message that names the variable. Secrets
(the server key, the database URL's password) are never logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

__all__ = ["STAFF_ROLES", "Settings", "SettingsError", "load_settings"]

STAFF_ROLES: frozenset[str] = frozenset({"clinician", "compliance_officer", "admin"})

_PREFIX = "CONFIDE_"
#: Name (= checkpoint origin) of a generated development audit log key.
DEVELOPMENT_AUDIT_ORIGIN = "localhost/confide-audit/v1"

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
#: A browser origin: scheme, lower-case host and optional port; no path, no wildcard.
Origin = Annotated[
    str, msgspec.Meta(pattern=r"^https?://[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?$")
]


class SettingsError(ValueError):
    """A ``CONFIDE_*`` variable is missing or holds a value that cannot be used."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The service's configuration. Field ``x`` is read from ``CONFIDE_X``."""

    environment: Literal["development", "test", "production"] = "development"
    """``production`` refuses development conveniences (generated keys, console logs)."""
    database_url: str | None = None
    """PostgreSQL URL. Unset: an embedded PostgreSQL in ``data_dir``."""
    data_dir: str = ".data"
    """Local state for development: the embedded cluster and a generated server key."""
    host: str = "127.0.0.1"
    """Address to listen on. Keep 127.0.0.1 behind a TLS-terminating proxy."""
    port: Port = 8000
    """TCP port to listen on."""
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    """Server worker processes (one per core is a good start)."""
    server: Literal["uvicorn", "granian"] = "uvicorn"
    """ASGI server: ``uvicorn`` (measured faster here) or ``granian``."""
    instance_id: Annotated[str, msgspec.Meta(pattern=r"^([A-Za-z0-9][A-Za-z0-9._:-]{0,127})?$")] = ""
    """Names this process in audit events (``source``); defaults to host name and pid."""
    behind_tls: bool = False
    """Clients reach the service only over HTTPS (TLS ends at a proxy or ingress): responses carry HSTS."""
    hsts_max_age_s: Annotated[int, msgspec.Meta(ge=300, le=63_072_000)] = 31_536_000
    """``max-age`` of the ``Strict-Transport-Security`` header sent when ``behind_tls`` is set."""
    forwarded_allow_ips: tuple[str, ...] = ()
    """Proxies (IP addresses or CIDR networks, comma-separated) whose X-Forwarded-For/-Proto are believed.

    Empty: none; the peer is the client. Behind a load balancer or ingress set it, or per-address
    login throttling counts the proxy instead of the clients."""
    cors_allowed_origins: tuple[Origin, ...] = ()
    """Browser origins allowed to call the API (comma-separated ``https://host[:port]``); none by default.

    Empty: no CORS headers at all. Production accepts https origins only."""

    db_pool_min: NonNegative = 2
    """Connections each process keeps open."""
    db_pool_max: Annotated[int, msgspec.Meta(ge=1, le=500)] = 10
    """Most connections each process opens."""
    db_statement_timeout_ms: Annotated[int, msgspec.Meta(ge=100, le=600_000)] = 5_000
    """PostgreSQL ``statement_timeout`` for every query."""
    db_connect_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    """Time allowed to open a database connection."""
    db_acquire_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    """Time a request waits for a pooled connection before a 503."""
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3_600)] = 30.0
    """Deadline for a response to start; past it the client gets 503 and work is cancelled
    (408 when the request body was still arriving)."""
    header_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    """Time a client has to send a request's line and headers (uvicorn); then 408 and the
    connection is closed (slow-loris defence)."""

    secret_key: str | None = None
    """Base64 of 32 random bytes: keys TOTP seeds at rest and keyed digests."""
    secret_key_file: str | None = None
    """File holding the base64 server key (for example a mounted secret)."""

    argon2_time_cost: Annotated[int, msgspec.Meta(ge=2, le=20)] = 3
    """Argon2id passes (OWASP floor 2)."""
    argon2_memory_kib: Annotated[int, msgspec.Meta(ge=19_456, le=4_194_304)] = 65_536
    """Argon2id memory in KiB (OWASP floor 19456)."""
    argon2_parallelism: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    """Argon2id lanes."""
    hash_workers: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0
    """Threads hashing passwords; 0 means one per core."""
    hash_queue_max: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    """Logins allowed to wait for a hashing thread; more get 429."""
    hash_queue_max_wait_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 3.0
    """A login that would wait longer than this for a hashing thread gets 429 with Retry-After.

    The wait is estimated as the queue ahead times the hash time measured on this machine."""

    session_idle_timeout_s: Annotated[int, msgspec.Meta(ge=2, le=86_400)] = 900
    """A session unused this long expires (HIPAA automatic logoff)."""
    session_absolute_timeout_s: Annotated[int, msgspec.Meta(ge=300, le=604_800)] = 43_200
    """A session expires this long after login, used or not."""
    session_touch_interval_s: Annotated[int, msgspec.Meta(ge=0, le=300)] = 10
    """Activity is written at most this often per session (idle-timeout precision)."""

    mfa_required_roles: tuple[Literal["client", "clinician", "compliance_officer", "admin"], ...] = (
        "clinician",
        "compliance_officer",
        "admin",
    )
    """Roles that must enrol TOTP before doing anything else (comma-separated)."""
    totp_issuer: str = "Confide"
    """Issuer name shown in authenticator apps."""

    throttle_account_free_failures: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    """Failed logins per account before back-off starts."""
    throttle_address_free_failures: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 20
    """Failed logins per client address before back-off starts."""
    throttle_base_delay_s: Annotated[int, msgspec.Meta(ge=1, le=3_600)] = 2
    """First lock period; doubles with every further failure."""
    throttle_max_delay_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 900
    """Longest lock period (an attacker can delay a login, never lock it for good)."""
    throttle_window_s: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 3_600
    """Failures older than this are forgotten."""

    rate_limit_rps: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 20.0
    """Requests per second a session (bearer token) may sustain, per server process; 429 beyond."""
    rate_limit_burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 50
    """Requests a session may send at once before the sustained rate applies (token bucket size)."""
    rate_limit_address_rps: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 10.0
    """Requests per second per client address without a session (public routes such as login), per process.

    Failed authentications per address are limited at the same rate, separately. IPv6 clients
    count by /64 network."""
    rate_limit_address_burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 50
    """Requests an address may send at once before its sustained rate applies."""
    rate_limit_max_keys: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 50_000
    """Sessions and addresses each process tracks per limit; past it the least recently seen are forgotten."""

    invite_ttl_s: Annotated[int, msgspec.Meta(ge=300, le=2_592_000)] = 604_800
    """Default lifetime of a client invite code."""
    bench_routes: bool = False
    """Expose the benchmark ceilings ``POST /_bench/echo`` (a body decoded into a Struct) and
    ``GET /_bench/bytes?size=N`` (a prepared body of N bytes), neither touching the database.

    Refused in production."""
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1_024, le=1_073_741_824)] = 1_048_576
    """Largest request body accepted (413 beyond)."""
    attachment_max_bytes: Annotated[int, msgspec.Meta(ge=1_024, le=104_884_841)] = 26_214_400
    """Largest encrypted attachment accepted, in bytes of ciphertext (413 beyond).

    The ceiling is the blob of a 100 MiB plaintext (crypto/SPEC.md section 6)."""
    events_keepalive_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 15.0
    """Seconds between keep-alive comments on the push stream ``GET /v1/events``."""

    audit_log_key: str | None = None
    """Secret key signing audit checkpoints (``PRIVATE+KEY+<origin>+...``, from ``confide audit keygen``)."""
    audit_log_key_file: str | None = None
    """File holding the audit log signing key (for example a mounted secret)."""
    audit_integrator: bool = True
    """Run the audit log integrator in this process (one instance leads at a time)."""
    audit_integrate_interval_s: Annotated[float, msgspec.Meta(ge=0.01, le=60)] = 1.0
    """How often an idle integrator looks for new audit events (a checkpoint follows each batch)."""
    audit_integrate_batch: Annotated[int, msgspec.Meta(ge=1, le=50_000)] = 5_000
    """Most audit events moved into the log per batch (one transaction, one signed checkpoint)."""

    retention_scheduler: bool = False
    """Run the retention job on a schedule in this process (one instance at a time runs it)."""
    retention_interval_s: Annotated[int, msgspec.Meta(ge=1, le=2_678_400)] = 86_400
    """Time from the start of one scheduled retention run to the next."""
    retention_batch_size: Annotated[int, msgspec.Meta(ge=1, le=50_000)] = 5_000
    """Rows (message threads, sessions, ...) deleted per committed retention batch."""
    retention_floor_days: Annotated[int, msgspec.Meta(ge=1, le=36_500)] = 7
    """No retention period may be set below this many days."""
    retention_records_floor_days: Annotated[int, msgspec.Meta(ge=1, le=36_500)] = 2_192
    """Floor for clinical notes and consent records (6 years by default)."""
    retention_audit_floor_days: Annotated[int, msgspec.Meta(ge=2_192, le=36_500)] = 2_192
    """Floor for the audit log; never under HIPAA's 6 years (2,192 days)."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level."""
    log_format: Literal["json", "console"] = "json"
    """``json`` for machines, ``console`` for people."""
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    """Where traces go: ``none``, ``console`` or ``otlp``."""
    otel_endpoint: str | None = None
    """OTLP/HTTP endpoint, for example http://collector:4318/v1/traces."""
    otel_service_name: str = "confide"
    """``service.name`` of the traces."""
    otel_sample_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    """Share of traces recorded; default 1.0 with an exporter, 0 (ids only) without."""

    @property
    def effective_sample_ratio(self) -> float:
        """The sampling ratio in force."""
        if self.otel_sample_ratio is not None:
            return self.otel_sample_ratio
        return 0.0 if self.otel_exporter == "none" else 1.0

    def __post_init__(self) -> None:
        if self.db_pool_min > self.db_pool_max:
            raise SettingsError("CONFIDE_DB_POOL_MIN must not exceed CONFIDE_DB_POOL_MAX")
        if self.session_idle_timeout_s > self.session_absolute_timeout_s:
            raise SettingsError(
                "CONFIDE_SESSION_IDLE_TIMEOUT_S must not exceed CONFIDE_SESSION_ABSOLUTE_TIMEOUT_S"
            )
        if self.throttle_base_delay_s > self.throttle_max_delay_s:
            raise SettingsError("CONFIDE_THROTTLE_BASE_DELAY_S must not exceed CONFIDE_THROTTLE_MAX_DELAY_S")
        if self.environment == "production" and self.secret_key is None and not self.secret_key_file:
            raise SettingsError("CONFIDE_SECRET_KEY or CONFIDE_SECRET_KEY_FILE is required in production")
        if self.environment == "production" and self.audit_log_key is None and not self.audit_log_key_file:
            raise SettingsError(
                "CONFIDE_AUDIT_LOG_KEY or CONFIDE_AUDIT_LOG_KEY_FILE is required in production"
            )
        if self.environment == "production" and any(
            not origin.startswith("https://") for origin in self.cors_allowed_origins
        ):
            raise SettingsError("CONFIDE_CORS_ALLOWED_ORIGINS must list https origins only in production")
        for network in self.forwarded_allow_ips:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise SettingsError(
                    "CONFIDE_FORWARDED_ALLOW_IPS must list IP addresses or CIDR networks"
                ) from exc
        if self.forwarded_allow_ips and self.server != "uvicorn":
            raise SettingsError("CONFIDE_FORWARDED_ALLOW_IPS needs CONFIDE_SERVER=uvicorn")
        if self.environment == "production" and self.bench_routes:
            raise SettingsError("CONFIDE_BENCH_ROUTES must not be set in production")
        if self.otel_exporter == "otlp" and not self.otel_endpoint:
            raise SettingsError("CONFIDE_OTEL_ENDPOINT is required when CONFIDE_OTEL_EXPORTER=otlp")

    @property
    def effective_hash_workers(self) -> int:
        """Hashing threads: the setting, or one per core."""
        return self.hash_workers or (os.cpu_count() or 1)

    @property
    def effective_instance_id(self) -> str:
        """The source name written into audit events."""
        if self.instance_id:
            return self.instance_id
        # Audit leaves accept [A-Za-z0-9._:-] after an alphanumeric first character.
        host = re.sub(r"[^A-Za-z0-9._:-]", "-", os.uname().nodename)[:100].lstrip("._:-") or "host"
        return f"{host}-{os.getpid()}"

    def server_key(self) -> bytes:
        """The 32-byte server key (from the setting, its file, or a generated dev key)."""
        if self.secret_key is not None:
            return _decode_key(self.secret_key, "CONFIDE_SECRET_KEY")
        if self.secret_key_file:
            text = Path(self.secret_key_file).read_text(encoding="ascii").strip()
            return _decode_key(text, "CONFIDE_SECRET_KEY_FILE")
        key_path = Path(self.data_dir) / "secret.key"
        if not key_path.exists():
            key_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(base64.b64encode(secrets.token_bytes(32)).decode("ascii"))
        return _decode_key(key_path.read_text(encoding="ascii").strip(), str(key_path))

    def audit_log_key_text(self) -> str:
        """The audit log's secret signing key (setting, its file, or a generated development key)."""
        if self.audit_log_key is not None:
            return self.audit_log_key.strip()
        if self.audit_log_key_file:
            return Path(self.audit_log_key_file).read_text(encoding="ascii").strip()
        key_path = Path(self.data_dir) / "audit-log.key"
        if not key_path.exists():
            from audit.note import generate_signer  # noqa: PLC0415 -- only development needs a new key

            key_path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # another process made it first
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="ascii") as fh:
                    fh.write(f"{generate_signer(DEVELOPMENT_AUDIT_ORIGIN)}\n")
        return key_path.read_text(encoding="ascii").strip()


def _decode_key(text: str, name: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise SettingsError(f"{name} is not valid base64") from exc
    if len(key) != 32:
        raise SettingsError(f"{name} must decode to exactly 32 bytes, got {len(key)}")
    return key


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read ``CONFIDE_*`` variables (and keyword overrides) into :class:`Settings`.

    Raises:
        SettingsError: naming the variable whose value is unusable.
    """
    env = os.environ if environ is None else environ
    fields = set(Settings.__struct_fields__)
    raw: dict[str, object] = {}
    for key, value in env.items():
        if not key.startswith(_PREFIX):
            continue
        name = key[len(_PREFIX) :].lower()
        if name not in fields:
            raise SettingsError(f"{key} is not a known setting")
        raw[name] = _split_list(name, value)
    raw.update(overrides)
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_name_variable(str(exc))) from exc


def _split_list(name: str, value: str) -> object:
    if name in {"mfa_required_roles", "cors_allowed_origins", "forwarded_allow_ips"}:
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _name_variable(message: str) -> str:
    # msgspec reports the path as "$.field" or "$.field[0]": name the variable instead.
    marker = "- at `$."
    if marker in message:
        head, _, tail = message.partition(marker)
        field = tail.split("`")[0].split("[")[0]
        return f"{_PREFIX}{field.upper()}: {head.strip()}"
    return message
