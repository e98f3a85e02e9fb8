"""The sales part of the demo organization.

Always (also for tests' demo): a second sales team, two more reps, the sales roles'
rules on the sales objects and the sales capabilities. With sample records (`bastion
init --demo`): two pipelines, scoring and assignment rules, products and a price book,
leads in every status, opportunities across both pipelines with a stage history, quotas,
and a quote awaiting its manager's approval. Everything is written through the record
service, so the plugin's own rules (stage probabilities, quote totals) apply.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from bastion.api import DemoContext, Filter, RecordService, find_user_info

ALL = ("read", "create", "edit", "delete", "import", "export")
READ_WRITE = ("read", "create", "edit")
DEALS = ("leads", "opportunities", "quotes", "quote_lines")
CATALOGUE = (
    "pipelines",
    "pipeline_stages",
    "products",
    "price_books",
    "price_book_entries",
    "lead_scoring_rules",
    "lead_assignment_rules",
)

MARIA = "maria.manager@example.com"
SAM = "sam.sales@example.com"
NINA = "nina.north@example.com"
SVEN = "sven.south@example.com"

# (pipeline, default?, [(stage, probability, outcome, forecast category)])
PIPELINES = (
    (
        "New business",
        True,
        (
            ("Prospecting", 10, "open", "pipeline"),
            ("Qualification", 25, "open", "pipeline"),
            ("Proposal", 50, "open", "best_case"),
            ("Negotiation", 75, "open", "commit"),
            ("Closed won", 100, "won", "commit"),
            ("Closed lost", 0, "lost", "omitted"),
        ),
    ),
    (
        "Renewals",
        False,
        (
            ("Upcoming", 50, "open", "pipeline"),
            ("Contacted", 70, "open", "best_case"),
            ("Renewal quoted", 85, "open", "commit"),
            ("Renewed", 100, "won", "commit"),
            ("Churned", 0, "lost", "omitted"),
        ),
    ),
)

# (first, last, company, industry, territory, status, rating, source, owner)
LEADS = (
    ("Clara", "Weiss", "Alpenbank", "Banking", "North", "new", "hot", "web", SAM),
    (
        "Piotr",
        "Nowak",
        "Baltic Health Clinics",
        "Healthcare",
        "North",
        "working",
        "warm",
        "event",
        NINA,
    ),
    (
        "Hannah",
        "Schmidt",
        "Rhein Insurance",
        "Insurance",
        "South",
        "nurturing",
        "cold",
        "referral",
        SVEN,
    ),
    (
        "Omar",
        "Haddad",
        "Danube Credit Union",
        "Banking",
        "South",
        "qualified",
        "hot",
        "partner",
        SVEN,
    ),
    (
        "Elena",
        "Petrova",
        "Volga Manufacturing",
        "Manufacturing",
        "North",
        "unqualified",
        "cold",
        "cold_call",
        SAM,
    ),
    (
        "Sofia",
        "Costa",
        "Lisboa Public Schools",
        "Education",
        "South",
        "new",
        "warm",
        "advertisement",
        SVEN,
    ),
    ("Jan", "de Vries", "Delta Retail Group", "Retail", "North", "working", "hot", "web", NINA),
)

# (name, code, family, price)
PRODUCTS = (
    ("Bastion CRM licence (per seat, year)", "LIC-SEAT", "Licences", Decimal("480.00")),
    ("On-premises installation", "SRV-INSTALL", "Services", Decimal("4500.00")),
    ("Security review workshop", "SRV-SECURITY", "Services", Decimal("2200.00")),
    ("Premium support (year)", "SUP-PREMIUM", "Support", Decimal("9600.00")),
    ("Data migration (per 100k records)", "SRV-MIGRATE", "Services", Decimal("1250.00")),
)

# (name, account, pipeline, stage, amount, days to close, owner)
OPPORTUNITIES = (
    (
        "Northwind core CRM rollout",
        "Northwind Savings Bank",
        "New business",
        "Negotiation",
        Decimal("84000.00"),
        20,
        SAM,
    ),
    (
        "St. Elisabeth patient desk",
        "St. Elisabeth Hospital",
        "New business",
        "Proposal",
        Decimal("36500.00"),
        45,
        SAM,
    ),
    (
        "Helvetia data protection suite",
        "Helvetia Mutual Insurance",
        "New business",
        "Qualification",
        Decimal("52000.00"),
        70,
        MARIA,
    ),
    (
        "Łódź citizen services",
        "City of Łódź",
        "New business",
        "Prospecting",
        Decimal("120000.00"),
        110,
        SVEN,
    ),
    (
        "Fjord Energy pilot",
        "Fjord Energy",
        "New business",
        "Closed won",
        Decimal("18750.00"),
        -10,
        NINA,
    ),
    (
        "Fjord Energy analytics",
        "Fjord Energy",
        "New business",
        "Closed lost",
        Decimal("9900.00"),
        -25,
        NINA,
    ),
    (
        "Northwind support renewal",
        "Northwind Savings Bank",
        "Renewals",
        "Contacted",
        Decimal("9600.00"),
        35,
        SAM,
    ),
    (
        "Helvetia licence renewal",
        "Helvetia Mutual Insurance",
        "Renewals",
        "Renewed",
        Decimal("24000.00"),
        -5,
        MARIA,
    ),
    (
        "St. Elisabeth support renewal",
        "St. Elisabeth Hospital",
        "Renewals",
        "Upcoming",
        Decimal("9600.00"),
        80,
        SVEN,
    ),
)


def load_demo(app: Any, demo: DemoContext) -> None:
    demo.add_team("Sales South", parent="Sales")
    demo.add_user(NINA, "Nina North", "sales_rep", team="Sales North")
    demo.add_user(SVEN, "Sven South", "sales_rep", team="Sales South")
    for name in DEALS:
        demo.allow("sales_manager", name, ALL, "team_tree")
        demo.allow("sales_rep", name, READ_WRITE, "team")
    # Stage history is written by the plugin alone; people read it.
    demo.allow("sales_manager", "stage_history", ("read", "export"), "team_tree")
    demo.allow("sales_rep", "stage_history", ("read",), "team")
    # Reps rework their drafts: a quote line they added can go again.
    demo.allow("sales_rep", "quote_lines", (*READ_WRITE, "delete"), "team")
    demo.allow("sales_manager", "sales_quotas", ALL, "team_tree")
    demo.allow("sales_rep", "sales_quotas", ("read",), "own")
    for name in CATALOGUE:
        demo.allow("sales_manager", name, ("read",), "all")
    # Reps see what a rule gave a lead on the lead itself; the rules (what is worth how
    # much, who gets which territory) stay with managers.
    for name in CATALOGUE[:5]:
        demo.allow("sales_rep", name, ("read",), "all")
    demo.grant("sales_manager", "sales.forecast", "sales.approve_quotes")
    demo.grant("sales_rep", "sales.forecast")
    if demo.sample_records:
        _sample_records()


def _owners() -> dict[str, int]:
    found = {}
    for email in (MARIA, SAM, NINA, SVEN):
        user = find_user_info(email)
        if user is not None:
            found[email] = user.id
    return found


def _account(records: RecordService, name: str, owner: int) -> int:
    page = records.query("accounts", filters=[Filter("name", "eq", name)], limit=1)
    if page.records:
        return page.records[0].id
    return records.create("accounts", {"name": name, "owner": owner}).id


def _sample_records() -> None:
    records = RecordService(None, system=True)
    owners = _owners()
    with records.atomic():
        stages = _pipelines(records)
        _rules(records)
        prices = _catalogue(records)
        leads = {}
        for first, last, company, industry, territory, status, rating, source, owner in LEADS:
            leads[f"{first} {last}"] = records.create(
                "leads",
                {
                    "first_name": first,
                    "last_name": last,
                    "company": company,
                    "industry": industry,
                    "territory": territory,
                    "status": status,
                    "rating": rating,
                    "source": source,
                    "email": f"{first.lower()}.{last.lower().replace(' ', '')}@example.org",
                    "owner": owners[owner],
                },
            )
        _converted_lead(records, owners)
        today = datetime.now(UTC).date()
        deals = {}
        for name, account, pipeline, stage, amount, days, owner in OPPORTUNITIES:
            pipeline_id, stage_ids = stages[pipeline]
            deals[name] = records.create(
                "opportunities",
                {
                    "name": name,
                    "account": _account(records, account, owners[owner]),
                    "pipeline": pipeline_id,
                    "stage": stage_ids[stage],
                    "amount": {"amount": str(amount), "currency": "EUR"},
                    "close_date": (today + timedelta(days=days)).isoformat(),
                    "close_reason": "Budget moved to next year" if stage.endswith("lost") else None,
                    "owner": owners[owner],
                },
            )
        _quotas(records, owners, today)
        _activities(records, leads, deals, owners)
        _quote_awaiting_approval(records, deals["Northwind core CRM rollout"], prices, owners)


def _activities(
    records: RecordService, leads: dict[str, Any], deals: dict[str, Any], owners: dict[str, int]
) -> None:
    """A meeting that scores, an old call that makes a deal stale, and Sam's day."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)

    def log(kind: str, subject: str, record: Any, owner: str, **values: Any) -> None:
        related = {"object": record.object, "id": record.id}
        records.create(
            "activities",
            {"kind": kind, "subject": subject, "related_to": related, "owner": owners[owner]}
            | values,
        )

    clara, sven_deal = leads["Clara Weiss"], deals["Łódź citizen services"]
    log(
        "meeting",
        "Discovery meeting at Alpenbank",
        clara,
        SAM,
        done=True,
        completed_at=now - timedelta(days=2),
    )
    log(
        "call",
        "Call with the Łódź IT office",
        sven_deal,
        SVEN,
        done=True,
        completed_at=now - timedelta(days=20),
    )
    northwind = deals["Northwind core CRM rollout"]
    log(
        "task",
        "Send the security questionnaire back",
        northwind,
        SAM,
        due_at=now - timedelta(days=1),
    )
    log("task", "Confirm the pilot scope with Ada", northwind, SAM, due_at=now + timedelta(hours=3))
    log(
        "task",
        "Prepare the renewal offer",
        deals["Northwind support renewal"],
        SAM,
        due_at=now + timedelta(days=3),
    )


