"""Security headers on every response, and the redirect-target check."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request, session

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


def add_security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if _is_asset(request.endpoint):
        return response  # versioned assets hold no customer data: let browsers cache them
    # The session cookie says whether someone is signed in; loading the user would need
    # the database, and the probes must answer even while it is down.
    if "_user_id" in session:
        # Signed-in pages hold customer data: never keep them in a browser or proxy cache.
        headers["Cache-Control"] = "no-store"
        headers.add("Vary", "Cookie")
    return response


def _is_asset(endpoint: str | None) -> bool:
    return bool(endpoint) and (
        endpoint == "static" or endpoint.endswith(".static") or endpoint.startswith("assets.")
    )


def is_safe_next(target: str | None) -> bool:
    """Only paths on Bastion itself: no scheme, no host, no protocol-relative tricks."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return False
    if any(ord(ch) < 32 or ch == "\\" for ch in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def init_security_headers(app: Flask) -> None:
    app.after_request(add_security_headers)
