"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from bastion.access import public
from bastion.diagnostics import database_health

bp = Blueprint("health", __name__)
log = logging.getLogger("bastion.health")


@bp.get("/healthz")
@public
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
@public
def readyz():
    health = database_health()
    if not health.reachable:
        # The reason goes to the log only: probes are unauthenticated.
        log.warning("Readiness check failed: database unreachable (%s).", health.problem)
        return jsonify(status="unavailable"), 503
    return jsonify(status="ready")
