"""Re-authentication for sensitive actions: the user must have proved who they are lately.

Role changes, MFA resets, key operations, exports and token creation are wrapped in
:func:`recent_auth_required`. Without a sign-in or re-authentication in the last
``reauth_minutes`` (10 by default), a page request is sent to the re-authentication page
and comes back afterwards; an htmx or API request gets 401 with an explanation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, redirect, request, url_for

from bastion.runtime import platform
from bastion.sessions import seconds_since_authentication
from bastion.web.errors import problem

View = TypeVar("View", bound=Callable[..., Any])
REAUTH_NEEDED = "Confirm it is you: this action needs your password again."


def recently_authenticated() -> bool:
    if g.get("auth_method") == "token":
        # A token holder cannot type a password; tokens are created only after a
        # re-authentication and carry their own scopes and expiry.
        return True
    elapsed = seconds_since_authentication()
    return elapsed is not None and elapsed <= platform().settings.reauth_minutes * 60


def recent_auth_required(view: View) -> View:
    """Put under the access decorator (``@requires``) of a sensitive view."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if recently_authenticated():
            return view(*args, **kwargs)
        if request.path.startswith("/api/") or request.headers.get("HX-Request"):
            headers = {}
            if request.headers.get("HX-Request"):
                headers["HX-Redirect"] = url_for("reauth.confirm", next=_back())
            return problem(401, "Re-authentication required", REAUTH_NEEDED, headers=headers)
        return redirect(url_for("reauth.confirm", next=_back()))

    return wrapper  # type: ignore[return-value]


def _back() -> str:
    """Where to return after re-authenticating: the page, never the POST itself."""
    if request.method == "GET":
        return request.full_path.rstrip("?")
    referrer = request.referrer or ""
    host = request.host_url
    return referrer[len(host) - 1 :] if referrer.startswith(host) else "/"
