"""Static files of the active theme and of enabled plugins, served by Bastion itself."""

from __future__ import annotations

from flask import Blueprint, abort, send_from_directory

from bastion.access import public
from bastion.runtime import platform
from bastion.web.theming import active_theme_name

bp = Blueprint("assets", __name__, url_prefix="/static")


@bp.get("/theme/<path:filename>")
@public
def theme_file(filename: str):
    themes = platform().themes
    for theme in themes.chain(active_theme_name()):
        if (theme.static / filename).is_file():
            return send_from_directory(theme.static, filename)
    abort(404)


@bp.get("/plugins/<plugin>/<path:filename>")
@public
def plugin_file(plugin: str, filename: str):
    plat = platform()
    folder = plat.plugin_static.get(plugin)
    if folder is None or not plat.is_active(plugin):
        abort(404)
    return send_from_directory(folder, filename)
