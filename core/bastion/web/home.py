"""The home dashboard, assembled from the enabled plugins' widgets."""

from __future__ import annotations

import logging

from flask import Blueprint, render_template
from flask_login import current_user
from markupsafe import Markup

from bastion.access import has_permission, login_required
from bastion.plugins.contributions import DashboardWidget
from bastion.runtime import platform

bp = Blueprint("home", __name__)
log = logging.getLogger("bastion.dashboard")


@bp.get("/")
@login_required
def dashboard():
    plat = platform()
    cards = []
    items = plat.hook_items("dashboard_widgets", DashboardWidget, user=current_user)
    for owner, widget in sorted(items, key=lambda pair: (pair[1].order, pair[1].title)):
        if widget.permission and not has_permission(current_user, widget.permission):
            continue
        try:
            # Autoescaped template output: safe to embed as HTML.
            html = render_template(widget.template, **dict(widget.context))
            body = Markup(html)  # noqa: S704
        except Exception as exc:
            # One broken widget shows as such; the dashboard still renders.
            plat.registry.record_failure(
                owner, "dashboard_widgets", f"{type(exc).__name__}: {exc}", exc
            )
            body = None
        cards.append({"owner": owner, "widget": widget, "body": body})
    return render_template("core/dashboard.html", cards=cards)
