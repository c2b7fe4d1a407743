"""Starting a file's writeback early (adapters/writeback.py) and the folder store's use of it."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import sys

import pytest

from stevedore.adapters import blobs_fs, writeback
from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.domain.errors import StorageFull
from stevedore.domain.model import Digest

KIB = 1024


def test_sync_file_range_is_callable_on_this_machine(tmp_path):
    assert sys.platform.startswith("linux")  # where the project runs and this test is meant to call the real thing
    assert writeback.available()
    path = tmp_path / "data"
    with open(path, "wb", buffering=0) as handle:
        handle.write(b"x" * (256 * KIB))
        assert writeback.start_writeback(handle.fileno(), 0, 256 * KIB) is True
        assert writeback.start_writeback(handle.fileno(), 0, 0) is True
    assert path.read_bytes() == b"x" * (256 * KIB)


def test_a_descriptor_that_cannot_be_written_back_is_unsupported_not_an_error():
    read_end, write_end = os.pipe()
    try:
        assert writeback.start_writeback(read_end, 0, 10) is False  # ESPIPE
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_real_failure_is_raised():
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)  # a closed descriptor: EBADF
    with pytest.raises(OSError) as caught:
        writeback.start_writeback(fd, 0, 10)
    assert caught.value.errno == errno.EBADF


def test_without_the_call_nothing_is_done(monkeypatch):
    monkeypatch.setattr(writeback, "_sync_file_range", None)
    assert not writeback.available()
    assert writeback.start_writeback(0, 0, 10) is False


def test_not_on_linux_the_call_is_not_looked_up(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert writeback._load() is None


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EINVAL])
def test_a_kernel_or_filesystem_without_it_is_unsupported(monkeypatch, code):
    def refusing(fd, offset, nbytes, flags):
        ctypes.set_errno(code)
        return -1

    monkeypatch.setattr(writeback, "_sync_file_range", refusing)
    assert writeback.start_writeback(3, 0, 10) is False


def test_only_the_asynchronous_write_flag_is_used(monkeypatch):
    calls = []
    monkeypatch.setattr(writeback, "_sync_file_range", lambda *args: calls.append(args) or 0)
    assert writeback.start_writeback(7, 4096, 8192) is True
    assert calls == [(7, 4096, 8192, writeback.SYNC_FILE_RANGE_WRITE)]


# --- the folder store ---------------------------------------------------------------------------------------------


def _digest(data: bytes) -> Digest:
    return Digest.parse(f"sha256:{hashlib.sha256(data).hexdigest()}")


def _chunks(data: bytes, size: int):
    return [data[start : start + size] for start in range(0, len(data), size)]


@pytest.fixture
def started(monkeypatch):
    """The ranges whose writeback the store starts, really started too."""
    calls: list[tuple[int, int]] = []

    def recording(fd, offset, nbytes):
        calls.append((offset, nbytes))
        return writeback.start_writeback(fd, offset, nbytes)

    monkeypatch.setattr(blobs_fs, "start_writeback", recording)
    return calls


def test_appends_start_the_writeback_window_by_window_and_their_tails(tmp_path, started):
    store = FolderBlobStore(str(tmp_path), fsync=True, writeback_window=64 * KIB)
    data = os.urandom(300 * KIB)
    store.start_upload("u")
    store.append("u", _chunks(data[: 200 * KIB], 16 * KIB))
    assert started == [(0, 64 * KIB), (64 * KIB, 64 * KIB), (128 * KIB, 64 * KIB), (192 * KIB, 8 * KIB)]
    started.clear()
    store.append("u", _chunks(data[200 * KIB :], 16 * KIB), offset=200 * KIB)
    # windows count from where the request starts; together the calls cover every byte once
    assert started == [(200 * KIB, 64 * KIB), (264 * KIB, 36 * KIB)]
    started.clear()
    info = store.finish("u", _digest(data))
    assert started == []  # the fsync follows at once: no tail to start
    assert info.size == len(data)
    assert b"".join(store.open(_digest(data))) == data


def test_a_finish_with_a_body_starts_its_full_windows(tmp_path, started):
    store = FolderBlobStore(str(tmp_path), fsync=True, writeback_window=64 * KIB)
    data = os.urandom(150 * KIB)
    store.start_upload("u")
    store.finish("u", _digest(data), _chunks(data, 32 * KIB))
    assert started == [(0, 64 * KIB), (64 * KIB, 64 * KIB)]
    assert b"".join(store.open(_digest(data))) == data


def test_without_fsync_no_writeback_is_started(tmp_path, started):
    store = FolderBlobStore(str(tmp_path), fsync=False, writeback_window=64 * KIB)
    data = os.urandom(200 * KIB)
    store.start_upload("u")
    store.append("u", _chunks(data, 16 * KIB))
    store.finish("u", _digest(data))
    assert started == []
    assert b"".join(store.open(_digest(data))) == data


def test_where_it_is_unsupported_the_store_stops_asking_and_still_stores_the_blob(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(writeback, "_sync_file_range", None)  # the no-op fallback, as off Linux
    monkeypatch.setattr(
        blobs_fs, "start_writeback", lambda *args: calls.append(args) or writeback.start_writeback(*args)
    )
    store = FolderBlobStore(str(tmp_path), fsync=True, writeback_window=64 * KIB)
    data = os.urandom(300 * KIB)
    store.start_upload("u")
    store.append("u", _chunks(data, 16 * KIB))
    assert len(calls) == 1  # refused once: not asked again in this request, not even for the tail
    info = store.finish("u", _digest(data))
    assert info.size == len(data)
    assert b"".join(store.open(_digest(data))) == data


def test_a_full_disk_met_starting_the_writeback_leaves_nothing_of_the_append(tmp_path, monkeypatch):
    def full(fd, offset, nbytes):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    store = FolderBlobStore(str(tmp_path), fsync=True, writeback_window=64 * KIB)
    store.start_upload("u")
    store.append("u", [b"a" * KIB])
    monkeypatch.setattr(blobs_fs, "start_writeback", full)
    with pytest.raises(StorageFull):
        store.append("u", _chunks(os.urandom(128 * KIB), 16 * KIB), offset=KIB)
    assert store.upload_size("u") == KIB
