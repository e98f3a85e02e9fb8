"""The sales settings page: follow-up days and discount threshold, validated and audited."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.conftest import CSRF_RE
from tests.plugins.sales.conftest import ADMIN, SAM, client_as

PATH = "/sales/settings"


def token(client, path: str = PATH) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    return CSRF_RE.search(page.get_data(as_text=True)).group(1)


def save(client, days: str, threshold: str, csrf: str | None = None):
    return client.post(
        PATH,
        data={
            "csrf_token": csrf or token(client),
            "follow_up_days": days,
            "discount_threshold": threshold,
        },
    )


def stored(app) -> tuple[int, Decimal]:
    from bastion_sales.settings import discount_threshold, follow_up_days

    with app.test_request_context():
        return follow_up_days(), discount_threshold()


def audit_changes(app) -> list[dict]:
    from bastion.audit.models import AuditEntry
    from bastion.db import db

    with app.app_context():
        entries = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "plugin.setting").order_by(AuditEntry.seq)
        )
        return [json.loads(entry.changes) for entry in entries]


def test_the_page_shows_the_defaults(sales_app):
    html = client_as(sales_app, ADMIN).get(PATH).get_data(as_text=True)
    assert 'name="follow_up_days"' in html and 'value="14"' in html
    assert 'name="discount_threshold"' in html and 'value="10"' in html
    assert 'href="/sales/settings"' in html  # the navigation entry


def test_saving_stores_and_audits_the_settings(sales_app):
    client = client_as(sales_app, ADMIN)
    response = save(client, "30", "12.5")
    assert response.status_code == 303
    assert stored(sales_app) == (30, Decimal("12.5"))
    assert audit_changes(sales_app) == [
        {"follow_up_days": {"before": None, "after": 30}},
        {"discount_threshold": {"before": None, "after": "12.5"}},
    ]
    page = client.get(PATH).get_data(as_text=True)
    assert "Saved the follow-up days and discount threshold." in page
    assert 'value="30"' in page and 'value="12.5"' in page
    # Saving the same values again changes (and audits) nothing.
    assert save(client, "30", "12.50").status_code == 303
    assert len(audit_changes(sales_app)) == 2


@pytest.mark.parametrize(
    ("days", "threshold", "field", "message"),
    [
        ("0", "10", "follow_up_days", "from 1 to 365"),
        ("366", "10", "follow_up_days", "from 1 to 365"),
        ("ten", "10", "follow_up_days", "from 1 to 365"),
        ("²", "10", "follow_up_days", "from 1 to 365"),  # isdigit() but not int()
        ("١٤", "10", "follow_up_days", "from 1 to 365"),  # Arabic-Indic digits
        ("99999999999999999999", "10", "follow_up_days", "from 1 to 365"),
        ("", "10", "follow_up_days", "Enter the number of days."),
        ("14", "100.5", "discount_threshold", "from 0 to 100"),
        ("14", "-1", "discount_threshold", "from 0 to 100"),
        ("14", "lots", "discount_threshold", "from 0 to 100"),
        ("14", "NaN", "discount_threshold", "from 0 to 100"),
        ("14", "12.555", "discount_threshold", "at most two decimal places"),
    ],
)
def test_bad_values_are_refused_next_to_their_field(sales_app, days, threshold, field, message):
    client = client_as(sales_app, ADMIN)
    response = save(client, days, threshold)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    error_id = field.replace("_", "-") + "-error"
    assert f'id="{error_id}"' in html and message in html
    assert f'value="{threshold}"' in html  # the input is kept
    assert stored(sales_app) == (14, Decimal("10"))
    assert audit_changes(sales_app) == []


def test_zero_and_one_hundred_are_accepted(sales_app):
    client = client_as(sales_app, ADMIN)
    assert save(client, "1", "0").status_code == 303
    assert stored(sales_app) == (1, Decimal("0"))
    assert save(client, "365", "100").status_code == 303
    assert stored(sales_app) == (365, Decimal("100"))


def test_a_sales_rep_may_not_open_or_change_the_settings(sales_app):
    client = client_as(sales_app, SAM)
    assert client.get(PATH).status_code == 403
    csrf = CSRF_RE.search(client.get("/sales/my-day").get_data(as_text=True)).group(1)
    assert save(client, "3", "50", csrf=csrf).status_code == 403
    assert stored(sales_app) == (14, Decimal("10"))
    assert 'href="/sales/settings"' not in client.get("/").get_data(as_text=True)


def test_the_page_links_to_the_other_configuration_pages_that_exist(sales_app):
    html = client_as(sales_app, ADMIN).get(PATH).get_data(as_text=True)
    with sales_app.test_request_context():
        from bastion_sales.activities.settings_page import config_links

        links = config_links()
    for link in links:
        assert f'href="{link["href"]}"' in html


@pytest.mark.parametrize(
    ("typed", "kept"), [("1E+1", "10"), ("10.00", "10"), ("-0", "0"), ("0.50", "0.5")]
)
def test_the_threshold_is_stored_in_plain_digits(sales_app, typed, kept):
    client = client_as(sales_app, ADMIN)
    assert save(client, "14", typed).status_code == 303
    changes = audit_changes(sales_app)
    if kept != "10":
        assert changes[-1]["discount_threshold"]["after"] == kept
    else:
        assert changes == []  # the same as the default: nothing stored
    assert f'value="{kept}"' in client.get(PATH).get_data(as_text=True)


def test_saving_needs_a_recent_sign_in(sales_app):
    from tests.core.identity.test_reauth import age_authentication

    client = client_as(sales_app, ADMIN)
    csrf = token(client)
    age_authentication(sales_app, ADMIN)
    response = save(client, "30", "50", csrf=csrf)
    assert response.status_code in (302, 303)
    assert "/account/reauth" in response.headers["Location"]
    assert stored(sales_app) == (14, Decimal("10"))
    assert client.get(PATH).status_code == 200  # reading the page is not sensitive
