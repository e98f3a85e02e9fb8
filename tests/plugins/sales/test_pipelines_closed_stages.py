"""The board's closed stages (UX review B2/B3): won and lost are drop targets on the
board (compact columns at the end), a move there goes through the board's move route,
and a lost move asks for the reason once, as a hint, before any error is shown.
"""

from __future__ import annotations

import pytest

from tests.plugins.sales.conftest import SAM, client_as
from tests.plugins.sales.test_pipelines_board import column_html, count_in, move
from tests.plugins.sales.test_pipelines_rules import (
    create_opportunity,
    get_opportunity,
    make_two_pipelines,
)


@pytest.fixture
def pipelines(sales_app):
    return make_two_pipelines(sales_app)


def test_closed_stages_are_columns_in_the_closed_group(sales_app, pipelines):
    stages = pipelines["main"]["stages"]
    html = client_as(sales_app, SAM).get("/sales/board").get_data(as_text=True)
    group = html[html.index('class="board__closed"') :]
    for name in ("Closed won", "Closed lost"):
        assert f'data-stage-id="{stages[name]}"' in group
    assert f'data-stage-id="{stages["Proposal"]}"' not in group
    assert "you will be asked why it was lost" in column_html(html, stages["Closed lost"])


def test_a_move_to_won_through_the_board(sales_app, pipelines):
    main = pipelines["main"]
    stages = main["stages"]
    record = create_opportunity(sales_app, SAM)
    answer = move(client_as(sales_app, SAM), record, stages["Closed won"], main["id"])
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert count_in(html, stages["Closed won"]) == 1
    # The folded list of won deals opens to show the card just moved there.
    won = column_html(html, stages["Closed won"])
    assert "<details" in won and " open>" in won and "board-card--moved" in won
    assert get_opportunity(sales_app, SAM, record["id"])["outcome"] == "won"


def test_a_lost_move_asks_once_as_a_hint_then_as_an_error(sales_app, pipelines):
    main = pipelines["main"]
    stages = main["stages"]
    record = create_opportunity(sales_app, SAM)
    client = client_as(sales_app, SAM)
    asked = move(client, record, stages["Closed lost"], main["id"])
    assert asked.status_code == 422
    html = asked.get_data(as_text=True)
    # Asked once: a hint under the field, no red status line, no field error yet.
    assert html.count("Say why the opportunity was lost.") == 1
    assert 'class="help" id="board-close-reason-note"' in html
    assert "field-error" not in html and "board-status--error" not in html
    # Submitted empty: now it is an error.
    empty = move(client, record, stages["Closed lost"], main["id"], close_reason="  ")
    assert empty.status_code == 422
    html = empty.get_data(as_text=True)
    assert 'class="field-error" id="board-close-reason-note"' in html
    assert 'aria-invalid="true"' in html
    assert get_opportunity(sales_app, SAM, record["id"])["outcome"] == "open"
    done = move(client, record, stages["Closed lost"], main["id"], close_reason="Budget cut")
    assert done.status_code == 200
    saved = get_opportunity(sales_app, SAM, record["id"])
    assert saved["outcome"] == "lost" and saved["close_reason"] == "Budget cut"
