"""PlainHttpChannel's sendfile flush (web/server.py) where sendfile(2) is not supported (EINVAL from some FUSE or
network filesystems): the connection falls back to waitress's own loop and the whole blob still arrives."""

from __future__ import annotations

import errno
import os
import socket
from types import SimpleNamespace

from waitress.adjustments import Adjustments
from waitress.buffers import OverflowableBuffer, ReadOnlyFileBasedBuffer

from stevedore.web.server import PlainHttpChannel

SIZE = 3 * 1024 * 1024 + 17


def test_a_blob_goes_out_through_waitress_when_sendfile_is_refused(tmp_path, monkeypatch):
    calls = []

    def unsupported(*args):
        calls.append(args)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", unsupported)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    server = SimpleNamespace(active_channels={}, pull_trigger=lambda: None)
    channel = PlainHttpChannel(server, ours, ("127.0.0.1", 1), Adjustments(), map={})
    data = os.urandom(SIZE)
    path = tmp_path / "blob"
    path.write_bytes(data)
    wrapper = ReadOnlyFileBasedBuffer(open(path, "rb"))  # noqa: SIM115 - the channel closes it
    channel.outbufs = [wrapper, OverflowableBuffer(channel.adj.outbuf_overflow)]
    channel.total_outbufs_len = wrapper.prepare()
    received = bytearray()
    try:
        for _ in range(10_000):
            channel._flush_some(do_close=True)
            try:
                while chunk := theirs.recv(1 << 20):
                    received += chunk
            except BlockingIOError:
                pass
            if len(received) >= SIZE:
                break
        assert bytes(received) == data
        assert len(calls) == 1  # tried once, then this connection sends as waitress does
        assert channel.total_outbufs_len == 0
    finally:
        theirs.close()
        channel.handle_close()
