"""The /v2/ views' header parsing: `Range` on blob GETs and `Content-Range` on upload chunks."""

from __future__ import annotations

import pytest
from webob import Request

from stevedore.domain.errors import RangeInvalid, RangeNotSatisfiable
from stevedore.domain.model import ByteRange
from stevedore.web.registry.http import content_range_start, requested_range


def with_range(header: str | None) -> Request:
    return Request.blank("/v2/app/blobs/x", headers={} if header is None else {"Range": header})


def chunk(content_range: str | None, body: bytes | None = None) -> Request:
    request = Request.blank("/v2/app/blobs/uploads/u", method="PATCH")
    if content_range is not None:
        request.headers["Content-Range"] = content_range
    if body is not None:
        request.body = body  # sets Content-Length
    return request


# --- Range ---------------------------------------------------------------------------------------------
def test_no_range_header_means_the_whole_blob():
    assert requested_range(with_range(None), 100) is None
    assert requested_range(with_range(""), 100) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=10-19", ByteRange(10, 19)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=99-", ByteRange(99, 99)),
        ("bytes=50-1000", ByteRange(50, 99)),  # an end past the blob is clipped
        ("bytes=-10", ByteRange(90, 99)),  # the last ten bytes
        ("bytes=-1", ByteRange(99, 99)),
        ("bytes=-500", ByteRange(0, 99)),  # a suffix longer than the blob is the whole blob
        (" bytes=5-6 ", ByteRange(5, 6)),
    ],
)
def test_single_ranges_are_resolved_against_the_size(header, expected):
    assert requested_range(with_range(header), 100) == expected


@pytest.mark.parametrize(
    "header",
    ["bytes=0-1,5-6", "bytes=-", "bytes=a-b", "items=0-5", "0-5", "bytes=7-3", "bytes 0-5"],
)
def test_multiple_malformed_or_backward_ranges_are_ignored(header):
    assert requested_range(with_range(header), 100) is None


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100)])
def test_ranges_outside_the_blob_are_not_satisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        requested_range(with_range(header), size)


@pytest.mark.parametrize("header", ["bytes=0-", "bytes=0-0", "bytes=-5"])
def test_no_range_of_an_empty_blob_is_satisfiable(header):
    with pytest.raises(RangeNotSatisfiable):
        requested_range(with_range(header), 0)


# --- Content-Range -------------------------------------------------------------------------------------
def test_no_content_range_means_a_streamed_chunk():
    assert content_range_start(chunk(None, b"data")) is None


@pytest.mark.parametrize("header", ["0-3", "bytes 0-3", "bytes=0-3", "bytes 0-3/4", "bytes 0-3/*", "0-3/100", " 0-3 "])
def test_content_range_forms_give_the_start(header):
    assert content_range_start(chunk(header, b"data")) == 0


def test_a_later_chunk_starts_where_it_says():
    assert content_range_start(chunk("10-13", b"data")) == 10


def test_content_range_without_content_length_is_not_checked_against_it():
    request = chunk("5-9")
    request.environ.pop("CONTENT_LENGTH", None)
    assert request.content_length is None
    assert content_range_start(request) == 5


@pytest.mark.parametrize("header", ["10-14", "0-4", "0-2", "bytes 0-0"])
def test_content_range_must_match_the_body_length(header):
    with pytest.raises(RangeInvalid):
        content_range_start(chunk(header, b"data"))


@pytest.mark.parametrize("header", ["3-0", "abc", "-3", "0-", "bytes 0-3/x", "0-3,5-6", "bytes=-3"])
def test_malformed_or_backward_content_ranges_are_refused(header):
    with pytest.raises(RangeInvalid):
        content_range_start(chunk(header, b"data"))
