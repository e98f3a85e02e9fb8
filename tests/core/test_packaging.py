"""`pip install .` ships the core, the bundled plugins, the default theme and the command."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a copy of the tracked and new files, so nothing stale in the work tree
    # (a build/ folder, caches) can end up in the wheel and nothing is written there.
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("bastion_crm-*.whl")
    return built


def test_wheel_holds_everything_a_non_editable_install_needs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "bastion/app.py",
        "bastion/migrations/env.py",
        "bastion/migrations/script.py.mako",
        "bastion/migrations/versions/0001_core_tables.py",
        "bastion/static/vendor/htmx/htmx.min.js",
        "bastion/static/vendor/htmx/LICENSE",
        "bastion/templates/core/login.html",
        "bastion/templates/admin/plugins.html",
        "bastion_status/plugin.py",
        "bastion_status/templates/status/page.html",
        "bastion_sales/templates/sales/pipelines/board.html",
        "bastion_sales/static/sales.js",
        "bastion_sales/static/quote-print.css",
        "bastion_theme_default/templates/base.html",
        "bastion_theme_default/static/css/bastion.css",
        "bastion_theme_default/static/js/bastion.js",
        "bastion_theme_default/static/js/early.js",
    ):
        assert required in names, f"{required} missing from the wheel"
    assert not any("__pycache__" in name or "/tests/" in name for name in names)
    assert {name.split("/")[0] for name in names if not name.startswith("bastion_crm-")} == {
        "bastion",
        "bastion_sales",
        "bastion_status",
        "bastion_theme_default",
    }, "only bastion-prefixed import names may be installed"
    dist_info = next(n for n in names if n.endswith("entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(dist_info).decode()
    plugins = "[bastion.plugins]\nsales = bastion_sales.plugin\nstatus = bastion_status.plugin"
    assert plugins in entry_points
    assert "[bastion.themes]\ndefault = bastion_theme_default" in entry_points
    assert "bastion = bastion.cli:main" in entry_points


def test_the_installed_wheel_initializes_and_checks_an_installation(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BASTION_")},
        "PYTHONPATH": str(target),
        "BASTION_DATA_DIR": str(tmp_path / "data"),
        "BASTION_ARGON2_MEMORY_KIB": "1024",
        "BASTION_ARGON2_TIME_COST": "1",
        "BASTION_ARGON2_PARALLELISM": "1",
    }

    def bastion(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bastion", *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import bastion, bastion_status; print(bastion.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(target)), "the test must exercise the installed copy"
    init = bastion(
        "init",
        "--admin-email",
        "admin@example.com",
        "--admin-password-file",
        "-",
        stdin="a long enough password\n",
    )
    assert init.returncode == 0, init.stderr
    assert "Enabled plugins: sales, status." in init.stdout
    check = bastion("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok: schema at revision" in check.stdout
