"""The `stevedore` command line, for headless setups: migrations, users, invites.

stevedore --config INI db upgrade
stevedore --config INI user create NAME [--admin] [--email EMAIL] --password-stdin
stevedore --config INI user password NAME --password-stdin | user disable|enable|delete|admin|unadmin NAME
stevedore --config INI upload list NAME | upload abort NAME [--older-than SECONDS]
stevedore --config INI upload sweep [--older-than SECONDS]
stevedore --config INI invite create [--email EMAIL] | invite list [--limit N] [--before ID] | invite revoke ID
stevedore --config INI namespace create NAME [--owner USER] | namespace list
stevedore --config INI namespace member add NAMESPACE USER pull|push|admin | namespace member remove NAMESPACE USER
stevedore --config INI robot create NAMESPACE NAME [--scope pull|push|delete] [--expires-days N] | robot list NAMESPACE
stevedore --config INI robot disable|enable|delete NAMESPACE NAME
stevedore --config INI audit list [--user NAME] [--namespace NS] [--action ACTION] [--limit N] [--before ID]
stevedore --config INI fsck [--verify-digests] [--show N]
stevedore --config INI gc [--dry-run] [--grace-period DURATION]   (retention rules first, then the blobs)
stevedore --config INI storage migrate --to URL [--from URL] [--update-database]
stevedore --config INI webhooks deliver [--limit N]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import transaction
from sqlalchemy.orm import Session

from stevedore.adapters.sql.engine import join_transaction
from stevedore.domain.accounts import AccountService
from stevedore.domain.errors import StevedoreError
from stevedore.domain.model import InviteRecord
from stevedore.domain.registry import RegistryService
from stevedore.web.settings import Settings, SettingsError

if TYPE_CHECKING:
    from stevedore.domain.gc import RetentionResult


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stevedore", description="Administer a Stevedore registry.")
    parser.add_argument("--config", "-c", required=True, metavar="INI", help="the paste.deploy ini file")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="the database schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply all migrations")

    user = commands.add_parser("user", help="accounts").add_subparsers(dest="action", required=True)
    create = user.add_parser("create", help="create an account")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="make it an administrator")
    create.add_argument("--email")
    create.add_argument("--password-stdin", action="store_true", required=True, help="read the password from stdin")
    password = user.add_parser("password", help="set a new password (ends the old one's tokens and logins)")
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true", required=True, help="read the password from stdin")
    for action, text in (
        ("disable", "disable an account: its tokens and logins stop working at once (never the last administrator)"),
        ("enable", "enable a disabled account again"),
        ("delete", "delete an account, its open uploads and every token it holds (never the last administrator)"),
        ("admin", "make an account an administrator"),
        ("unadmin", "make an administrator an ordinary account again (never the last administrator)"),
    ):
        user.add_parser(action, help=text).add_argument("name")

    upload = commands.add_parser("upload", help="open upload sessions").add_subparsers(dest="action", required=True)
    upload.add_parser("list", help="an account's open upload sessions, oldest first").add_argument("name")
    upload_abort = upload.add_parser("abort", help="abort an account's open upload sessions and remove their bytes")
    upload_abort.add_argument("name")
    upload_abort.add_argument(
        "--older-than", type=_seconds, metavar="SECONDS", help="only those started more than SECONDS ago"
    )

    upload_sweep = upload.add_parser(
        "sweep", help="abort every account's upload sessions started long ago (for cron; any node, any time)"
    )
    upload_sweep.add_argument(
        "--older-than",
        type=_seconds,
        metavar="SECONDS",
        help="those started more than SECONDS ago (default: the setting stevedore.abandoned_upload_seconds)",
    )

    token_key = commands.add_parser("token-key", help="the keys that sign registry tokens")
    token_key_create = token_key.add_subparsers(dest="action", required=True).add_parser(
        "create", help="write a new ES256 private key (mode 0600) to FILE"
    )
    token_key_create.add_argument("file")

    invite = commands.add_parser("invite", help="invites").add_subparsers(dest="action", required=True)
    invite_create = invite.add_parser(
        "create", help="create an invite and print its sign-up URL (mailed too, with --email and a public URL)"
    )
    invite_create.add_argument("--email", help="the address the sign-up link is mailed to")
    invite_list = invite.add_parser("list", help="invites, newest first: who invited whom, and their state")
    invite_list.add_argument("--limit", type=int, default=50, help="invites per page (1 to 100, default 50)")
    invite_list.add_argument("--before", type=int, metavar="ID", help="only invites older than invite ID")
    invite.add_parser("revoke", help="revoke an unused invite: its link stops working").add_argument("id", type=int)

    namespace = commands.add_parser("namespace", help="namespaces and their members' rights")
    namespace_actions = namespace.add_subparsers(dest="action", required=True)
    namespace_create = namespace_actions.add_parser("create", help="create a namespace (reserved names too)")
    namespace_create.add_argument("name")
    namespace_create.add_argument("--owner", metavar="USER", help="the user who becomes its admin")
    namespace_actions.add_parser("list", help="every namespace with a row, and its members")
    member = namespace_actions.add_parser("member", help="a namespace's members").add_subparsers(
        dest="member_action", required=True
    )
    member_add = member.add_parser("add", help="give USER a right on NAMESPACE (replacing the one it had)")
    member_add.add_argument("namespace")
    member_add.add_argument("user")
    member_add.add_argument("right", choices=["pull", "push", "admin"])
    member_remove = member.add_parser("remove", help="take USER's right on NAMESPACE away")
    member_remove.add_argument("namespace")
    member_remove.add_argument("user")

    robot = commands.add_parser("robot", help="robot accounts (NAMESPACE+NAME) of a namespace")
    robot_actions = robot.add_subparsers(dest="action", required=True)
    robot_create = robot_actions.add_parser("create", help="make a robot; its secret is printed on stdout, once")
    robot_create.add_argument("namespace")
    robot_create.add_argument("name")
    robot_create.add_argument("--scope", choices=["pull", "push", "delete"], default="push")
    robot_create.add_argument("--expires-days", type=int, metavar="N", help="the secret stops after N days")
    robot_actions.add_parser("list", help="a namespace's robots and their state").add_argument("namespace")
    for action, text in (
        ("disable", "its secret stops at once, and so do tokens issued for it"),
        ("enable", "enable a disabled robot again"),
        ("delete", "remove the robot and its secret for good"),
    ):
        robot_change = robot_actions.add_parser(action, help=text)
        robot_change.add_argument("namespace")
        robot_change.add_argument("name")

    audit = commands.add_parser("audit", help="the audit log").add_subparsers(dest="action", required=True)
    audit_list = audit.add_parser("list", help="the newest events first: who did what, when, from where")
    audit_list.add_argument("--user", metavar="NAME", help="only events of this user (exact name)")
    audit_list.add_argument("--namespace", metavar="NS", help="only events in this namespace")
    audit_list.add_argument("--action", help="only events of this action (push, login_failed, member_added, ...)")
    audit_list.add_argument(
        "--limit", type=int, default=50, help=f"events to show (1 to {MAX_AUDIT_LIMIT}, default 50)"
    )
    audit_list.add_argument("--before", type=int, metavar="ID", help="only events older than event ID")

    fsck = commands.add_parser(
        "fsck", help="compare the database with the blob storage; exit 1 on any inconsistency (nothing is changed)"
    )
    fsck.add_argument("--verify-digests", action="store_true", help="re-hash every blob's bytes (slow: reads all)")
    fsck.add_argument("--show", type=int, default=10, metavar="N", help="items listed of each kind (default 10)")

    gc = commands.add_parser(
        "gc",
        help="apply the namespaces' retention rules (tags, untagged manifests), then delete blobs no repository links "
        "and no manifest references, and abandoned upload sessions, while the registry runs",
    )
    gc.add_argument(
        "--dry-run", action="store_true", help="list what retention would remove, count what would go; change nothing"
    )
    gc.add_argument(
        "--grace-period",
        metavar="DURATION",
        help="keep blobs recorded less than this long ago: 30m, 24h, 7d (default: stevedore.gc_grace_period, 24h)",
    )

    webhooks = commands.add_parser("webhooks", help="webhook deliveries").add_subparsers(dest="action", required=True)
    webhooks_deliver = webhooks.add_parser(
        "deliver", help="send the webhook deliveries that are due, once (the server's processes also do it)"
    )
    webhooks_deliver.add_argument("--limit", type=int, metavar="N", help="send at most N deliveries")

    storage = commands.add_parser("storage", help="the blob storage").add_subparsers(dest="action", required=True)
    migrate = storage.add_parser(
        "migrate", help="copy every blob to another store (file:///path or s3://bucket/prefix), verified, resumable"
    )
    migrate.add_argument("--to", required=True, metavar="URL", help="the target store")
    migrate.add_argument("--from", dest="source", metavar="URL", help="the source store (default: the configured one)")
    migrate.add_argument(
        "--update-database",
        action="store_true",
        help="once all is copied, forget the S3 object keys the database recorded (the target places blobs by "
        "digest); run it with the registry stopped, right before switching stevedore.storage_url",
    )
    return parser


def _seconds(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        seconds = -1
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return seconds


def _fail(message: str) -> int:
    print(f"stevedore: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    ini = os.path.abspath(args.config)
    if not os.path.isfile(ini):
        return _fail(f"no such configuration file: {args.config}")
    logging.basicConfig(level=logging.WARNING)

    from pyramid.paster import get_appsettings

    if args.command == "token-key":
        return _create_token_key(args.file)
    try:
        app_settings = get_appsettings(ini, "main")
        settings = Settings.from_mapping(app_settings)
    except SettingsError as exc:
        return _fail(str(exc))
    except Exception as exc:  # paste.deploy's own errors: an ini without [app:main], bad syntax
        return _fail(f"cannot read {args.config}: {exc}")

    try:
        if args.command == "db":
            from stevedore.adapters.sql.migrations import upgrade

            upgrade(settings.database_url, ini)
            print("database is up to date")
            return 0
        if args.command == "user" and args.action in ("create", "password"):
            password = sys.stdin.readline().rstrip("\r\n")
            if args.action == "password":
                return _change_account(settings, args.name, "password", password)
            return _create_user(settings, args.name, password, args.email, args.admin)
        if args.command == "user" and args.action == "delete":
            return _delete_user(settings, args.name)
        if args.command == "user":
            return _change_account(settings, args.name, args.action)
        if args.command == "upload" and args.action == "list":
            return _list_uploads(settings, args.name)
        if args.command == "upload" and args.action == "sweep":
            return _sweep_uploads(settings, args.older_than)
        if args.command == "upload":
            return _abort_uploads(settings, args.name, args.older_than)
        if args.command == "invite":
            return _invite(settings, args)
        if args.command == "namespace":
            return _namespace(settings, args)
        if args.command == "audit":
            return _audit(settings, args)
        if args.command == "robot":
            return _robot(settings, args)
        if args.command == "fsck":
            return _fsck(settings, args)
        if args.command == "gc":
            return _gc(settings, args, app_settings.get("stevedore.gc_grace_period"))
        if args.command == "webhooks":
            return _deliver_webhooks(settings, args.limit)
        if args.command == "storage":
            return _storage_migrate(settings, args)
    except StevedoreError as exc:
        return _fail(exc.message)
    return _fail("unknown command")


def _account_service(settings: Settings) -> tuple[Session, AccountService]:
    from stevedore.adapters.clock import SystemClock
    from stevedore.adapters.passwords import BcryptPasswordHasher
    from stevedore.adapters.sql.accounts import SqlAccountStore
    from stevedore.adapters.sql.engine import make_engine, make_session_factory, writer_engine
    from stevedore.adapters.sql.namespaces import SqlNamespaceStore

    session = make_session_factory(writer_engine(make_engine(settings.database_url)))()
    service = AccountService(
        SqlAccountStore(session),
        BcryptPasswordHasher(settings.bcrypt_rounds),
        SystemClock(),
        namespaces=SqlNamespaceStore(session),
    )
    return session, service


def _create_user(settings: Settings, name: str, password: str, email: str | None, admin: bool) -> int:
    session, service = _account_service(settings)
    with transaction.manager:
        join_transaction(session)
        account = service.create_account(name, password, email=email, is_admin=admin)
    print(f"created {'administrator' if admin else 'user'} {account.username}")
    return 0


def _change_account(settings: Settings, name: str, action: str, password: str = "") -> int:
    session, service = _account_service(settings)
    with transaction.manager:
        join_transaction(session)
        if action == "password":
            changed = service.change_password(name, password)
        elif action in ("admin", "unadmin"):
            changed = service.set_admin(name, action == "admin")
        else:
            changed = service.set_active(name, action == "enable")
        if action in ("password", "disable") and changed.id is not None:
            # As on the pages: open reset links end too, so none works again once the account is enabled again.
            from stevedore.adapters.sql.password_resets import SqlPasswordResetStore

            SqlPasswordResetStore(session).revoke_open(changed.id, datetime.now(UTC))
    done = {"password": "changed the password of", "disable": "disabled", "enable": "enabled"}
    if action in ("admin", "unadmin"):
        print(f"{name} is {'now' if action == 'admin' else 'no longer'} an administrator")
        return 0
    print(f"{done[action]} user {name}")
    return 0


def _delete_user(settings: Settings, name: str) -> int:
    """Disable, delete, then remove the upload bytes, each step committed before the next begins: a failure
    leaves the account disabled, or gone with bytes to sweep, but never rows pointing at nothing."""
    session, service = _account_service(settings)
    registry = _registry_service(settings, session)
    with transaction.manager:  # its tokens and logins stop, and it can start no more uploads
        join_transaction(session)
        service.set_active(name, False)
    with transaction.manager:  # its upload rows go with it (ON DELETE CASCADE)
        join_transaction(session)
        account = service.account_named(name)
        assert account.id is not None
        upload_ids = registry.account_upload_ids(account.id)
        service.delete_account(name)
    registry.abort_upload_bytes(upload_ids)
    print(f"aborted {_uploads(len(upload_ids))}")
    print(f"deleted user {name}")
    return 0


def _uploads(count: int) -> str:
    return f"{count} open upload{'s' if count != 1 else ''}"


def _list_uploads(settings: Settings, name: str) -> int:
    session, service = _account_service(settings)
    registry = _registry_service(settings, session)
    with transaction.manager:
        join_transaction(session)
        account = service.account_named(name)
        assert account.id is not None
        sessions = registry.account_uploads(account.id)
    if not sessions:
        print(f"user {name} has no open uploads")
        return 0
    rows = [("ID", "REPOSITORY", "STARTED (UTC)", "BYTES")]
    for upload in sessions:
        received = registry.received_bytes(upload.id)
        started = f"{upload.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        rows.append((upload.id, str(upload.repository), started, "-" if received is None else str(received)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _abort_uploads(settings: Settings, name: str, older_than: int | None) -> int:
    """The rows first, committed; then the bytes (a PATCH that passed its check meanwhile finds its upload gone)."""
    session, service = _account_service(settings)
    registry = _registry_service(settings, session)
    with transaction.manager:
        join_transaction(session)
        account = service.account_named(name)
        assert account.id is not None
        upload_ids = [upload.id for upload in registry.account_uploads(account.id, older_than)]
        registry.forget_uploads(upload_ids)
    registry.abort_upload_bytes(upload_ids)
    print(f"aborted {_uploads(len(upload_ids))} of user {name}")
    return 0


def _sweep_uploads(settings: Settings, older_than: int | None) -> int:
    """Every account's sessions started more than the limit ago: their rows deleted and committed, then their bytes
    aborted; on S3 also the incomplete multipart uploads no session row knows, started before the limit. Safe from
    cron on any node at any time: younger sessions are never touched, and a session a finish or cancel deleted first
    is not the sweep's to abort (see RegistryService.sweep_abandoned_uploads)."""
    limit = settings.abandoned_upload_seconds if older_than is None else older_than
    if older_than is None and limit <= 0:
        print("stevedore.abandoned_upload_seconds is 0 (never reclaimed): nothing swept; give --older-than SECONDS")
        return 0
    swept, aborted = _sweep(settings, limit)
    print(f"aborted {_uploads(swept)} started more than {limit} seconds ago")
    if aborted is not None:
        print(f"aborted {aborted} incomplete multipart upload{'s' if aborted != 1 else ''} without an upload session")
    return 0


