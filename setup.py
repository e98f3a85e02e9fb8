"""Package discovery across core/, plugins/ and themes/ (metadata is in pyproject.toml)."""

from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).parent

packages: list[str] = []
package_dir: dict[str, str] = {}
for root in ("core", "plugins"):
    for name in find_namespace_packages(root, include=["bastion*"]):
        packages.append(name)
        if "." not in name:
            package_dir[name] = f"{root}/{name}"

# A theme folder is named after the theme; its import name is bastion_theme_<name>.
# (Namespace discovery above also picks up template and static folders, so that
# setuptools ships them without warnings.)
for theme in sorted(p for p in (ROOT / "themes").iterdir() if (p / "__init__.py").exists()):
    name = f"bastion_theme_{theme.name}"
    packages += [name] + [f"{name}.{sub}" for sub in find_namespace_packages(str(theme))]
    package_dir[name] = f"themes/{theme.name}"

setup(packages=packages, package_dir=package_dir)
