#!/usr/bin/env python3
"""Measure request latency through the whole stack (plugin state, theme, access, headers).

Runs a real `bastion serve` (waitress) on a fresh SQLite data directory and times
sequential requests from one client over loopback. Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_requests.py [--requests 500]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    env = {**os.environ, "BASTION_DATA_DIR": str(work / "data"), "BASTION_LOG_LEVEL": "WARNING"}
    password = "quiet river 7 lantern"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bastion",
            "init",
            "--admin-email",
            "admin@example.com",
            "--admin-password-file",
            "-",
            "--demo",
        ],
        input=password,
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion", "serve", "--port", str(port), "--threads", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(f"{base}/login").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"email": "admin@example.com", "password": password, "csrf_token": token}
        ).encode()
        opener.open(f"{base}/login", data=form)

        print(f"{args.requests} sequential requests per path, waitress on SQLite, 4 threads")
        print(f"{'path':<22}{'median ms':>10}{'p95 ms':>10}{'req/s':>10}")
        for path in ("/healthz", "/readyz", "/login", "/", "/admin/plugins", "/status/"):
            timings = []
            for _ in range(args.requests):
                started = time.perf_counter()
                opener.open(f"{base}{path}").read()
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            p95 = timings[int(len(timings) * 0.95) - 1]
            rate = 1000 / statistics.mean(timings)
            print(f"{path:<22}{statistics.median(timings):>10.2f}{p95:>10.2f}{rate:>10.0f}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