def _sweep(settings: Settings, limit: int) -> tuple[int, int | None]:
    """The sweep itself (`upload sweep`, `gc`): how many sessions were aborted, and on S3 how many orphaned
    multipart uploads (None on the folder store)."""
    from datetime import timedelta

    from stevedore.adapters.blobs_s3 import S3BlobStore
    from stevedore.adapters.sql.engine import make_engine, make_session_factory, writer_engine
    from stevedore.adapters.sql.fsck import read_upload_ids
    from stevedore.adapters.storage_inventory import abort_s3_multipart, s3_multipart_uploads
    from stevedore.domain.fsck import StorageView, orphan_multipart_uploads

    session = make_session_factory(writer_engine(make_engine(settings.database_url)))()
    registry = _registry_service(settings, session)
    now = registry.clock.now()
    with transaction.manager:
        join_transaction(session)
        upload_ids = registry.sweep_abandoned_uploads(limit, now)
    registry.abort_upload_bytes(upload_ids)
    aborted = None
    if isinstance(registry.blobs, S3BlobStore):
        # The multipart uploads are listed before the rows are read. A session's multipart upload starts after its
        # row has committed (at its first whole part), so one listed whose session is still open is among the rows
        # read next, whatever the clocks; one whose session ended meanwhile is completed, aborted or a leftover (an
        # abort is harmless). Read in the other order, a session started in between would look orphaned. The age
        # limit is still needed: a whole blob pushed in one POST (?digest=) starts its multipart upload with no
        # session row at all.
        listed = StorageView([], [], multipart_uploads=list(s3_multipart_uploads(registry.blobs)))
        with transaction.manager:
            join_transaction(session)
            known = read_upload_ids(session)
        orphans = orphan_multipart_uploads(listed, known, started_before=now - timedelta(seconds=limit))
        aborted = sum(1 for orphan in orphans if abort_s3_multipart(registry.blobs, orphan))
    return len(upload_ids), aborted


