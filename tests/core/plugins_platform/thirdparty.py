"""Installing the third-party fixture distributions, and using them in and out of process.

The distributions under tests/fixtures/ are built and installed once per test session
into a private target directory, exactly as an operator would `pip install` a plugin.
In-process tests put that directory on ``sys.path`` for the duration of one test (entry
point discovery goes through importlib.metadata like in production) and then remove it
and the modules imported from it, so other tests never see the third-party plugins.
Subprocess tests run the real `bastion` command with PYTHONPATH pointing at it.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
DISTRIBUTIONS = ("bastion-example-plugin", "bastion-broken-plugin")
#: Top-level packages the fixture distributions install.
PACKAGES = ("bastion_example", "bastion_example_theme", "bastion_broken")
#: Plugin entry points the fixture distributions register.
NAMES = ("broken_import", "example", "example_addon", "needs_future_core", "raises_in_hook")
#: Status words of `bastion plugins list`, longest first so the regex prefers them.
LIST_STATES = ("enabled, waiting for a dependency", "enabled", "disabled", "broken")


def build_site(workdir: Path) -> Path:
    """Build and install both fixture distributions into ``workdir/site``; no network."""
    sources = workdir / "src"
    for name in DISTRIBUTIONS:
        # Build from a copy so that no build/ or *.egg-info lands in the repository.
        shutil.copytree(
            FIXTURES / name,
            sources / name,
            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
        )
    target = workdir / "site"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--quiet",
        "--target",
        str(target),
        *(str(sources / name) for name in DISTRIBUTIONS),
    ]
    env = {**os.environ, "PIP_NO_INPUT": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"Installing the fixture plugins failed:\n{result.stdout}\n{result.stderr}"
        )
    return target


def forget_modules() -> None:
    for name in list(sys.modules):
        if name.split(".", 1)[0] in PACKAGES:
            del sys.modules[name]


@contextmanager
def importable(site: Path) -> Iterator[Path]:
    """Make the installed fixture distributions importable and discoverable for a while."""
    entry = str(site)
    forget_modules()
    sys.path.insert(0, entry)
    importlib.invalidate_caches()  # also clears importlib.metadata's path cache
    try:
        yield site
    finally:
        while entry in sys.path:
            sys.path.remove(entry)
        forget_modules()
        importlib.invalidate_caches()


def bastion_executable() -> list[str]:
    """The `bastion` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("bastion")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "bastion"]


def run_bastion(
    site: Path, bastion_env: dict[str, str], *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `bastion` command in a subprocess that sees the fixture plugins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(bastion_env)
    env["PYTHONPATH"] = str(site)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [*bastion_executable(), *args],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def list_states(output: str) -> dict[str, str]:
    """Plugin name -> status word, parsed from `bastion plugins list`."""
    states = "|".join(re.escape(s) for s in LIST_STATES)
    found = {}
    for line in output.splitlines():
        match = re.match(rf"^(\S+)\s+({states})(?:\s|$)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def list_line(output: str, name: str) -> str:
    for line in output.splitlines():
        if line.split(" ", 1)[0] == name:
            return line
    raise AssertionError(f"{name} is not in the plugin list:\n{output}")
