"""Web layer: the one composition root. `main` builds the adapters from the settings; `make_app` wires Pyramid."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from pyramid.config import Configurator
from pyramid.events import NewResponse
from pyramid.request import Request
from pyramid.tweens import INGRESS
from sqlalchemy.orm import Session, sessionmaker

from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.adapters.blobs_s3 import S3BlobStore, make_s3_client
from stevedore.adapters.clock import SystemClock
from stevedore.adapters.mail import FolderMailer, SmtpMailer
from stevedore.adapters.passwords import BcryptPasswordHasher
from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import (
    join_transaction,
    make_engine,
    make_lookup_connection_factory,
    make_session_factory,
    writer_engine,
)
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.adapters.sql.registry import SqlRegistryStore
from stevedore.adapters.token_keys import TokenKeyError, load_signing_key
from stevedore.adapters.tokens import HmacTokenSigner, JwtTokenSigner
from stevedore.domain.access import Access, AccessRules
from stevedore.domain.accounts import AccountService, InviteService
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import Denied
from stevedore.domain.model import RepositoryName
from stevedore.domain.namespaces import AccessModel, Right, namespace_of
from stevedore.domain.ports import BlobStore, Clock, Mailer, PasswordHasher, TokenSigner
from stevedore.domain.registry import RegistryService
from stevedore.domain.tokens import TokenService
from stevedore.domain.upload_tickets import UploadTickets
from stevedore.web.errors import is_registry_path
from stevedore.web.lifecycle import request_lifecycle
from stevedore.web.periodic_gc import periodic_gc_task
from stevedore.web.security import (
    CredentialCache,
    Permission,
    Principal,
    SingleFlight,
    StevedoreSecurityPolicy,
    authenticate_request,
    registry_may,
)
from stevedore.web.settings import Settings, SettingsError
from stevedore.web.ui.session import WebSessionFactory, web_account
from stevedore.web.ui.setup import setup_service, setup_service_for
from stevedore.web.ui.webhooks import delivery_task as webhook_delivery_task

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Components:
    """Everything built once per process and shared by all requests."""

    settings: Settings
    engine: sa.Engine
    read_sessions: sessionmaker[Session]
    write_sessions: sessionmaker[Session]
    # Reads outside any transaction (who is calling, what a pull asks for): no BEGIN, no COMMIT, writes refused.
    lookup_connections: Callable[[], sa.Connection]
    blob_store: BlobStore
    hasher: PasswordHasher
    token_signer: JwtTokenSigner
    refresh_token_signer: TokenSigner
    clock: Clock
    credential_cache: CredentialCache
    credential_flights: SingleFlight
    dummy_password_hash: str
    credential_stamp_key: bytes
    upload_tickets: UploadTickets
    mailer: Mailer | None = None
    # Work each serving process runs beside its requests, each in a daemon thread of its own (webhook deliveries, the
    # periodic gc): started by the server runner in every process that serves, after the fork (web/server.py), and
    # never by a process that only supervises, nor by a test that builds the app alone.
    background_tasks: list[Callable[[], None]] = field(default_factory=list)
    _background_started_in: int | None = field(default=None, init=False, repr=False)

    def start_background(self) -> None:
        """Start the background tasks in this process, once (a forked worker starts its own)."""
        if self._background_started_in == os.getpid():
            return
        self._background_started_in = os.getpid()
        for task in self.background_tasks:
            name = getattr(task, "__name__", type(task).__name__)
            threading.Thread(target=task, name=f"stevedore-{name}", daemon=True).start()

    def forget_inherited_connections(self) -> None:
        """In a forked worker process (web/workers.py): let go of the database and storage connections that the
        first process opened, which its other children inherited too, without closing them under the others; new
        ones are opened on demand."""
        self.engine.dispose(close=False)
        forget = getattr(self.blob_store, "forget_connections", None)  # S3: its HTTP connection pools
        if forget is not None:
            forget()


def build_blob_store(settings: Settings) -> BlobStore:
    if settings.storage_url.startswith("file:"):
        return FolderBlobStore(settings.storage_path, fsync=settings.blob_fsync)
    if settings.storage_url.startswith("s3:"):
        bucket, prefix = settings.s3_bucket_and_prefix
        client = make_s3_client(
            endpoint_url=settings.s3_endpoint_url, region=settings.s3_region, addressing=settings.s3_addressing
        )
        presign_client = None
        if settings.s3_redirect:  # pulls: 307 to a URL signed (SigV4) for the endpoint clients reach
            presign_client = make_s3_client(
                endpoint_url=settings.s3_public_endpoint_url or settings.s3_endpoint_url,
                region=settings.s3_region,
                addressing=settings.s3_addressing,
                signature_version="s3v4",
            )
        return S3BlobStore(
            client,
            bucket,
            prefix,
            part_size=settings.s3_part_size_mib * 1024 * 1024,
            presign_client=presign_client,
            presign_seconds=settings.s3_presign_seconds,
        )
    raise SettingsError(f"storage {settings.storage_url!r} is not supported yet")


def build_mailer(settings: Settings) -> Mailer | None:
    """SMTP when `stevedore.mail.smtp_host` is set, else the .eml folder, else None (invites say mail is off)."""
    mail = settings.mail
    if mail.smtp_host:
        return SmtpMailer(
            mail.smtp_host,
            mail.smtp_port,
            sender=mail.sender,
            security=mail.smtp_security,
            user=mail.smtp_user,
            password=mail.smtp_password,
        )
    if mail.folder:
        return FolderMailer(mail.folder, sender=mail.sender)
    return None


def build_token_signer(settings: Settings) -> JwtTokenSigner:
    keys = []
    for number, pem in enumerate(settings.token_signing_keys(), start=1):
        try:
            keys.append(load_signing_key(pem, issuer=settings.token_issuer))
        except TokenKeyError as exc:
            raise SettingsError(f"token signing key {number}: {exc}") from exc
    return JwtTokenSigner(keys)


def build_components(settings: Settings, *, blob_store: BlobStore | None = None) -> Components:
    engine = make_engine(settings.database_url, **_pool_options(settings.database_url))
    hasher = BcryptPasswordHasher(settings.bcrypt_rounds, concurrency=settings.password_check_concurrency)
    return Components(
        settings=settings,
        engine=engine,
        read_sessions=make_session_factory(engine),
        write_sessions=make_session_factory(writer_engine(engine)),
        lookup_connections=make_lookup_connection_factory(engine),
        blob_store=blob_store or build_blob_store(settings),
        hasher=hasher,
        token_signer=build_token_signer(settings),
        refresh_token_signer=HmacTokenSigner(settings.secret_key, purpose="refresh-token"),
        clock=SystemClock(),
        credential_cache=CredentialCache(settings.secret_key, settings.credential_cache_seconds),
        credential_flights=SingleFlight(settings.secret_key),
        dummy_password_hash=hasher.hash(secrets.token_urlsafe(16)),
        credential_stamp_key=hmac.new(settings.secret_key, b"credential-stamp", hashlib.sha256).digest(),
        upload_tickets=UploadTickets(settings.secret_key),
        mailer=build_mailer(settings),
    )


def _pool_options(database_url: str) -> dict[str, Any]:
    # Each request may hold two connections (its transaction and its look-ups) and blob transfers keep threads busy.
    if database_url.startswith("sqlite"):
        return {"pool_size": 20, "max_overflow": 20}
    return {"pool_size": 10, "max_overflow": 30}


def main(global_config: dict[str, Any], **ini_settings: str) -> Any:
    """The paste.deploy app factory: `pserve development.ini`."""
    settings = Settings.from_mapping(ini_settings)
    components = build_components(settings)
    _schedule_gc(components, global_config)
    components.background_tasks.append(webhook_delivery_task(components))  # each serving process sends webhooks
    _announce_setup(components, global_config)
    _announce_mail(settings)
    return make_app(components, ini_settings)


def _schedule_gc(components: Components, global_config: dict[str, Any]) -> None:
    """`stevedore.gc_interval`: every serving process looks whether gc is due; one node runs it (web/periodic_gc.py)."""
    interval = components.settings.gc_interval_seconds
    if not interval:
        return
    ini = global_config.get("__file__")
    if not ini:
        log.warning("stevedore.gc_interval is set, but the app was not loaded from an ini file: no periodic gc")
        return
    components.background_tasks.append(
        periodic_gc_task(components.write_sessions, components.clock, interval, os.path.abspath(ini))
    )


def _announce_setup(components: Components, global_config: dict[str, Any]) -> None:
    """Say on the console what a new installation needs next, as commands that can be pasted."""
    ini = os.path.relpath(global_config.get("__file__", "development.ini"))
    where = components.settings.public_url or f"http://127.0.0.1:{global_config.get('http_port', 5000)}"
    try:
        with components.read_sessions() as session:
            count = SqlAccountStore(session).count()
    except sa.exc.DBAPIError:
        log.error("the database has no schema yet: run `.venv/bin/stevedore --config %s db upgrade`", ini)
        return
    if count == 0:
        with components.write_sessions() as session, session.begin():
            code = setup_service_for(session, components).setup_code()
        if code:
            log.warning("no accounts yet: open %s/setup?code=%s to create the administrator", where, code)
        log.warning(
            "no accounts yet: %screate the administrator on the command line (headless setups) with "
            "`echo 'a long password' | .venv/bin/stevedore --config %s user create NAME --admin --password-stdin`",
            "or " if code else "",
            ini,
        )


def make_app(components: Components, ini_settings: dict[str, Any] | None = None) -> Any:
    pyramid_settings = dict(ini_settings or {})
    pyramid_settings.setdefault("tm.manager_hook", "pyramid_tm.explicit_manager")
    # pyramid_tm would read the caller's identity in its own tween, outside the exception views, so a failure
    # while authenticating (a database outage) would escape as waitress's plain-text 500.
    pyramid_settings.setdefault("tm.annotate_user", "false")
    pyramid_settings.setdefault("jinja2.filters", "")
    with Configurator(settings=pyramid_settings) as config:
        config.registry.stevedore = components
        config.include("pyramid_jinja2")
        config.include("pyramid_tm")
        config.add_jinja2_renderer(".jinja2")
        config.set_security_policy(StevedoreSecurityPolicy())
        settings = components.settings
        config.set_session_factory(
            WebSessionFactory(
                secret_key=settings.secret_key,
                secure=settings.secure_cookies,
                idle_seconds=settings.session_idle_seconds,
                max_seconds=settings.session_max_seconds,
            )
        )
        # Every unsafe request to the pages needs the session's CSRF token; /v2/ is authenticated by its
        # Authorization header alone, never by a cookie, so it needs none.
        config.set_default_csrf_options(require_csrf=True, callback=lambda request: not is_registry_path(request))
        # A view that forgets its permission is closed, not open; public views say NO_PERMISSION_REQUIRED.
        config.set_default_permission(Permission.AUTHENTICATED)
        config.add_request_method(_dbsession, "dbsession", reify=True)
        config.add_request_method(_account_store, "account_store", reify=True)
        config.add_request_method(_account_service, "account_service", reify=True)
        config.add_request_method(_lookup_connection, "lookup_connection", reify=True)
        config.add_request_method(_lookup_account_store, "lookup_account_store", reify=True)
        config.add_request_method(_lookup_account_service, "lookup_account_service", reify=True)
        config.add_request_method(_registry_service, "registry_service", reify=True)
        config.add_request_method(_token_service, "token_service", reify=True)
        config.add_request_method(_access, "access", reify=True)
        config.add_request_method(_invite_service, "invite_service", reify=True)
        config.add_request_method(_principal, "principal", reify=True)
        config.add_request_method(web_account, "web_account", reify=True)
        config.add_request_method(setup_service, "setup_service", reify=True)
        config.add_request_method(registry_may, "registry_may")
        config.add_subscriber(_registry_version_header, NewResponse)
        config.add_subscriber(_page_security_headers, NewResponse)
        config.add_tween("stevedore.web.request_log.request_log_tween_factory", under=INGRESS)
        config.add_tween(
            "stevedore.web.metrics.metrics_tween_factory", under="stevedore.web.request_log.request_log_tween_factory"
        )
        config.include("stevedore.web.routes")
        config.include("stevedore.web.ui.tokens")
        config.include("stevedore.web.ui.audit")
        # Each page module adds its own routes (after routes.py's, so `/users/sign_up` stays the sign-up page).
        config.include("stevedore.web.ui.account")
        config.include("stevedore.web.ui.password_reset")
        config.include("stevedore.web.ui.users")
        config.include("stevedore.web.ui.namespaces")
        config.include("stevedore.web.ui.robots")
        config.include("stevedore.web.ui.tag_history")
        config.include("stevedore.web.ui.rules")
        config.include("stevedore.web.ui.quotas")
        config.include("stevedore.web.ui.webhooks")
        config.scan("stevedore.web")
        return config.make_wsgi_app()


def _dbsession(request: Request) -> Session:
    """The request's session, joined to pyramid_tm's transaction. Writers take SQLite's lock up front."""
    components: Components = request.registry.stevedore
    factory = components.read_sessions if request.method in SAFE_METHODS else components.write_sessions
    return join_transaction(factory(), request.tm)


