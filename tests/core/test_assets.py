"""Every asset comes from Bastion itself: htmx is vendored, pages load scripts same-origin."""

from __future__ import annotations

import re
from importlib import resources
from urllib.parse import urlsplit

import pytest

HTMX = "/static/core/vendor/htmx/htmx.min.js"
SCRIPT_RE = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
SRC_RE = re.compile(r'\bsrc="([^"]*)"')
LINK_RE = re.compile(r"<link\b[^>]*\bhref=\"([^\"]*)\"", re.I)
ANY_SRC_RE = re.compile(r"<(?:img|script|iframe|source|video|audio)\b[^>]*\bsrc=\"([^\"]*)\"", re.I)


def test_htmx_is_served_by_bastion(client):
    response = client.get(HTMX)
    assert response.status_code == 200
    assert response.mimetype in {"text/javascript", "application/javascript"}
    shipped = resources.files("bastion").joinpath("static/vendor/htmx/htmx.min.js").read_bytes()
    assert response.data == shipped
    assert b"htmx" in response.data[:2000]


def test_static_paths_cannot_escape_their_folder(client):
    for path in (
        "/static/core/../app.py",
        "/static/core/%2e%2e/app.py",
        "/static/theme/../../bastion.toml",
        "/static/theme/%2e%2e/templates/base.html",
    ):
        assert client.get(path).status_code == 404, path


def scripts_of(page: str) -> list[str]:
    sources = []
    for attributes, body in SCRIPT_RE.findall(page):
        src = SRC_RE.search(attributes)
        assert src, f"inline script: {body[:80]!r}"
        assert not body.strip(), "a script element with both src and a body"
        sources.append(src.group(1))
    return sources


def assert_same_origin(url: str) -> None:
    parts = urlsplit(url)
    assert not parts.scheme and not parts.netloc, url
    assert url.startswith("/") and not url.startswith("//"), url


ANONYMOUS_PAGES = ["/login", "/no/such/page"]
SIGNED_IN_PAGES = ["/", "/admin/", "/admin/plugins", "/admin/appearance", "/status/"]


def _check_page(client, path: str) -> None:
    page = client.get(path).get_data(as_text=True)
    sources = scripts_of(page)
    assert any(src.split("?")[0] == HTMX for src in sources), path
    for src in sources:
        assert_same_origin(src)
        assert client.get(src).status_code == 200, src
    # Stylesheets, icons and images too: nothing is fetched from elsewhere.
    for url in LINK_RE.findall(page) + ANY_SRC_RE.findall(page):
        assert_same_origin(url)


@pytest.mark.parametrize("path", ANONYMOUS_PAGES)
def test_anonymous_pages_load_scripts_from_bastion_only(client, path):
    _check_page(client, path)


@pytest.mark.parametrize("path", SIGNED_IN_PAGES)
def test_signed_in_pages_load_scripts_from_bastion_only(admin_client, path):
    _check_page(admin_client, path)


def test_the_htmx_configuration_forbids_eval(client):
    page = client.get("/login").get_data(as_text=True)
    config = re.search(r"<meta name=\"htmx-config\" content='([^']*)'", page).group(1)
    assert '"allowEval": false' in config
    assert '"selfRequestsOnly": true' in config
