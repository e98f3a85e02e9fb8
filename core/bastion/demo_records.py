"""Sample accounts, contacts and activities for the demo organization.

Written through the record service like any other input, owned by the demo's users so
that record scope shows: Sam sees his team's customers, Maria her whole sales tree.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bastion.data.records import RecordService
from bastion.db import db
from bastion.models import User

#: (account name, industry, city, owner's email, [(first, last, title, email)])
ACCOUNTS = (
    (
        "Northwind Savings Bank",
        "Banking",
        "Hamburg",
        "sam.sales@example.com",
        [
            ("Ada", "Brandt", "CFO", "ada.brandt@northwind.example"),
            ("Jonas", "Keller", "Head of Risk", "jonas.keller@northwind.example"),
        ],
    ),
    (
        "St. Elisabeth Hospital",
        "Healthcare",
        "Vienna",
        "sam.sales@example.com",
        [("Mira", "Novak", "Chief Nursing Officer", "m.novak@st-elisabeth.example")],
    ),
    (
        "Helvetia Mutual Insurance",
        "Insurance",
        "Zürich",
        "maria.manager@example.com",
        [
            ("Luca", "Rossi", "CIO", "luca.rossi@helvetia-mutual.example"),
            ("Zoë", "Ångström", "Data Protection Officer", "zoe.angstrom@helvetia-mutual.example"),
        ],
    ),
    (
        "City of Łódź",
        "Public sector",
        "Łódź",
        "maria.manager@example.com",
        [("Tomasz", "Kowalski", "Head of IT", "t.kowalski@lodz.example")],
    ),
    (
        "Fjord Energy",
        "Energy",
        "Oslo",
        "admin@example.com",
        [("Ingrid", "Lindqvist", "Procurement", "ingrid@fjord-energy.example")],
    ),
)


def load_demo_records() -> None:
    """Create the sample records (inside an application context)."""
    owners = {u.email: u.id for u in db.session.scalars(select(User))}
    records = RecordService(None, system=True)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with records.atomic():
        for index, (name, industry, city, owner, people) in enumerate(ACCOUNTS):
            owner_id = owners.get(owner)
            account = records.create(
                "accounts",
                {"name": name, "industry": industry, "city": city, "owner": owner_id},
            )
            for first, last, title, email in people:
                contact = records.create(
                    "contacts",
                    {
                        "first_name": first,
                        "last_name": last,
                        "title": title,
                        "email": email,
                        "account": account.id,
                        "owner": owner_id,
                    },
                )
                records.create(
                    "activities",
                    {
                        "kind": "call",
                        "subject": f"Introductory call with {first} {last}",
                        "related_to": {"object": "contacts", "id": contact.id},
                        "due_at": now - timedelta(days=3 + index),
                        "done": True,
                        "completed_at": now - timedelta(days=3 + index),
                        "owner": owner_id,
                    },
                )
            records.create(
                "activities",
                {
                    "kind": "task",
                    "subject": f"Prepare the proposal for {name}",
                    "related_to": {"object": "accounts", "id": account.id},
                    "due_at": now + timedelta(days=index + 1),
                    "owner": owner_id,
                },
            )