def _gc(settings: Settings, args: argparse.Namespace, grace_setting: str | None) -> int:
    """`gc`: retention rules first (tags and untagged manifests they remove, listed per repository, and the tag
    history older than stevedore.tag_history_days), then abandoned upload sessions (the sweep, with
    stevedore.abandoned_upload_seconds), then the blobs nothing links or references, recorded longer ago than the
    grace period (domain/gc.py): so the blobs retention frees go in the same run. Each batch is a short transaction
    of its own; progress on stderr when it is a terminal; a summary line at the end."""
    import time
    from datetime import timedelta

    from stevedore.adapters.clock import SystemClock
    from stevedore.adapters.sql.audit import SqlAuditLog
    from stevedore.adapters.sql.engine import make_engine, writer_engine
    from stevedore.adapters.sql.gc import garbage_units, retention_units
    from stevedore.domain.audit import AuditAction, Auditor
    from stevedore.domain.errors import InvalidInput
    from stevedore.domain.gc import (
        DEFAULT_BATCH,
        BlobDeleter,
        DanglingLinks,
        GarbageCollector,
        GcProgress,
        GcResult,
        LinkSweepResult,
        Retention,
        RetentionResult,
        parse_duration,
    )
    from stevedore.web.app import build_blob_store
    from stevedore.web.periodic_gc import PARENT_VARIABLE, TRIGGER_VARIABLE

    trigger = "periodic" if os.environ.get(TRIGGER_VARIABLE) == "periodic" else "command line"
    parent = os.environ.get(PARENT_VARIABLE, "")
    if trigger == "periodic" and parent.isdigit():
        from stevedore.web.workers import end_with_parent

        end_with_parent(int(parent))  # the worker that runs it stops: so does this run (its lease is not renewed)
    started = SystemClock().now()
    grace_text = args.grace_period or grace_setting or "24h"
    grace = parse_duration(grace_text)
    store = build_blob_store(settings)
    if not hasattr(store, "delete_blobs"):
        return _fail(f"the blob store of {settings.storage_url} cannot be garbage-collected")
    deleter: BlobDeleter = store  # type: ignore[assignment]
    # Where bytes are deleted after the commit (S3), a batch is as many keys as the store deletes at once.
    batch = DEFAULT_BATCH if deleter.deletes_in_place else DEFAULT_BATCH * getattr(store, "delete_threads", 1)
    engine = make_engine(settings.database_url)
    reads, writes = garbage_units(engine)

    tty = sys.stderr.isatty()
    last_drawn = [0.0]

    def progress(totals: GcProgress) -> None:
        if not tty or time.monotonic() - last_drawn[0] < 0.2:
            return
        last_drawn[0] = time.monotonic()
        verb = "would delete" if args.dry_run else "deleted"
        sys.stderr.write(
            f"\r{verb} {totals.collected} blobs ({_size(totals.bytes_freed)}) of {totals.scanned} candidates, "
            f"{totals.per_minute:,.0f} objects/min, {totals.seconds:.0f} s "
        )
        sys.stderr.flush()

    limit = settings.abandoned_upload_seconds
    result = GcResult(args.dry_run)  # filled in batch by batch: what was done, should a batch fail
    retained = RetentionResult(args.dry_run)  # likewise
    links = LinkSweepResult(args.dry_run)
    swept = 0
    uploads_line = "abandoned uploads: none, stevedore.abandoned_upload_seconds is 0"
    stopped: BaseException | None = None
    try:
        retention_reads, retention_writes = retention_units(engine)
        Retention(retention_reads, retention_writes, SystemClock()).apply(
            tag_history_days=settings.tag_history_days, grace=grace, dry_run=args.dry_run, result=retained
        )
        # The links of deleted manifests' blobs (and of uploads no manifest came for): their blobs go below.
        DanglingLinks(retention_reads, retention_writes, SystemClock()).apply(grace, dry_run=args.dry_run, result=links)
        if limit > 0 and args.dry_run:
            with reads() as garbage:
                count = garbage.count_uploads_created_before(SystemClock().now() - timedelta(seconds=limit))
            uploads_line = f"would abort {_uploads(count)} started more than {limit} seconds ago"
        elif limit > 0:
            swept, multipart = _sweep(settings, limit)
            uploads_line = f"aborted {_uploads(swept)} started more than {limit} seconds ago"
            if multipart:
                uploads_line += f" and {multipart} orphaned multipart upload{'s' if multipart != 1 else ''}"
        collector = GarbageCollector(reads, writes, deleter, SystemClock(), batch=batch)
        collector.collect(grace, dry_run=args.dry_run, progress=progress, result=result)
    except InvalidInput:
        engine.dispose()
        raise  # a refusal (a bad grace period), before anything was done
    except BaseException as exc:  # a database or storage error, an interrupt: what committed before is reported
        stopped = exc
    try:
        if tty and result.objects:
            sys.stderr.write("\n")
        if not args.dry_run and (result.objects or swept or links.unlinked):
            detail = (
                f"{result.objects} blobs, {result.bytes_freed} bytes; {links.unlinked} dangling links; {uploads_line}"
            )
            if stopped is not None:
                detail += f"; stopped by {type(stopped).__name__}"
            try:
                with Session(writer_engine(engine)) as session, session.begin():
                    Auditor(SqlAuditLog(session), SystemClock()).record(
                        AuditAction.GARBAGE_COLLECTED, detail=f"{detail} ({trigger}, grace period {grace_text})"
                    )
            except Exception as exc:
                print(f"stevedore: the audit event could not be recorded: {_one_line(exc)}", file=sys.stderr)
                stopped = stopped or exc
        if not args.dry_run and retained.removed_something:
            try:
                with Session(writer_engine(engine)) as session, session.begin():
                    Auditor(SqlAuditLog(session), SystemClock()).record(
                        AuditAction.RETENTION_APPLIED, detail=_retention_detail(retained, stopped, trigger)
                    )
            except Exception as exc:
                print(f"stevedore: the audit event could not be recorded: {_one_line(exc)}", file=sys.stderr)
                stopped = stopped or exc
        if not args.dry_run:
            try:
                _record_gc_run(engine, started, trigger, stopped is None and not result.failed, result, retained, swept)
            except Exception as exc:
                print(f"stevedore: the run could not be recorded: {_one_line(exc)}", file=sys.stderr)
    finally:
        engine.dispose()
    for line in _retention_lines(retained, settings.tag_history_days):
        print(line)
    plural = "" if links.unlinked == 1 else "s"
    print(
        f"{'would unlink' if args.dry_run else 'unlinked'} {links.unlinked} blob link{plural} that no manifest of "
        f"the repository references, made more than {grace_text} ago, in {links.repositories} "
        f"repositor{'y' if links.repositories == 1 else 'ies'}"
    )
    print(uploads_line)
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {result.objects} unreferenced blob{'s' if result.objects != 1 else ''} recorded more than "
        f"{grace_text} ago: {_size(result.bytes_freed)} ({result.bytes_freed} bytes) in {result.seconds:.1f} s, "
        f"{result.per_minute:,.0f} objects/min" + ("; nothing was changed" if args.dry_run else "")
    )
    if result.failed:
        print(
            f"{len(result.failed)} blobs' bytes could not be deleted (their rows are gone): stevedore fsck lists "
            "them as unreferenced objects",
            file=sys.stderr,
        )
    if stopped is not None:
        if not isinstance(stopped, Exception):
            raise stopped  # an interrupt: reported above, then as Python does
        print(f"stevedore: error: garbage collection stopped: {_one_line(stopped)}", file=sys.stderr)
        return 1
    return 1 if result.failed else 0


