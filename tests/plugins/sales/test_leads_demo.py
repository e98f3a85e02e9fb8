"""`bastion init --demo` converts one sample lead through the leads area's ``convert``
(as the system): it ends converted, linked to the demo's account and contact."""

from __future__ import annotations

from bastion.api import Filter
from bastion.app import create_app
from tests.conftest import dispose
from tests.core.conftest import run_init
from tests.core.data.conftest import service_as


def test_the_demo_converts_a_lead_with_its_links(cli, settings):
    result = run_init(cli, "--demo")
    assert result.exit_code == 0, result.output
    app = create_app(settings)
    app.config["TESTING"] = True
    try:
        with service_as(app, None) as records:
            leads = records.query(
                "leads", filters=[Filter("email", "eq", "ingrid@fjord-energy.example")]
            ).records
            assert len(leads) == 1
            lead = leads[0]
            assert lead["status"] == "converted" and lead["converted_at"] is not None
            account = records.get("accounts", lead["converted_account"])
            contact = records.get("contacts", lead["converted_contact"])
            assert account["name"] == "Fjord Energy"
            assert contact["account"] == account.id
    finally:
        dispose(app)
