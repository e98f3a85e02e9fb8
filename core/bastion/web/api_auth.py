"""Who is calling: bearer tokens on /api/, the cookie session elsewhere, and CSRF.

Runs as the first before_request of the application, ahead of the route's access rule:

- On ``/api/`` an ``Authorization: Bearer <token>`` header authenticates the request by
  itself. The cookie session is set aside (a token request neither reads nor writes it,
  so no Set-Cookie ever answers one) and CSRF does not apply: a browser never attaches
  the header on its own, which is the whole point of CSRF protection.
- Cookies do not authenticate API calls that change data: any other method than GET,
  HEAD or OPTIONS on ``/api/`` without a token answers 401. Reading with the cookie
  stays possible, for the UI's own convenience.
- Every other request gets Flask-WTF's CSRF check here (the extension's own hook is
  switched off with WTF_CSRF_CHECK_DEFAULT so that it cannot run before this one).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response, current_app, g, request
from flask.sessions import NullSession, SecureCookieSession
from flask_login import current_user

from bastion import audit, tokens
from bastion.access import rule_for
from bastion.web.errors import problem

API_PREFIX = "/api/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REALM = 'Bearer realm="bastion"'
INVALID_BEARER_DETAIL = (
    "The API token is not valid: it may be mistyped, expired or revoked. "
    "Create a new one on your account's API tokens page."
)
BEARER_NEEDED_DETAIL = (
    "Use an API token: Authorization: Bearer <token>. Signed-in browser sessions can "
    "only read from the API."
)
SIGN_IN_NEEDED = "Sign in, or send an API token: Authorization: Bearer <token>."
BAD_HEADER = "Send the API token as: Authorization: Bearer <token>."


def _unauthorized(detail: str, *, error: str | None = None):
    challenge = REALM + (f', error="{error}"' if error else "")
    return problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


class _RequestOnlySession(NullSession):
    """The session of a token request: empty, writable in memory, never saved.

    Being a NullSession (to Flask) means it is never written back as a cookie; unlike
    Flask's NullSession, writes do not raise, so code that flashes a message or similar
    cannot turn an API call into a 500.
    """

    __setitem__ = SecureCookieSession.__setitem__  # type: ignore[assignment]
    __delitem__ = SecureCookieSession.__delitem__  # type: ignore[assignment]
    clear = SecureCookieSession.clear  # type: ignore[assignment]
    pop = SecureCookieSession.pop  # type: ignore[assignment]
    popitem = SecureCookieSession.popitem  # type: ignore[assignment]
    update = SecureCookieSession.update  # type: ignore[assignment]
    setdefault = SecureCookieSession.setdefault  # type: ignore[assignment]


class _TokenAwareSessionInterface:
    """Wraps the application's session interface: a token request gets no cookie session.

    Deciding when the session is opened means nothing (Flask-Login, CSRF, flashed
    messages) ever reads the cookie of a token request, and nothing can write one back.
    Everything else is delegated unchanged.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open_session(self, app: Flask, request: Request) -> Any:
        if _is_token_request(request):
            return _RequestOnlySession()
        return self.inner.open_session(app, request)


def _is_token_request(req: Request) -> bool:
    return req.path.startswith(API_PREFIX) and "Authorization" in req.headers


def _bearer_token() -> tuple[bool, str | None]:
    """(header present, token) from the Authorization header."""
    header = request.headers.get("Authorization")
    if header is None:
        return False, None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return True, None
    return True, value.strip()


def authenticate_request() -> Any:
    """before_request: bearer tokens on /api/, CSRF for everything else."""
    if not request.path.startswith(API_PREFIX):
        return _check_csrf()
    present, raw = _bearer_token()
    if present:
        return _token_request(raw)
    if request.method not in SAFE_METHODS:
        return _unauthorized(BEARER_NEEDED_DETAIL)
    endpoint = request.endpoint
    rule = rule_for(endpoint) if endpoint else None
    if rule is not None and rule.signed_in and not current_user.is_authenticated:
        # An API client gets 401 with a challenge, not a redirect to the sign-in page.
        return _unauthorized(SIGN_IN_NEEDED)
    g.auth_method = "session"
    return None


def _token_request(raw: str | None) -> Any:
    if raw is None:
        audit.record("token.use", actor="anonymous", outcome="failure")
        return _unauthorized(BAD_HEADER, error="invalid_request")
    result = tokens.check(raw)
    if result.reason is not None or result.token is None:
        token = result.token
        audit.record(
            "token.use",
            actor=f"user:{token.user_id}" if token else "anonymous",
            object_type="api_token" if token else None,
            object_id=token.id if token else None,
            changes={"reason": result.reason},
            outcome="failure",
        )
        return _unauthorized(INVALID_BEARER_DETAIL, error="invalid_token")
    token = result.token
    g._login_user = token.user  # what Flask-Login's current_user returns
    g.auth_method = "token"
    g.api_token = token
    g.api_token_scopes = tokens.token_scopes(token)
    return None


def _check_csrf() -> None:
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    current_app.extensions["csrf"].protect(apply_exemptions=True)


def no_store(response: Response) -> Response:
    """API answers hold customer data whoever asked (cookie or token): never cache them.

    The site-wide rule (bastion.web.safety) keys on the cookie session, which a token
    request does not have.
    """
    if request.path.startswith(API_PREFIX):
        response.headers["Cache-Control"] = "no-store"
    return response


def init_api_auth(app: Flask) -> None:
    """Call right after CSRFProtect(app) and before any other before_request is added
    (and after the session interface is chosen)."""
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.session_interface = _TokenAwareSessionInterface(app.session_interface)  # type: ignore[assignment]
    app.before_request(authenticate_request)
    app.after_request(no_store)
