"""Races between transactions on PostgreSQL, where writers are not serialized as SQLite's are."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from stevedore.adapters.sql.engine import make_session_factory
from stevedore.adapters.sql.registry import SqlRegistryStore
from stevedore.domain.model import BlobInfo, Digest, RepositoryName, Tag
from stevedore.domain.registry import StoredManifest

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NAME = RepositoryName("race/app")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_delete_waits_for_a_concurrent_push_of_the_same_manifest(components):
    sessions = make_session_factory(components.engine)
    body = b'{"schemaVersion":2}'
    manifest = StoredManifest(Digest.of(body), "application/vnd.oci.image.manifest.v1+json", len(body), body)
    with sessions() as setup:
        store = SqlRegistryStore(setup)
        store.add_blob(BlobInfo(Digest.of(b"x"), 1), NOW)
        store.put_manifest(NAME, manifest, [], [], NOW)
        setup.commit()

    pusher = sessions()
    SqlRegistryStore(pusher).put_manifest(NAME, manifest, [], [], NOW)  # the same bytes again: locks the row

    deleted: list[bool] = []

    def delete() -> None:
        with sessions() as deleter:
            deleted.append(SqlRegistryStore(deleter).delete_manifest(NAME, manifest.digest))
            deleter.commit()

    racer = threading.Thread(target=delete)
    racer.start()
    racer.join(timeout=1.0)
    assert racer.is_alive(), "the delete did not wait for the push that holds the manifest"

    SqlRegistryStore(pusher).tag_manifest(NAME, Tag("v1"), manifest.digest, NOW)  # no foreign-key error
    pusher.commit()
    pusher.close()
    racer.join(timeout=30)
    assert deleted == [["v1"]]  # it went, and took the tag pushed meanwhile
    with sessions() as check:
        assert SqlRegistryStore(check).tagged_manifest(NAME, Tag("v1")) is None
