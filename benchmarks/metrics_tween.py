"""Micro-benchmark of the metrics tween (web/metrics.py) around a trivial handler: microseconds per request, in one
process (values in memory) and in prometheus_client's multiprocess mode (values in memory-mapped files, as with
`workers = N`). Run: `.venv/bin/python benchmarks/metrics_tween.py`."""

from __future__ import annotations

import io
import sys
import tempfile
import timeit
from types import SimpleNamespace

from stevedore.web import metrics


class _Response:
    status_code = 200
    content_length = 2
    app_iter = (b"ok",)


class _Request:
    def __init__(self) -> None:
        self.environ = {"REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO(b"")}
        self.method = "GET"
        self.matched_route = SimpleNamespace(name="registry.manifest")


def per_request_us(number: int = 200_000) -> float:
    response = _Response()
    tween = metrics.metrics_tween_factory(lambda request: response, None)
    request = _Request()
    stream = io.BytesIO(b"")
    tween(request)  # the metrics made, the children too

    def one_request() -> None:
        request.environ["wsgi.input"] = stream  # else each call would wrap the last one's counting stream
        tween(request)

    best = min(timeit.repeat(one_request, number=number, repeat=5))
    return best / number * 1e6


def main() -> None:
    one = per_request_us()
    with tempfile.TemporaryDirectory(prefix="stevedore-bench-") as folder:
        metrics.use_multiprocess_dir(folder)
        try:
            many = per_request_us()
        finally:
            metrics.use_multiprocess_dir(None)
    print(f"metrics tween: {one:.1f} µs a request in one process, {many:.1f} µs in multiprocess mode", file=sys.stdout)


if __name__ == "__main__":
    main()
