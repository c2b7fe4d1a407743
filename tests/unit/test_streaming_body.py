"""The bounded buffer between the event loop and the app for a body handed over as it arrives."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

from stevedore.web.streaming_body import BodyInterrupted, StreamingBody


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _body(**kwargs) -> tuple[StreamingBody, Wakes]:
    wakes = Wakes()
    return StreamingBody(wakes, kwargs.pop("silence_timeout", 5.0), **kwargs), wakes


def test_reads_wait_for_the_asked_size_or_the_end_and_keep_the_bytes_in_order():
    body, _ = _body()
    data = os.urandom(300_000)
    reader = body.getfile()
    got: list[bytes] = []

    def read_all() -> None:
        while True:
            chunk = reader.read(65536)
            got.append(chunk)
            if not chunk:
                return

    thread = threading.Thread(target=read_all)
    thread.start()
    for start in range(0, len(data), 7000):
        body.append(data[start : start + 7000])
        time.sleep(0.0005)
    body.end()
    thread.join(5)
    assert not thread.is_alive()
    assert b"".join(got) == data
    assert all(len(chunk) == 65536 for chunk in got[:-2])  # full reads until the end
    assert len(body) == len(data)


def test_a_disconnect_interrupts_a_waiting_reader():
    body, _ = _body()
    body.append(b"abc")
    failures: list[BaseException] = []

    def read() -> None:
        try:
            body.getfile().read(10)
        except BodyInterrupted as exc:
            failures.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    time.sleep(0.05)
    body.fail("the client disconnected")
    thread.join(5)
    assert len(failures) == 1 and isinstance(failures[0], ConnectionError)
    assert body.complete


def test_a_silent_client_is_given_up_after_the_silence_timeout():
    body, _ = _body(silence_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(BodyInterrupted):
        body.getfile().read(10)
    assert 0.15 < time.monotonic() - started < 2


def test_the_buffer_stops_the_channel_above_high_water_and_wakes_it_below_low_water():
    body, wakes = _body(high_water=1000, low_water=400)
    assert body.wants_more()
    body.append(b"x" * 1000)
    assert not body.wants_more()  # backpressure: the channel stops reading its socket
    body.getfile().read(500)
    assert wakes.count == 0  # still above the low-water mark
    body.getfile().read(200)
    assert wakes.count == 1 and body.wants_more()


def test_a_closed_body_drops_what_still_arrives_and_keeps_reading_it_until_its_end():
    body, wakes = _body(high_water=10)
    body.append(b"y" * 20)
    assert not body.wants_more()
    body.close()  # the app answered without reading
    assert wakes.count == 1
    body.append(b"z" * 10_000)
    assert body.wants_more()  # dropped, so never full
    body.end()
    assert body.complete and not body.wants_more()
    with pytest.raises(BodyInterrupted):
        body.getfile().read(1)


def test_read_without_a_size_returns_the_whole_body_and_lines_are_split():
    body, _ = _body()
    body.append(b"first line\nsecond")
    body.append(b" line\n")
    body.end()
    reader = body.getfile()
    assert reader.readline() == b"first line\n"
    assert reader.read() == b"second line\n"
    assert reader.read(10) == b""


def test_the_first_read_sends_a_pending_continue_once():
    body, _ = _body()
    calls: list[int] = []
    reader = body.getfile()
    reader.on_first_read = lambda: calls.append(1)
    data = os.urandom(1000)
    body.append(data)
    body.end()
    hasher = hashlib.sha256()
    while chunk := reader.read(300):
        hasher.update(chunk)
    assert calls == [1]
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
