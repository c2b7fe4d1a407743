"""Adapter: what a blob store holds, listed from its public attributes (the folder's root; S3's client, bucket,
prefix) for `stevedore fsck` and `stevedore storage migrate`. Reads only; never changes the store.

Locations are relative to the store's root or prefix, as the database records them (blobs.storage_key):
`blobs/<algorithm>/<2 hex>/<hex>` for blobs placed by digest, `objects/<upload id>` for S3 upload objects, anything
else as found. Uploads in progress (or left over) are listed apart: the folder's `uploads/<id>/data`, S3's
`uploads/<id>` state objects. S3's incomplete multipart uploads are listed too (`s3_multipart_uploads`): each of
an upload session's data is one on `objects/<upload id>`, and one that no session row knows is a leftover that costs
storage until aborted (`abort_s3_multipart`, used by `stevedore upload sweep`) or the bucket's lifecycle rule
(AbortIncompleteMultipartUpload) removes it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.adapters.blobs_s3 import S3BlobStore, _storage_errors
from stevedore.domain.fsck import StorageView, StoredMultipartUpload, StoredObject, StoredUpload
from stevedore.domain.model import Digest

PAGE_SIZE = 1000  # S3's maximum for ListObjectsV2


def folder_objects(store: FolderBlobStore) -> Iterator[StoredObject]:
    blobs_root = os.path.join(store.root, "blobs")
    for folder, subfolders, files in os.walk(blobs_root):
        subfolders.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:  # removed while we walked
                continue
            yield StoredObject(os.path.relpath(path, store.root).replace(os.sep, "/"), size)


def folder_uploads(store: FolderBlobStore) -> Iterator[StoredUpload]:
    uploads_root = os.path.join(store.root, "uploads")
    for name in sorted(os.listdir(uploads_root)):
        try:
            size = os.stat(os.path.join(uploads_root, name, "data")).st_size
        except (FileNotFoundError, NotADirectoryError):
            size = 0  # an upload folder without its data: a crash between mkdir and create, still a leftover
        yield StoredUpload(name, size)


def s3_listing(store: S3BlobStore, under: str = "", *, page_size: int = PAGE_SIZE) -> Iterator[tuple[str, int]]:
    """(location relative to the prefix, size) of every key under `prefix + under`, paged by ListObjectsV2's
    continuation tokens."""
    arguments: dict[str, Any] = {"Bucket": store.bucket, "Prefix": store.prefix + under, "MaxKeys": page_size}
    while True:
        with _storage_errors("listing the bucket"):
            page = store.client.list_objects_v2(**arguments)
        for item in page.get("Contents", []):
            yield str(item["Key"])[len(store.prefix) :], int(item["Size"])
        if not page.get("IsTruncated"):
            return
        arguments["ContinuationToken"] = page["NextContinuationToken"]


def s3_objects(store: S3BlobStore, *, page_size: int = PAGE_SIZE) -> Iterator[StoredObject]:
    for location, size in s3_listing(store, page_size=page_size):
        if not location.startswith("uploads/"):
            yield StoredObject(location, size)


def s3_uploads(store: S3BlobStore, *, page_size: int = PAGE_SIZE) -> Iterator[StoredUpload]:
    """Upload state objects; their size is the tail's (the bytes after the last whole part)."""
    for location, size in s3_listing(store, "uploads/", page_size=page_size):
        yield StoredUpload(location[len("uploads/") :], size)


def s3_multipart_uploads(store: S3BlobStore, *, page_size: int = PAGE_SIZE) -> Iterator[StoredMultipartUpload]:
    """Every incomplete multipart upload under the store's prefix, paged by ListMultipartUploads' key and upload id
    markers. `upload_id` is the upload session's id when the key is `objects/<id>`, else the key as found."""
    arguments: dict[str, Any] = {"Bucket": store.bucket, "Prefix": store.prefix, "MaxUploads": page_size}
    while True:
        with _storage_errors("listing multipart uploads"):
            page = store.client.list_multipart_uploads(**arguments)
        for item in page.get("Uploads", []):
            location = str(item["Key"])[len(store.prefix) :]
            session = location[len("objects/") :] if location.startswith("objects/") else location
            initiated = item["Initiated"]
            if isinstance(initiated, datetime) and initiated.tzinfo is None:
                initiated = initiated.replace(tzinfo=UTC)
            yield StoredMultipartUpload(session, location, str(item["UploadId"]), initiated)
        if not page.get("IsTruncated"):
            return
        arguments["KeyMarker"] = page.get("NextKeyMarker", "")
        arguments["UploadIdMarker"] = page.get("NextUploadIdMarker", "")


def abort_s3_multipart(store: S3BlobStore, upload: StoredMultipartUpload) -> bool:
    """Abort one incomplete multipart upload (its parts go; an object completed at its key stays). False when it
    was gone already (completed or aborted meanwhile)."""
    with _storage_errors("aborting a multipart upload"):
        try:
            store.client.abort_multipart_upload(
                Bucket=store.bucket, Key=store.prefix + upload.location, UploadId=upload.s3_upload_id
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404"):
                return False
            raise
    return True


def storage_view(store: object) -> StorageView:
    """What the store holds, for the fsck domain."""
    if isinstance(store, FolderBlobStore):
        return StorageView(list(folder_objects(store)), list(folder_uploads(store)), honours_storage_keys=False)
    if isinstance(store, S3BlobStore):
        return StorageView(
            list(s3_objects(store)),
            list(s3_uploads(store)),
            honours_storage_keys=True,
            multipart_uploads=list(s3_multipart_uploads(store)),
        )
    raise TypeError(f"no inventory for {type(store).__name__}")


def hash_stored(store: Any, digest: str, location: str | None) -> str | None:
    """The digest the stored bytes of `digest` hash to (in its algorithm), streamed; None when they are gone."""
    from stevedore.domain.errors import BlobUnknown

    parsed = Digest.parse(digest)
    hasher = hashlib.new(parsed.algorithm)
    try:
        for chunk in store.open(parsed, location=location):
            hasher.update(chunk)
    except BlobUnknown:
        return None
    return f"{parsed.algorithm}:{hasher.hexdigest()}"
