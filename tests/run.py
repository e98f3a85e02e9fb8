#!/usr/bin/env python3
"""Run the whole test suite from a fresh clone: lint, then pytest on SQLite and PostgreSQL.

Needs only Python 3.11+. It creates .venv, installs Bastion with its test extras, installs
Debian's chromium for the browser tests when it is missing and this user may, then runs
the suite twice: on SQLite, and on a fresh PostgreSQL database at 127.0.0.1:5432 (override
with BASTION_TEST_POSTGRES_URL) that the tests create and drop. Extra arguments go to
pytest. Under CI (CI=true) a missing PostgreSQL server or browser is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_URL = os.environ.get(
    "BASTION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def run(*cmd: str | Path, env: dict[str, str] | None = None, check: bool = True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, check=check).returncode


def install() -> None:
    if not PYTHON.exists():
        try:
            venv.create(VENV, with_pip=True)
        except (OSError, subprocess.CalledProcessError):
            shutil.rmtree(VENV, ignore_errors=True)
            sys.exit(
                "Python could not create a virtual environment with pip. On Debian or Ubuntu "
                "install it first: sudo apt-get install python3-venv"
            )
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[test]")


def ensure_chromium() -> None:
    if shutil.which("chromium") or Path("/usr/bin/chromium").exists():
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", env=env)
        return
    message = "Debian's chromium is not installed: the browser tests will be skipped."
    if CI:
        sys.exit(message.replace("will be skipped", "cannot run") + " Install it first.")
    print(f"warning: {message} (apt-get install chromium)", flush=True)


def postgres_reachable() -> bool:
    code = (
        "import psycopg, sys\n"
        "try:\n"
        f"    psycopg.connect({POSTGRES_URL!r}, connect_timeout=5).close()\n"
        "except Exception as exc:\n"
        "    print(f'PostgreSQL not reachable: {exc}'); sys.exit(1)\n"
    )
    return run(PYTHON, "-c", code, check=False) == 0


def start_local_postgres() -> bool:
    """Start this machine's PostgreSQL cluster if Debian's tools are here and it is down."""
    versions = sorted(Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").is_dir() else []
    if not versions or not shutil.which("pg_ctlcluster"):
        return False
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main", "start"]
    return run(*command, check=False) == 0


def pytest(backend: str, args: list[str]) -> int:
    env = {**os.environ, "BASTION_TEST_DATABASE": backend}
    print(f"\n=== test suite on {backend} ===", flush=True)
    return run(PYTHON, "-m", "pytest", "-p", "no:cacheprovider", *args, env=env, check=False)


def main() -> int:
    args = sys.argv[1:]
    install()
    ensure_chromium()
    run(BIN / "ruff", "check", "core", "plugins", "themes", "tests", "deploy")
    run(BIN / "ruff", "format", "--check", "core", "plugins", "themes", "tests", "deploy")

    failures = []
    if pytest("sqlite", args) != 0:
        failures.append("sqlite")
    if postgres_reachable() or (start_local_postgres() and postgres_reachable()):
        if pytest("postgresql", args) != 0:
            failures.append("postgresql")
    elif CI:
        failures.append("postgresql (server not reachable)")
    else:
        print("warning: skipped the PostgreSQL run: no server at 127.0.0.1:5432.", flush=True)

    if failures:
        print(f"\nFAILED on: {', '.join(failures)}", flush=True)
        return 1
    print("\nThe whole suite passed.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
