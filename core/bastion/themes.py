"""Themes: installed through the `bastion.themes` entry point, chosen by an administrator.

A theme is a package with templates/ and static/. The active theme's templates win over
the default theme's, which win over plugin and core templates of the same name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from jinja2 import BaseLoader, Environment, FileSystemLoader, TemplateNotFound

ENTRY_POINT_GROUP = "bastion.themes"
DEFAULT_THEME = "default"
log = logging.getLogger("bastion.themes")


@dataclass(frozen=True)
class Theme:
    name: str
    label: str
    root: Path

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def static(self) -> Path:
        return self.root / "static"


class ThemeRegistry:
    def __init__(self) -> None:
        self.themes: dict[str, Theme] = {}

    def discover(self, entry_points: Iterable[metadata.EntryPoint] | None = None) -> None:
        if entry_points is None:
            entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in entry_points:
            try:
                module = ep.load()
                root = Path(module.__file__).parent
            except Exception as exc:
                log.error("Theme %s failed to load: %s", ep.name, exc, extra={"theme": ep.name})
                continue
            label = getattr(module, "label", ep.name.title())
            self.themes[ep.name] = Theme(ep.name, label, root)
        if DEFAULT_THEME not in self.themes:
            raise RuntimeError(
                "The default theme is not installed; reinstall Bastion with `pip install .`."
            )

    def resolve(self, name: str | None) -> Theme:
        return self.themes.get(name or DEFAULT_THEME) or self.themes[DEFAULT_THEME]

    def chain(self, name: str | None) -> list[Theme]:
        """The active theme, then the default theme it falls back to."""
        active = self.resolve(name)
        default = self.themes[DEFAULT_THEME]
        return [active] if active is default else [active, default]


class ThemedLoader(BaseLoader):
    """Looks a template up in the active theme chain, then in ``fallback``.

    The returned up-to-date check fails when the active theme changes, so Jinja's
    template cache never serves one theme's template under another.
    """

    def __init__(
        self, themes: ThemeRegistry, active: Callable[[], str | None], fallback: BaseLoader
    ) -> None:
        self.themes = themes
        self.active = active
        self.fallback = fallback

    def get_source(self, environment: Environment, template: str):  # type: ignore[override]
        name = self.themes.resolve(self.active()).name
        for theme in self.themes.chain(name):
            try:
                source, filename, uptodate = FileSystemLoader(theme.templates).get_source(
                    environment, template
                )
            except TemplateNotFound:
                continue
            return source, filename, self._guard(name, uptodate)
        source, filename, uptodate = self.fallback.get_source(environment, template)
        return source, filename, self._guard(name, uptodate)

    def _guard(self, theme: str, uptodate: Callable[[], bool] | None) -> Callable[[], bool]:
        def check() -> bool:
            if self.themes.resolve(self.active()).name != theme:
                return False
            return uptodate() if uptodate else True

        return check

    def list_templates(self) -> list[str]:
        names: set[str] = set(self.fallback.list_templates())
        for theme in self.themes.themes.values():
            names.update(FileSystemLoader(theme.templates).list_templates())
        return sorted(names)
