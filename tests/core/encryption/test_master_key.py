"""The master key: from a plugin hook, the environment or a 0600 key file; wrong keys fail."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from bastion.config import load_settings
from bastion.keys.master import (
    ENV_VARIABLE,
    LocalMasterKey,
    MasterKeyError,
    create_key_file,
    key_file_path,
    load_master_key,
)
from bastion.plugins.registry import PluginRegistry


@pytest.fixture
def plain_settings(tmp_path: Path):
    return load_settings(tmp_path / "data", environ={})


def test_the_key_file_is_created_0600_and_loaded(plain_settings):
    path = key_file_path(plain_settings)
    assert path == plain_settings.secrets_dir / "master.key"
    assert create_key_file(path) is True
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    first = load_master_key(plain_settings, environ={})
    assert first.key_id.startswith("local-")
    # An existing key is never replaced.
    assert create_key_file(path) is False
    assert load_master_key(plain_settings, environ={}).key_id == first.key_id
    wrapped = first.wrap(b"k" * 32, context=b"data:1")
    assert load_master_key(plain_settings, environ={}).unwrap(wrapped, context=b"data:1") == (
        b"k" * 32
    )


def test_a_key_file_others_can_read_is_refused(plain_settings):
    path = key_file_path(plain_settings)
    create_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(MasterKeyError, match=r"chmod 600"):
        load_master_key(plain_settings, environ={})


def test_a_missing_key_file_says_what_to_do(plain_settings):
    with pytest.raises(MasterKeyError, match=r"bastion init.*BASTION_MASTER_KEY"):
        load_master_key(plain_settings, environ={})


def test_the_setting_moves_the_key_file(tmp_path: Path):
    elsewhere = tmp_path / "keys" / "bastion-master.key"
    settings = load_settings(tmp_path / "data", environ={"BASTION_MASTER_KEY_FILE": str(elsewhere)})
    assert key_file_path(settings) == elsewhere
    create_key_file(elsewhere)
    assert load_master_key(settings, environ={}).key_id.startswith("local-")


def test_the_environment_wins_over_the_file_and_keeps_the_key_id(plain_settings):
    path = key_file_path(plain_settings)
    create_key_file(path)
    from_file = load_master_key(plain_settings, environ={})
    hex_key = path.read_text().strip()
    from_env = load_master_key(plain_settings, environ={ENV_VARIABLE: hex_key})
    assert "BASTION_MASTER_KEY" in repr(from_env) and hex_key not in repr(from_env)
    # Moving the same key from the file to the environment keeps wrapped keys usable.
    assert from_env.key_id == from_file.key_id
    blob = from_file.wrap(b"x" * 32, context=b"data:2")
    assert from_env.unwrap(blob, context=b"data:2") == b"x" * 32


@pytest.mark.parametrize("value", ["abc", "zz" * 32, "00" * 31])
def test_a_malformed_environment_key_is_refused(plain_settings, value):
    with pytest.raises(MasterKeyError, match="64 hexadecimal characters"):
        load_master_key(plain_settings, environ={ENV_VARIABLE: value})


def test_a_wrong_master_key_or_other_context_cannot_unwrap():
    right = LocalMasterKey(secrets.token_bytes(32), source="test")
    wrong = LocalMasterKey(secrets.token_bytes(32), source=ENV_VARIABLE)
    blob = right.wrap(b"d" * 32, context=b"data:1")
    with pytest.raises(MasterKeyError, match="not the master key this database was set up"):
        wrong.unwrap(blob, context=b"data:1")
    with pytest.raises(MasterKeyError):
        right.unwrap(blob, context=b"blind_index:1")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(MasterKeyError):
        right.unwrap(tampered, context=b"data:1")


class FakeKms:
    """Stands in for an HSM: wraps by XOR, enough to tell who did the wrapping."""

    key_id = "kms-test"

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        return b"kms" + bytes(b ^ 0x5A for b in key)

    def unwrap(self, blob: bytes, *, context: bytes) -> bytes:
        if not blob.startswith(b"kms"):
            raise MasterKeyError("not ours")
        return bytes(b ^ 0x5A for b in blob[3:])


class _KmsPlugin:
    def __init__(self, answer):
        self.answer = answer

    from bastion.plugins.hookspecs import hookimpl

    @hookimpl
    def master_key_provider(self):
        return self.answer


def _registry_with(*answers) -> PluginRegistry:
    from bastion.plugins.registry import InstalledPlugin

    registry = PluginRegistry("0.1.0")
    for index, answer in enumerate(answers):
        name = f"kms{index}"
        plugin = _KmsPlugin(answer)
        registry.pm.register(plugin, name=name)
        registry.plugins[name] = InstalledPlugin(name=name, entry_point="x", module=plugin)  # type: ignore[arg-type]
    return registry


def test_a_plugin_master_key_wins_over_environment_and_file(plain_settings):
    create_key_file(key_file_path(plain_settings))
    registry = _registry_with(FakeKms())
    key = load_master_key(plain_settings, registry=registry, environ={ENV_VARIABLE: "ab" * 32})
    assert key.key_id == "kms-test"


def test_a_plugin_that_answers_none_leaves_the_key_to_bastion(plain_settings):
    create_key_file(key_file_path(plain_settings))
    key = load_master_key(plain_settings, registry=_registry_with(None), environ={})
    assert key.key_id.startswith("local-")


def test_two_providers_or_a_malformed_one_are_refused(plain_settings):
    with pytest.raises(MasterKeyError, match="Several plugins"):
        load_master_key(plain_settings, registry=_registry_with(FakeKms(), FakeKms()))
    with pytest.raises(MasterKeyError, match="without key_id, wrap and unwrap"):
        load_master_key(plain_settings, registry=_registry_with(object()))