def _lookup_connection(request: Request) -> sa.Connection:
    """A connection outside the request's transaction, for look-ups made before a body is streamed (who is calling,
    which upload this is, what a pull reads): on SQLite it never holds the write lock while bytes are copied, and
    each of its statements commits on its own, so a pull pays for no BEGIN or COMMIT."""
    components: Components = request.registry.stevedore
    connection = components.lookup_connections()
    request.add_finished_callback(lambda _request: connection.close())
    return connection


def _lookup_account_store(request: Request) -> SqlAccountStore:
    return SqlAccountStore(request.lookup_connection)


def _lookup_account_service(request: Request) -> AccountService:
    components: Components = request.registry.stevedore
    return AccountService(
        request.lookup_account_store,
        components.hasher,
        components.clock,
        dummy_hash=components.dummy_password_hash,
    )


def _registry_service(request: Request) -> RegistryService:
    components: Components = request.registry.stevedore
    lookups = SqlRegistryStore(request.lookup_connection)
    # A GET or HEAD only reads (pulls, discovery, pages): its unit of work is the look-ups too, so it opens no
    # transaction session at all; a write it tried would be refused (LookupWriteRefused), never committed.
    store = lookups if request.method in SAFE_METHODS else SqlRegistryStore(request.dbsession)
    return RegistryService(
        store,
        components.blob_store,
        components.clock,
        lookups=lookups,
        max_manifest_bytes=components.settings.max_manifest_bytes,
        max_open_uploads_per_account=components.settings.max_open_uploads_per_account,
        abandoned_upload_seconds=components.settings.abandoned_upload_seconds,
        before_push=lambda name: _claim_for_push(request, name),
        # Against S3 a stat is a billed request: HEADs and mounts are answered from the database alone.
        confirm_blob_bytes=not isinstance(components.blob_store, S3BlobStore),
        upload_tickets=components.upload_tickets,
        upload_sessions=lambda: _upload_session_unit(request),
        lifecycle=request_lifecycle(request),
    )


