"""The record service end to end on the base objects (more in the feature tests)."""

from __future__ import annotations

import pytest

from bastion.data.errors import Conflict, NotFound, ValidationFailed
from tests.core.data.conftest import ADMIN, SAM, bearer, client_as, service_as


def test_create_update_conflict_and_scope(demo_app):
    with service_as(demo_app, ADMIN) as records:
        account = records.create("accounts", {"name": "Acme Bank", "industry": "banking"})
        contact = records.create(
            "contacts", {"first_name": "Ada", "last_name": "Lovelace", "account": account.id}
        )
        assert contact["full_name"] == "Ada Lovelace"
        assert account["industry"] == "Banking"
        updated = records.update("contacts", contact.id, {"title": "Countess"}, version=1)
        assert updated.version == 2
        with pytest.raises(Conflict):
            records.update("contacts", contact.id, {"title": "Stale"}, version=1)
        assert records.get("contacts", contact.id)["title"] == "Countess"
        with pytest.raises(ValidationFailed) as failed:
            records.create("contacts", {"first_name": "No last name", "email": "nope"})
        assert set(failed.value.errors) == {"last_name", "email"}
    with service_as(demo_app, SAM) as records, pytest.raises(NotFound):
        records.get("contacts", contact.id)
    assert client_as(demo_app, SAM) is not None
    assert "Authorization" in bearer(demo_app, SAM)
