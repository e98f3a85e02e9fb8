"""The active theme (a site setting read once per request) and the template loader."""

from __future__ import annotations

from flask import Flask, g, has_request_context
from jinja2 import BaseLoader, ChoiceLoader, Environment, FileSystemLoader, TemplateNotFound
from sqlalchemy.exc import SQLAlchemyError

from bastion.db import db
from bastion.models import SiteSetting
from bastion.runtime import platform
from bastion.themes import ThemedLoader

THEME_SETTING = "theme"


def _read_theme() -> str | None:
    try:
        row = db.session.get(SiteSetting, THEME_SETTING)
    except SQLAlchemyError:
        db.session.rollback()
        return None
    return row.value if row else None


def active_theme_name() -> str:
    themes = platform().themes
    if not has_request_context():
        return themes.resolve(_read_theme()).name
    if "_bastion_theme" not in g:
        g._bastion_theme = themes.resolve(_read_theme()).name
    return g._bastion_theme


class PluginTemplateLoader(BaseLoader):
    """Serves ``<plugin>/...`` template names from that plugin's folder, and nothing else.

    A plugin can therefore neither replace the core's templates nor another plugin's.
    """

    def __init__(self, folders: dict[str, str]) -> None:
        self.loaders = {owner: FileSystemLoader(folder) for owner, folder in folders.items()}

    def get_source(self, environment: Environment, template: str):  # type: ignore[override]
        loader = self.loaders.get(template.split("/", 1)[0])
        if loader is None:
            raise TemplateNotFound(template)
        return loader.get_source(environment, template)

    def list_templates(self) -> list[str]:
        return sorted(
            name
            for owner, loader in self.loaders.items()
            for name in loader.list_templates()
            if name.startswith(f"{owner}/")
        )


def install_template_loader(app: Flask, plugin_folders: dict[str, str]) -> None:
    """Active theme, then default theme, then the core's templates, then plugins' own."""
    fallback = ChoiceLoader([app.jinja_env.loader, PluginTemplateLoader(plugin_folders)])  # type: ignore[list-item]
    app.jinja_env.loader = ThemedLoader(platform(app).themes, active_theme_name, fallback)
    # Jinja consults a template's up-to-date check only with auto_reload; the check is
    # what notices a change of theme.
    app.jinja_env.auto_reload = True
