"""Error pages in the theme, and RFC 9457 problem details for API clients."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger("bastion.errors")

MESSAGES = {
    400: "The request could not be understood. Check what you entered and try again.",
    403: "You do not have permission to see this page. Ask an administrator if you need it.",
    404: "There is nothing at this address. It may have moved, or the module that served it "
    "may be disabled.",
    405: "This address does not accept that kind of request.",
    409: "The change conflicts with the current state. Reload and try again.",
    500: "Something went wrong on our side. The error has been logged; try again in a moment.",
}


def _wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and not request.accept_mimetypes["text/html"]


def problem(status: int, title: str, detail: str, *, headers: dict[str, str] | None = None):
    """An RFC 9457 problem details response."""
    response = jsonify({"type": "about:blank", "title": title, "status": status, "detail": detail})
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.update(headers or {})
    return response


def _render(status: int, title: str, detail: str):
    if _wants_json():
        return problem(status, title, detail)
    try:
        return render_template("error.html", status=status, title=title, detail=detail), status
    except Exception:
        log.exception("The error page itself failed to render.")
        return f"{status} {title}\n", status, {"Content-Type": "text/plain; charset=utf-8"}


def handle_http_error(exc: HTTPException):
    status = exc.code or 500
    return _render(status, exc.name, MESSAGES.get(status, exc.description or exc.name))


def handle_csrf_error(exc: CSRFError):
    return _render(
        400,
        "Form expired",
        "This form has expired or was sent from elsewhere. Reload the page and try again.",
    )


def handle_unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return handle_http_error(exc)
    log.exception("Unhandled error while serving %s %s", request.method, request.path)
    # `name` is a property of HTTPException instances: read it from an instance.
    return _render(500, InternalServerError().name, MESSAGES[500])


def handle_key_error(exc: Exception):
    # A missing or wrong master key (or a retired data key) is an operator's problem,
    # not a bug: say so, and keep the details (file paths) in the log.
    log.error(
        "Encryption keys unavailable while serving %s %s: %s", request.method, request.path, exc
    )
    return _render(
        503,
        "Encryption keys unavailable",
        "Encrypted data cannot be read or written right now because the encryption keys "
        "are not available. An administrator should run `bastion check`.",
    )


def init_error_pages(app: Flask) -> None:
    from bastion.keys.keyring import KeyringError
    from bastion.keys.master import MasterKeyError

    app.register_error_handler(KeyringError, handle_key_error)
    app.register_error_handler(MasterKeyError, handle_key_error)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
