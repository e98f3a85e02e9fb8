"""Fixtures for the plugin platform: third-party distributions installed for real."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bastion import cli as bastion_cli
from tests.conftest import dispose, make_app, sign_in
from tests.core.plugins_platform import thirdparty
from tests.core.plugins_platform.support import install_probe


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture distributions, built and installed once per session."""
    return thirdparty.build_site(tmp_path_factory.mktemp("thirdparty"))


@pytest.fixture
def third_party(plugin_site: Path) -> Iterator[Path]:
    """The third-party plugins are installed (discoverable, importable) during this test."""
    with thirdparty.importable(plugin_site):
        yield plugin_site


@pytest.fixture
def plugin_app(third_party: Path, settings):
    """An initialized installation that has the third-party plugins installed."""
    application = make_app(settings)
    install_probe(application)
    yield application
    dispose(application)


@pytest.fixture
def plugin_client(plugin_app):
    return plugin_app.test_client()


@pytest.fixture
def plugin_admin(plugin_client):
    response = sign_in(plugin_client)
    assert response.status_code == 302, response.get_data(as_text=True)
    return plugin_client


@pytest.fixture
def bastion_cmd(plugin_site: Path, bastion_env: dict[str, str]):
    """Run the real `bastion` command in a subprocess that sees the third-party plugins."""

    def run(*args: str, input: str | None = None):
        return thirdparty.run_bastion(plugin_site, bastion_env, *args, input=input)

    return run


@pytest.fixture
def plugin_cli(
    third_party: Path, bastion_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """Run `bastion ...` in-process while the third-party plugins are installed.

    Every application a command builds is disposed afterwards, so no database
    connection outlives the command.
    """
    runner = CliRunner()
    built: list = []
    original = bastion_cli.Context.app

    def tracking_app(self, secret_key=None):
        application = original(self, secret_key)
        if application not in built:
            built.append(application)
        return application

    monkeypatch.setattr(bastion_cli.Context, "app", tracking_app)

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        try:
            return runner.invoke(bastion_cli.main, list(args), env=env or bastion_env, input=input)
        finally:
            while built:
                dispose(built.pop())

    return run
