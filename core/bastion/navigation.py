"""What every page's shell needs: the navigation and the enabled plugins' assets."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from flask_login import current_user
from werkzeug.routing import BuildError

from bastion.access import has_permission
from bastion.plugins.contributions import NavItem
from bastion.runtime import platform


def navigation() -> list[dict[str, Any]]:
    if not current_user.is_authenticated:
        return []
    plat = platform()
    entries = []
    for owner, item in plat.hook_items("navigation_items", NavItem, user=current_user):
        if item.permission and not has_permission(current_user, item.permission):
            continue
        try:
            url = url_for(item.endpoint, **dict(item.args))
        except BuildError:
            plat.registry.record_failure(
                owner, "navigation_items", f"No route named {item.endpoint!r}.", None
            )
            continue
        current = request.path == url or (url != "/" and request.path.startswith(url))
        entries.append({"item": item, "url": url, "owner": owner, "current": current})
    # Only the closest match is current: /admin/audit is the audit trail, not /admin/.
    current = [e for e in entries if e["current"]]
    if current:
        closest = max(current, key=lambda e: len(e["url"]))
        for entry in current:
            entry["current"] = entry is closest
    entries.sort(key=lambda e: (e["item"].order, e["item"].label))
    return entries


def page_context() -> dict[str, Any]:
    plat = platform()

    def plugin_assets(kind: str) -> list[str]:
        pairs = plat.plugin_stylesheets if kind == "css" else plat.plugin_scripts
        return [
            url_for("assets.plugin_file", plugin=owner, filename=name)
            for owner, name in pairs
            if plat.is_active(owner)
        ]

    return {"navigation": navigation, "plugin_assets": plugin_assets}