@contextlib.contextmanager
def _upload_session_unit(request: Request) -> Iterator[SqlRegistryStore]:
    """A short write transaction of its own, committed before an upload's first bytes are written. Should the
    request's own transaction have begun (no route does that before an upload's first bytes), its store instead: a
    second writer would wait for the first, on SQLite for the whole database, and the first is this request's."""
    session: Session | None = request.__dict__.get("dbsession")  # only if the request made one
    if session is not None and session.in_transaction():
        yield SqlRegistryStore(session)
        return
    components: Components = request.registry.stevedore
    with components.write_sessions() as unit, unit.begin():
        yield SqlRegistryStore(unit)


def _access_rules(settings: Settings) -> AccessRules:
    return AccessRules(AccessModel(settings.access_model), settings.namespace_claiming)


def _access(request: Request) -> Access:
    """Who may do what, read outside the request's transaction (like who is calling)."""
    components: Components = request.registry.stevedore
    return Access(SqlNamespaceStore(request.lookup_connection), _access_rules(components.settings))


def _claim_for_push(request: Request, name: RepositoryName) -> None:
    """Before a push writes: the claim of a first push into a free namespace, in the push's own transaction."""
    components: Components = request.registry.stevedore
    principal = request.principal
    if principal is None:
        raise Denied(f"push to {name} denied")
    account = principal.account
    if account.is_active and account.id is not None:
        # A push right already held (the security policy just read it, in this request) needs no claim: no query,
        # on every blob and manifest push of an ordinary push.
        held = request.access.right_of(account, namespace_of(name))
        if held is not None and held.includes(Right.PUSH):
            return
    writing = Access(SqlNamespaceStore(request.dbsession), _access_rules(components.settings))
    if writing.claim_for_push(account, name, components.clock):
        # In the push's transaction, like the claim: a push that fails after this leaves neither.
        request.audit.record(AuditAction.NAMESPACE_CLAIMED, actor=account, repository=name)


