"""UploadTickets: a POST's upload id carries its session signed for one repository and one account; any other use of
it, any alteration, and anything not issued with the key reads as no ticket at all (None)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from stevedore.domain.model import RepositoryName
from stevedore.domain.upload_tickets import UploadTicket, UploadTickets

KEY = b"the server's secret key"
APP = RepositoryName.parse("team/app")
OTHER = RepositoryName.parse("team/other")
ALICE, BOB = 1, 2
ISSUED = datetime(2026, 1, 1, 12, 30, 5, 750_000, tzinfo=UTC)


@pytest.fixture
def tickets():
    return UploadTickets(KEY)


@pytest.fixture
def ticket(tickets):
    return tickets.issue(APP, ALICE, "sha256", ISSUED)


def test_a_ticket_reads_back_for_its_repository_and_account(tickets, ticket):
    read = tickets.read(ticket, APP, ALICE)
    assert read is not None
    assert read.session_id == ticket.split(".")[0]
    assert str(uuid.UUID(read.session_id)) == read.session_id
    assert read.created_at == datetime(2026, 1, 1, 12, 30, 5, tzinfo=UTC)  # to the second
    assert read.digest_algorithm == "sha256"
    assert read.signed


@pytest.mark.parametrize("account_id", [ALICE, None], ids=["account", "anonymous"])
@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_every_account_and_algorithm_reads_back(tickets, account_id, algorithm):
    text = tickets.issue(OTHER, account_id, algorithm, ISSUED)
    read = tickets.read(text, OTHER, account_id)
    assert read == UploadTicket(text.split(".")[0], datetime(2026, 1, 1, 12, 30, 5, tzinfo=UTC), algorithm)


def test_another_instance_with_the_same_key_reads_it(ticket):
    """Every node of the registry has the same key: a ticket issued by one is good on the others."""
    assert UploadTickets(KEY).read(ticket, APP, ALICE) is not None


def test_each_ticket_names_a_new_session(tickets):
    issued = {tickets.issue(APP, ALICE, "sha256", ISSUED).split(".")[0] for _ in range(50)}
    assert len(issued) == 50


@pytest.mark.parametrize(
    ("name", "account_id"),
    [(OTHER, ALICE), (APP, BOB), (APP, None), (APP, 0), (RepositoryName.parse("team/app/sub"), ALICE)],
    ids=["another-repository", "another-account", "anonymous", "account-0", "a-sub-repository"],
)
def test_a_ticket_is_refused_anywhere_else(tickets, ticket, name, account_id):
    assert tickets.read(ticket, name, account_id) is None


@pytest.mark.parametrize("account_id", [ALICE, 0], ids=["account", "account-0"])
def test_an_anonymous_ticket_is_refused_to_an_account(tickets, account_id):
    anonymous = tickets.issue(APP, None, "sha256", ISSUED)
    assert tickets.read(anonymous, APP, None) is not None
    assert tickets.read(anonymous, APP, account_id) is None


def test_a_ticket_of_another_key_is_refused(ticket):
    assert UploadTickets(b"another server's key").read(ticket, APP, ALICE) is None


def _altered(text: str, position: int, replacement: str) -> str:
    return text[:position] + replacement + text[position + 1 :]


def test_a_ticket_altered_in_any_character_is_refused(tickets, ticket):
    for position, character in enumerate(ticket):
        for replacement in {"a", "0", "A", ".", "-", "_", character.swapcase()} - {character}:
            altered = _altered(ticket, position, replacement)
            assert tickets.read(altered, APP, ALICE) is None, altered
        assert tickets.read(ticket[:position] + ticket[position + 1 :], APP, ALICE) is None  # a character less
        assert tickets.read(ticket[:position] + "0" + ticket[position:], APP, ALICE) is None  # one more


def test_a_ticket_altered_with_a_non_ascii_character_is_refused_not_an_error(tickets, ticket):
    """Upload ids come from the URL's path, which may hold any character: none may raise (a 500)."""
    for position in range(len(ticket)):
        assert tickets.read(_altered(ticket, position, "é"), APP, ALICE) is None, position
    assert tickets.read("é.é.é.é", APP, ALICE) is None


def test_a_ticket_with_its_created_time_moved_is_refused(tickets, ticket):
    session_id, created, algorithm, mac = ticket.split(".")
    later = f"{int(created, 16) + 3600:x}"
    assert tickets.read(f"{session_id}.{later}.{algorithm}.{mac}", APP, ALICE) is None


def test_a_ticket_with_another_algorithm_is_refused(tickets, ticket):
    session_id, created, _algorithm, mac = ticket.split(".")
    assert tickets.read(f"{session_id}.{created}.sha512.{mac}", APP, ALICE) is None


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "SHA256", ""])
def test_a_signed_ticket_of_an_unsupported_algorithm_is_refused(tickets, algorithm):
    assert tickets.read(tickets.issue(APP, ALICE, algorithm, ISSUED), APP, ALICE) is None


@pytest.mark.parametrize(
    "text",
    ["", ".", "...", "....", "a.b.c.d", "no-such-upload", " ", "null", "x" * 500, "../../etc/passwd"],
)
def test_garbage_is_refused(tickets, text):
    assert tickets.read(text, APP, ALICE) is None


def test_too_many_or_too_few_parts_are_refused(tickets, ticket):
    session_id, created, algorithm, mac = ticket.split(".")
    for text in (
        f"{ticket}.",
        f"{ticket}.{mac}",
        f".{ticket}",
        f"{session_id}.{created}.{algorithm}",
        f"{session_id}.{created}.{mac}",
        f"{session_id}.{created}.{algorithm}..{mac}",
        f"{session_id}.{created}{algorithm}.{mac}",
        ticket.replace(".", ""),
        session_id + "." + mac,
    ):
        assert tickets.read(text, APP, ALICE) is None, text


def test_an_overlong_text_is_refused_unread(tickets, ticket):
    session_id, created, algorithm, mac = ticket.split(".")
    padded = f"{session_id}.{'0' * 200}{created}.{algorithm}.{mac}"
    assert tickets.read(padded, APP, ALICE) is None


def test_signed_parts_that_are_not_a_session_or_a_time_are_refused(tickets):
    """Should the MAC ever pass, the session id must still be a UUID (it names a folder) and the time a number."""
    for body in ("../escape.69566a25.sha256", f"{uuid.uuid4()}.not-hex.sha256", f"{uuid.uuid4()}.{'f' * 40}.sha256"):
        forged = f"{body}.{tickets._mac(body, APP, ALICE)}"
        assert tickets.read(forged, APP, ALICE) is None, body


def test_a_plain_uuid_reads_as_unsigned(tickets):
    """Older releases handed out plain UUIDs: read, but unsigned, so that only their row can make them valid."""
    plain = str(uuid.uuid4())
    read = tickets.read(plain, APP, ALICE)
    assert read is not None
    assert (read.session_id, read.signed, read.digest_algorithm) == (plain, False, "")
    assert tickets.read(plain, OTHER, None) == read  # the row, not the ticket, says whose it is


@pytest.mark.parametrize(
    "text",
    [str(uuid.uuid4()).upper(), str(uuid.uuid4()).replace("-", ""), "{" + str(uuid.uuid4()) + "}"],
    ids=["upper-case", "no-hyphens", "braces"],
)
def test_only_the_canonical_uuid_form_is_a_plain_id(tickets, text):
    assert tickets.read(text, APP, ALICE) is None
