"""Web layer: a request body handed to the app while it is still arriving (see web/server.py).

The event loop appends what the socket brings (through waitress's body receivers, which call `append`); the app's
thread reads it through `StreamingBody.getfile()` (its `wsgi.input`), waiting for data or the end of the body. The
buffer is bounded: above `high_water` bytes the channel stops reading the socket (`wants_more` is False) and the
reader wakes the event loop once it has drained below `low_water`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

HIGH_WATER = 8 * 1024 * 1024
LOW_WATER = 2 * 1024 * 1024


class BodyInterrupted(ConnectionError):
    """The body will not arrive whole: the client disconnected, went silent too long, or sent an invalid body
    (`too_large`: a chunked body past the server's max_request_body_size)."""

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason)
        self.too_large = too_large


class StreamingBody:
    """A bounded, thread-safe FIFO of body bytes, written by the event loop and read by one app thread."""

    def __init__(
        self,
        wake: Callable[[], None],
        silence_timeout: float,
        high_water: int = HIGH_WATER,
        low_water: int = LOW_WATER,
    ) -> None:
        self._wake = wake  # wakes the event loop, so that it asks the channel whether it is readable again
        self.silence_timeout = silence_timeout
        self.high_water = high_water
        self.low_water = low_water
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._received = 0
        self._lock = threading.Condition()
        self.ended = False  # the whole body arrived
        self.discarding = False  # the app is done with it: what still arrives is dropped
        self._failure: BodyInterrupted | None = None
        self._paused = False  # the channel stopped reading because the buffer was full
        self._reader = _Reader(self)

    # --- the event loop's side --------------------------------------------------------------------------------------
    def append(self, data: bytes) -> None:
        with self._lock:
            self._received += len(data)
            if self.discarding or self._failure is not None or not data:
                return
            self._chunks.append(bytes(data))
            self._buffered += len(data)
            self._lock.notify_all()

    def end(self) -> None:
        with self._lock:
            self.ended = True
            self._lock.notify_all()

    def fail(self, reason: str, *, too_large: bool = False) -> None:
        with self._lock:
            if not self.ended and self._failure is None:
                self._failure = BodyInterrupted(reason, too_large=too_large)
            self._chunks.clear()
            self._buffered = 0
            self._lock.notify_all()

    @property
    def complete(self) -> bool:
        """Nothing more of this body is expected from the socket."""
        return self.ended or self._failure is not None

    def wants_more(self) -> bool:
        """Should the channel read its socket for this body now? False pauses it (backpressure)."""
        with self._lock:
            if self.complete:
                return False
            if self.discarding or self._buffered < self.high_water:
                return True
            self._paused = True
            return False

    # --- waitress's buffer interface (the receivers and the parser use these) ---------------------------------------
    def __len__(self) -> int:
        return self._received

    def getfile(self) -> _Reader:
        return self._reader

    def close(self) -> None:
        """The request is done with (waitress's parser.close): drop what is buffered and whatever still comes."""
        with self._lock:
            self.discarding = True
            self._chunks.clear()
            self._buffered = 0
            self._lock.notify_all()
        self._wake()

    # --- the app's side ---------------------------------------------------------------------------------------------
    def read(self, size: int = -1) -> bytes:
        with self._lock:
            deadline = time.monotonic() + self.silence_timeout
            seen = self._received
            while True:
                if self._failure is not None:
                    raise self._failure
                if self.discarding:
                    raise BodyInterrupted("the request body was closed")
                if self.ended or (size >= 0 and self._buffered >= size):
                    break
                now = time.monotonic()
                if self._received != seen:
                    seen, deadline = self._received, now + self.silence_timeout
                if now >= deadline:
                    self._failure = BodyInterrupted(f"no request body bytes for {self.silence_timeout:g} s")
                    raise self._failure
                self._lock.wait(min(deadline - now, 1.0))
            data = self._take(size)
            wake = self._paused and self._buffered <= self.low_water
            if wake:
                self._paused = False
        if wake:
            self._wake()
        return data

    def _take(self, size: int) -> bytes:
        if size < 0 or size >= self._buffered:
            data = b"".join(self._chunks)
            self._chunks.clear()
        else:
            parts: list[bytes] = []
            wanted = size
            while wanted > 0:
                chunk = self._chunks.popleft()
                if len(chunk) > wanted:
                    parts.append(chunk[:wanted])
                    self._chunks.appendleft(chunk[wanted:])
                    wanted = 0
                else:
                    parts.append(chunk)
                    wanted -= len(chunk)
            data = b"".join(parts)
        self._buffered -= len(data)
        return data

    @property
    def failed(self) -> bool:
        return self._failure is not None


class _Reader:
    """The app's `wsgi.input`: reads block until the asked size arrived or the body ended; a body that will not
    arrive whole raises BodyInterrupted (a ConnectionError)."""

    def __init__(self, body: StreamingBody) -> None:
        self._body = body
        self.on_first_read: Callable[[], None] | None = None  # sends a pending "100 Continue"

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.on_first_read is not None:
            first, self.on_first_read = self.on_first_read, None
            first()
        return self._body.read(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> bytes:
        line = bytearray()
        limit = -1 if size is None else size
        while limit < 0 or len(line) < limit:
            byte = self.read(1)
            if not byte:
                break
            line += byte
            if byte == b"\n":
                break
        return bytes(line)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        while line := self.readline():
            lines.append(line)
        return lines

    def __iter__(self) -> _Reader:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        pass
