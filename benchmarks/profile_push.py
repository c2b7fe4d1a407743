"""Where a large Stevedore push spends its time: a one-off profile behind the numbers in benchmarks/README.md.

    python -m benchmarks.profile_push [--size-mib 256] [--pushes 2] [--no-fsync] [--bare]

Starts Stevedore's app in a child process under waitress (the same ini as the throughput benchmark), with cProfile
on waitress's I/O loop thread and around every WSGI task in the worker threads. The parent pushes blobs with the
same http.client as benchmarks.throughput, timing on the client side how long sending the body took and how long
the server then took to answer. `--bare` serves a trivial WSGI app that only reads the body in 1 MiB chunks, to
show what waitress itself costs. Bounded by --timeout; the child is always stopped.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.services import free_port, stevedore_cli, write_ini

from benchmarks.throughput import (
    MB,
    OCTETS,
    Client,
    FileSlice,
    MiB,
    _location,
    _with_digest,
    make_data,
    proc_cpu_seconds,
)

USER, PASSWORD = "bench", "bench-password-0123"


# --- the child: a profiled waitress ------------------------------------------------------------------------------
def bare_app(environ, start_response):  # type: ignore[no-untyped-def]
    stream, remaining = environ["wsgi.input"], int(environ.get("CONTENT_LENGTH") or 0)
    while remaining > 0:
        chunk = stream.read(min(MiB, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
    status = "201 Created" if environ["REQUEST_METHOD"] == "PUT" else "202 Accepted"
    start_response(status, [("Content-Length", "0"), ("Location", "/v2/x/blobs/uploads/1")])
    return [b""]


def serve(ini: str, port: int, stats_path: str, bare: bool, profile_on: bool = True, sha256_only: bool = False) -> None:
    import waitress.task
    from pyramid.paster import get_app, setup_logging

    from stevedore.web.server import create_server

    setup_logging(ini)
    if sha256_only:  # what-if, in this child process only: the running hash keeps sha256 alone (src/ is untouched)
        import hashlib

        from stevedore.adapters import blobs_fs

        def init(self):  # type: ignore[no-untyped-def]
            self.hashers = {"sha256": hashlib.sha256()}
            self.file_state = None

        blobs_fs._RunningHash.__init__ = init
    app = bare_app if bare else get_app(ini)
    local = threading.local()
    profiles: list[cProfile.Profile] = []
    original_service = waitress.task.WSGITask.service

    def profiled_service(self):  # type: ignore[no-untyped-def]
        profile = getattr(local, "profile", None)
        if profile is None:
            profile = local.profile = cProfile.Profile()
            profiles.append(profile)
        profile.enable()
        try:
            return original_service(self)
        finally:
            profile.disable()

    if profile_on:
        waitress.task.WSGITask.service = profiled_service
    server = create_server(
        app, listen=f"127.0.0.1:{port}", threads=8, max_request_body_size=1 << 40, clear_untrusted_proxy_headers=True
    )

    def stop(signum, frame):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    loop = cProfile.Profile()
    if profile_on:
        loop.enable()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        loop.disable()
        if profile_on:
            loop.dump_stats(stats_path + ".loop")
        if profiles:
            stats = pstats.Stats(profiles[0])
            for profile in profiles[1:]:
                stats.add(profile)
            stats.dump_stats(stats_path + ".workers")


# --- the parent: client and report -------------------------------------------------------------------------------
def push_timed(client: Client, name: str, path: str, offset: int, size: int, digest: str) -> tuple[float, float]:
    """Monolithic push; returns (seconds to send the body, seconds from the body's end to the 201)."""
    location = _location(client.call("POST", f"/v2/{name}/blobs/uploads/", expect=202))
    headers = {"Authorization": client.auth, **OCTETS, "Content-Length": str(size)}
    with FileSlice(path, offset, size) as body:
        t0 = time.perf_counter()
        client.conn.request("PUT", _with_digest(location, digest), body=body, headers=headers)
        t1 = time.perf_counter()
        response = client.conn.getresponse()
        response.read()
        t2 = time.perf_counter()
    if response.status != 201:
        raise RuntimeError(f"PUT: {response.status}")
    return t1 - t0, t2 - t1


def show(path: str, title: str, limit: int) -> None:
    if not os.path.exists(path):
        return
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    text = out.getvalue()
    start = text.find("   ncalls")
    print(f"\n=== {title}: top {limit} by own time ===")
    print(text[start:].rstrip() if start >= 0 else text)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_push")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--pushes", type=int, default=2)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--bare", action="store_true", help="a trivial app that only reads the body")
    parser.add_argument("--no-profile", action="store_true", help="time only, without cProfile's overhead")
    parser.add_argument(
        "--what-if-sha256-only",
        action="store_true",
        help="monkeypatch the server's running hash to sha256 only (this run only)",
    )
    parser.add_argument("--top", type=int, default=18)
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument("--serve", nargs=3, metavar=("INI", "PORT", "STATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        signal.alarm(args.timeout + 30)  # the child ends by itself even if the parent vanished
        ini, port, stats = args.serve
        serve(ini, int(port), stats, args.bare, not args.no_profile, args.what_if_sha256_only)
        return 0

    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(args.timeout)
    work = Path(tempfile.mkdtemp(prefix="stevedore-profile-"))
    child = None
    try:
        port = free_port()
        ini = str(work / "bench.ini")
        write_ini(
            ini,
            database_url=f"sqlite:///{work}/stevedore.sqlite",
            storage_dir=str(work / "blobs"),
            port=port,
            extra=f"stevedore.blob_fsync = {'false' if args.no_fsync else 'true'}",
        )
        if not args.bare:
            for cli_args, stdin in (
                (("db", "upgrade"), None),
                (("user", "create", USER, "--password-stdin"), f"{PASSWORD}\n"),
            ):
                result = stevedore_cli(ini, *cli_args, stdin=stdin)
                if result.returncode != 0:
                    raise RuntimeError(result.stderr)
        blobs = make_data(work, args.size_mib * MiB, args.pushes + 1)
        stats = str(work / "profile")
        command = [sys.executable, "-m", "benchmarks.profile_push", "--serve", ini, str(port), stats]
        command += ["--bare"] if args.bare else []
        command += ["--no-profile"] if args.no_profile else []
        command += ["--what-if-sha256-only"] if args.what_if_sha256_only else []
        child = subprocess.Popen(command)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the profiled server did not start") from None
                time.sleep(0.1)
        client = Client("127.0.0.1", port, USER, PASSWORD, 120)
        # a small push first: bcrypt, imports and the first SQLite connection are not what we measure
        warm = blobs[0]
        push_timed(client, "bench/profile", warm.path, warm.offset, 1 << 20, _digest_of(warm.path, warm.offset))
        what_if = " (what-if: sha256 only)" if args.what_if_sha256_only else ""
        print(
            f"{'bare waitress' if args.bare else 'Stevedore'}{what_if}, {args.size_mib} MiB monolithic pushes, "
            f"fsync {'off' if args.no_fsync else 'on'}:"
        )
        for blob in blobs[1:]:
            cpu0, t0 = proc_cpu_seconds(child.pid), time.perf_counter()
            send, answer = push_timed(client, "bench/profile", blob.path, blob.offset, blob.size, blob.digest)
            total, cpu = time.perf_counter() - t0, proc_cpu_seconds(child.pid) - cpu0
            print(
                f"  {blob.size / MB / total:6.1f} MB/s: body sent in {send:5.2f} s "
                f"({blob.size / MB / send:6.1f} MB/s), then {answer:5.2f} s until the 201; "
                f"server CPU {cpu:5.2f} s of {total:5.2f} s"
            )
        client.close()
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)
        show(stats + ".loop", "waitress I/O thread (receiving the body)", args.top)
        show(stats + ".workers", "worker threads (the app, after waitress has the whole body)", args.top)
        return 0
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        shutil.rmtree(work, ignore_errors=True)


def _timeout(signum, frame):  # type: ignore[no-untyped-def]
    raise TimeoutError("the profile run exceeded --timeout")


def _digest_of(path: str, offset: int) -> str:
    import hashlib

    with FileSlice(path, offset, 1 << 20) as body:
        return f"sha256:{hashlib.sha256(body.read()).hexdigest()}"


if __name__ == "__main__":
    sys.exit(main())
