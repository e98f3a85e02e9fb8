"""The plugin's two blueprints: pages under /sales/ and API actions under /api/v1/.

Every area module adds its routes to these; the core registers them once, answers 404
while the plugin is disabled, and turns record errors on the API blueprint into problem
details.
"""

from __future__ import annotations

from bastion.api import Blueprint

bp = Blueprint("sales", __name__, url_prefix="/sales")
api_bp = Blueprint("sales_api", __name__, url_prefix="/api/v1")
