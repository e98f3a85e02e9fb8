"""X-Forwarded-* headers count only from the proxy addresses an operator configured."""

import dataclasses

import pytest

from bastion.config import ConfigError, load_settings

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


@pytest.fixture
def behind_proxy(app, settings, app_for):
    changed = dataclasses.replace(
        settings, trusted_proxy_count=1, trusted_proxies="10.1.0.0/16, 192.0.2.7"
    )
    return app_for(changed).test_client()


@pytest.mark.parametrize("peer", ["10.1.4.2", "192.0.2.7"])
def test_headers_from_a_trusted_proxy_are_applied(behind_proxy, peer):
    response = behind_proxy.get("/login", headers=FORWARDED, environ_base={"REMOTE_ADDR": peer})
    assert "Strict-Transport-Security" in response.headers  # the request counts as HTTPS


@pytest.mark.parametrize("peer", ["127.0.0.1", "192.0.2.8", "10.2.0.1"])
def test_headers_from_anyone_else_are_dropped(behind_proxy, peer):
    response = behind_proxy.get("/login", headers=FORWARDED, environ_base={"REMOTE_ADDR": peer})
    assert "Strict-Transport-Security" not in response.headers


def test_a_malformed_proxy_list_is_a_clear_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match=r"'proxy\.example' is not an IP address or network"):
        load_settings(tmp_path, environ={"BASTION_TRUSTED_PROXIES": "127.0.0.1, proxy.example"})
