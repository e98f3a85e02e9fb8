"""Plugins reach the core through bastion.api only, so its internals can change freely."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BUNDLED = sorted((ROOT / "plugins").rglob("*.py"))
THIRD_PARTY = sorted((ROOT / "tests" / "fixtures").rglob("*.py"))


def core_imports_besides_the_facade(path: Path, root: Path = ROOT) -> list[str]:
    """Every import of a `bastion` module other than `bastion.api`, as 'line: statement'."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "bastion":  # `from bastion import api` is the facade too
                modules = [f"bastion.{alias.name}" for alias in node.names]
            else:
                modules = [node.module]
        else:
            continue
        for module in modules:
            if (module == "bastion" or module.startswith("bastion.")) and module != "bastion.api":
                bad.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return bad


def test_there_are_bundled_plugins_to_check():
    assert any(path.name == "plugin.py" for path in BUNDLED)


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: str(p.relative_to(ROOT / "plugins")))
def test_bundled_plugins_import_nothing_from_bastion_but_its_api(path):
    assert core_imports_besides_the_facade(path) == []


@pytest.mark.parametrize("path", THIRD_PARTY, ids=lambda p: str(p.relative_to(ROOT / "tests")))
def test_third_party_fixture_plugins_import_nothing_from_bastion_but_its_api(path):
    assert core_imports_besides_the_facade(path) == []


def test_the_check_catches_internal_imports(tmp_path):
    sample = tmp_path / "plugins" / "sample.py"
    sample.parent.mkdir()
    sample.write_text(
        "import bastion\n"
        "import bastion.db as db\n"
        "from bastion import api, models\n"
        "from bastion.api import hookimpl\n"
        "from bastion.plugins.registry import PluginRegistry\n"
        "from bastion_status.report import build_report\n"
        "from . import sibling\n",
        encoding="utf-8",
    )
    assert core_imports_besides_the_facade(sample, root=tmp_path) == [
        "plugins/sample.py:1: import bastion",
        "plugins/sample.py:2: import bastion.db as db",
        "plugins/sample.py:3: from bastion import api, models",
        "plugins/sample.py:5: from bastion.plugins.registry import PluginRegistry",
    ]