def _converted_lead(records: RecordService, owners: dict[str, int]) -> None:
    """Ingrid came in as a lead and became Fjord Energy's contact: the lead keeps links."""
    from bastion_sales.leads.conversion import convert

    lead = records.create(
        "leads",
        {
            "first_name": "Ingrid",
            "last_name": "Lindqvist",
            "company": "Fjord Energy",
            "industry": "Energy",
            "territory": "North",
            "status": "qualified",
            "rating": "warm",
            "source": "event",
            "email": "ingrid@fjord-energy.example",
            "owner": owners[MARIA],
        },
    )
    account = records.query("accounts", filters=[Filter("name", "eq", "Fjord Energy")])
    contact = records.query(
        "contacts", filters=[Filter("email", "eq", "ingrid@fjord-energy.example")]
    )
    if not (account.records and contact.records):
        raise LookupError("The core demo's Fjord Energy account or Ingrid's contact is missing.")
    convert(records, lead.id, account_id=account.records[0].id, contact_id=contact.records[0].id)


def _pipelines(records: RecordService) -> dict[str, tuple[int, dict[str, int]]]:
    found = {}
    for name, default, stages in PIPELINES:
        pipeline = records.create("pipelines", {"name": name, "is_default": default})
        ids = {}
        for position, (stage, probability, outcome, category) in enumerate(stages, start=1):
            ids[stage] = records.create(
                "pipeline_stages",
                {
                    "name": stage,
                    "pipeline": pipeline.id,
                    "position": position * 10,
                    "probability": probability,
                    "outcome": outcome,
                    "forecast_category": category,
                },
            ).id
        found[name] = (pipeline.id, ids)
    return found


