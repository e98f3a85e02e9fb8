"""The application factory."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx

from bastion import __version__, core_hooks
from bastion.access import can, enforce_route_access
from bastion.audit.buffer import init_audit_writer
from bastion.config import Settings, load_settings
from bastion.data import models as _data_models  # noqa: F401  (registers the tables)
from bastion.data.listeners import init_record_listeners
from bastion.data.setup import sync_at_start
from bastion.db import db, engine_options
from bastion.identity import init_login
from bastion.keyfiles import SESSION_KEY, SecretFileError, read_secret
from bastion.logs import configure_logging
from bastion.navigation import page_context
from bastion.passwords import Passwords
from bastion.plugins.registration import register_plugins
from bastion.plugins.registry import PluginRegistry
from bastion.runtime import EXTENSION_KEY, Platform
from bastion.search import init_search
from bastion.themes import ThemeRegistry
from bastion.web import (
    account,
    admin,
    admin_access,
    admin_schema,
    admin_users,
    api_identity,
    api_merge,
    api_meta,
    api_records,
    assets,
    audit_views,
    auth,
    health,
    home,
    imports,
    merge,
    mfa,
    passwords,
    reauth,
    records_common,
    records_export,
    search,
    tokens,
)
from bastion.web.api_auth import init_api_auth
from bastion.web.errors import init_error_pages
from bastion.web.lifecycle import BastionFlask, log_response
from bastion.web.params import BoundedIntConverter
from bastion.web.proxies import TrustedProxies, parse_networks
from bastion.web.safety import init_security_headers

CORE_BLUEPRINTS = (
    auth.bp,
    home.bp,
    admin.bp,
    admin_users.bp,
    admin_access.bp,
    admin_schema.bp,
    account.bp,
    mfa.bp,
    passwords.bp,
    reauth.bp,
    tokens.bp,
    api_identity.bp,
    search.bp,
    api_merge.bp,
    merge.bp,
    api_meta.bp,
    api_records.bp,
    records_common.bp,
    records_export.bp,
    imports.bp,
    health.bp,
    assets.bp,
    audit_views.bp,
)


def create_app(
    settings: Settings | None = None,
    *,
    registry: PluginRegistry | None = None,
    themes: ThemeRegistry | None = None,
    secret_key: str | None = None,
) -> Flask:
    """Build a Bastion application.

    ``registry`` and ``themes`` default to what is installed (entry points); tests pass
    their own. ``secret_key`` defaults to the session key file in the data directory.
    """
    settings = settings or load_settings()
    configure_logging(settings.log_level)

    app = BastionFlask("bastion", static_url_path="/static/core")
    app.url_map.converters["int"] = BoundedIntConverter
    app.config.update(
        SECRET_KEY=secret_key or _session_key(settings),
        SQLALCHEMY_DATABASE_URI=settings.effective_database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings.effective_database_url),
        SESSION_COOKIE_NAME="bastion_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies == "always",
        REMEMBER_COOKIE_HTTPONLY=True,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_absolute_hours),
        WTF_CSRF_HEADERS=["X-CSRFToken"],
        # Tokens live as long as the session; a stale form is refused with a clear page.
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=True,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
        MAX_CONTENT_LENGTH=32 * 1024 * 1024,
    )
    if settings.secure_cookies == "auto":
        app.session_interface = _AutoSecureSessionInterface()
    if settings.trusted_proxy_count:
        app.wsgi_app = TrustedProxies(  # type: ignore[method-assign]
            app.wsgi_app, settings.trusted_proxy_count, parse_networks(settings.trusted_proxies)
        )

    db.init_app(app)
    CSRFProtect(app)
    # First before_request: bearer tokens on /api/, and the CSRF check for the rest.
    init_api_auth(app)
    Htmx(app)
    init_login(app)
    app.extensions["bastion.passwords"] = Passwords(settings)

    if registry is None:
        registry = PluginRegistry(__version__)
        registry.discover()
    if themes is None:
        themes = ThemeRegistry()
        themes.discover()
    if registry.pm.get_plugin("core") is None:
        registry.register_core(core_hooks)
    plat = Platform(settings, registry, themes)
    app.extensions[EXTENSION_KEY] = plat

    for blueprint in CORE_BLUEPRINTS:
        app.register_blueprint(blueprint)
        plat.blueprint_owner[blueprint.name] = "core"
    with app.app_context():
        register_plugins(app, plat)
    init_record_listeners(app)
    init_audit_writer(app)
    init_search(app)
    sync_at_start(app)

    app.before_request(enforce_route_access)
    app.after_request(log_response)
    init_security_headers(app)
    init_error_pages(app)
    app.context_processor(page_context)
    app.jinja_env.globals.update(can=can, bastion_version=__version__)
    return app


class _AutoSecureSessionInterface(SecureCookieSessionInterface):
    """Marks the session cookie Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or bool(app.config["SESSION_COOKIE_SECURE"])


def _session_key(settings: Settings) -> str:
    try:
        return read_secret(settings.secrets_dir, SESSION_KEY)
    except SecretFileError as exc:
        raise SystemExit(str(exc)) from None
