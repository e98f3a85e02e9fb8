#!/usr/bin/env python3
"""Measure the data model through the application: pages, API, search and CSV import.

Runs a real `bastion serve` (waitress, 2 processes of 4 threads, logging at INFO as in
production) on a data directory filled by generate_data.py and times requests over loopback:

- a list page of 50 contacts filtered by owner and sorted by last name;
- a contact's detail page;
- the API list (same filter and sort) and API create (one record per request from one
  and from four clients, and arrays of 100 records per request);
- a global search;
- a CSV import (`bastion import contacts FILE`), in rows per second.

    .venv/bin/python tests/benchmarks/generate_data.py --data-dir /tmp/bench --contacts 1000000
    .venv/bin/python tests/benchmarks/bench_data.py --data-dir /tmp/bench
    .venv/bin/python tests/benchmarks/bench_data.py --data-dir /tmp/bench --import-only

The import runs at INFO by default, so it writes an audit line per created record as
in production (to a file); ``--import-only`` measures it alone, without the server.

Prints p50 and p95 (milliseconds) per measurement; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import http.cookiejar
import json
import os
import random
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

PASSWORD = "quiet river 7 lantern"
ADMIN = "admin@example.com"
SEARCH_WORDS = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Kowalski", "Nakamura", "Rossi")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentiles(timings: list[float]) -> tuple[float, float]:
    ordered = sorted(timings)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]


def timed(count: int, call: Callable[[int], None]) -> list[float]:
    timings = []
    for index in range(count):
        started = time.perf_counter()
        call(index)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def run_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        input=stdin,
        text=True,
        env=env,
        capture_output=True,
        check=True,
    )
    return result.stdout


def write_import_file(path: Path, rows: int, tag: str) -> None:
    """A CSV file of new people; ``tag`` keeps the addresses of each run apart, so a
    repeated run measures the same work instead of flagging every row as a duplicate."""
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["first_name", "last_name", "email", "title"])
        for index in range(rows):
            writer.writerow(
                ["Zoë", f"Import, {index}", f"import{tag}.{index}@example.org", "Head of Risk"]
            )


def timed_import(env: dict[str, str], path: Path, log: Path) -> tuple[float, float]:
    """Seconds for `bastion import contacts PATH --skip-bad-rows`, process start included:
    elapsed, and CPU (user and system; steadier than elapsed on a shared machine).

    Its log (the audit lines of every created record at INFO) goes to a file, as a
    server's would, rather than into this process's memory."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as errors:
        subprocess.run(
            [sys.executable, "-m", "bastion", "import", "contacts", str(path), "--skip-bad-rows"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            check=True,
        )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu


def bench_import(env: dict[str, str], rows: int, log_level: str) -> None:
    """CSV import rate, with and without the process start (timed on a one-row file)."""
    env = {**env, "BASTION_LOG_LEVEL": log_level}
    tag = f"{time.time():.0f}"
    with tempfile.TemporaryDirectory() as work:
        small, large, log = Path(work) / "one.csv", Path(work) / "contacts.csv", Path(work) / "log"
        write_import_file(small, 1, f"{tag}s")
        write_import_file(large, rows, tag)
        start, start_cpu = timed_import(env, small, log)
        elapsed, cpu = timed_import(env, large, log)
        audit_lines = sum(1 for line in log.open() if '"record.create"' in line)
    net_rate = net_rate_text(rows, elapsed, start)
    net_cpu_rate = net_rate_text(rows, cpu, start_cpu)
    print(
        f"CSV import: {rows} rows in {elapsed:.1f} s ({rows / elapsed:,.0f} rows/s including "
        f"process start; {net_rate} rows/s without its {start:.1f} s); "
        f"CPU {cpu:.1f} s ({net_cpu_rate} rows per CPU second without the start); "
        f"log level {log_level}, {audit_lines} record.create audit lines"
    )


#: Below these, the time left once the process start is taken off is mostly noise (the
#: two runs' starts differ by more than that), and a rate computed from it means nothing.
MIN_NET_SECONDS = 0.2
MIN_NET_SHARE = 0.1


def net_rate_text(rows: int, total: float, start: float) -> str:
    """Rows per second without the process start, or "n/a" when too little is left."""
    net = total - start
    if net < MIN_NET_SECONDS or net < MIN_NET_SHARE * total:
        return "n/a"
    return f"{rows / net:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--import-rows", type=int, default=50_000)
    parser.add_argument(
        "--processes", type=int, default=2, help="server processes (one per core here)"
    )
    parser.add_argument(
        "--skip-reindex", action="store_true", help="the index is already built and current"
    )
    parser.add_argument(
        "--import-only", action="store_true", help="measure the CSV import alone (no server)"
    )
    parser.add_argument(
        "--import-log-level",
        default="INFO",
        help="log level of the import (INFO, the default, writes its audit lines as in production)",
    )
    args = parser.parse_args()
    env = {
        **os.environ,
        "BASTION_DATA_DIR": str(args.data_dir.resolve()),
        "BASTION_LOG_LEVEL": "WARNING",
    }
    if args.import_only:
        bench_import(env, args.import_rows, args.import_log_level)
        return
    if not args.skip_reindex:
        print("Rebuilding the search index (generated records)...", flush=True)
        started = time.perf_counter()
        run_cli(env, "search", "reindex")
        print(f"  reindex took {time.perf_counter() - started:.0f} s")
    token = run_cli(
        env, "tokens", "create", "--email", ADMIN, "--name", f"bench {time.time():.0f}"
    ).strip()

    port = free_port()
    serve = ["serve", "--port", str(port), "--threads", "4", "--processes", str(args.processes)]
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion", *serve],
        # INFO, as in production: every request and every record change is logged.
        env={**env, "BASTION_LOG_LEVEL": "INFO"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    api_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        # Measure a settled system: the index has caught up with earlier runs' records.
        for _ in range(600):
            status = run_cli(env, "search", "status")
            waiting = re.search(r"Waiting in the outbox: (\d+)", status)
            if waiting is None or waiting.group(1) == "0":
                break
            time.sleep(1)
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = browser.open(f"{base}/login").read().decode()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = {"email": ADMIN, "password": PASSWORD, "csrf_token": csrf}
        browser.open(f"{base}/login", data=urllib.parse.urlencode(form).encode())

        connections = threading.local()

        def api(path: str, body: dict | list | None = None) -> dict:
            # One kept-alive connection per client thread, as API clients hold them.
            connection = getattr(connections, "http", None)
            if connection is None:
                connection = connections.http = http.client.HTTPConnection("127.0.0.1", port)
            data = None if body is None else json.dumps(body)
            connection.request("GET" if data is None else "POST", path, data, api_headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status >= 400:
                raise RuntimeError(f"{path}: {response.status} {payload[:300]!r}")
            return json.loads(payload or b"{}")

        sample = api("/api/v1/contacts?limit=500&fields=id,owner&sort=-id")["data"]
        owners = sorted({row["owner"] for row in sample})
        ids = [row["id"] for row in sample]
        rng = random.Random(3)
        print(
            f"{args.requests} requests each, waitress on SQLite, {args.processes} processes "
            "of 4 threads; API calls on kept-alive connections"
        )
        print(f"{'measurement':<42}{'p50 ms':>9}{'p95 ms':>9}")

        def report(label: str, timings: list[float]) -> None:
            p50, p95 = percentiles(timings)
            print(f"{label:<42}{p50:>9.1f}{p95:>9.1f}", flush=True)

        def list_page(index: int) -> None:
            owner = owners[index % len(owners)]
            browser.open(f"{base}/o/contacts?owner={owner}&sort=last_name").read()

        def detail_page(index: int) -> None:
            browser.open(f"{base}/o/contacts/{rng.choice(ids)}").read()

        def api_list(index: int) -> None:
            owner = owners[index % len(owners)]
            api(f"/api/v1/contacts?owner={owner}&sort=last_name&limit=50")

        def search(index: int) -> None:
            word = SEARCH_WORDS[index % len(SEARCH_WORDS)]
            browser.open(f"{base}/search?q={urllib.parse.quote(word)}").read()

        report("list page (50 rows, owner filter, sorted)", timed(args.requests, list_page))
        report("detail page", timed(args.requests, detail_page))
        report("API list (50 rows, owner filter, sorted)", timed(args.requests, api_list))
        report("global search", timed(args.requests, search))

        def create(index: int) -> None:
            api("/api/v1/contacts", {"last_name": f"Bench {index}", "email": f"b{index}@x.io"})

        started = time.perf_counter()
        timings = timed(args.creates, create)
        rate = args.creates / (time.perf_counter() - started)
        report(f"API create, 1 client ({rate:,.0f} records/s)", timings)

        def worker(offset: int, out: list[float]) -> None:
            out.extend(timed(args.creates // 4, lambda i: create(offset + i)))

        parallel: list[float] = []
        threads = [
            threading.Thread(target=worker, args=(10_000_000 + k * args.creates, parallel))
            for k in range(4)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rate = len(parallel) / (time.perf_counter() - started)
        report(f"API create, 4 clients ({rate:,.0f} records/s)", parallel)

        def create_batch(index: int) -> None:
            rows = [
                {"last_name": f"Batch {index}-{n}", "email": f"b{index}.{n}@x.io"}
                for n in range(100)
            ]
            api("/api/v1/contacts", rows)

        batches = max(1, args.creates // 100)
        started = time.perf_counter()
        timings = timed(batches, create_batch)
        rate = batches * 100 / (time.perf_counter() - started)
        report(f"API create, arrays of 100 ({rate:,.0f} records/s)", timings)
    finally:
        server.terminate()
        server.wait(timeout=10)

    bench_import(env, args.import_rows, args.import_log_level)


if __name__ == "__main__":
    main()
