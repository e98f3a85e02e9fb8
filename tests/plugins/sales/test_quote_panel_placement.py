"""A quote's line items come first on its page: a top panel renders above the fields."""

from __future__ import annotations

import pytest

from tests.plugins.sales.conftest import SAM, bearer, client_as
from tests.plugins.sales.test_quotes_api import new_quote, shop  # noqa: F401


@pytest.fixture
def quote(sales_app, shop):  # noqa: F811
    return new_quote(sales_app.test_client(), bearer(sales_app, SAM), shop)["id"]


def test_line_items_come_before_the_quote_fields(sales_app, quote):
    page = client_as(sales_app, SAM).get(f"/o/quotes/{quote}").get_data(as_text=True)
    lines, fields = page.find(">Line items</h2>"), page.find(">Quote</h2>")
    assert 0 < lines < fields, "the line items panel renders above the Quote section"
    assert 'id="panel-top-1"' in page  # headings keep unique ids per placement
