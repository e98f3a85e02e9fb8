"""The request lifecycle around every view: request id, plugin gate, start-ups, access log."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from flask import Flask, g, request
from werkzeug.exceptions import NotFound

from bastion.runtime import platform

access_log = logging.getLogger("bastion.access_log")
PROBES = frozenset({"health.healthz", "health.readyz"})


class BastionFlask(Flask):
    """Flask that closes a disabled plugin's routes before any of its code runs.

    The gate runs ahead of every before_request function, and it forgets the matched
    route before raising 404, so none of the plugin's blueprint handlers (url value
    preprocessors, before/after request, error handlers) sees the request.
    """

    def preprocess_request(self) -> Any:
        assign_request_id()
        if request.endpoint not in PROBES:
            # Start-ups first: one that fails closes its plugin for this very request.
            platform().run_pending_startups(self)
            if not _route_owner_active():
                request.url_rule = None
                request.view_args = None
                raise NotFound()
        return super().preprocess_request()


def assign_request_id() -> None:
    g.request_started = time.perf_counter()
    # A trusted proxy's id is kept (bastion.web.proxies drops it from anyone else) if it
    # is short and plain ASCII, so it cannot forge log lines.
    incoming = request.headers.get("X-Request-ID", "")
    bare = incoming.replace("-", "")
    plain = 8 <= len(incoming) <= 64 and bare.isascii() and bare.isalnum()
    trusted = platform().settings.trusted_proxy_count > 0
    g.request_id = incoming if plain and trusted else uuid.uuid4().hex


def _route_owner_active() -> bool:
    if not request.blueprints:
        return True  # app-level routes (the core's static files) belong to the core
    plat = platform()
    owner = plat.blueprint_owner.get(request.blueprints[-1])
    return owner is not None and plat.is_active(owner)


def log_response(response: Any) -> Any:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    started = g.get("request_started")
    # A view may set g.log_path to keep a secret in its path (a reset link) out of logs.
    path = g.get("log_path") or request.path
    access_log.info(
        "%s %s %s",
        request.method,
        path,
        response.status_code,
        extra={
            "method": request.method,
            "path": path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1) if started else None,
            "client_addr": request.remote_addr,
        },
    )
    return response