def _token_service(request: Request) -> TokenService:
    components: Components = request.registry.stevedore
    return TokenService(
        components.token_signer,
        components.refresh_token_signer,
        request.lookup_account_store,
        components.clock,
        issuer=components.settings.token_issuer,
        stamp_key=components.credential_stamp_key,
        ttl_seconds=components.settings.token_ttl_seconds,
        refresh_ttl_seconds=components.settings.refresh_token_ttl_seconds,
        access=request.access,
    )


def _invite_service(request: Request) -> InviteService:
    components: Components = request.registry.stevedore
    settings = components.settings
    return InviteService(
        request.account_store,
        components.clock,
        components.mailer,
        public_url=settings.public_url,
        lifetime=timedelta(days=settings.invite_lifetime_days),
    )


def _announce_mail(settings: Settings) -> None:
    """Say where invite mails go, and what they still need."""
    if settings.mail.transport == "folder":
        log.warning("mails (invites, password resets) are written as .eml files to %s", settings.mail.folder)
    elif settings.mail.transport is None:
        log.warning(
            "mail is off: set stevedore.mail.smtp_host (or stevedore.mail.folder) to send invites and password resets"
        )
    if settings.mail.transport and not settings.public_url:
        log.warning("mails need the public URL for their links: set stevedore.public_url or STEVEDORE_PUBLIC_URL")


def _account_store(request: Request) -> SqlAccountStore:
    return SqlAccountStore(request.dbsession)


def _account_service(request: Request) -> AccountService:
    components: Components = request.registry.stevedore
    return AccountService(
        request.account_store, components.hasher, components.clock, namespaces=SqlNamespaceStore(request.dbsession)
    )


def _principal(request: Request) -> Principal | None:
    """Who is calling: under /v2/ from the Authorization header only, on the pages from the session cookie only."""
    if is_registry_path(request):
        return authenticate_request(request)
    account = request.web_account
    return Principal(account) if account is not None else None


# What pages may load and who may frame them: nothing inline, nothing from elsewhere (OWASP's secure headers).
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _page_security_headers(event: NewResponse) -> None:
    if not is_registry_path(event.request):
        for name, value in PAGE_SECURITY_HEADERS.items():
            event.response.headers.setdefault(name, value)


def _registry_version_header(event: NewResponse) -> None:
    if is_registry_path(event.request):
        event.response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
