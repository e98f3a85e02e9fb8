"""End-to-end fixtures: a real `bastion serve` subprocess and a headless Chromium.

The server is initialized and run through the real command line with the environment of
the `bastion_env` fixture, so the same test runs on SQLite and on PostgreSQL
(BASTION_TEST_DATABASE). Chromium is Debian's (/usr/bin/chromium, or E2E_CHROMIUM);
no browser is ever downloaded. Without it the tests are skipped, except in CI (the CI
variable is set), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_TIMEOUT = 30.0
SERVER_LOG = pytest.StashKey["ServerLogs"]()


@dataclass
class ServerLogs:
    stdout: Path
    stderr: Path

    def read(self) -> str:
        parts = []
        for label, path in (("stderr", self.stderr), ("stdout", self.stdout)):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- server {label} ---\n{text.rstrip() or '(empty)'}")
        return "\n".join(parts)


@dataclass
class LiveServer:
    url: str
    host: str
    port: int
    logs: ServerLogs


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the end-to-end tests must run)", pytrace=False)
    pytest.skip(f"{reason}; set CI to make this a failure")


@pytest.fixture(scope="session")
def browser():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _missing(f"no Chromium at {CHROMIUM} (install Debian's chromium package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_environ(bastion_env: dict[str, str]) -> dict[str, str]:
    # The developer's own BASTION_* settings must not leak into the test installation.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BASTION_") or k.startswith("BASTION_TEST_")
    }
    env.update(bastion_env)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def live_server(
    request: pytest.FixtureRequest, bastion_env: dict[str, str], tmp_path: Path
) -> Iterator[LiveServer]:
    """`bastion init` then `bastion serve` on a free port; stopped at teardown."""
    env = _server_environ(bastion_env)
    password_file = tmp_path / "admin-password"
    password_file.write_text(ADMIN_PASSWORD + "\n")
    password_file.chmod(0o600)
    bastion = [sys.executable, "-m", "bastion"]
    init = subprocess.run(
        [*bastion, "init", "--admin-email", ADMIN_EMAIL, "--admin-password-file", password_file],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert init.returncode == 0, f"bastion init failed:\n{init.stdout}\n{init.stderr}"

    logs = ServerLogs(tmp_path / "server.stdout", tmp_path / "server.stderr")
    request.node.stash[SERVER_LOG] = logs
    process: subprocess.Popen | None = None
    for _attempt in range(3):  # another process may grab the free port first
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with logs.stdout.open("ab") as out, logs.stderr.open("ab") as err:
            process = subprocess.Popen(
                [*bastion, "serve", "--host", "127.0.0.1", "--port", str(port), "--threads", "4"],
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if _healthy(url):
                break
            time.sleep(0.1)
        if process.poll() is None:
            break
    try:
        assert process is not None and process.poll() is None, (
            f"bastion serve exited with {process and process.returncode}\n{logs.read()}"
        )
        assert _healthy(url), f"bastion serve did not answer /healthz\n{logs.read()}"
        yield LiveServer(url=url, host="127.0.0.1", port=port, logs=logs)
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the server's output to the report of a failed test."""
    report = yield
    logs = item.stash.get(SERVER_LOG, None)
    if report.failed and logs is not None and report.when in {"setup", "call"}:
        report.sections.append(("bastion server output", logs.read()))
    return report
