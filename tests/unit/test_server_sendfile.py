"""PlainHttpChannel's sendfile flush (web/server.py) on a real socket pair, without a server loop: what it does when
the blob file is shorter than announced, from the event loop (it may close the channel) and from a worker thread
(waitress's `do_close=False`: it must only mark the channel for closing, as waitress does on a send error there)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from waitress.adjustments import Adjustments
from waitress.buffers import OverflowableBuffer, ReadOnlyFileBasedBuffer

from stevedore.web.server import PlainHttpChannel

SIZE = 256 * 1024


@pytest.fixture
def channel(tmp_path):
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    server = SimpleNamespace(active_channels={}, pull_trigger=lambda: None)
    channel = PlainHttpChannel(server, ours, ("127.0.0.1", 1), Adjustments(), map={})
    closed = []
    real_close = channel.handle_close

    def handle_close():
        closed.append(True)
        real_close()

    channel.handle_close = handle_close
    path = tmp_path / "blob"
    path.write_bytes(b"x" * SIZE)
    wrapper = ReadOnlyFileBasedBuffer(open(path, "rb"))  # noqa: SIM115 - the channel closes it
    channel.outbufs = [wrapper, OverflowableBuffer(channel.adj.outbuf_overflow)]
    channel.total_outbufs_len = wrapper.prepare()
    with open(path, "r+b") as handle:
        handle.truncate(SIZE // 2)  # shortened under the response (the announced length was SIZE)
    yield SimpleNamespace(channel=channel, closed=closed, wrapper=wrapper, peer=theirs)
    theirs.close()
    if not closed:
        real_close()


def drain(peer: socket.socket) -> None:
    peer.setblocking(False)
    try:
        while peer.recv(1 << 20):
            pass
    except BlockingIOError:
        pass


def flush_until_stuck(channel, *, do_close: bool, peer: socket.socket) -> None:
    for _ in range(50):
        drain(peer)
        if not channel.channel._flush_some(do_close=do_close) or channel.closed:
            return


def test_a_file_shorter_than_announced_closes_the_channel_from_the_event_loop(channel):
    flush_until_stuck(channel, do_close=True, peer=channel.peer)
    assert channel.closed
    assert channel.wrapper.file.closed
    assert channel.channel.total_outbufs_len == 0


def test_a_file_shorter_than_announced_found_by_a_worker_thread_only_marks_the_channel_for_closing(channel):
    """A worker thread (write_soon's flush, do_close=False) must never close the socket under the event loop."""
    flush_until_stuck(channel, do_close=False, peer=channel.peer)
    assert not channel.closed
    assert channel.channel.will_close
    assert not channel.channel._flush_some(do_close=False)  # nothing more to send, and no busy loop of retries
    assert not channel.closed
