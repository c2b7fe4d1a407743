"""Web layer: the typed settings, parsed once from the ini file with a few environment overrides (secrets too)."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from stevedore.adapters.token_keys import split_pem_keys, write_new_signing_key
from stevedore.domain.errors import InvalidInput
from stevedore.domain.gc import parse_duration


class SettingsError(Exception):
    """The configuration cannot work; the message says what to change."""


# Environment variables an operator uses most, after Distribution's REGISTRY_* habit. They win over the ini.
ENVIRONMENT_OVERRIDES = {
    "STEVEDORE_DATABASE_URL": "stevedore.database_url",
    "STEVEDORE_STORAGE_URL": "stevedore.storage_url",
    "STEVEDORE_S3_ENDPOINT_URL": "stevedore.s3_endpoint_url",
    "STEVEDORE_PUBLIC_URL": "stevedore.public_url",
}
# Holds PEM private keys themselves (newest first), not a path: for containers that get secrets as variables.
TOKEN_KEYS_VARIABLE = "STEVEDORE_TOKEN_SIGNING_KEYS"
# The SMTP password is a secret: only ever from the environment.
SMTP_PASSWORD_VARIABLE = "STEVEDORE_SMTP_PASSWORD"
# The bearer secret a Prometheus scraper may send to read /metrics: a secret, so the environment wins over the ini.
METRICS_TOKEN_VARIABLE = "STEVEDORE_METRICS_TOKEN"
METRICS_TOKEN_MIN_LENGTH = 16
SMTP_DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}

MiB = 1024 * 1024


def _s3_addressing(value: str | None) -> str:
    addressing = (value or "auto").strip().lower()
    if addressing not in ("path", "virtual", "auto"):
        raise SettingsError(f"stevedore.s3_addressing is {value!r}: use path or virtual")
    return addressing


def _s3_part_size_mib(value: str | None) -> int:
    size = int(value or 16)
    if not 5 <= size <= 5120:  # S3's limits for a part
        raise SettingsError(f"stevedore.s3_part_size_mib is {size}: S3 takes parts of 5 to 5120 MiB")
    return size


def _s3_presign_seconds(value: str | None) -> int:
    seconds = int(value or 300)
    if not 1 <= seconds <= 7 * 24 * 3600:  # SigV4's limit for a presigned URL
        raise SettingsError(f"stevedore.s3_presign_seconds is {seconds}: use 1 to 604800 (a few minutes is best)")
    return seconds


def _s3_public_endpoint(value: str | None) -> str | None:
    endpoint = (value or "").strip() or None
    if endpoint and urlparse(endpoint).scheme not in ("http", "https"):
        raise SettingsError(f"stevedore.s3_public_endpoint_url {endpoint!r} must start with http:// or https://")
    return endpoint


def _bool(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class MailSettings:
    """How mail leaves: through SMTP when `smtp_host` is set, else as .eml files in `folder`, else not at all."""

    sender: str = "stevedore@localhost"
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: str = "starttls"  # starttls | ssl | none
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    folder: str | None = None

    @property
    def transport(self) -> str | None:
        return "smtp" if self.smtp_host else "folder" if self.folder else None

    @classmethod
    def from_mapping(cls, merged: Mapping[str, str], environ: Mapping[str, str]) -> MailSettings:
        security = (merged.get("stevedore.mail.smtp_security") or "starttls").strip().lower()
        if security not in SMTP_DEFAULT_PORTS:
            raise SettingsError(f"stevedore.mail.smtp_security is {security!r}: use starttls, ssl or none")
        user = (merged.get("stevedore.mail.smtp_user") or "").strip() or None
        password = environ.get(SMTP_PASSWORD_VARIABLE) or None
        host = (merged.get("stevedore.mail.smtp_host") or "").strip() or None
        if host and user and not password:
            raise SettingsError(f"stevedore.mail.smtp_user is set: put the SMTP password in {SMTP_PASSWORD_VARIABLE}")
        return cls(
            sender=(merged.get("stevedore.mail.from") or "").strip() or "stevedore@localhost",
            smtp_host=host,
            smtp_port=int(merged.get("stevedore.mail.smtp_port") or SMTP_DEFAULT_PORTS[security]),
            smtp_security=security,
            smtp_user=user,
            smtp_password=password,
            folder=(merged.get("stevedore.mail.folder") or "").strip() or None,
        )


@dataclass(frozen=True)
class Settings:
    database_url: str
    storage_url: str
    secret_key: bytes
    public_url: str | None = None
    s3_endpoint_url: str | None = None
    # S3 (storage_url s3://bucket/prefix); credentials only from boto3's default chain, never from the ini.
    s3_region: str | None = None
    s3_addressing: str = "auto"  # path | virtual | auto
    s3_part_size_mib: int = 16
    # Blob GETs answer 307 to a presigned URL valid this long, signed for s3_public_endpoint_url (the endpoint
    # clients reach; default: s3_endpoint_url); s3_redirect = false streams pulls through the app instead.
    s3_redirect: bool = True
    s3_presign_seconds: int = 300
    s3_public_endpoint_url: str | None = None
    service_name: str | None = None
    token_ttl_seconds: int = 300
    refresh_token_ttl_seconds: int = 90 * 24 * 3600
    credential_cache_seconds: int = 60
    max_manifest_bytes: int = 4 * MiB
    max_open_uploads_per_account: int = 100  # 0: no limit
    abandoned_upload_seconds: int = 3600  # at the cap, sessions started longer ago are reclaimed; 0: never
    bcrypt_rounds: int = 12
    blob_fsync: bool = True
    # Password checks (bcrypt) running at once; None: one or two, after the CPUs (adapters/passwords.py).
    password_check_concurrency: int | None = None
    # Where the PEM private keys that sign registry tokens are (read by `token_signing_keys()`, so the CLI never
    # needs them): the first signs, all verify (rotation).
    token_signing_key_files: tuple[str, ...] = ()
    token_signing_keys_text: str | None = field(default=None, repr=False)
    create_token_signing_key: bool = False
    token_issuer: str = "stevedore"
    # Services (other registries trusting our tokens) the token endpoint may issue tokens for, besides our own.
    token_audiences: tuple[str, ...] = ()
    # Who may do what (domain/access.py): default, open or private; and whether a first push claims a namespace.
    access_model: str = "default"
    namespace_claiming: bool = True
    invite_lifetime_days: int = 5
    # Whether members (not only administrators) may invite people at /invites.
    members_may_invite: bool = False
    # How long a mailed password-reset link works.
    password_reset_minutes: int = 60
    # Failed password logins (pages and /v2/ alike): this many are free per account and per address, then each
    # further one waits twice as long as the last, up to these caps (domain/login_backoff.py).
    login_free_failures: int = 5
    login_backoff_max_seconds_account: int = 60
    login_backoff_max_seconds_address: int = 900
    mail: MailSettings = field(default_factory=MailSettings)
    # Page sessions end after this long without a request, and this long after the login whatever the use.
    session_idle_seconds: int = 2 * 3600
    session_max_seconds: int = 12 * 3600
    # /metrics (web/metrics.py): anonymous when public, else an administrator or this bearer secret.
    metrics_public: bool = False
    metrics_token: str | None = field(default=None, repr=False)
    # How long a tag's history is kept (days; 0: for ever): `stevedore gc` prunes older moves, and retention keeps the
    # manifests that the kept history names, so that a restore has something to put back.
    tag_history_days: int = 90
    # Webhook targets in these networks are allowed even though they are loopback, private or link-local (CIDRs,
    # e.g. `127.0.0.0/8 10.1.2.0/24`); every other such target is refused, when set and at each delivery.
    webhook_allowed_networks: tuple[str, ...] = ()
    webhook_timeout_seconds: int = 10
    # A periodic `gc` inside the app, run by one node at a time (0: never; the command line is always there).
    gc_interval_seconds: int = 0
    raw: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, str], environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        merged = dict(settings)
        for variable, key in ENVIRONMENT_OVERRIDES.items():
            if environ.get(variable):
                merged[key] = environ[variable]

        database_url = merged.get("stevedore.database_url") or merged.get("sqlalchemy.url")
        if not database_url:
            raise SettingsError("no database: set stevedore.database_url in the ini or STEVEDORE_DATABASE_URL")
        storage_url = merged.get("stevedore.storage_url")
        if not storage_url:
            raise SettingsError("no blob storage: set stevedore.storage_url in the ini or STEVEDORE_STORAGE_URL")
        scheme = urlparse(storage_url).scheme
        if scheme not in ("file", "s3"):
            raise SettingsError(f"unsupported storage URL {storage_url!r}: use file:///path or s3://bucket/prefix")

        public_url = (merged.get("stevedore.public_url") or "").strip().rstrip("/") or None
        if public_url and urlparse(public_url).scheme not in ("http", "https"):
            raise SettingsError(f"the public URL {public_url!r} must start with http:// or https://")
        token_audiences = tuple((merged.get("stevedore.token_audiences") or "").split())
        if token_audiences and not (public_url or merged.get("stevedore.service_name")):
            # Our own service would otherwise come from each request's Host header, and a client could name a
            # trusting registry's service there to have its tokens accepted here (or issued for any service).
            raise SettingsError(
                "stevedore.token_audiences needs a fixed service name of our own: set stevedore.public_url "
                "(STEVEDORE_PUBLIC_URL) or stevedore.service_name"
            )

        return cls(
            database_url=database_url,
            storage_url=storage_url,
            secret_key=_secret_key(merged, environ),
            public_url=public_url,
            s3_endpoint_url=merged.get("stevedore.s3_endpoint_url") or None,
            s3_region=merged.get("stevedore.s3_region") or None,
            s3_addressing=_s3_addressing(merged.get("stevedore.s3_addressing")),
            s3_part_size_mib=_s3_part_size_mib(merged.get("stevedore.s3_part_size_mib")),
            s3_redirect=_bool(merged.get("stevedore.s3_redirect", "true")),
            s3_presign_seconds=_s3_presign_seconds(merged.get("stevedore.s3_presign_seconds")),
            s3_public_endpoint_url=_s3_public_endpoint(merged.get("stevedore.s3_public_endpoint_url")),
            service_name=merged.get("stevedore.service_name") or None,
            token_ttl_seconds=max(60, int(merged.get("stevedore.token_ttl_seconds", 300))),
            refresh_token_ttl_seconds=int(merged.get("stevedore.refresh_token_ttl_seconds", 90 * 24 * 3600)),
            credential_cache_seconds=int(merged.get("stevedore.credential_cache_seconds", 60)),
            max_manifest_bytes=int(merged.get("stevedore.max_manifest_bytes", 4 * MiB)),
            max_open_uploads_per_account=int(merged.get("stevedore.max_open_uploads_per_account", 100)),
            abandoned_upload_seconds=int(merged.get("stevedore.abandoned_upload_seconds", 3600)),
            bcrypt_rounds=int(merged.get("stevedore.bcrypt_rounds", 12)),
            blob_fsync=_bool(merged.get("stevedore.blob_fsync", "true")),
            password_check_concurrency=int(merged.get("stevedore.password_check_concurrency") or 0) or None,
            token_signing_key_files=tuple((merged.get("stevedore.token_signing_key_files") or "").split()),
            token_signing_keys_text=environ.get(TOKEN_KEYS_VARIABLE) or None,
            create_token_signing_key=_bool(merged.get("stevedore.create_token_signing_key", "false")),
            token_issuer=(merged.get("stevedore.token_issuer") or "stevedore").strip(),
            token_audiences=token_audiences,
            access_model=_access_model(merged.get("stevedore.access_model")),
            namespace_claiming=_bool(merged.get("stevedore.namespace_claiming", "true")),
            invite_lifetime_days=max(1, int(merged.get("stevedore.invite_lifetime_days", 5))),
            members_may_invite=_bool(merged.get("stevedore.members_may_invite", "false")),
            password_reset_minutes=max(5, int(merged.get("stevedore.password_reset_minutes", 60))),
            login_free_failures=max(1, int(merged.get("stevedore.login_free_failures", 5))),
            login_backoff_max_seconds_account=max(
                1, int(merged.get("stevedore.login_backoff_max_seconds_account", 60))
            ),
            login_backoff_max_seconds_address=max(
                1, int(merged.get("stevedore.login_backoff_max_seconds_address", 900))
            ),
            mail=MailSettings.from_mapping(merged, environ),
            session_idle_seconds=max(60, int(merged.get("stevedore.session_idle_seconds", 2 * 3600))),
            session_max_seconds=max(60, int(merged.get("stevedore.session_max_seconds", 12 * 3600))),
            metrics_public=_bool(merged.get("stevedore.metrics_public", "false")),
            metrics_token=_metrics_token(environ.get(METRICS_TOKEN_VARIABLE) or merged.get("stevedore.metrics_token")),
            tag_history_days=max(0, int(merged.get("stevedore.tag_history_days", 90))),
            webhook_allowed_networks=_networks(merged.get("stevedore.webhook_allowed_networks")),
            webhook_timeout_seconds=max(1, int(merged.get("stevedore.webhook_timeout_seconds", 10))),
            gc_interval_seconds=_duration_seconds("stevedore.gc_interval", merged.get("stevedore.gc_interval")),
            raw=merged,
        )

    def token_signing_keys(self) -> tuple[bytes, ...]:
        """STEVEDORE_TOKEN_SIGNING_KEYS (PEM text), else the key files, newest first; a development ini may let the
        app create the first file. The keys are parsed (and refused with a reason) where they are used."""
        if self.token_signing_keys_text:
            keys = split_pem_keys(self.token_signing_keys_text)
            if not keys:
                raise SettingsError(f"{TOKEN_KEYS_VARIABLE} holds no PEM private key")
            return tuple(keys)
        paths = self.token_signing_key_files
        if not paths:
            raise SettingsError(
                "no token signing key: set stevedore.token_signing_key_files in the ini (create one with "
                "`stevedore token-key create FILE`) or STEVEDORE_TOKEN_SIGNING_KEYS"
            )
        if self.create_token_signing_key and not os.path.exists(paths[0]):
            write_new_signing_key(paths[0])
        keys = []
        for path in paths:
            try:
                with open(path, "rb") as handle:
                    keys.append(handle.read())
            except OSError as exc:
                raise SettingsError(
                    f"cannot read the token signing key {path}: {exc.strerror} "
                    "(create one with `stevedore token-key create FILE`)"
                ) from exc
        return tuple(keys)

    @property
    def secure_cookies(self) -> bool:
        """Cookies only over HTTPS when the public URL is https (a TLS-terminating proxy in front)."""
        return bool(self.public_url and self.public_url.startswith("https://"))

    @property
    def s3_bucket_and_prefix(self) -> tuple[str, str]:
        """The bucket and key prefix of an `s3://bucket/prefix` storage URL."""
        parsed = urlparse(self.storage_url)
        if not parsed.netloc:
            raise SettingsError(f"the storage URL {self.storage_url!r} names no bucket: use s3://bucket/prefix")
        return parsed.netloc, parsed.path.strip("/")

    @property
    def storage_path(self) -> str:
        """The folder of a `file://` storage URL."""
        parsed = urlparse(self.storage_url)
        return os.path.abspath((parsed.netloc or "") + parsed.path)


def _metrics_token(value: str | None) -> str | None:
    token = (value or "").strip() or None
    if token is not None and (len(token) < METRICS_TOKEN_MIN_LENGTH or not token.isascii() or not token.isprintable()):
        raise SettingsError(
            f"stevedore.metrics_token ({METRICS_TOKEN_VARIABLE}) must be at least {METRICS_TOKEN_MIN_LENGTH} printable "
            "ASCII characters: a long random secret"
        )
    return token


def _networks(value: str | None) -> tuple[str, ...]:
    networks = []
    for text in (value or "").split():
        try:
            networks.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise SettingsError(
                f"stevedore.webhook_allowed_networks: {text!r} is not a network (use CIDRs such as 127.0.0.0/8)"
            ) from None
    return tuple(networks)


def _duration_seconds(key: str, value: str | None) -> int:
    """`30m`, `24h`, `7d` (domain/gc.py's durations), or empty/0 (off)."""
    text = (value or "").strip().lower()
    if text in ("", "0", "off", "never"):
        return 0
    try:
        seconds = int(parse_duration(text).total_seconds())
    except InvalidInput:
        raise SettingsError(f"{key} is {value!r}: use a duration such as 30m, 24h or 7d, or 0 for never") from None
    if seconds < 60:
        raise SettingsError(f"{key} is {value!r}: at least one minute (60s), or 0 for never")
    return seconds


def _access_model(value: str | None) -> str:
    model = (value or "default").strip().lower()
    if model not in ("default", "open", "private"):
        raise SettingsError(f"stevedore.access_model is {value!r}: use default, open or private")
    return model


def _secret_key(settings: Mapping[str, str], environ: Mapping[str, str]) -> bytes:
    """STEVEDORE_SECRET_KEY, else the key file; a development ini may let the app create that file.

    Every node of one installation must share the key: it signs tokens and keys the credential cache.
    """
    if environ.get("STEVEDORE_SECRET_KEY"):
        key = environ["STEVEDORE_SECRET_KEY"]
    else:
        path = settings.get("stevedore.secret_key_file")
        if not path:
            raise SettingsError(
                "no secret key: set STEVEDORE_SECRET_KEY (the same value on every node) "
                "or stevedore.secret_key_file in the ini"
            )
        if not os.path.exists(path):
            if not _bool(settings.get("stevedore.create_secret_key", "false")):
                raise SettingsError(
                    f"the secret key file {path} does not exist: set STEVEDORE_SECRET_KEY, or create the file "
                    "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))' > FILE; chmod 600 FILE)"
                )
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
        with open(path) as handle:
            key = handle.read().strip()
    if len(key) < 32:
        raise SettingsError("the secret key must be at least 32 characters long")
    return key.encode()
