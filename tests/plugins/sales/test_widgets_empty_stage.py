"""The dashboard's sales cards with a stage nobody has a deal in (the demo's usual case)."""

from __future__ import annotations

import re

from tests.plugins.sales.conftest import SVEN, client_as, service_as


def test_pipeline_card_shows_an_empty_stage_as_zero(sales_app):
    with service_as(sales_app, None) as system:
        pipeline = system.create("pipelines", {"name": "Widget test", "is_default": True}).id
        for position, name in enumerate(("Empty", "Busy")):
            system.create(
                "pipeline_stages",
                {"name": name, "pipeline": pipeline, "position": position, "probability": 20},
            )
    with service_as(sales_app, SVEN) as sven:
        sven.create(
            "opportunities",
            {
                "name": "Only deal",
                "amount": {"amount": "10.00", "currency": "EUR"},
                "close_date": "2030-01-31",
                "stage": sven.query("pipeline_stages", sort="-position", limit=1).records[0].id,
            },
        )
    home = client_as(sales_app, SVEN).get("/").get_data(as_text=True)
    assert "could not be shown" not in home
    empty = re.search(r'data-stage="Empty" data-count="0".*?</li>', home, re.S)
    assert empty and "0.00" in empty.group(0)
