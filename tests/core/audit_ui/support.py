"""Helpers for the audit UI tests: reading the trail, making entries, walking pages."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bastion import audit
from bastion.audit.models import AuditEntry
from bastion.db import db
from tests.core.data.ui_support import page

HTMX = {"HX-Request": "true"}


def entries(app, action: str | None = None, **columns: Any) -> list[AuditEntry]:
    """Entries of the trail, oldest first, with ``action`` and the given column values."""
    with app.app_context():
        statement = select(AuditEntry).order_by(AuditEntry.seq)
        if action is not None:
            statement = statement.where(AuditEntry.action == action)
        for name, value in columns.items():
            statement = statement.where(getattr(AuditEntry, name) == value)
        rows = list(db.session.scalars(statement))
        db.session.expunge_all()
        return rows


def changes_of(entry: AuditEntry) -> dict[str, Any]:
    return json.loads(entry.changes) if entry.changes else {}


def record_events(app, count: int, action: str = "test.event", **fields: Any) -> None:
    """``count`` entries written through audit.record, as the system."""
    with app.test_request_context():
        for number in range(count):
            audit.record(action, changes={"n": number}, **fields)
        db.session.commit()


def shown_seqs(response) -> list[int]:
    """The seq of each entry on an audit page (or a page of more entries), in order."""
    return [int(li["data-seq"]) for li in page(response).find_all("li", data_seq=True)]


def load_more(response) -> str | None:
    found = page(response).find_all("a", id="audit-load-more")
    return found[0]["href"] if found else None


def every_shown(client, path: str, **query: str) -> list[int]:
    """The seqs on a page and on every page after it ("Load more" as plain links)."""
    response = client.get(path, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    seqs = shown_seqs(response)
    following = load_more(response)
    while following is not None:
        response = client.get(following)
        assert response.status_code == 200
        seqs.extend(shown_seqs(response))
        following = load_more(response)
    return seqs
