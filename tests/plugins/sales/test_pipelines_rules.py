"""Opportunity rules (default pipeline and stage, stage within its pipeline, probability,
forecast category and outcome from the stage), stage history, and the pipeline and
stage rules, through the REST API and the pages, on SQLite and PostgreSQL.

The helpers at the top are shared with the board tests.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from tests.plugins.sales.conftest import (
    ADMIN,
    MARIA,
    SAM,
    SVEN,
    bearer,
    client_as,
    service_as,
    user_id,
)

STAGES = (
    ("Prospecting", 10, "open", "pipeline"),
    ("Proposal", 50, "open", "best_case"),
    ("Negotiation", 75, "open", "commit"),
    ("Closed won", 100, "won", "commit"),
    ("Closed lost", 0, "lost", "omitted"),
)


def make_pipeline(app, name: str, *, default: bool = False, stages=STAGES) -> dict:
    """A pipeline and its stages (created by the system): {"id": .., "stages": {name: id}}."""
    with service_as(app, None) as service:
        pipeline = service.create("pipelines", {"name": name, "is_default": default})
        ids = {}
        for index, (stage, probability, outcome, category) in enumerate(stages):
            record = service.create(
                "pipeline_stages",
                {
                    "name": stage,
                    "pipeline": pipeline.id,
                    "position": (index + 1) * 10,
                    "probability": probability,
                    "outcome": outcome,
                    "forecast_category": category,
                },
            )
            ids[stage] = record.id
        return {"id": pipeline.id, "stages": ids}


def make_two_pipelines(app) -> dict:
    """ "Renewals" (created first, not default) and "New business" (the default)."""
    renewals = make_pipeline(
        app,
        "Renewals",
        stages=(("Upcoming", 40, "open", "pipeline"), ("Renewed", 100, "won", "commit")),
    )
    main = make_pipeline(app, "New business", default=True)
    return {"main": main, "renewals": renewals}


@pytest.fixture
def pipelines(sales_app):
    return make_two_pipelines(sales_app)


def create_opportunity(app, email: str, **values) -> dict:
    body = {"name": "Deal", "close_date": "2026-12-31", **values}
    response = app.test_client().post(
        "/api/v1/opportunities", json=body, headers=bearer(app, email)
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def get_opportunity(app, email: str, record_id: int) -> dict:
    response = app.test_client().get(
        f"/api/v1/opportunities/{record_id}", headers=bearer(app, email)
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def patch_opportunity(app, email: str, record: dict, **changes):
    return app.test_client().patch(
        f"/api/v1/opportunities/{record['id']}",
        json={"version": record["version"], **changes},
        headers=bearer(app, email),
    )


def history_of(app, opportunity_id: int) -> list:
    with service_as(app, None) as service:
        from bastion.api import Filter

        page = service.query(
            "stage_history",
            filters=[Filter("opportunity", "eq", opportunity_id)],
            sort="entered_at",
        )
        return [dict(r.values, id=r.id) for r in page.records]


# --------------------------------------------------------------------------- opportunities


def test_new_opportunity_lands_in_the_default_pipelines_first_stage(sales_app, pipelines):
    record = create_opportunity(sales_app, SAM, amount={"amount": "1000.00", "currency": "EUR"})
    main = pipelines["main"]
    assert record["pipeline"] == main["id"]
    assert record["stage"] == main["stages"]["Prospecting"]
    assert Decimal(record["probability"]) == 10
    assert record["forecast_category"] == "pipeline"
    assert record["outcome"] == "open"
    assert record["stage_entered_at"]


def test_without_a_default_the_first_active_pipeline_is_used(sales_app):
    first = make_pipeline(sales_app, "First")
    make_pipeline(sales_app, "Second")
    record = create_opportunity(sales_app, SAM)
    assert record["pipeline"] == first["id"]
    assert record["stage"] == first["stages"]["Prospecting"]


def test_a_stage_given_without_a_pipeline_brings_its_pipeline(sales_app, pipelines):
    renewals = pipelines["renewals"]
    record = create_opportunity(sales_app, SAM, stage=renewals["stages"]["Upcoming"])
    assert record["pipeline"] == renewals["id"]
    assert Decimal(record["probability"]) == 40


def test_a_stage_of_another_pipeline_is_refused(sales_app, pipelines):
    main, renewals = pipelines["main"], pipelines["renewals"]
    response = sales_app.test_client().post(
        "/api/v1/opportunities",
        json={
            "name": "Mixed",
            "close_date": "2026-12-31",
            "pipeline": main["id"],
            "stage": renewals["stages"]["Upcoming"],
        },
        headers=bearer(sales_app, SAM),
    )
    assert response.status_code == 422
    message = response.get_json()["errors"]["stage"]
    assert "Upcoming" in message and "Renewals" in message and "New business" in message
    record = create_opportunity(sales_app, SAM)
    moved = patch_opportunity(sales_app, SAM, record, stage=renewals["stages"]["Upcoming"])
    assert moved.status_code == 422
    assert "stage" in moved.get_json()["errors"]
    assert get_opportunity(sales_app, SAM, record["id"])["version"] == record["version"]


def test_changing_the_pipeline_moves_to_its_first_stage(sales_app, pipelines):
    renewals = pipelines["renewals"]
    record = create_opportunity(sales_app, SAM)
    response = patch_opportunity(sales_app, SAM, record, pipeline=renewals["id"])
    assert response.status_code == 200, response.get_json()
    moved = response.get_json()
    assert moved["stage"] == renewals["stages"]["Upcoming"]
    assert Decimal(moved["probability"]) == 40


def test_probability_and_forecast_category_follow_the_stage_unless_set(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    record = create_opportunity(sales_app, SAM)
    response = patch_opportunity(sales_app, SAM, record, stage=stages["Proposal"])
    record = response.get_json()
    assert Decimal(record["probability"]) == 50
    assert record["forecast_category"] == "best_case"

    # Sent back unchanged (as a form does): still the stage's.
    response = patch_opportunity(
        sales_app,
        SAM,
        record,
        stage=stages["Negotiation"],
        probability=record["probability"],
        forecast_category=record["forecast_category"],
    )
    record = response.get_json()
    assert Decimal(record["probability"]) == 75
    assert record["forecast_category"] == "commit"

    # Set in the same write: kept.
    response = patch_opportunity(
        sales_app,
        SAM,
        record,
        stage=stages["Proposal"],
        probability="33",
        forecast_category="omitted",
    )
    record = response.get_json()
    assert Decimal(record["probability"]) == 33
    assert record["forecast_category"] == "omitted"

    # A probability changed without a stage change stays too.
    response = patch_opportunity(sales_app, SAM, record, probability="60")
    assert Decimal(response.get_json()["probability"]) == 60

    # On create, an explicit probability wins over the first stage's.
    created = create_opportunity(sales_app, SAM, probability="5")
    assert Decimal(created["probability"]) == 5


def test_outcome_follows_the_stage_and_a_lost_deal_needs_a_reason(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    record = create_opportunity(sales_app, SAM)
    refused = patch_opportunity(sales_app, SAM, record, outcome="won")
    assert refused.status_code == 422  # read-only: set by the stage only

    refused = patch_opportunity(sales_app, SAM, record, stage=stages["Closed lost"])
    assert refused.status_code == 422
    assert "lost" in refused.get_json()["errors"]["close_reason"]
    assert get_opportunity(sales_app, SAM, record["id"])["outcome"] == "open"

    lost = patch_opportunity(
        sales_app, SAM, record, stage=stages["Closed lost"], close_reason="Budget cut"
    ).get_json()
    assert lost["outcome"] == "lost"
    assert Decimal(lost["probability"]) == 0
    assert lost["forecast_category"] == "omitted"

    won = patch_opportunity(sales_app, SAM, lost, stage=stages["Closed won"]).get_json()
    assert won["outcome"] == "won"
    assert Decimal(won["probability"]) == 100

    reopened = patch_opportunity(sales_app, SAM, won, stage=stages["Proposal"]).get_json()
    assert reopened["outcome"] == "open"


def test_without_any_pipeline_an_opportunity_is_created_without_a_stage(sales_app):
    record = create_opportunity(sales_app, SAM)
    assert record["pipeline"] is None and record["stage"] is None
    assert record["outcome"] == "open"


# --------------------------------------------------------------------------- history


def test_stage_history_records_every_stay(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    record = create_opportunity(sales_app, SAM)
    record = patch_opportunity(sales_app, SAM, record, stage=stages["Proposal"]).get_json()
    record = patch_opportunity(sales_app, SAM, record, name="Renamed").get_json()  # no move
    record = patch_opportunity(sales_app, SAM, record, stage=stages["Negotiation"]).get_json()
    rows = history_of(sales_app, record["id"])
    assert [r["stage_name"] for r in rows] == ["Prospecting", "Proposal", "Negotiation"]
    assert [r["stage"] for r in rows] == [
        stages["Prospecting"],
        stages["Proposal"],
        stages["Negotiation"],
    ]
    sam = user_id(sales_app, SAM)
    assert all(r["owner"] == sam for r in rows)
    for earlier, later in itertools.pairwise(rows):
        assert earlier["left_at"] is not None
        assert earlier["left_at"] == later["entered_at"]
        assert earlier["entered_at"] <= earlier["left_at"]
        assert earlier["seconds_in_stage"] >= 0
    assert rows[-1]["left_at"] is None and rows[-1]["seconds_in_stage"] is None
    assert rows[-1]["entered_at"].isoformat()[:19] == record["stage_entered_at"][:19]


def test_a_refused_move_leaves_no_history(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    record = create_opportunity(sales_app, SAM)
    refused = patch_opportunity(sales_app, SAM, record, stage=stages["Closed lost"])
    assert refused.status_code == 422
    assert len(history_of(sales_app, record["id"])) == 1


def test_history_is_in_the_owners_scope_and_follows_a_new_owner(sales_app, pipelines):
    record = create_opportunity(sales_app, SAM)
    sven = bearer(sales_app, SVEN)
    client = sales_app.test_client()
    listed = client.get(f"/api/v1/stage_history?opportunity={record['id']}", headers=sven)
    assert listed.status_code == 200
    assert listed.get_json()["data"] == []
    mine = client.get(
        f"/api/v1/stage_history?opportunity={record['id']}", headers=bearer(sales_app, SAM)
    )
    assert len(mine.get_json()["data"]) == 1

    # Maria (manager of the whole tree) hands the deal to Sven: its history follows.
    response = patch_opportunity(sales_app, MARIA, record, owner=user_id(sales_app, SVEN))
    assert response.status_code == 200, response.get_json()
    listed = client.get(f"/api/v1/stage_history?opportunity={record['id']}", headers=sven)
    assert len(listed.get_json()["data"]) == 1


def test_history_rows_cannot_be_written_by_users(sales_app, pipelines):
    record = create_opportunity(sales_app, SAM)
    row = history_of(sales_app, record["id"])[0]
    response = sales_app.test_client().patch(
        f"/api/v1/stage_history/{row['id']}",
        json={"version": 1, "stage_name": "Forged"},
        headers=bearer(sales_app, SAM),
    )
    assert response.status_code in (403, 422)


def test_the_opportunity_page_shows_the_stage_history_panel(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    record = create_opportunity(sales_app, SAM)
    patch_opportunity(sales_app, SAM, record, stage=stages["Proposal"])
    page = client_as(sales_app, SAM).get(f"/o/opportunities/{record['id']}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Stage history" in html
    assert "data-stage-history" in html
    assert "Total time per stage" in html
    assert html.index("Prospecting") < html.rindex("Proposal")


def test_human_durations():
    from bastion_sales.pipelines.history import human_duration

    assert human_duration(3 * 86400 + 4 * 3600 + 59) == "3 d 4 h"
    assert human_duration(2 * 86400) == "2 d"
    assert human_duration(5 * 3600 + 12 * 60) == "5 h 12 min"
    assert human_duration(7 * 60 + 3) == "7 min"
    assert human_duration(12) == "under a minute"
    assert human_duration(-5) == "under a minute"


# --------------------------------------------------------------------------- stages, pipelines


def test_won_and_lost_stages_carry_their_certain_probability(sales_app, pipelines):
    admin = bearer(sales_app, ADMIN)
    client = sales_app.test_client()
    base = {"pipeline": pipelines["main"]["id"], "position": 90}
    stage = client.post(
        "/api/v1/pipeline_stages",
        json={**base, "name": "Signed", "probability": 60},
        headers=admin,
    ).get_json()
    won = client.patch(
        f"/api/v1/pipeline_stages/{stage['id']}",
        json={"version": stage["version"], "outcome": "won"},
        headers=admin,
    )
    assert won.status_code == 200, won.get_json()
    assert Decimal(won.get_json()["probability"]) == 100
    assert won.get_json()["forecast_category"] == "commit"
    wrong = client.post(
        "/api/v1/pipeline_stages",
        json={**base, "name": "Odd", "outcome": "lost", "probability": 30},
        headers=admin,
    )
    assert wrong.status_code == 422
    assert "0" in wrong.get_json()["errors"]["probability"]
    bad = client.post(
        "/api/v1/pipeline_stages",
        json={**base, "name": "Too sure", "probability": 120},
        headers=admin,
    )
    assert bad.status_code == 422 and "probability" in bad.get_json()["errors"]
    stage = won.get_json()
    changed = client.patch(
        f"/api/v1/pipeline_stages/{stage['id']}",
        json={"version": stage["version"], "probability": 90},
        headers=admin,
    )
    assert changed.status_code == 422


def test_only_one_pipeline_is_the_default(sales_app, pipelines):
    admin = bearer(sales_app, ADMIN)
    client = sales_app.test_client()
    renewals = client.get(
        f"/api/v1/pipelines/{pipelines['renewals']['id']}", headers=admin
    ).get_json()
    response = client.patch(
        f"/api/v1/pipelines/{renewals['id']}",
        json={"version": renewals["version"], "is_default": True},
        headers=admin,
    )
    assert response.status_code == 200, response.get_json()
    main = client.get(f"/api/v1/pipelines/{pipelines['main']['id']}", headers=admin).get_json()
    assert main["is_default"] is False
    record = create_opportunity(sales_app, SAM)
    assert record["pipeline"] == renewals["id"]
    inactive = client.patch(
        f"/api/v1/pipelines/{renewals['id']}",
        json={"version": response.get_json()["version"], "active": False},
        headers=admin,
    )
    assert inactive.status_code == 422


def test_a_stage_in_use_cannot_be_deleted(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    create_opportunity(sales_app, SAM)
    response = sales_app.test_client().delete(
        f"/api/v1/pipeline_stages/{stages['Prospecting']}", headers=bearer(sales_app, ADMIN)
    )
    assert response.status_code in (409, 422)
    unused = sales_app.test_client().delete(
        f"/api/v1/pipeline_stages/{stages['Proposal']}", headers=bearer(sales_app, ADMIN)
    )
    assert unused.status_code == 204


def test_an_inactive_pipeline_takes_no_new_opportunities(sales_app, pipelines):
    renewals = pipelines["renewals"]
    with service_as(sales_app, None) as service:
        record = service.get("pipelines", renewals["id"])
        service.update("pipelines", record.id, {"active": False}, version=record.version)
    client = sales_app.test_client()
    for extra in ({"pipeline": renewals["id"]}, {"stage": renewals["stages"]["Upcoming"]}):
        response = client.post(
            "/api/v1/opportunities",
            json={"name": "Late", "close_date": "2026-12-31", **extra},
            headers=bearer(sales_app, SAM),
        )
        assert response.status_code == 422
        assert "no longer in use" in response.get_json()["errors"]["pipeline"]
    assert create_opportunity(sales_app, SAM)["pipeline"] == pipelines["main"]["id"]
