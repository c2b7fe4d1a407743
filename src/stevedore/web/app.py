"""Web layer: the one composition root. `main` builds the adapters from the settings; `make_app` wires Pyramid."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pyramid.config import Configurator
from pyramid.events import NewResponse
from pyramid.request import Request
from sqlalchemy.orm import Session, sessionmaker

from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.adapters.clock import SystemClock
from stevedore.adapters.passwords import BcryptPasswordHasher
from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction, make_engine, make_session_factory, writer_engine
from stevedore.adapters.tokens import HmacTokenSigner
from stevedore.domain.accounts import AccountService
from stevedore.domain.ports import BlobStore, Clock, PasswordHasher, TokenSigner
from stevedore.web.security import CredentialCache, StevedoreSecurityPolicy, authenticate_request
from stevedore.web.settings import Settings, SettingsError

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Components:
    """Everything built once per process and shared by all requests."""

    settings: Settings
    engine: sa.Engine
    read_sessions: sessionmaker[Session]
    write_sessions: sessionmaker[Session]
    blob_store: BlobStore
    hasher: PasswordHasher
    token_signer: TokenSigner
    clock: Clock
    credential_cache: CredentialCache


def build_blob_store(settings: Settings) -> BlobStore:
    if settings.storage_url.startswith("file:"):
        return FolderBlobStore(settings.storage_path, fsync=settings.blob_fsync)
    raise SettingsError(f"storage {settings.storage_url!r} is not supported yet")


def build_components(settings: Settings, *, blob_store: BlobStore | None = None) -> Components:
    engine = make_engine(settings.database_url)
    return Components(
        settings=settings,
        engine=engine,
        read_sessions=make_session_factory(engine),
        write_sessions=make_session_factory(writer_engine(engine)),
        blob_store=blob_store or build_blob_store(settings),
        hasher=BcryptPasswordHasher(settings.bcrypt_rounds),
        token_signer=HmacTokenSigner(settings.secret_key),
        clock=SystemClock(),
        credential_cache=CredentialCache(settings.secret_key, settings.credential_cache_seconds),
    )


def main(global_config: dict[str, Any], **ini_settings: str) -> Any:
    """The paste.deploy app factory: `pserve development.ini`."""
    settings = Settings.from_mapping(ini_settings)
    components = build_components(settings)
    _announce_setup(components)
    return make_app(components, ini_settings)


def _announce_setup(components: Components) -> None:
    """Say on the console what a new installation needs next."""
    try:
        with components.read_sessions() as session:
            count = SqlAccountStore(session).count()
    except sa.exc.DBAPIError:
        log.error("the database has no schema yet: run `stevedore --config INI db upgrade`")
        return
    if count == 0:
        log.warning(
            "no accounts yet: create the administrator with "
            "`stevedore --config INI user create NAME --admin --password-stdin`, then open the front page"
        )


def make_app(components: Components, ini_settings: dict[str, Any] | None = None) -> Any:
    pyramid_settings = dict(ini_settings or {})
    pyramid_settings.setdefault("tm.manager_hook", "pyramid_tm.explicit_manager")
    pyramid_settings.setdefault("jinja2.filters", "")
    with Configurator(settings=pyramid_settings) as config:
        config.registry.stevedore = components
        config.include("pyramid_jinja2")
        config.include("pyramid_tm")
        config.add_jinja2_renderer(".jinja2")
        config.set_security_policy(StevedoreSecurityPolicy())
        config.add_request_method(_dbsession, "dbsession", reify=True)
        config.add_request_method(_account_store, "account_store", reify=True)
        config.add_request_method(_account_service, "account_service", reify=True)
        config.add_request_method(authenticate_request, "principal", reify=True)
        config.add_subscriber(_registry_version_header, NewResponse)
        config.include("stevedore.web.routes")
        config.scan("stevedore.web")
        return config.make_wsgi_app()


def _dbsession(request: Request) -> Session:
    """The request's session, joined to pyramid_tm's transaction. Writers take SQLite's lock up front."""
    components: Components = request.registry.stevedore
    factory = components.read_sessions if request.method in SAFE_METHODS else components.write_sessions
    return join_transaction(factory(), request.tm)


def _account_store(request: Request) -> SqlAccountStore:
    return SqlAccountStore(request.dbsession)


def _account_service(request: Request) -> AccountService:
    components: Components = request.registry.stevedore
    return AccountService(request.account_store, components.hasher, components.clock)


def _registry_version_header(event: NewResponse) -> None:
    path = event.request.path_info
    if path == "/v2" or path.startswith("/v2/"):
        event.response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
