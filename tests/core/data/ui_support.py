"""Helpers for the record pages' tests: seeding through the service, posting forms."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from bastion.data.catalog import forget_catalog
from bastion.db import db
from bastion.models import Role, RoleFieldRule, User
from tests.conftest import csrf_token
from tests.core.data.conftest import service_as
from tests.core.plugins_platform.support import Element, parse

HTMX = {"HX-Request": "true"}


def create(app, email: str | None, object_name: str, values: dict[str, Any]) -> int:
    """A record created through the service as ``email``; its id."""
    with service_as(app, email) as records:
        return records.create(object_name, values).id


def stored(app, object_name: str, record_id: int) -> dict[str, Any] | None:
    """The record as the system reads it (None when it is gone)."""
    from bastion.data.errors import NotFound

    with service_as(app, None) as records:
        try:
            record = records.get(object_name, record_id)
        except NotFound:
            return None
        return {**record.values, "version": record.version}


def field_rule(app, role: str, object_name: str, field_name: str, access: str) -> None:
    """A role's field rule: "hidden" or "read_only"."""
    with app.app_context():
        row = db.session.scalar(select(Role).where(Role.name == role))
        row.field_rules.append(
            RoleFieldRule(object_name=object_name, field_name=field_name, access=access)
        )
        db.session.commit()


def set_time_zone(app, email: str, zone: str) -> None:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        user.time_zone = zone
        db.session.commit()


def add_field(app, object_name: str, spec: dict[str, Any]) -> None:
    from bastion.data.definitions import add_field as add

    with app.test_request_context():
        forget_catalog()
        add(object_name, spec)
        db.session.commit()


def post(client, url: str, data: dict[str, Any] | list[tuple[str, Any]], **kwargs: Any):
    """POST a form with a fresh CSRF token."""
    token = csrf_token(client, "/")
    pairs = list(data.items()) if isinstance(data, dict) else list(data)
    return client.post(url, data=MultiDict([*pairs, ("csrf_token", token)]), **kwargs)


def page(response) -> Element:
    return parse(response.get_data(as_text=True))


def row_ids(response) -> list[int]:
    """Ids of the records in a list page (or a page of rows), in order."""
    return [int(tr["data-record"]) for tr in page(response).find_all("tr", data_record=True)]


def names_in(response) -> list[str]:
    """The text of the first data cell of each row (the record's name)."""
    found = []
    for tr in page(response).find_all("tr", data_record=True):
        cells = tr.find_all("td", data_label=True)
        found.append(cells[0].text if cells else "")
    return found


def form_values(form: Element) -> list[tuple[str, str]]:
    """What a browser submits for ``form`` as it is (checked boxes, selected options)."""
    pairs: list[tuple[str, str]] = []
    for element in form.find_all():
        name = element.get("name")
        if not name or "disabled" in element.attrs:
            continue
        if element.tag == "input":
            kind = element.get("type", "text")
            if kind in {"checkbox", "radio"} and "checked" not in element.attrs:
                continue
            if kind in {"submit", "button"}:
                continue
            pairs.append((name, element.get("value", "on" if kind == "checkbox" else "")))
        elif element.tag == "select":
            options = element.find_all("option")
            chosen = [o for o in options if "selected" in o.attrs] or options[:1]
            pairs.extend((name, o.get("value", o.text)) for o in chosen)
        elif element.tag == "textarea":
            pairs.append((name, element.text))
    return [(k, v) for k, v in pairs if k != "csrf_token"]
