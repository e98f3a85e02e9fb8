"""The active theme (a site setting read once per request) and the template loader."""

from __future__ import annotations

from flask import Flask, g, has_request_context
from jinja2 import ChoiceLoader, FileSystemLoader
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


def install_template_loader(app: Flask, plugin_template_dirs: list[str]) -> None:
    """Active theme, then default theme, then plugin folders, then core and blueprints."""
    fallback = ChoiceLoader(
        [FileSystemLoader(plugin_template_dirs), app.jinja_env.loader]  # type: ignore[list-item]
    )
    app.jinja_env.loader = ThemedLoader(platform(app).themes, active_theme_name, fallback)
    # Jinja consults a template's up-to-date check only with auto_reload; the check is
    # what notices a change of theme.
    app.jinja_env.auto_reload = True