def _retention_detail(retained: RetentionResult, stopped: BaseException | None, trigger: str) -> str:
    detail = (
        f"{len(retained.tags)} tags, {len(retained.manifests)} untagged manifests and {retained.links_removed} blob "
        f"links removed in {len(retained.repositories)} repositories; {retained.history_pruned} tag history rows pruned"
    )
    if stopped is not None:
        detail += f"; stopped by {type(stopped).__name__}"
    return f"{detail} ({trigger})"


def _retention_lines(retained: RetentionResult, tag_history_days: int) -> list[str]:
    """What retention removed (would remove), per repository: its tags, then its untagged manifests."""
    verb = "would remove" if retained.dry_run else "removed"
    tags, manifests = len(retained.tags), len(retained.manifests)
    lines = [
        f"retention: {verb} {tags} tag{'s' if tags != 1 else ''} and {manifests} untagged "
        f"manifest{'s' if manifests != 1 else ''} in {len(retained.repositories)} "
        f"repositor{'ies' if len(retained.repositories) != 1 else 'y'}"
        + (f", {retained.links_removed} blob links" if retained.links_removed else "")
    ]
    for repository in retained.repositories:
        names = [state.tag for name, state in retained.tags if name == repository]
        if names:
            lines.append(f"  {repository}: tag{'s' if len(names) != 1 else ''} {', '.join(names)}")
        for name, manifest in retained.manifests:
            if name == repository:
                pushed = manifest.pushed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
                lines.append(f"  {repository}: untagged manifest {manifest.digest} (pushed {pushed} UTC)")
    if retained.skipped:
        lines.append(f"retention: kept {retained.skipped} that a push changed while gc ran")
    if retained.history_pruned:
        lines.append(f"retention: forgot {retained.history_pruned} tag history rows older than {tag_history_days} days")
    return lines


