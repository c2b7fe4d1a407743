"""The `stevedore` command line, for headless setups: migrations, users, invites.

stevedore --config INI db upgrade
stevedore --config INI user create NAME [--admin] [--email EMAIL] --password-stdin
stevedore --config INI invite create [--email EMAIL]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import transaction
from sqlalchemy.orm import Session

from stevedore.adapters.sql.engine import join_transaction
from stevedore.domain.accounts import AccountService
from stevedore.domain.errors import StevedoreError
from stevedore.web.settings import Settings, SettingsError


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

    invite = commands.add_parser("invite", help="invites").add_subparsers(dest="action", required=True)
    invite_create = invite.add_parser("create", help="create an invite and print its sign-up URL")
    invite_create.add_argument("--email")
    return parser


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

    try:
        settings = Settings.from_mapping(get_appsettings(ini, "main"))
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
        if args.command == "user":
            password = sys.stdin.readline().rstrip("\r\n")
            return _create_user(settings, args.name, password, args.email, args.admin)
        if args.command == "invite":
            return _create_invite(settings, args.email)
    except StevedoreError as exc:
        return _fail(exc.message)
    return _fail("unknown command")


def _account_service(settings: Settings) -> tuple[Session, AccountService]:
    from stevedore.adapters.clock import SystemClock
    from stevedore.adapters.passwords import BcryptPasswordHasher
    from stevedore.adapters.sql.accounts import SqlAccountStore
    from stevedore.adapters.sql.engine import make_engine, make_session_factory, writer_engine

    session = make_session_factory(writer_engine(make_engine(settings.database_url)))()
    service = AccountService(SqlAccountStore(session), BcryptPasswordHasher(settings.bcrypt_rounds), SystemClock())
    return session, service


def _create_user(settings: Settings, name: str, password: str, email: str | None, admin: bool) -> int:
    session, service = _account_service(settings)
    with transaction.manager:
        join_transaction(session)
        account = service.create_account(name, password, email=email, is_admin=admin)
    print(f"created {'administrator' if admin else 'user'} {account.username}")
    return 0


def _create_invite(settings: Settings, email: str | None) -> int:
    session, service = _account_service(settings)
    with transaction.manager:
        join_transaction(session)
        issued = service.create_invite(email=email)
    base = settings.public_url or f"http://127.0.0.1:{os.environ.get('PORT') or 5000}"
    print(f"invite code: {issued.code}")
    print(f"sign-up URL: {base}/signup/{issued.code}")
    print(f"expires: {issued.invite.expires_at:%Y-%m-%d %H:%M} UTC")
    if not settings.public_url:
        print("(set STEVEDORE_PUBLIC_URL or stevedore.public_url so the URL names your registry's real address)")
    print("note: the sign-up page arrives with the web index; until then create accounts with `user create`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
