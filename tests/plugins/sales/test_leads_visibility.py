"""A sales rep never sees another team's leads: not through search (page, suggestions,
API), the REST API (list, get, filters) nor the type-ahead; scores, conversion and the
lead pages stay within the rep's team too."""

from __future__ import annotations

import pytest

from bastion.search import drain_now
from tests.plugins.sales.conftest import NINA, SAM, SVEN, bearer, client_as, service_as, user_id

pytestmark = pytest.mark.usefixtures("sales_app")


def make_leads(app) -> tuple[int, int]:
    with service_as(app, None) as system:
        north = system.create(
            "leads",
            {"last_name": "Zanzibarnorth", "company": "Northwind Quux", "territory": "North",
             "email": "zn@north.example", "owner": user_id(app, SAM)},
        ).id  # fmt: skip
        south = system.create(
            "leads",
            {"last_name": "Zanzibarsouth", "company": "Southwind Quux", "territory": "South",
             "email": "zs@south.example", "owner": user_id(app, SVEN)},
        ).id  # fmt: skip
    drain_now(app)
    return north, south


def test_search_shows_only_the_reps_team(sales_app):
    north, south = make_leads(sales_app)
    api = sales_app.test_client()
    for email, mine, theirs in ((SVEN, south, north), (SAM, north, south), (NINA, north, south)):
        headers = bearer(sales_app, email)
        data = api.get("/api/v1/search?q=quux", headers=headers).get_json()["data"]
        ids = {hit["id"] for hit in data if hit["object"] == "leads"}
        assert ids == {mine}, (email, data)
        client = client_as(sales_app, email)
        page = client.get("/search?q=zanzibar*").get_data(as_text=True)
        other = "Zanzibarnorth" if theirs == north else "Zanzibarsouth"
        own = "Zanzibarsouth" if other == "Zanzibarnorth" else "Zanzibarnorth"
        assert other not in page and own in page
        suggest = client.get("/search/suggest?q=quux").get_data(as_text=True)
        assert other not in suggest and own in suggest, (email, suggest)


def test_the_api_and_the_type_ahead_show_only_the_reps_team(sales_app):
    north, south = make_leads(sales_app)
    api = sales_app.test_client()
    headers = bearer(sales_app, SVEN)
    listed = api.get("/api/v1/leads", headers=headers).get_json()
    assert [r["id"] for r in listed["data"]] == [south]
    assert api.get(f"/api/v1/leads/{north}", headers=headers).status_code == 404
    for query in (
        "territory=North",
        "email=zn@north.example",
        "company__contains=northwind",
        f"id={north}",
        "last_name__startswith=Zanzibar",
    ):
        response = api.get(f"/api/v1/leads?{query}", headers=headers)
        assert response.status_code in (200, 400), query
        if response.status_code == 200:
            assert north not in [r["id"] for r in response.get_json()["data"]], query
    assert api.get(f"/api/v1/leads/{north}/convert", headers=headers).status_code in (404, 405)
    client = client_as(sales_app, SVEN)
    for q in ("Zanzibar", f"#{north}", "North"):
        page = client.get(f"/o/leads/lookup?q={q}").get_data(as_text=True)
        assert "Zanzibarnorth" not in page, q
    assert client.get(f"/o/leads/{north}").status_code == 404
    assert "Zanzibarnorth" not in client.get("/o/leads").get_data(as_text=True)
    # A rep of the same team sees it.
    nina = sales_app.test_client()
    assert nina.get(f"/api/v1/leads/{north}", headers=bearer(sales_app, NINA)).status_code == 200
