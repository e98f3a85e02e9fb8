"""Deny by default: every route declares who may reach it, checked before it runs.

A view without a declaration answers 403 to everyone, so a forgotten decorator is a
refusal, never an open door. Permissions grant only while the core or the enabled
plugin that defines them is active.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import abort, current_app, g, has_request_context, redirect, request, url_for
from flask_login import current_user

from bastion.runtime import platform

log = logging.getLogger("bastion.access")
ACCESS_ATTR = "_bastion_access"
ALL_PERMISSIONS = "*"
View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class AccessRule:
    signed_in: bool
    permission: str | None = None


def public(view: View) -> View:
    """Anyone, signed in or not, may call this route."""
    setattr(view, ACCESS_ATTR, AccessRule(signed_in=False))
    return view


def login_required(view: View) -> View:
    """Any signed-in user may call this route."""
    setattr(view, ACCESS_ATTR, AccessRule(signed_in=True))
    return view


def requires(permission: str) -> Callable[[View], View]:
    """Only signed-in users holding ``permission`` may call this route."""

    def mark(view: View) -> View:
        setattr(view, ACCESS_ATTR, AccessRule(signed_in=True, permission=permission))
        return view

    return mark


def rule_for(endpoint: str) -> AccessRule | None:
    if _is_static_files_route(endpoint):
        return AccessRule(signed_in=False)
    view = current_app.view_functions.get(endpoint)
    return getattr(view, ACCESS_ATTR, None)


def _is_static_files_route(endpoint: str) -> bool:
    """Flask's own static-file routes (of the app or a blueprint with a static folder)."""
    if endpoint == "static":
        return current_app.has_static_folder
    owner, _, name = endpoint.rpartition(".")
    blueprint = current_app.blueprints.get(owner)
    return name == "static" and blueprint is not None and blueprint.has_static_folder


def user_permissions(user: Any) -> frozenset[str]:
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = g.get("_bastion_permissions")
    if cached is not None and g.get("_bastion_permissions_user") == user.id:
        return cached
    granted: set[str] = set()
    for role in user.roles:
        granted |= role.permission_names
    active = platform().active_permissions()
    result = active if ALL_PERMISSIONS in granted else frozenset(granted & active)
    scopes = token_scopes_for(user)
    if scopes is not None:
        result = result & scopes  # a token never grants more than its scopes
    g._bastion_permissions, g._bastion_permissions_user = result, user.id
    return result


def token_scopes_for(user: Any) -> frozenset[str] | None:
    """The scopes of the API token this request was made with, if it is ``user``'s.

    None when the request carries no token or the token narrows nothing. Questions
    about other users (an administrator's "why can X see Y") are not narrowed.
    """
    if not has_request_context():
        return None
    token, scopes = g.get("api_token"), g.get("api_token_scopes")
    if token is None or token.user_id != getattr(user, "id", None):
        return None
    return scopes if isinstance(scopes, frozenset) else None


def has_permission(user: Any, permission: str) -> bool:
    return permission in user_permissions(user)


def can(permission: str) -> bool:
    """Template helper: does the current user hold ``permission``?"""
    return has_permission(current_user, permission)


def enforce_route_access() -> Any:
    """before_request: apply the route's declared rule."""
    endpoint = request.endpoint
    if endpoint is None:
        return None  # no route matched: the 404 follows
    rule = rule_for(endpoint)
    if rule is None:
        log.error("Route %s declares no access rule; refusing it.", endpoint)
        abort(403)
    if not rule.signed_in:
        return None
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()
    gate = account_gate(current_user)
    if gate is not None and not _allowed_while_gated(endpoint, gate):
        if request.path.startswith("/api/"):
            abort(403)
        return redirect(url_for(gate))
    if rule.permission and not has_permission(current_user, rule.permission):
        abort(403)
    return None


def account_gate(user: Any) -> str | None:
    """The page a signed-in user must complete before anything else, if any.

    An administrator's forced password reset comes first, then MFA enrolment when the
    user's roles (or the site) require MFA and they have none.
    """
    from bastion.mfa_policy import enrolment_required

    if user.must_change_password:
        return PASSWORD_CHANGE_ENDPOINT
    if enrolment_required(user):
        return MFA_ENROL_ENDPOINT
    return None


PASSWORD_CHANGE_ENDPOINT = "password.change"  # noqa: S105  (an endpoint name)
MFA_ENROL_ENDPOINT = "mfa.enrol"
#: Reachable whatever the gate: signing out, and the gate's own pages.
ALWAYS_ALLOWED = frozenset({"auth.logout"})


def _allowed_while_gated(endpoint: str, gate: str) -> bool:
    blueprint = gate.partition(".")[0]
    return endpoint in ALWAYS_ALLOWED or endpoint.partition(".")[0] == blueprint
