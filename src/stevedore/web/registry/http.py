"""Web layer: HTTP details shared by the /v2/ views — request bodies in chunks, ranges, absolute locations."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pyramid.request import Request
from pyramid.response import Response

from stevedore.domain.errors import (
    PaginationNumberInvalid,
    PayloadTooLarge,
    RangeInvalid,
    RangeNotSatisfiable,
    SizeInvalid,
)
from stevedore.domain.model import ByteRange, Digest, RepositoryName
from stevedore.web.registry.challenge import public_url

CHUNK_SIZE = 1024 * 1024
# Offsets of at most 19 digits (int64), so a hostile header cannot make int() work on thousands of digits.
_CONTENT_RANGE = re.compile(r"\s*(?:bytes[ =])?(\d{1,19})-(\d{1,19})(?:/(?:\d{1,19}|\*))?\s*")
_RANGE = re.compile(r"\s*bytes=(\d{0,19})-(\d{0,19})\s*")


def repository(request: Request) -> RepositoryName:
    return RepositoryName.parse(request.matchdict["name"])


def iter_body(request: Request) -> Iterator[bytes]:
    """The request body in fixed-size chunks, never whole. Waitress has already received it (spooled to disk past
    512 KiB), so a short read means the body was shorter than its Content-Length said."""
    stream = request.environ["wsgi.input"]
    remaining = request.content_length
    if remaining is None:
        while chunk := stream.read(CHUNK_SIZE):
            yield chunk
        return
    while remaining > 0:
        chunk = stream.read(min(CHUNK_SIZE, remaining))
        if not chunk:
            raise SizeInvalid("the request body ended before its Content-Length")
        remaining -= len(chunk)
        yield chunk


def read_limited_body(request: Request, limit: int) -> bytes:
    """A small body (a manifest) read whole, refused from its Content-Length before reading when it is too big."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is limited to {limit} bytes")
    parts: list[bytes] = []
    size = 0
    for chunk in iter_body(request):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is limited to {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def content_range_start(request: Request) -> int | None:
    """The start of a chunk's `Content-Range: <start>-<end>` (distribution-spec chunked upload), checked against
    the body length. None when the header is absent (a streamed upload)."""
    header = request.headers.get("Content-Range")
    if not header:
        return None
    match = _CONTENT_RANGE.fullmatch(header)
    if not match:
        raise RangeInvalid(f"invalid Content-Range {header!r}")
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise RangeInvalid(f"invalid Content-Range {header!r}")
    if request.content_length is not None and request.content_length != end - start + 1:
        raise RangeInvalid(f"Content-Range {header!r} does not match Content-Length {request.content_length}")
    return start


def requested_range(request: Request, size: int) -> ByteRange | None:
    """The single byte range of a `Range` header, or None for the whole blob. Raises RangeNotSatisfiable."""
    header = request.headers.get("Range")
    if not header:
        return None
    match = _RANGE.fullmatch(header)
    if not match or (not match.group(1) and not match.group(2)):
        return None  # multiple or malformed ranges: RFC 9110 lets us ignore the header
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None
    else:
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable(detail={"size": size})
        start, end = max(0, size - suffix), size - 1
    if start >= size:
        raise RangeNotSatisfiable(detail={"size": size})
    return ByteRange(start, end)


def absolute(request: Request, path: str) -> str:
    return public_url(request) + path


def blob_location(request: Request, name: RepositoryName, digest: Digest) -> str:
    return absolute(request, f"/v2/{name}/blobs/{digest}")


def upload_location(request: Request, name: RepositoryName, upload_id: str) -> str:
    return absolute(request, f"/v2/{name}/blobs/uploads/{upload_id}")


def upload_range(size: int) -> str:
    # Distribution's convention: "0-0" for an empty upload, else the inclusive range of bytes received.
    return f"0-{max(size - 1, 0)}"


def page_size(request: Request) -> int | None:
    value = request.params.get("n")
    if value in (None, ""):
        return None
    try:
        n = int(value)
    except ValueError as exc:
        raise PaginationNumberInvalid("n must be a whole number") from exc
    if n < 0:
        raise PaginationNumberInvalid("n must not be negative")
    return n


def json_response(body: object, content_type: str = "application/json") -> Response:
    response = Response(status=200, charset="utf-8")
    response.json_body = body
    response.headers["Content-Type"] = content_type
    return response


def empty_response(status: int) -> Response:
    response = Response(status=status)
    response.headers.pop("Content-Type", None)
    response.app_iter = []  # first: WebOb's app_iter setter drops the Content-Length (and waitress then closes)
    response.content_length = 0
    return response


def pagination_marker(request: Request) -> str | None:
    """The `last` parameter: a name from an earlier page. Control characters can be in no name."""
    last = request.params.get("last") or None
    if last is not None and (len(last) > 512 or any(ord(c) < 32 or c == "\x7f" for c in last)):
        raise PaginationNumberInvalid("invalid last parameter")
    return last
