"""Domain layer: the first administrator of an empty installation, claimed with a one-time setup code.

The server makes the code when it starts on a database without accounts and prints the setup URL; whoever opens it
creates the first account, an administrator. Without the code nobody can claim a fresh install, and once any account
exists there is nothing to set up. The code is derived from a random seed with the installation's secret key, so
every process (and every restart) that shares the database and the key prints the same URL; the database holds the
seed and a hash of the code, never the code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from stevedore.domain.accounts import AccountService
from stevedore.domain.errors import Denied, InvalidInput, NotFound
from stevedore.domain.model import Account
from stevedore.domain.ports import Clock, SetupCodeStore


class SetupDone(NotFound):
    message = "this installation is set up already: log in instead"


class SetupCodeInvalid(Denied):
    message = "the setup code is wrong: open the setup URL that the server printed when it started"


class EmailRequired(InvalidInput):
    message = "the administrator needs an e-mail address"


def hash_setup_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class SetupService:
    def __init__(self, codes: SetupCodeStore, accounts: AccountService, clock: Clock, *, secret_key: bytes) -> None:
        self.codes = codes
        self.accounts = accounts
        self.clock = clock
        self._key = hmac.new(secret_key, b"setup-code", hashlib.sha256).digest()

    def _code_for(self, seed: str) -> str:
        return hmac.new(self._key, seed.encode(), hashlib.sha256).hexdigest()[:32]

    def needs_setup(self) -> bool:
        return self.accounts.accounts.count() == 0

    def setup_code(self) -> str | None:
        """The code to print on an empty installation (made now if none is stored), or None once accounts exist."""
        if not self.needs_setup():
            return None
        seed = secrets.token_urlsafe(32)
        stored_seed, stored_hash = self.codes.issue_if_absent(
            seed, hash_setup_code(self._code_for(seed)), self.clock.now()
        )
        code = self._code_for(stored_seed)
        if not hmac.compare_digest(hash_setup_code(code), stored_hash):
            return None  # made with another secret key: that key's holder has the code
        return code

    def check_code(self, code: str) -> None:
        """Raise SetupDone once accounts exist, SetupCodeInvalid unless `code` is the stored one."""
        if not self.needs_setup():
            raise SetupDone()
        stored = self.codes.current()
        if stored is None or not code or not hmac.compare_digest(hash_setup_code(code), stored[1]):
            raise SetupCodeInvalid()

    def create_first_administrator(self, code: str, username: str, password: str, email: str) -> Account:
        """The first account, an administrator. The code is used up with it: only one caller ever succeeds."""
        self.check_code(code)
        if not (email or "").strip():
            raise EmailRequired()
        account = self.accounts.create_account(username, password, email=email.strip(), is_admin=True)
        if not self.codes.consume(hash_setup_code(code)):
            raise SetupDone()  # another request used the code first; the caller's transaction must roll back
        return account
