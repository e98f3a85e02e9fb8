"""Package discovery across core/, plugins/ and themes/ (metadata is in pyproject.toml)."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

packages: list[str] = []
package_dir: dict[str, str] = {}
for root in ("core", "plugins"):
    for name in find_packages(root):
        packages.append(name)
        if "." not in name:
            package_dir[name] = f"{root}/{name}"

# A theme folder is named after the theme; its import name is bastion_theme_<name>.
for theme in sorted(p for p in (ROOT / "themes").iterdir() if (p / "__init__.py").exists()):
    name = f"bastion_theme_{theme.name}"
    packages.append(name)
    package_dir[name] = f"themes/{theme.name}"

setup(packages=packages, package_dir=package_dir)
