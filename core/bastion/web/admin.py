"""Administration: plugins (enable / disable at runtime) and the active theme."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from bastion import audit
from bastion.access import requires, user_permissions
from bastion.db import db
from bastion.models import SiteSetting, utcnow
from bastion.plugins import state
from bastion.runtime import platform
from bastion.web.theming import THEME_SETTING, active_theme_name

bp = Blueprint("admin", __name__, url_prefix="/admin")
ADMIN_SECTIONS = (
    ("admin.plugins", "admin.plugins", "Plugins", "Enable and disable modules."),
    ("admin.settings", "admin.appearance", "Appearance", "Choose the theme."),
    ("admin.users", "admin_users.users", "Users", "Accounts, roles, teams and sign-in security."),
    ("admin.users", "admin_users.teams", "Teams", "Teams, managers and sub-teams."),
    ("admin.roles", "admin_users.security", "Security", "Require MFA for everyone or per role."),
    ("admin.roles", "admin_access.roles", "Roles", "Permissions, record scope and field security."),
    ("admin.schema", "admin_schema.objects", "Objects and fields", "Custom fields and objects."),
    ("audit.view", "audit.index", "Audit trail", "Who did what and when; filter and export."),
)


@bp.get("/")
@requires("admin.access")
def index():
    granted = user_permissions(current_user)
    sections = [s for s in ADMIN_SECTIONS if s[0] in granted]
    return render_template("admin/index.html", sections=sections)


def _plugin_rows() -> list[dict]:
    plat = platform()
    stored = state.stored_enabled()
    effective = plat.enabled_plugins()
    failures = plat.registry.failures_by_plugin()
    rows = []
    for name, plugin in sorted(plat.registry.plugins.items()):
        needed_by = sorted(
            other
            for other, p in plat.registry.plugins.items()
            if name in p.requires and other in stored
        )
        rows.append(
            {
                "name": name,
                "plugin": plugin,
                "stored": name in stored,
                "running": name in effective,
                "needed_by": needed_by,
                "failures": failures.get(name, [])[-5:],
            }
        )
    return rows


def _render_plugins(status: int = 200):
    # htmx swaps the table; the partial also carries the navigation and flash messages
    # out of band, so a disabled plugin's menu entry vanishes at once.
    template = "admin/_plugins_partial.html" if request.htmx else "admin/plugins.html"
    return render_template(template, rows=_plugin_rows()), status


@bp.get("/plugins")
@requires("admin.plugins")
def plugins():
    return _render_plugins()


@bp.post("/plugins/<name>/<action>")
@requires("admin.plugins")
def change_plugin(name: str, action: str):
    if action not in {"enable", "disable"}:
        abort(404)
    change = state.enable if action == "enable" else state.disable
    try:
        changed = change(platform().registry, [name], actor=f"user:{current_user.id}")
    except state.PluginStateError as exc:
        flash(str(exc), "error")
        return _render_plugins(409)
    # The change applies to the rest of this request too.
    g.pop("_bastion_enabled", None)
    g.pop("_bastion_permissions", None)
    verb = "enabled" if action == "enable" else "disabled"
    label = platform().registry.plugins[name].label
    flash(f"{label} is {verb}." if changed else f"{label} was already {verb}.", "success")
    if request.htmx:
        return _render_plugins()
    return redirect(url_for("admin.plugins"))


@bp.get("/appearance")
@requires("admin.settings")
def appearance():
    return render_template(
        "admin/appearance.html",
        themes=sorted(platform().themes.themes.values(), key=lambda t: t.name),
        active=active_theme_name(),
    )


@bp.post("/appearance")
@requires("admin.settings")
def appearance_submit():
    plat = platform()
    choice = request.form.get("theme", "")
    if choice not in plat.themes.themes:
        flash(f"There is no installed theme named {choice!r}.", "error")
        return redirect(url_for("admin.appearance"))
    row = db.session.get(SiteSetting, THEME_SETTING) or SiteSetting(key=THEME_SETTING)
    before = active_theme_name()
    row.value, row.changed_at, row.changed_by = choice, utcnow(), f"user:{current_user.id}"
    db.session.add(row)
    audit.record(
        "settings.change",
        object_type="setting",
        object_id=THEME_SETTING,
        changes={"theme": {"before": before, "after": choice}},
    )
    db.session.commit()  # the change and its audit entry together
    flash(f"The theme is now {plat.themes.themes[choice].label}.", "success")
    return redirect(url_for("admin.appearance"))
