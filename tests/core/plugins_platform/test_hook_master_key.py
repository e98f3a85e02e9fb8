"""The master_key_provider hook: a plugin (HSM, KMS) supplies the master key."""

from __future__ import annotations

import pytest

from bastion.keys.keyring import Keyring, check_master_key
from bastion.keys.master import MasterKeyError, load_master_key
from bastion.runtime import platform
from tests.core.encryption.test_master_key import FakeKms


@pytest.fixture
def example_kms(plugin_app):
    module = platform(plugin_app).registry.plugins["example"].module
    module.MASTER_KEY = FakeKms()
    yield module.MASTER_KEY
    module.MASTER_KEY = None


def test_hook_master_key_provider(plugin_app, example_kms):
    # Asked of installed plugins even while disabled: a disable must not lock the data.
    with plugin_app.app_context():
        settings = platform(plugin_app).settings
        assert load_master_key(settings) is example_kms
        # This installation's data keys were wrapped by its key file, not by the KMS.
        plugin_app.extensions["bastion.keyring"] = Keyring(example_kms)
        with pytest.raises(MasterKeyError, match="not ours"):
            check_master_key()
        # A data key wrapped by the KMS unwraps through it.
        ring = Keyring(example_kms)
        plugin_app.extensions["bastion.keyring"] = ring
        version = ring.new_data_version()
        assert len(ring.key("data", version)) == 32
