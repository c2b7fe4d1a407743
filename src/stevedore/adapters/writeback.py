"""Adapter helper: start the kernel's writeback of a file range early, with Linux's sync_file_range(2).

Python has no `os.sync_file_range`, so libc's is called through ctypes (the call releases the GIL). A large blob's
bytes are handed to the kernel in windows as they are written; each full window's writeback is started at once
(`SYNC_FILE_RANGE_WRITE`: asynchronous, it waits for nothing), so the disk works while the rest of the body is still
arriving and the final `fsync` waits only for the tail and the metadata. This adds no durability and takes none
away: durability still comes from that `fsync` alone.

Only `SYNC_FILE_RANGE_WRITE` is ever used, never a WAIT flag: waiting on a range reports a writeback error (EIO,
ENOSPC) to this call and marks it seen for the file (the kernel's errseq), and the final `fsync` would then no longer
report it. Starting writeback reports only errors in submitting it, which are raised.

Where the call does not exist (not Linux, a libc without it) or is refused as not done here (ENOSYS, EINVAL, ESPIPE,
EOPNOTSUPP, or EPERM from a seccomp filter), `start_writeback` does nothing and says so by returning False; callers
then stop calling it for that file. On tmpfs it succeeds and does nothing.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections.abc import Callable

SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4

# Not done here (kernel, filesystem, sandbox): not an I/O error; the file is then written back as before.
UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP, errno.EPERM})

SyncFileRange = Callable[[int, int, int, int], int]


def _load() -> SyncFileRange | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    # glibc and musl: int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags)
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_sync_file_range: SyncFileRange | None = _load()


def available() -> bool:
    """Whether this process can call sync_file_range at all (a filesystem may still refuse it)."""
    return _sync_file_range is not None


def start_writeback(fd: int, offset: int, nbytes: int) -> bool:
    """Start writing back `nbytes` of `fd` from `offset` (asynchronously; no durability). False when unsupported
    here; any other failure is raised as OSError."""
    function = _sync_file_range
    if function is None:
        return False
    if nbytes <= 0:
        return True
    if function(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE) == 0:
        return True
    code = ctypes.get_errno()
    if code in UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code))
