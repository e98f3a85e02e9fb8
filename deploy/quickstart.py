#!/usr/bin/env python3
"""Install Bastion into .venv and start it with a demo organization on the embedded default.

Needs only Python 3.11+. The first run creates ./bastion-data (SQLite database, search
index, secrets) with a demo organization and a random password, written to
bastion-data/demo-credentials.txt (readable only by you); later runs reuse it. Then it
serves on http://127.0.0.1:8000 until you press Ctrl+C.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
DATA = Path(os.environ.get("BASTION_DATA_DIR", ROOT / "bastion-data"))
CREDENTIALS = DATA / "demo-credentials.txt"
ADMIN = "admin@example.com"
DEMO_USERS = (
    "maria.manager@example.com (sales manager)",
    "sam.sales@example.com and nina.north@example.com (sales reps, Sales North)",
    "sven.south@example.com (sales rep, Sales South)",
    "sofia.support@example.com (support agent)",
    "mark.marketing@example.com (marketing)",
    "aiko.auditor@example.com (auditor)",
)


def main() -> int:
    if sys.version_info < (3, 11):  # noqa: UP036  (this script runs before any install)
        sys.exit("Bastion needs Python 3.11 or newer.")
    if not (BIN / "python").exists():
        print("Creating .venv ...", flush=True)
        try:
            venv.create(VENV, with_pip=True)
        except (OSError, subprocess.CalledProcessError):
            shutil.rmtree(VENV, ignore_errors=True)
            sys.exit(
                "Python could not create a virtual environment with pip. On Debian or Ubuntu "
                "install it first: sudo apt-get install python3-venv"
            )
    print("Installing Bastion into .venv ...", flush=True)
    subprocess.run([BIN / "python", "-m", "pip", "install", "--quiet", "-e", str(ROOT)], check=True)
    env = {**os.environ, "BASTION_DATA_DIR": str(DATA)}
    if not (DATA / ".initialized").exists():
        password = secrets.token_urlsafe(12)
        subprocess.run(
            [
                BIN / "bastion",
                "init",
                "--admin-email",
                ADMIN,
                "--admin-password-file",
                "-",
                "--demo",
            ],
            input=password + "\n",
            text=True,
            env={**env, "BASTION_LOG_LEVEL": "WARNING"},  # keep the terminal readable
            check=True,
        )
        fd = os.open(CREDENTIALS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
    password = CREDENTIALS.read_text().strip() if CREDENTIALS.exists() else "(set at init)"
    print(
        "\nBastion is starting at http://127.0.0.1:8000\n"
        f"  Sign in as {ADMIN} with the password {password}\n"
        "  Demo users with the same password: " + ", ".join(DEMO_USERS) + "\n"
        f"  (The password is kept in {CREDENTIALS}.) Press Ctrl+C to stop.\n",
        flush=True,
    )
    try:
        return subprocess.run(
            [BIN / "bastion", "serve", "--host", "127.0.0.1", "--port", "8000"], env=env
        ).returncode
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
