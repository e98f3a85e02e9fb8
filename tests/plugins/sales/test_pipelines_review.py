"""Fixes from the pipelines review, through HTTP and the CLI on SQLite and PostgreSQL:
stages stay in their pipeline and keep their outcome while in use, stage history is
system-only and follows merges, deletes and imports, closed deals stay certain, the
board refuses clearly what the viewer's role cannot show, and board answers are marked
so the page never swaps anything else into the board.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import csrf_token
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
from tests.plugins.sales.test_pipelines_rules import (
    create_opportunity,
    get_opportunity,
    history_of,
    make_two_pipelines,
    patch_opportunity,
)

HTMX = {"HX-Request": "true"}


@pytest.fixture
def pipelines(sales_app):
    return make_two_pipelines(sales_app)


def _stage(app, stage_id: int) -> dict:
    response = app.test_client().get(
        f"/api/v1/pipeline_stages/{stage_id}", headers=bearer(app, ADMIN)
    )
    assert response.status_code == 200
    return response.get_json()


def _patch_stage(app, stage: dict, **changes):
    return app.test_client().patch(
        f"/api/v1/pipeline_stages/{stage['id']}",
        json={"version": stage["version"], **changes},
        headers=bearer(app, ADMIN),
    )


# --------------------------------------------------------------------------- stages


def test_a_stage_cannot_move_to_another_pipeline(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    record = create_opportunity(sales_app, SAM)
    stage = _stage(sales_app, stages["Prospecting"])
    refused = _patch_stage(sales_app, stage, pipeline=pipelines["renewals"]["id"])
    assert refused.status_code == 422
    assert "stays in its pipeline" in refused.get_json()["errors"]["pipeline"]
    assert _stage(sales_app, stages["Prospecting"])["pipeline"] == pipelines["main"]["id"]
    assert get_opportunity(sales_app, SAM, record["id"])["stage"] == stages["Prospecting"]
    # Sending the pipeline it already has is no change, and allowed.
    same = _patch_stage(sales_app, stage, pipeline=pipelines["main"]["id"], name="Prospects")
    assert same.status_code == 200, same.get_json()


def test_a_stage_in_use_keeps_its_outcome(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    create_opportunity(sales_app, SAM)  # in Prospecting
    stage = _stage(sales_app, stages["Prospecting"])
    refused = _patch_stage(sales_app, stage, outcome="won")
    assert refused.status_code == 422
    assert "move them to another stage" in refused.get_json()["errors"]["outcome"]
    assert _stage(sales_app, stages["Prospecting"])["outcome"] == "open"
    # An unused stage may change its outcome (and takes the certain probability).
    unused = _stage(sales_app, stages["Negotiation"])
    changed = _patch_stage(sales_app, unused, outcome="won")
    assert changed.status_code == 200, changed.get_json()
    assert Decimal(changed.get_json()["probability"]) == 100
    # The settings page shows the refusal next to the outcome, keeping what was typed.
    client = client_as(sales_app, ADMIN)
    page = client.post(
        f"/sales/settings/stages/{stage['id']}",
        data={
            "csrf_token": csrf_token(client, "/sales/settings/pipelines"),
            "version": str(stage["version"]),
            "name": "Prospecting",
            "probability": "10",
            "outcome": "lost",
        },
    )
    assert page.status_code == 422
    assert "move them to another stage" in page.get_data(as_text=True)


# --------------------------------------------------------------------------- history


@pytest.mark.parametrize("email", [SAM, MARIA, ADMIN])
def test_users_cannot_write_stage_history(sales_app, pipelines, email):
    record = create_opportunity(sales_app, SAM)
    row = history_of(sales_app, record["id"])[0]
    client = sales_app.test_client()
    headers = bearer(sales_app, email)
    created = client.post("/api/v1/stage_history", json={}, headers=headers)
    assert created.status_code in (403, 422), created.get_json()
    forged = client.post(
        "/api/v1/stage_history",
        json={"opportunity": record["id"], "stage_name": "Forged"},
        headers=headers,
    )
    assert forged.status_code in (403, 422)
    patched = client.patch(
        f"/api/v1/stage_history/{row['id']}",
        json={"version": row["version"], "owner": user_id(sales_app, SVEN)},
        headers=headers,
    )
    assert patched.status_code in (403, 422)
    deleted = client.delete(f"/api/v1/stage_history/{row['id']}", headers=headers)
    assert deleted.status_code in (403, 422)
    rows = history_of(sales_app, record["id"])
    assert len(rows) == 1 and rows[0]["owner"] == user_id(sales_app, SAM)
    assert rows[0]["version"] == row["version"]
    with service_as(sales_app, None) as system:
        assert len(list(system.iterate("stage_history"))) == 1


def test_seconds_in_stage_is_the_time_between_entering_and_leaving(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    record = create_opportunity(sales_app, SAM)
    record = patch_opportunity(sales_app, SAM, record, stage=stages["Proposal"]).get_json()
    patch_opportunity(sales_app, SAM, record, stage=stages["Negotiation"])
    rows = history_of(sales_app, record["id"])
    assert len(rows) == 3
    for row in rows[:2]:
        expected = int((row["left_at"] - row["entered_at"]).total_seconds())
        assert row["seconds_in_stage"] == expected


def test_deleting_an_opportunity_deletes_its_history(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    record = create_opportunity(sales_app, SAM)
    record = patch_opportunity(sales_app, SAM, record, stage=stages["Proposal"]).get_json()
    other = create_opportunity(sales_app, SAM, name="Kept")
    assert len(history_of(sales_app, record["id"])) == 2
    response = sales_app.test_client().delete(
        f"/api/v1/opportunities/{record['id']}", headers=bearer(sales_app, MARIA)
    )
    assert response.status_code == 204, response.get_data(as_text=True)
    with service_as(sales_app, None) as system:
        left = [r.get("opportunity") for r in system.iterate("stage_history")]
    assert left == [other["id"]]  # no orphan rows pointing nowhere


def test_merging_opportunities_keeps_one_open_stay_owned_by_the_survivor(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    sam, sven = user_id(sales_app, SAM), user_id(sales_app, SVEN)
    winner = create_opportunity(sales_app, SAM, name="Winner")
    winner = patch_opportunity(sales_app, SAM, winner, stage=stages["Proposal"]).get_json()
    loser = create_opportunity(sales_app, SVEN, name="Loser")
    loser = patch_opportunity(sales_app, SVEN, loser, stage=stages["Negotiation"]).get_json()
    response = sales_app.test_client().post(
        f"/api/v1/opportunities/{winner['id']}/merge",
        json={"ids": [loser["id"]], "version": winner["version"]},
        headers=bearer(sales_app, MARIA),
    )
    assert response.status_code == 200, response.get_json()
    merged = response.get_json()
    assert merged["stage"] == stages["Proposal"]
    rows = history_of(sales_app, winner["id"])
    assert len(rows) == 4  # both deals' stays, now the survivor's
    open_rows = [r for r in rows if r["left_at"] is None]
    assert len(open_rows) == 1 and open_rows[0]["stage"] == stages["Proposal"]
    assert all(r["seconds_in_stage"] is not None for r in rows if r["left_at"] is not None)
    assert {r["owner"] for r in rows} == {sam}
    # Sven no longer sees any of it; Sam sees all of it.
    client = sales_app.test_client()
    path = f"/api/v1/stage_history?opportunity={winner['id']}"
    assert client.get(path, headers=bearer(sales_app, SVEN)).get_json()["data"] == []
    assert len(client.get(path, headers=bearer(sales_app, SAM)).get_json()["data"]) == 4
    assert sven != sam


def test_imported_opportunities_get_history_reading_the_configuration_once(
    sales_app, pipelines, cli, tmp_path, monkeypatch
):
    from bastion.api import RecordService

    stages = pipelines["main"]["stages"]
    reads: list[str] = []
    original = RecordService.query

    def counting(self, object_name, *args, **kwargs):
        if object_name in ("pipelines", "pipeline_stages"):
            reads.append(object_name)
        return original(self, object_name, *args, **kwargs)

    monkeypatch.setattr(RecordService, "query", counting)
    rows = "\n".join(f"Imported {n},2026-12-31" for n in range(8))
    path = tmp_path / "deals.csv"
    path.write_text("name,close_date\n" + rows + "\n", encoding="utf-8")
    result = cli("import", "opportunities", str(path))
    assert result.exit_code == 0, result.output
    assert "8 created" in result.output
    # The default pipeline and its stages are read once for the import, not per row.
    assert len(reads) <= 4, reads
    with service_as(sales_app, None) as system:
        deals = list(system.iterate("opportunities"))
    assert len(deals) == 8
    for deal in deals:
        assert deal.get("stage") == stages["Prospecting"]
        rows = history_of(sales_app, deal.id)
        assert [r["stage_name"] for r in rows] == ["Prospecting"]


def test_a_changed_stage_name_is_seen_by_the_next_write(sales_app, pipelines):
    """The configuration cache is dropped when a stage is written."""
    stages = pipelines["main"]["stages"]
    with service_as(sales_app, None) as system:
        first = system.create("opportunities", {"name": "A", "close_date": "2026-12-31"})
        stage = system.get("pipeline_stages", stages["Proposal"])
        system.update("pipeline_stages", stage.id, {"name": "Offer"}, version=stage.version)
        system.update("opportunities", first.id, {"stage": stage.id}, version=first.version)
    names = [r["stage_name"] for r in history_of(sales_app, first.id)]
    assert names == ["Prospecting", "Offer"]


# --------------------------------------------------------------------------- closed deals


def test_closed_deals_keep_their_certain_probability_and_category(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    record = create_opportunity(sales_app, SAM)
    won = patch_opportunity(sales_app, SAM, record, stage=stages["Closed won"]).get_json()
    assert Decimal(won["probability"]) == 100 and won["forecast_category"] == "commit"
    refused = patch_opportunity(sales_app, SAM, won, probability="30")
    assert refused.status_code == 422
    assert "100" in refused.get_json()["errors"]["probability"]
    refused = patch_opportunity(sales_app, SAM, won, forecast_category="pipeline")
    assert refused.status_code == 422 and "forecast_category" in refused.get_json()["errors"]
    renamed = patch_opportunity(sales_app, SAM, won, name="Signed", probability="100")
    assert renamed.status_code == 200
    assert Decimal(renamed.get_json()["probability"]) == 100

    client = sales_app.test_client()
    wrong = client.post(
        "/api/v1/opportunities",
        json={
            "name": "Odd",
            "close_date": "2026-12-31",
            "stage": stages["Closed won"],
            "probability": "20",
        },
        headers=bearer(sales_app, SAM),
    )
    assert wrong.status_code == 422 and "probability" in wrong.get_json()["errors"]
    lost = create_opportunity(
        sales_app, SAM, stage=stages["Closed lost"], close_reason="Went elsewhere"
    )
    assert Decimal(lost["probability"]) == 0 and lost["forecast_category"] == "omitted"

    noted = patch_opportunity(sales_app, SAM, lost, description="Note")
    assert noted.status_code == 200
    assert Decimal(noted.get_json()["probability"]) == 0


def test_reopening_a_lost_deal_may_clear_its_reason(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    record = create_opportunity(sales_app, SAM)
    lost = patch_opportunity(
        sales_app, SAM, record, stage=stages["Closed lost"], close_reason="Budget"
    ).get_json()
    reopened = patch_opportunity(sales_app, SAM, lost, stage=stages["Proposal"], close_reason="")
    assert reopened.status_code == 200, reopened.get_json()
    assert reopened.get_json()["outcome"] == "open"
    # Losing without a reason: one message, on the reason.
    again = patch_opportunity(sales_app, SAM, reopened.get_json(), stage=stages["Closed lost"])
    assert again.status_code == 422
    assert again.get_json()["errors"] == {"close_reason": "Say why the opportunity was lost."}


# --------------------------------------------------------------------------- the board


def _move(client, record: dict, stage_id: int, pipeline_id: int, headers=HTMX):
    return client.post(
        "/sales/board/move",
        data={
            "csrf_token": csrf_token(client, "/sales/board"),
            "opportunity": str(record["id"]),
            "version": str(record["version"]),
            "stage": str(stage_id),
            "pipeline": str(pipeline_id),
        },
        headers=headers,
    )


def test_board_answers_are_marked_and_the_status_line_is_outside_the_board(sales_app, pipelines):
    main = pipelines["main"]
    record = create_opportunity(sales_app, SAM)
    client = client_as(sales_app, SAM)
    page = client.get("/sales/board")
    assert page.headers.get("X-Board") == "1"
    html = page.get_data(as_text=True)
    assert html.index('id="board-status"') < html.index('id="board"')
    moved = _move(client, record, main["stages"]["Proposal"], main["id"])
    assert moved.status_code == 200 and moved.headers.get("X-Board") == "1"
    html = moved.get_data(as_text=True)
    board_end = html.rindex("</div>")
    status = html.index('id="board-status"')
    assert status > board_end  # after the board element, swapped out of band
    assert 'hx-swap-oob="true"' in html[status - 200 :]
    stale = _move(client, record, main["stages"]["Negotiation"], main["id"])
    assert stale.status_code == 409 and stale.headers.get("X-Board") == "1"
    # Refusals that are not the board (no CSRF token) are not marked.
    bare = client.post("/sales/board/move", data={"opportunity": "1"}, headers=HTMX)
    assert bare.status_code in (400, 403) and bare.headers.get("X-Board") is None


def test_moving_to_the_current_stage_says_it_is_already_there(sales_app, pipelines):
    main = pipelines["main"]
    record = create_opportunity(sales_app, SAM)
    client = client_as(sales_app, SAM)
    response = _move(client, record, main["stages"]["Prospecting"], main["id"])
    assert response.status_code == 200
    assert "Deal is already in Prospecting." in response.get_data(as_text=True)
    assert get_opportunity(sales_app, SAM, record["id"])["version"] == record["version"]


def test_the_board_never_names_another_teams_account_or_owner(sales_app, pipelines):
    main = pipelines["main"]
    client = sales_app.test_client()
    maria = bearer(sales_app, MARIA)
    account = client.post("/api/v1/accounts", json={"name": "Hidden HQ"}, headers=maria)
    assert account.status_code == 201, account.get_json()
    north = client.post(
        "/api/v1/accounts", json={"name": "North Bank"}, headers=bearer(sales_app, SAM)
    )
    # Maria hands Sven a deal on her own account; Sam has one on North Bank.
    response = client.post(
        "/api/v1/opportunities",
        json={
            "name": "South deal",
            "close_date": "2026-12-31",
            "account": account.get_json()["id"],
            "owner": user_id(sales_app, SVEN),
        },
        headers=maria,
    )
    assert response.status_code == 201, response.get_json()
    create_opportunity(sales_app, SAM, name="North deal", account=north.get_json()["id"])
    html = client_as(sales_app, SVEN).get(f"/sales/board?pipeline={main['id']}")
    html = html.get_data(as_text=True)
    assert "South deal" in html
    assert "Hidden HQ" not in html and "North Bank" not in html and "North deal" not in html
    from bastion.api import users_info

    with sales_app.app_context():
        sam_name = users_info([user_id(sales_app, SAM)])[user_id(sales_app, SAM)].name
    assert sam_name not in html
    # Maria sees both accounts' names.
    html = client_as(sales_app, MARIA).get("/sales/board").get_data(as_text=True)
    assert "Hidden HQ" in html and "North Bank" in html


def _deny_reps(app, object_name: str) -> None:
    from sqlalchemy import select

    from bastion.db import db
    from bastion.models import Role, RoleObjectRule

    with app.app_context():
        role = db.session.scalar(select(Role).where(Role.name == "sales_rep"))
        rule = db.session.get(RoleObjectRule, (role.id, object_name))
        if rule is None:
            role.object_rules.append(RoleObjectRule(object_name=object_name, can_read=False))
        else:
            rule.can_read = False
        db.session.commit()


@pytest.mark.parametrize("object_name", ["pipelines", "pipeline_stages"])
def test_no_board_without_reading_pipelines_and_stages(sales_app, pipelines, object_name):
    _deny_reps(sales_app, object_name)
    client = client_as(sales_app, SAM)
    assert client.get("/sales/board").status_code == 403


@pytest.mark.parametrize("hidden", ["stage", "pipeline"])
def test_a_hidden_stage_or_pipeline_field_gives_a_clear_refusal(sales_app, pipelines, hidden):
    from tests.core.data.conftest import set_field_access

    create_opportunity(sales_app, SAM)
    set_field_access(sales_app, "sales_rep", "opportunities", hidden, "hidden")
    response = client_as(sales_app, SAM).get("/sales/board")
    assert response.status_code == 403
    assert "board cannot be shown" in response.get_data(as_text=True)


def test_inactive_pipelines_stay_reachable_in_the_switcher(sales_app, pipelines):
    renewals = pipelines["renewals"]
    with service_as(sales_app, None) as system:
        record = system.get("pipelines", renewals["id"])
        system.update("pipelines", record.id, {"active": False}, version=record.version)
    html = client_as(sales_app, SAM).get("/sales/board").get_data(as_text=True)
    assert "Pipeline: New business" in html
    assert "Renewals (inactive)" in html
    other = client_as(sales_app, SAM).get(f"/sales/board?pipeline={renewals['id']}")
    assert "Pipeline: Renewals" in other.get_data(as_text=True)


def test_a_long_history_shows_the_newest_stays(sales_app, pipelines, monkeypatch):
    from bastion_sales.pipelines import history

    stages = pipelines["main"]["stages"]
    record = create_opportunity(sales_app, SAM)
    for name in ("Proposal", "Negotiation", "Proposal"):
        record = patch_opportunity(sales_app, SAM, record, stage=stages[name]).get_json()
    monkeypatch.setattr(history, "MAX_ROWS", 2)
    with service_as(sales_app, SAM) as service:
        stays = history.stays_of(service, record["id"])
    assert [s.stage_name for s in stays] == ["Negotiation", "Proposal"]
    assert stays[-1].current and not stays[0].current


def test_move_forms_disable_their_button_while_sent(sales_app, pipelines):
    create_opportunity(sales_app, SAM, name="Quiet")
    html = client_as(sales_app, SAM).get("/sales/board").get_data(as_text=True)
    assert 'hx-disabled-elt="find button"' in html
    assert '<span class="visually-hidden"> Quiet</span>' in html
    assert "board--movable" in html
