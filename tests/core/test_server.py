"""`bastion serve --processes N`: pre-forked workers on one port, supervised."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(x) for x in text)
    return found


def wait_until(condition, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_workers_share_the_port_are_restarted_and_stop_together(app, bastion_env):
    port = free_port()
    env = {**os.environ, **bastion_env, "BASTION_SEARCH_INDEXER": "off"}
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion", "serve", "--port", str(port), "--processes", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: healthy(port))
        workers = wait_until(lambda: len(children(server.pid)) == 2 and children(server.pid))
        assert all(healthy(port) for _ in range(10))

        # A worker that dies is replaced; the port keeps answering meanwhile.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_until(
            lambda: (now := children(server.pid)) and len(now) == 2 and victim not in now and now
        )
        assert replaced - workers
        assert healthy(port)

        # SIGTERM stops the workers and then the supervisor, cleanly.
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=20)
        assert server.returncode == 0, output
        assert "2 processes" in output
        assert "ended (signal SIGKILL)" in output
        for pid in replaced:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "zombie" in Path(f"/proc/{pid}/status").read_text()
            )
        assert not healthy(port)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
