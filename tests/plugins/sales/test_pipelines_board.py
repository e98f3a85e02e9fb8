"""The pipeline board through HTTP: columns with exact counts and totals per currency,
moves (htmx and plain forms), stale and concurrent moves, the lost-reason prompt,
record scope (a rep never sees another team's deals), and the audit entry of a move.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from tests.conftest import csrf_token
from tests.plugins.sales.conftest import (
    ADMIN,
    MARIA,
    SAM,
    SVEN,
    client_as,
    service_as,
    user_id,
)
from tests.plugins.sales.test_pipelines_rules import (
    create_opportunity,
    get_opportunity,
    history_of,
    make_two_pipelines,
)

HTMX = {"HX-Request": "true"}


@pytest.fixture
def pipelines(sales_app):
    return make_two_pipelines(sales_app)


def money(amount: str, currency: str = "EUR") -> dict:
    return {"amount": amount, "currency": currency}


def column_html(html: str, stage_id: int) -> str:
    start = html.index(f'data-stage-id="{stage_id}"')
    end = html.find("<section", start)
    return html[start : end if end != -1 else len(html)]


def count_in(html: str, stage_id: int) -> int:
    found = re.search(r"data-count>(\d+)<", column_html(html, stage_id))
    assert found, "no count in the column"
    return int(found.group(1))


def totals_in(html: str, stage_id: int) -> list[str]:
    part = column_html(html, stage_id)
    block = part[part.index("data-totals>") : part.index("</p>", part.index("data-totals>"))]
    return re.findall(r'class="board__total">([^<]+)<', block)


def move(client, record: dict, stage_id: int, pipeline_id: int, *, htmx=True, **extra):
    data = {
        "csrf_token": csrf_token(client, "/sales/board"),
        "opportunity": str(record["id"]),
        "version": str(record["version"]),
        "stage": str(stage_id),
        "pipeline": str(pipeline_id),
        **extra,
    }
    return client.post("/sales/board/move", data=data, headers=HTMX if htmx else {})


def test_columns_count_and_total_per_currency_exactly(sales_app, pipelines):
    main = pipelines["main"]
    stages = main["stages"]
    create_opportunity(sales_app, SAM, amount=money("1000.10"))
    create_opportunity(sales_app, SAM, amount=money("0.20"))
    create_opportunity(sales_app, SAM, amount=money("19.99", "USD"))
    create_opportunity(sales_app, SAM)  # no amount: counted, adds nothing
    create_opportunity(sales_app, SAM, amount=money("500.00"), stage=stages["Proposal"])
    client = client_as(sales_app, SAM)
    page = client.get(f"/sales/board?pipeline={main['id']}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert count_in(html, stages["Prospecting"]) == 4
    assert totals_in(html, stages["Prospecting"]) == ["1,000.30 EUR", "19.99 USD"]
    assert count_in(html, stages["Proposal"]) == 1
    assert totals_in(html, stages["Proposal"]) == ["500.00 EUR"]
    assert count_in(html, stages["Closed won"]) == 0
    # Columns in stage order, each card with its move menu.
    order = [
        html.index(f'data-stage-id="{stages[name]}"')
        for name in ("Prospecting", "Proposal", "Negotiation", "Closed won", "Closed lost")
    ]
    assert order == sorted(order)
    assert html.count("data-move-form") == 5
    # The same totals as the service's aggregate (Decimal, not float).
    from bastion.api import Filter

    with service_as(sales_app, SAM) as service:
        rows = service.aggregate(
            "opportunities",
            group_by=("stage",),
            sums=("amount",),
            filters=[Filter("pipeline", "eq", main["id"])],
        )
    # Deals without an amount may come as a row of their own whose sum is None.
    eur = [
        r
        for r in rows
        if r.key["stage"] == stages["Prospecting"]
        and r.sums["amount"] is not None
        and r.sums["amount"].currency == "EUR"
    ]
    assert eur[0].sums["amount"].amount == Decimal("1000.30")
    assert "1 without amount" in column_html(html, stages["Prospecting"])
    assert "without amount" not in column_html(html, stages["Proposal"])


def test_the_default_pipeline_is_shown_and_the_switcher_lists_the_others(sales_app, pipelines):
    client = client_as(sales_app, SAM)
    html = client.get("/sales/board").get_data(as_text=True)
    assert "Pipeline: New business" in html
    assert 'name="pipeline"' in html and "Renewals" in html
    other = client.get(f"/sales/board?pipeline={pipelines['renewals']['id']}")
    assert "Pipeline: Renewals" in other.get_data(as_text=True)
    # Unknown or malformed ids fall back to the default pipeline.
    for value in ("999999", "abc", "-1", "9" * 40):
        response = client.get(f"/sales/board?pipeline={value}")
        assert response.status_code == 200
        assert "Pipeline: New business" in response.get_data(as_text=True)


def test_the_navigation_offers_the_board_to_readers_of_opportunities(sales_app, pipelines):
    html = client_as(sales_app, SAM).get("/").get_data(as_text=True)
    assert 'href="/sales/board"' in html


def test_a_move_through_the_board_saves_the_stage_and_answers_the_new_board(sales_app, pipelines):
    from tests.core.audit.conftest import entries

    main = pipelines["main"]
    stages = main["stages"]
    record = create_opportunity(sales_app, SAM, amount=money("250.00"))
    client = client_as(sales_app, SAM)
    response = move(client, record, stages["Negotiation"], main["id"])
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="board"')  # the board element only (htmx swap)
    assert "Moved Deal to Negotiation." in html
    assert count_in(html, stages["Negotiation"]) == 1
    assert count_in(html, stages["Prospecting"]) == 0
    assert totals_in(html, stages["Negotiation"]) == ["250.00 EUR"]
    saved = get_opportunity(sales_app, SAM, record["id"])
    assert saved["stage"] == stages["Negotiation"]
    assert Decimal(saved["probability"]) == 75
    assert saved["version"] == record["version"] + 1
    assert [r["stage_name"] for r in history_of(sales_app, record["id"])] == [
        "Prospecting",
        "Negotiation",
    ]
    updates = entries(
        sales_app,
        action="record.update",
        object_type="opportunities",
        object_id=str(record["id"]),
    )
    assert updates, "the move is audited"
    assert updates[-1].actor_user_id == user_id(sales_app, SAM)
    assert "stage" in (updates[-1].changes or "")


def test_a_plain_form_move_redirects_back_to_the_board(sales_app, pipelines):
    main = pipelines["main"]
    record = create_opportunity(sales_app, SAM)
    client = client_as(sales_app, SAM)
    response = move(client, record, main["stages"]["Proposal"], main["id"], htmx=False)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/sales/board?pipeline={main['id']}")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Moved Deal to Proposal." in page
    assert get_opportunity(sales_app, SAM, record["id"])["stage"] == main["stages"]["Proposal"]


def test_a_stale_move_is_refused_with_the_fresh_board(sales_app, pipelines):
    main = pipelines["main"]
    stages = main["stages"]
    record = create_opportunity(sales_app, SAM)
    client = client_as(sales_app, SAM)
    assert move(client, record, stages["Proposal"], main["id"]).status_code == 200
    stale = move(client, record, stages["Negotiation"], main["id"])  # the old version
    assert stale.status_code == 409
    html = stale.get_data(as_text=True)
    assert "changed by someone else" in html
    assert count_in(html, stages["Proposal"]) == 1  # the fresh board
    saved = get_opportunity(sales_app, SAM, record["id"])
    assert saved["stage"] == stages["Proposal"]
    assert saved["version"] == record["version"] + 1
    assert len(history_of(sales_app, record["id"])) == 2


def test_two_clients_moving_the_same_card_one_wins(sales_app, pipelines):
    main = pipelines["main"]
    stages = main["stages"]
    record = create_opportunity(sales_app, SAM)
    sam, maria = client_as(sales_app, SAM), client_as(sales_app, MARIA)
    answers = [
        move(sam, record, stages["Proposal"], main["id"]).status_code,
        move(maria, record, stages["Negotiation"], main["id"]).status_code,
    ]
    assert sorted(answers) == [200, 409]
    saved = get_opportunity(sales_app, SAM, record["id"])
    assert saved["version"] == record["version"] + 1
    assert saved["stage"] == stages["Proposal"]
    assert len(history_of(sales_app, record["id"])) == 2


def test_a_lost_stage_asks_for_the_reason_then_moves(sales_app, pipelines):
    main = pipelines["main"]
    stages = main["stages"]
    record = create_opportunity(sales_app, SAM)
    client = client_as(sales_app, SAM)
    asked = move(client, record, stages["Closed lost"], main["id"])
    assert asked.status_code == 422
    html = asked.get_data(as_text=True)
    assert 'name="close_reason"' in html and "Why was Deal lost?" in html
    assert get_opportunity(sales_app, SAM, record["id"])["outcome"] == "open"
    done = move(client, record, stages["Closed lost"], main["id"], close_reason="No budget")
    assert done.status_code == 200
    saved = get_opportunity(sales_app, SAM, record["id"])
    assert saved["outcome"] == "lost" and saved["close_reason"] == "No budget"


def test_bad_move_forms_are_refused_clearly(sales_app, pipelines):
    main = pipelines["main"]
    record = create_opportunity(sales_app, SAM)
    client = client_as(sales_app, SAM)
    token = csrf_token(client, "/sales/board")
    for data in (
        {"opportunity": "x", "version": "1", "stage": "1"},
        {"opportunity": str(record["id"]), "version": "9" * 5000, "stage": "1"},
        {"opportunity": str(record["id"]), "version": "1"},
    ):
        response = client.post(
            "/sales/board/move", data={"csrf_token": token, **data}, headers=HTMX
        )
        assert response.status_code == 422
    other = move(client, record, pipelines["renewals"]["stages"]["Upcoming"], main["id"])
    assert other.status_code == 422
    assert "belongs to Renewals" in other.get_data(as_text=True)
    no_csrf = client.post(
        "/sales/board/move",
        data={"opportunity": str(record["id"]), "version": "1", "stage": "1"},
    )
    assert no_csrf.status_code in (400, 403)


def test_a_rep_never_sees_another_teams_deals_on_the_board(sales_app, pipelines):
    main = pipelines["main"]
    stages = main["stages"]
    sams = create_opportunity(sales_app, SAM, name="North secret", amount=money("700.00"))
    create_opportunity(sales_app, SVEN, name="South deal", amount=money("50.00"))
    sven = client_as(sales_app, SVEN)
    html = sven.get(f"/sales/board?pipeline={main['id']}").get_data(as_text=True)
    assert "North secret" not in html and "South deal" in html
    assert count_in(html, stages["Prospecting"]) == 1
    assert totals_in(html, stages["Prospecting"]) == ["50.00 EUR"]
    # Moving it anyway: refused as not found, nothing changed.
    refused = move(sven, sams, stages["Proposal"], main["id"])
    assert refused.status_code == 404
    assert "North secret" not in refused.get_data(as_text=True)
    assert get_opportunity(sales_app, SAM, sams["id"])["stage"] == stages["Prospecting"]
    # Maria (manager of the whole tree) sees both.
    html = client_as(sales_app, MARIA).get("/sales/board").get_data(as_text=True)
    assert "North secret" in html and "South deal" in html
    assert totals_in(html, stages["Prospecting"]) == ["750.00 EUR"]


def test_the_board_without_pipelines_says_so(sales_app):
    html = client_as(sales_app, ADMIN).get("/sales/board").get_data(as_text=True)
    assert "No pipeline is set up yet." in html


def test_a_long_column_links_to_the_filtered_list(sales_app, pipelines, monkeypatch):
    from bastion_sales.pipelines import board

    monkeypatch.setattr(board, "CARDS_PER_COLUMN", 2)
    for index in range(3):
        create_opportunity(sales_app, SAM, name=f"Deal {index}")
    html = client_as(sales_app, SAM).get("/sales/board").get_data(as_text=True)
    stage = pipelines["main"]["stages"]["Prospecting"]
    assert html.count("data-card ") == 2
    assert f"/o/opportunities?stage={stage}" in html and "1 more" in html


def test_two_simultaneous_moves_of_the_same_card_one_wins(sales_app, pipelines):
    """Both requests read version 1 and race; the database lets exactly one through."""
    import threading

    main = pipelines["main"]
    stages = main["stages"]
    record = create_opportunity(sales_app, SAM)
    clients = [client_as(sales_app, SAM), client_as(sales_app, MARIA)]
    forms = []
    for client, stage in zip(clients, ("Proposal", "Negotiation"), strict=True):
        forms.append(
            {
                "csrf_token": csrf_token(client, "/sales/board"),
                "opportunity": str(record["id"]),
                "version": str(record["version"]),
                "stage": str(stages[stage]),
                "pipeline": str(main["id"]),
            }
        )
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def run(client, data):
        barrier.wait()
        response = client.post("/sales/board/move", data=data, headers=HTMX)
        answers.append(response.status_code)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(clients, forms, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == [200, 409]
    saved = get_opportunity(sales_app, SAM, record["id"])
    assert saved["version"] == record["version"] + 1
    assert saved["stage"] in (stages["Proposal"], stages["Negotiation"])
    history = history_of(sales_app, record["id"])
    assert len(history) == 2 and history[-1]["stage"] == saved["stage"]


def test_users_who_cannot_read_opportunities_get_no_board(sales_app, pipelines):
    support = "sofia.support@example.com"  # the core demo's support agent
    client = client_as(sales_app, support)
    with service_as(sales_app, support) as service:
        assert not service.can("opportunities", "read")
    assert client.get("/sales/board").status_code == 403
    assert 'href="/sales/board"' not in client.get("/").get_data(as_text=True)