def _rules(records: RecordService) -> None:
    for name, kind, extra, points in (
        ("Banking industry", "field_value", {"field": "industry", "value": "Banking"}, 20),
        ("Healthcare industry", "field_value", {"field": "industry", "value": "Healthcare"}, 15),
        ("Rated hot", "field_value", {"field": "rating", "value": "hot"}, 10),
        ("Meeting held", "activity", {"activity_kind": "meeting"}, 15),
        ("No activity for 30 days", "inactivity", {"days": 30}, -10),
    ):
        records.create(
            "lead_scoring_rules",
            {"name": name, "kind": kind, "operator": "eq", "points": points, **extra},
        )
    records.create(
        "lead_assignment_rules",
        {
            "name": "Southern territory",
            "position": 10,
            "method": "territory",
            "territory_field": "territory",
            "territory_value": "South",
            "assignee": SVEN,
        },
    )
    records.create(
        "lead_assignment_rules",
        {
            "name": "Everyone else: Sales North in turn",
            "position": 20,
            "method": "round_robin",
            "team": "Sales North",
        },
    )


def _catalogue(records: RecordService) -> dict[str, tuple[int, int]]:
    book = records.create(
        "price_books", {"name": "Standard EUR", "currency": "EUR", "is_standard": True}
    )
    found = {}
    for name, code, family, price in PRODUCTS:
        product = records.create("products", {"name": name, "code": code, "family": family})
        records.create(
            "price_book_entries",
            {"price_book": book.id, "product": product.id, "unit_price": str(price)},
        )
        found[code] = (book.id, product.id)
    return found


def _quotas(records: RecordService, owners: dict[str, int], today: date) -> None:
    quarter = f"{today.year}-Q{(today.month - 1) // 3 + 1}"
    for email, amount in ((SAM, "150000"), (NINA, "90000"), (SVEN, "110000"), (MARIA, "60000")):
        records.create(
            "sales_quotas",
            {
                "period": quarter,
                "amount": {"amount": amount, "currency": "EUR"},
                "owner": owners[email],
            },
        )


def _quote_awaiting_approval(
    records: RecordService, deal: Any, prices: dict[str, tuple[int, int]], owners: dict
) -> None:
    """Sam offers Northwind a 20% licence discount: over the threshold, so Maria decides."""
    book_id = prices["LIC-SEAT"][0]
    quote = records.create(
        "quotes",
        {
            "title": "Northwind rollout, 150 seats",
            "opportunity": deal.id,
            "price_book": book_id,
            "owner": owners[SAM],
        },
    )
    for code, quantity, discount, tax in (
        ("LIC-SEAT", "150", "20", "19"),
        ("SRV-INSTALL", "1", "0", "19"),
        ("SRV-SECURITY", "2", "5", "19"),
    ):
        records.create(
            "quote_lines",
            {
                "quote": quote.id,
                "product": prices[code][1],
                "quantity": quantity,
                "discount_percent": discount,
                "tax_rate": tax,
                "owner": owners[SAM],
            },
        )
