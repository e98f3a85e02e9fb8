"""`pip install .` ships the core, the bundled plugins, the default theme and the command."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_holds_everything_a_non_editable_install_needs(tmp_path):
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
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("bastion_crm-*.whl")
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
        "bastion_theme_default/templates/base.html",
        "bastion_theme_default/static/css/bastion.css",
        "bastion_theme_default/static/js/bastion.js",
    ):
        assert required in names, f"{required} missing from the wheel"
    assert not any("__pycache__" in name for name in names)
    assert {name.split("/")[0] for name in names if not name.startswith("bastion_crm-")} == {
        "bastion",
        "bastion_status",
        "bastion_theme_default",
    }, "only bastion-prefixed import names may be installed"
    dist_info = next(n for n in names if n.endswith("entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(dist_info).decode()
    assert "[bastion.plugins]\nstatus = bastion_status.plugin" in entry_points
    assert "[bastion.themes]\ndefault = bastion_theme_default" in entry_points
    assert "bastion = bastion.cli:main" in entry_points
