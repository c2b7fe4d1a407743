"""A manifest push holds the blob rows it read (`SqlRegistryStore.linked_blob_sizes`: FOR KEY SHARE on PostgreSQL)
until it commits, so a collection that runs after the blob's link was deleted but before the manifest is stored
skips the row instead of deleting a blob the manifest is about to reference. Deterministic, on PostgreSQL (on SQLite
the one write lock serializes the push and the collector; test_gc_races.py races them on both): without the hold the
collector deletes the row and the stored manifest references a blob that is gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.gc import garbage_units
from stevedore.adapters.sql.registry import SqlRegistryStore
from stevedore.adapters.sql.tables import blobs, manifest_references
from stevedore.domain.model import BlobInfo, Digest, RepositoryName
from stevedore.domain.registry import StoredManifest

pytestmark = pytest.mark.postgres

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_manifest_push_holds_its_blobs_against_a_collection(database_url):
    engine = make_engine(database_url)
    try:
        name = RepositoryName.parse("alice/app")
        layer = Digest.of(b"layer bytes")
        long_ago = datetime.now(UTC) - timedelta(days=30)
        with Session(engine) as session, session.begin():
            store = SqlRegistryStore(session)
            store.add_blob(BlobInfo(layer, 11), long_ago)
            store.link_blob(name, layer, long_ago)

        with Session(engine) as push, push.begin():
            pushing = SqlRegistryStore(push)
            assert pushing.linked_blob_sizes(name, [layer]) == {layer: 11}  # the push checked its blobs
            with Session(engine) as other, other.begin():  # meanwhile: DELETE /v2/alice/app/blobs/<layer>
                assert SqlRegistryStore(other).unlink_blob(name, layer)
            _, writes = garbage_units(engine)
            with writes() as garbage:  # and a collection: the row is unreferenced and old
                collected = garbage.delete_unreferenced([str(layer)], datetime.now(UTC))
            assert collected == [], "the collector deleted a blob row that a manifest push holds"
            body = b'{"manifest": 1}'
            manifest = StoredManifest(Digest.of(body), OCI_MANIFEST, len(body), body)
            pushing.put_manifest(name, manifest, [layer], [], datetime.now(UTC))

        with engine.connect() as connection:
            row = connection.execute(sa.select(blobs.c.digest).where(blobs.c.digest == str(layer))).first()
            references = connection.execute(
                sa.select(manifest_references.c.digest).where(manifest_references.c.digest == str(layer))
            ).all()
        assert references and row is not None, "the manifest references a blob whose row was collected"
    finally:
        engine.dispose()