def _record_gc_run(
    engine: Any, started: Any, trigger: str, succeeded: bool, result: Any, retained: Any, swept: int
) -> None:
    """One `gc_runs` row, which /metrics sums (stevedore_gc_*)."""
    from stevedore.adapters.clock import SystemClock
    from stevedore.adapters.sql.engine import writer_engine
    from stevedore.adapters.sql.tables_jobs import gc_runs

    with Session(writer_engine(engine)) as session, session.begin():
        session.execute(
            gc_runs.insert().values(
                started_at=started,
                finished_at=SystemClock().now(),
                trigger=trigger,
                succeeded=succeeded,
                objects=result.objects,
                bytes_freed=result.bytes_freed,
                tags_removed=len(retained.tags),
                manifests_removed=len(retained.manifests),
                uploads_aborted=swept,
            )
        )


def _one_line(exc: BaseException) -> str:
    """An exception as one line (a database error's message carries its SQL on the next lines)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _registry_service(settings: Settings, session: Session) -> RegistryService:
    from stevedore.adapters.clock import SystemClock
    from stevedore.adapters.sql.registry import SqlRegistryStore
    from stevedore.web.app import build_blob_store

    return RegistryService(
        SqlRegistryStore(session),
        build_blob_store(settings),
        SystemClock(),
        # The app's: the sweep keeps tombstones as long as the app's tickets live.
        max_open_uploads_per_account=settings.max_open_uploads_per_account,
        abandoned_upload_seconds=settings.abandoned_upload_seconds,
    )


def _create_token_key(path: str) -> int:
    from stevedore.adapters.token_keys import write_new_signing_key

    try:
        write_new_signing_key(path)
    except FileExistsError:
        return _fail(f"{path} exists already: choose another file name (keys are never overwritten)")
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror}")
    print(f"wrote a new ES256 token signing key to {path}")
    print("put it first in stevedore.token_signing_key_files; keep the old key listed until its tokens expire")
    return 0


def _invite(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from stevedore.adapters.clock import SystemClock
    from stevedore.adapters.sql.accounts import SqlAccountStore
    from stevedore.domain.accounts import InviteService, sign_up_link
    from stevedore.web.app import build_mailer

    session, _ = _account_service(settings)
    service = InviteService(
        SqlAccountStore(session),
        SystemClock(),
        build_mailer(settings),
        public_url=settings.public_url,
        lifetime=timedelta(days=settings.invite_lifetime_days),
    )
    if args.action == "list":
        with transaction.manager:
            join_transaction(session)
            page = service.list_invites(limit=args.limit, before_id=args.before)
        return _print_invites(page.records, page.next_before_id)
    if args.action == "revoke":
        with transaction.manager:
            join_transaction(session)
            service.revoke_invite(args.id)
        print(f"revoked invite {args.id}: its link no longer works")
        return 0
    # The mail goes out before the commit: a mail that fails leaves no invite nobody heard of.
    with transaction.manager:
        join_transaction(session)
        issued = service.send_invite(email=args.email)
    print(f"invite code: {issued.code}")
    if issued.link:
        print(f"sign-up URL: {issued.link}")
    else:
        local = f"http://127.0.0.1:{os.environ.get('PORT') or 5000}"
        print(f"sign-up URL: {sign_up_link(local, issued.code)}")
        print(
            f"  (a local fallback, {local}: stevedore.public_url is not set, so this link works on this machine "
            "only; set it, or STEVEDORE_PUBLIC_URL, for links that work elsewhere)"
        )
    print(f"expires: {issued.invite.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC (invite {issued.invite.id})")
    if issued.mailed_to:
        where = f" (written to {settings.mail.folder})" if settings.mail.transport == "folder" else ""
        print(f"mailed to: {issued.mailed_to}{where}")
    elif issued.notice:
        print(issued.notice)
    return 0


def _print_invites(records: Sequence[InviteRecord], next_before_id: int | None) -> int:
    if not records:
        print("no invites")
        return 0
    now = datetime.now(UTC)
    rows = [("ID", "CREATED (UTC)", "EXPIRES (UTC)", "E-MAIL", "INVITED BY", "STATE", "BY")]
    for record in records:
        invite = record.invite
        state = invite.state(now)
        by = {"used": record.used_by, "revoked": record.revoked_by}.get(state) or "-"
        rows.append(
            (
                str(invite.id),
                f"{invite.created_at.astimezone(UTC):%Y-%m-%d %H:%M}",
                f"{invite.expires_at.astimezone(UTC):%Y-%m-%d %H:%M}",
                invite.email or "-",
                record.invited_by or "-",
                state,
                by,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if next_before_id is not None:
        print(f"older invites: stevedore invite list --before {next_before_id}")
    return 0


def _namespace(settings: Settings, args: argparse.Namespace) -> int:
    from stevedore.adapters.clock import SystemClock
    from stevedore.adapters.sql.accounts import SqlAccountStore
    from stevedore.adapters.sql.audit import SqlAuditLog
    from stevedore.adapters.sql.namespaces import SqlNamespaceStore
    from stevedore.domain.audit import AuditAction, Auditor
    from stevedore.domain.namespaces import NamespaceService, parse_right

    session, _ = _account_service(settings)
    service = NamespaceService(SqlNamespaceStore(session), SqlAccountStore(session), SystemClock())
    # Changes made here are audited in their own transaction, with no actor and no address: the command line.
    auditor = Auditor(SqlAuditLog(session), SystemClock())
    with transaction.manager:
        join_transaction(session)
        if args.action == "create":
            created = service.create(args.name, owner=args.owner)
            auditor.record(
                AuditAction.NAMESPACE_CREATED,
                namespace=created.name,
                target=created.name,
                detail=f"admin {args.owner} (command line)" if args.owner else "command line",
            )
            if args.owner:
                auditor.record(
                    AuditAction.MEMBER_ADDED, namespace=created.name, target=args.owner, detail="admin (command line)"
                )
            owner = f" with {args.owner} as its admin" if args.owner else ""
            print(f"created namespace {created.name}{owner}")
        elif args.action == "list":
            listed = service.list()
            if not listed:
                print("no namespaces yet (every user owns the namespace of its user name without one)")
            for found, members in listed:
                rights = ", ".join(f"{m.username} ({m.right})" for m in members) or "no members"
                print(f"{found.name}: {rights}")
        elif args.member_action == "add":
            service.add_member(args.namespace, args.user, parse_right(args.right))
            auditor.record(
                AuditAction.MEMBER_ADDED,
                namespace=args.namespace,
                target=args.user,
                detail=f"{args.right} (command line)",
            )
            print(f"{args.user} has {args.right} on {args.namespace}")
        else:
            service.remove_member(args.namespace, args.user)
            auditor.record(
                AuditAction.MEMBER_REMOVED, namespace=args.namespace, target=args.user, detail="command line"
            )
            print(f"{args.user} is no longer a member of {args.namespace}")
    return 0


def _robot(settings: Settings, args: argparse.Namespace) -> int:
    """`robot …`: as an administrator would on /namespaces/NS/robots, audited with no actor (the command line)."""
    from stevedore.adapters.clock import SystemClock
    from stevedore.adapters.sql.access_tokens import SqlAccessTokenStore
    from stevedore.adapters.sql.accounts import SqlAccountStore
    from stevedore.adapters.sql.audit import SqlAuditLog
    from stevedore.adapters.sql.namespaces import SqlNamespaceStore
    from stevedore.adapters.sql.robots import SqlRobotStore
    from stevedore.domain.access import Access
    from stevedore.domain.access_tokens import AccessTokenService
    from stevedore.domain.audit import AuditAction, Auditor
    from stevedore.domain.robots import COMMAND_LINE, RobotService

    session, _ = _account_service(settings)
    clock = SystemClock()
    namespaces = SqlNamespaceStore(session)
    service = RobotService(
        SqlAccountStore(session),
        SqlRobotStore(session),
        namespaces,
        AccessTokenService(SqlAccessTokenStore(session), clock),
        Access(namespaces),
        clock,
    )
    auditor = Auditor(SqlAuditLog(session), clock)
    with transaction.manager:
        join_transaction(session)
        if args.action == "create":
            issued = service.create(
                COMMAND_LINE, args.namespace, name=args.name, scope=args.scope, expires_in_days=args.expires_days
            )
            robot = issued.robot
            auditor.record(
                AuditAction.ROBOT_CREATED,
                namespace=robot.namespace,
                target=robot.login,
                detail=f"{args.scope} (command line)",
            )
            print(f"created robot {robot.login} ({args.scope}); its secret, shown once, is on stdout", file=sys.stderr)
            print(issued.secret)
        elif args.action == "list":
            robots = service.list(COMMAND_LINE, args.namespace)
            now = clock.now()
            if not robots:
                print(f"{args.namespace} has no robots")
            for found in robots:
                scope = found.credential.scope.label if found.credential else "-"
                expires = found.credential.expires_at if found.credential else None
                until = f", expires {expires.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if expires else ""
                print(f"{found.login}: {found.state(now)} ({scope}{until})")
        else:
            if args.action == "delete":
                robot = service.delete(COMMAND_LINE, args.namespace, args.name)
                event = AuditAction.ROBOT_REVOKED
            else:
                robot = service.set_active(COMMAND_LINE, args.namespace, args.name, args.action == "enable")
                event = AuditAction.ROBOT_ENABLED if args.action == "enable" else AuditAction.ROBOT_DISABLED
            auditor.record(event, namespace=robot.namespace, target=robot.login, detail="command line")
            print(f"robot {robot.login}: {args.action}d")
    return 0


MAX_AUDIT_LIMIT = 1000


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    """`audit list`: the newest events, filtered like the /audit page; every stored field through `shown`, so nothing
    a user typed (a name with a newline or an escape sequence) forges a line or moves the cursor."""
    from stevedore.adapters.clock import SystemClock
    from stevedore.adapters.sql.audit import SqlAuditLog
    from stevedore.domain.audit import MAX_NAME, AuditAction, AuditFilter, Auditor, shown

    if not 1 <= args.limit <= MAX_AUDIT_LIMIT:
        return _fail(f"--limit is from 1 to {MAX_AUDIT_LIMIT}")
    selection = AuditFilter(
        actor_name=(args.user or "").strip()[:MAX_NAME] or None,
        namespace=(args.namespace or "").strip()[:MAX_NAME] or None,
        action=AuditAction.parse(args.action.strip()) if args.action else None,
    )
    session, _ = _account_service(settings)
    with transaction.manager:
        join_transaction(session)
        page = Auditor(SqlAuditLog(session), SystemClock()).page(selection, before_id=args.before, limit=args.limit)
    if not page.events:
        print("no events" + (" match the filter" if selection != AuditFilter() else ""))
        return 0
    rows: list[tuple[str, ...]] = [("ID", "AT (UTC)", "USER", "ADDRESS", "ACTION", "NAMESPACE", "TARGET", "DETAIL")]
    for event in page.events:
        rows.append(
            (
                str(event.id),
                f"{event.at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
                *(
                    shown(value) or "-"
                    for value in (
                        event.actor_name,
                        event.address,
                        event.action.value,
                        event.namespace,
                        event.target,
                        event.detail,
                    )
                ),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if page.next_before_id is not None:
        print(f"older events: stevedore audit list --before {page.next_before_id} (with the same filters)")
    return 0


def _fsck(settings: Settings, args: argparse.Namespace) -> int:
    """`fsck`: the database is read first, then the storage, so a push committing meanwhile can show as bytes without a
    row (run again) but never as a row without bytes."""
    from stevedore.adapters.sql.engine import make_engine
    from stevedore.adapters.sql.fsck import read_database_view
    from stevedore.adapters.storage_inventory import hash_stored, storage_view
    from stevedore.domain.fsck import BlobRow, check
    from stevedore.web.app import build_blob_store

    if args.show < 0:
        return _fail("--show is a number of items, 0 or more")
    store = build_blob_store(settings)
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session, session.begin():
            database = read_database_view(session)
    finally:
        engine.dispose()
    stored = storage_view(store)

    def rehash(row: BlobRow, location: str) -> str | None:
        return hash_stored(store, row.digest, row.storage_key)

    report = check(database, stored, rehash=rehash if args.verify_digests else None)
    print(f"storage: {settings.storage_url}")
    for line in report.summary(first=args.show):
        print(line)
    if not report.consistent:
        print("fsck changes nothing: unreferenced objects and stale uploads are listed, never deleted")
    return 0 if report.consistent else 1


def _deliver_webhooks(settings: Settings, limit: int | None) -> int:
    """`webhooks deliver`: one pass of the deliverer the serving processes run (web/ui/webhooks.py)."""
    from stevedore.web.app import build_components
    from stevedore.web.ui.webhooks import build_deliverer

    components = build_components(settings)
    try:
        result = build_deliverer(components).run_once(limit=limit)
    finally:
        components.engine.dispose()
    print(f"webhook deliveries: {result.sent} sent, {result.retried} to retry, {result.failed} failed")
    return 0


def _storage_url(settings: Settings, url: str) -> str:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme == "file" and (parsed.netloc or parsed.path):
        return "file://" + os.path.abspath((parsed.netloc or "") + parsed.path)
    if parsed.scheme == "s3" and parsed.netloc:
        return f"s3://{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    raise SettingsError(f"unsupported storage URL {url!r}: use file:///path or s3://bucket/prefix")


def _storage_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """`storage migrate`: copy every blob with a row, then (with --update-database) clear the recorded S3 keys in
    one transaction; the setting is the operator's to switch."""
    import dataclasses

    from stevedore.adapters.sql.engine import make_engine, make_session_factory, writer_engine
    from stevedore.adapters.sql.fsck import blob_rows, clear_storage_keys
    from stevedore.adapters.storage_migration import Progress, migrate
    from stevedore.web.app import build_blob_store

    try:
        source_url = _storage_url(settings, args.source or settings.storage_url)
        target_url = _storage_url(settings, args.to)
        if source_url == target_url:
            return _fail(f"the source and the target are the same store: {source_url}")
        source = build_blob_store(dataclasses.replace(settings, storage_url=source_url))
        target = build_blob_store(dataclasses.replace(settings, storage_url=target_url))
    except SettingsError as exc:
        return _fail(str(exc))
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session, session.begin():
            rows = blob_rows(session)
    finally:
        engine.dispose()
    print(f"copying {len(rows)} blobs from {source_url} to {target_url}", file=sys.stderr)
    result = migrate(source, target, rows, progress=Progress(len(rows), sum(row.size for row in rows)))
    print(
        f"copied {len(result.copied)} blobs ({result.bytes_copied} bytes), {len(result.skipped)} already there, "
        f"{len(result.failed)} failed"
    )
    if result.failed:
        for digest, why in result.failed[:20]:
            print(f"  {digest}: {why}", file=sys.stderr)
        print(
            "nothing was switched: fix the failures (stevedore fsck helps) and run the same command again",
            file=sys.stderr,
        )
        return 1
    keyed = [row.digest for row in rows if row.storage_key]
    if args.update_database:
        session = make_session_factory(writer_engine(make_engine(settings.database_url)))()
        with transaction.manager:
            join_transaction(session)
            cleared = clear_storage_keys(session, result.present)
        print(f"the database now places {cleared} blobs by digest (their recorded S3 object keys are cleared)")
    elif keyed:
        print(
            f"{len(keyed)} blobs have a recorded S3 object key: stop the registry, run this command again with "
            "--update-database, then switch the setting"
        )
    if settings.storage_url.rstrip("/") != target_url:
        scheme_note = " (the endpoint, region and addressing come from the same stevedore.s3_* settings)"
        print(
            f"to use the copy, set stevedore.storage_url = {target_url} (or STEVEDORE_STORAGE_URL) on every node "
            f"and restart them{scheme_note if target_url.startswith('s3:') else ''}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
