"""Strict security headers on every response, errors included; cookie flags; HSTS."""

from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, CSRF_RE, sign_in

HTTPS = "https://localhost"


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers.get("Content-Security-Policy")
    assert policy, f"no CSP on {response.status_code} {response.request.path}"
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_strict_headers(response) -> None:
    csp = csp_directives(response)
    assert csp["script-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["default-src"] == ["'self'"]
    for name, values in csp.items():
        assert "'unsafe-inline'" not in values or name.startswith("style"), name
        assert "'unsafe-eval'" not in values, name
        assert "*" not in values, name
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in {"same-origin", "no-referrer", "strict-origin"}
    assert response.headers["X-Frame-Options"] == "DENY"


def assert_no_store(response) -> None:
    assert "no-store" in response.headers.get("Cache-Control", ""), response.request.path


def session_cookie(response) -> str:
    cookies = [
        c for c in response.headers.getlist("Set-Cookie") if c.startswith("bastion_session=")
    ]
    assert len(cookies) == 1, response.headers.getlist("Set-Cookie")
    return cookies[0]


def cookie_flags(set_cookie: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}


def https_sign_in(client):
    # Over HTTPS the CSRF check also wants a same-origin Referer, as a browser sends.
    referer = {"Referer": f"{HTTPS}/login"}
    page = client.get("/login", base_url=HTTPS).get_data(as_text=True)
    token = CSRF_RE.search(page).group(1)
    return client.post(
        "/login",
        base_url=HTTPS,
        headers=referer,
        data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token},
    )


ANONYMOUS_REQUESTS = [
    ("GET", "/login", 200),
    ("GET", "/", 302),
    ("GET", "/no/such/page", 404),
    ("GET", "/api/no/such/thing", 404),
    ("GET", "/logout", 405),
    ("GET", "/probe/undeclared", 403),
    ("GET", "/probe/boom", 500),
    ("GET", "/api/probe/boom", 500),
    ("POST", "/login", 400),  # no CSRF token
    ("GET", "/healthz", 200),
    ("GET", "/readyz", 200),
    ("GET", "/static/core/vendor/htmx/htmx.min.js", 200),
    ("GET", "/static/theme/css/bastion.css", 200),
]


@pytest.mark.parametrize(("method", "path", "status"), ANONYMOUS_REQUESTS)
def test_every_response_carries_the_headers(probe_app, method, path, status):
    response = probe_app.test_client().open(path, method=method)
    assert response.status_code == status
    assert_strict_headers(response)
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP


SIGNED_IN_REQUESTS = [
    ("GET", "/", 200),
    ("GET", "/admin/plugins", 200),
    ("GET", "/status/report.json", 200),
    ("GET", "/no/such/page", 404),
    ("GET", "/probe/undeclared", 403),
    ("GET", "/probe/boom", 500),
    ("POST", "/logout", 400),  # no CSRF token
]


@pytest.mark.parametrize(("method", "path", "status"), SIGNED_IN_REQUESTS)
def test_signed_in_responses_are_not_stored(probe_app, method, path, status):
    client = probe_app.test_client()
    assert sign_in(client).status_code == 302
    response = client.open(path, method=method)
    assert response.status_code == status
    assert_strict_headers(response)
    assert_no_store(response)


def test_the_sign_in_redirect_is_not_stored(client):
    response = sign_in(client)
    assert response.status_code == 302
    assert_no_store(response)


def test_hsts_only_over_https(client):
    plain = client.get("/login")
    assert "Strict-Transport-Security" not in plain.headers
    secure = client.get("/login", base_url=HTTPS)
    hsts = secure.headers["Strict-Transport-Security"]
    assert hsts.startswith("max-age=")
    assert int(hsts.split("=", 1)[1].split(";")[0]) >= 31536000
    assert_strict_headers(secure)


def test_hsts_on_https_error_pages(client):
    response = client.get("/no/such/page", base_url=HTTPS)
    assert response.status_code == 404
    assert "Strict-Transport-Security" in response.headers


def test_session_cookie_flags_over_http(client):
    response = sign_in(client)
    assert response.status_code == 302
    flags = cookie_flags(session_cookie(response))
    assert "httponly" in flags
    assert "secure" not in flags
    assert "samesite=lax" in session_cookie(response).lower().replace(" ", "")


def test_session_cookie_flags_over_https(client):
    response = https_sign_in(client)
    assert response.status_code == 302, response.get_data(as_text=True)
    cookie = session_cookie(response)
    flags = cookie_flags(cookie)
    assert {"httponly", "secure", "samesite"} <= flags
    assert "samesite=lax" in cookie.lower().replace(" ", "")
    assert client.get("/", base_url=HTTPS).status_code == 200


def test_anonymous_session_cookie_has_the_same_flags(client):
    response = client.get("/login", base_url=HTTPS)
    flags = cookie_flags(session_cookie(response))
    assert {"httponly", "secure", "samesite"} <= flags


def test_https_form_posts_from_another_origin_are_refused(client):
    page = client.get("/login", base_url=HTTPS).get_data(as_text=True)
    token = CSRF_RE.search(page).group(1)
    response = client.post(
        "/login",
        base_url=HTTPS,
        headers={"Referer": "https://evil.example/login"},
        data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 400
    assert_strict_headers(response)
    assert client.get("/", base_url=HTTPS).status_code == 302


@pytest.fixture
def app_with(app, settings, app_for):
    """Another app on the same installation, with some settings changed."""

    def build(**changes):
        return app_for(dataclasses.replace(settings, **changes))

    return build


def test_secure_cookies_always_marks_the_cookie_secure_over_http(app_with):
    client = app_with(secure_cookies="always").test_client()
    assert "secure" in cookie_flags(session_cookie(client.get("/login")))


def test_secure_cookies_never_leaves_the_flag_off_over_https(app_with):
    client = app_with(secure_cookies="never").test_client()
    assert "secure" not in cookie_flags(session_cookie(client.get("/login", base_url=HTTPS)))


def test_forwarded_proto_is_ignored_unless_the_proxy_is_trusted(app, app_with):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    untrusted = app.test_client().get("/login", headers=forwarded)
    assert "Strict-Transport-Security" not in untrusted.headers
    assert "secure" not in cookie_flags(session_cookie(untrusted))

    behind_proxy = app_with(trusted_proxy_count=1).test_client()
    trusted = behind_proxy.get("/login", headers=forwarded)
    assert "Strict-Transport-Security" in trusted.headers
    assert "secure" in cookie_flags(session_cookie(trusted))
