#!/usr/bin/env python3
"""Measure the data model through the application: pages, API, search and CSV import.

Runs a real `bastion serve` (waitress, 4 threads) on a data directory filled by
generate_data.py and times requests from one client over loopback:

- a list page of 50 contacts filtered by owner and sorted by last name;
- a contact's detail page;
- the API list (same filter and sort) and API create (one record per request from one
  and from four clients, and arrays of 100 records per request);
- a global search;
- a CSV import (`bastion import contacts FILE`), in rows per second.

    .venv/bin/python tests/benchmarks/generate_data.py --data-dir /tmp/bench --contacts 1000000
    .venv/bin/python tests/benchmarks/bench_data.py --data-dir /tmp/bench

Prints p50 and p95 (milliseconds) per measurement; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import http.cookiejar
import json
import os
import random
import re
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--import-rows", type=int, default=50_000)
    parser.add_argument(
        "--skip-reindex", action="store_true", help="the index is already built and current"
    )
    args = parser.parse_args()
    env = {
        **os.environ,
        "BASTION_DATA_DIR": str(args.data_dir.resolve()),
        "BASTION_LOG_LEVEL": "WARNING",
    }
    if not args.skip_reindex:
        print("Rebuilding the search index (generated records)...", flush=True)
        started = time.perf_counter()
        run_cli(env, "search", "reindex")
        print(f"  reindex took {time.perf_counter() - started:.0f} s")
    token = run_cli(
        env, "tokens", "create", "--email", ADMIN, "--name", f"bench {time.time():.0f}"
    ).strip()

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion", "serve", "--port", str(port), "--threads", "4"],
        env=env,
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

        def api(path: str, body: dict | list | None = None) -> dict:
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(f"{base}{path}", data=data, headers=api_headers)
            with urllib.request.urlopen(request) as response:
                return json.loads(response.read() or b"{}")

        sample = api("/api/v1/contacts?limit=500&fields=id,owner&sort=-id")["data"]
        owners = sorted({row["owner"] for row in sample})
        ids = [row["id"] for row in sample]
        rng = random.Random(3)
        print(f"{args.requests} requests each, waitress on SQLite, 4 threads")
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

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "contacts.csv"
        with path.open("w", newline="", encoding="utf-8-sig") as handle:
            writer = csv.writer(handle)
            writer.writerow(["first_name", "last_name", "email", "title"])
            for index in range(args.import_rows):
                writer.writerow(
                    ["Zoë", f"Import, {index}", f"import{index}@example.org", "Head of Risk"]
                )
        started = time.perf_counter()
        run_cli(env, "import", "contacts", str(path), "--skip-bad-rows")
        elapsed = time.perf_counter() - started
        print(
            f"CSV import: {args.import_rows} rows in {elapsed:.1f} s "
            f"({args.import_rows / elapsed:,.0f} rows/s, including process start)"
        )


if __name__ == "__main__":
    main()
