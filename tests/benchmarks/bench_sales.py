#!/usr/bin/env python3
"""Measure the sales plugin through its public behaviour: REST API, pages and its command.

On a fresh installation with the demo organization (reps and managers, the sales roles'
rules), in-process through the Flask test client unless said otherwise:

1. Lead create, ``POST /api/v1/leads`` with 5 scoring rules and a round-robin assignment
   rule active, vs a contact create (no sales hooks): median ms per create (rounds
   alternate between the two) and SQL statements per create.
2. The board, ``GET /sales/board`` of a pipeline whose 6 open stages hold N open
   opportunities (50 cards per column shown): p50 / p95 ms, as an administrator (scope
   all) and as a sales manager (scope team tree).
3. The forecast, ``GET /api/v1/opportunities/forecast?period=quarter&by=owner`` over 4
   quarters, with M opportunities of 20 owners in the default pipeline (the board's
   are in the table too and count): p50 / p95 ms. The opportunities are made with
   ``create_many`` of a system record service in batches (hooks, stage history, audit
   and search outbox included); the set-up time is shown.
4. Quote recompute: adding the 50th line to a quote (``POST /api/v1/quote_lines``):
   p50 / p95 ms and statements; between samples the line is deleted again, so every
   sample adds the 50th line.
5. ``bastion sales follow-ups`` (a real process, start included; the start alone is
   shown) over K stale leads: the first run creates a task for each, the second finds
   nothing to do.

Log level INFO as in production (lines to /dev/null); figures go to stdout.

    .venv/bin/python tests/benchmarks/bench_sales.py --data-dir /tmp/bench_sales
    psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE bench_sales'
    .venv/bin/python tests/benchmarks/bench_sales.py --data-dir /tmp/bench_sales_pg \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_sales

The defaults (the sizes above) took 7.5 minutes on SQLite on a busy 2-core machine,
most of it making the 50,000 opportunities (about 4 minutes) and the 10,000 follow-up
tasks (about 2). Smaller sizes for a quick check: ``--per-round 20 --board-opportunities 300
--forecast-opportunities 2000 --stale-leads 500``. Prints figures; asserts nothing (a
failed request stops the run with its answer). The data directory must not exist yet.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

PASSWORD = "quiet river 7 lantern"
ADMIN = "admin@example.com"
MARIA = "maria.manager@example.com"
SAM = "sam.sales@example.com"
NINA = "nina.north@example.com"
SVEN = "sven.south@example.com"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
#: The board pipeline: 6 open stages (cards) and the two closing ones (empty columns).
BOARD_STAGES = (
    ("Lead in", 5, "open", "pipeline"),
    ("Qualified", 10, "open", "pipeline"),
    ("Demo", 25, "open", "pipeline"),
    ("Proposal", 50, "open", "best_case"),
    ("Negotiation", 75, "open", "commit"),
    ("Contract", 90, "open", "commit"),
    ("Closed won", 100, "won", "commit"),
    ("Closed lost", 0, "lost", "omitted"),
)
#: The default pipeline, where the forecast's opportunities live.
MAIN_STAGES = (
    ("Prospecting", 10, "open", "pipeline"),
    ("Proposal", 50, "open", "best_case"),
    ("Negotiation", 75, "open", "commit"),
    ("Closed won", 100, "won", "commit"),
    ("Closed lost", 0, "lost", "omitted"),
)
INDUSTRIES = ("Banking", "Insurance", "Retail", "Technology", "Energy")


# --------------------------------------------------------------------------- helpers


def make_app(data_dir: Path, database_url: str):
    from bastion.app import create_app
    from bastion.config import load_settings
    from bastion.provision import initialize, prepare_data_dir

    overrides = {"log_level": "INFO"}
    if database_url:
        overrides["database_url"] = database_url
    settings = load_settings(data_dir, environ={}, overrides=overrides)
    prepare_data_dir(settings.data_dir, force=False)
    app = create_app(settings)
    # The demo organization without sample records: reps, a manager, the sales rules.
    initialize(app, admin_email=ADMIN, admin_password=PASSWORD, demo=True)
    # Production logs every request and audit entry: the formatting stays, the lines go
    # to /dev/null (the JSON handler writes to whatever sys.stderr is); figures to stdout.
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    return app


def percentiles(timings: list[float]) -> tuple[float, float]:
    ordered = sorted(timings)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]


def report(label: str, timings: list[float], extra: str = "") -> None:
    p50, p95 = percentiles(timings)
    print(f"  {label:<52}{p50:>9.1f}{p95:>9.1f}  {extra}".rstrip(), flush=True)


@contextlib.contextmanager
def system(app) -> Iterator[Any]:
    """The system's record service (set-up writes that users could not make)."""
    from bastion.data.catalog import forget_catalog
    from bastion.data.records import RecordService

    with app.test_request_context():
        forget_catalog()
        yield RecordService(None, system=True)


def user_id(app, email: str) -> int:
    from sqlalchemy import select

    from bastion.db import db
    from bastion.models import User

    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def bearer(app, email: str) -> dict[str, str]:
    from sqlalchemy import select

    from bastion.db import db
    from bastion.models import User
    from bastion.tokens import create_token

    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        _, raw = create_token(user, f"sales benchmark {time.time_ns()}")
        return {"Authorization": f"Bearer {raw}"}


def signed_in(app, email: str):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    form = {"email": email, "password": PASSWORD, "csrf_token": CSRF_RE.search(page).group(1)}
    response = client.post("/login", data=form)
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:300]
    return client


class StatementCounter:
    """SQL statements sent to the database (a ``before_cursor_execute`` listener)."""

    def __init__(self, app) -> None:
        from sqlalchemy import event

        from bastion.db import db

        self.count = 0
        with app.app_context():
            self.engine = db.engine
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.count += 1

    def close(self) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._seen)


def call(client, method: str, path: str, expect: int, **kwargs: Any):
    response = client.open(path, method=method, **kwargs)
    if response.status_code != expect:
        raise RuntimeError(
            f"{method} {path}: {response.status_code} {response.get_data(as_text=True)[:500]}"
        )
    return response


def timed(count: int, action: Callable[[int], Any]) -> list[float]:
    timings = []
    for index in range(count):
        started = time.perf_counter()
        action(index)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def quarter_start(today: date) -> date:
    return date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)


def quarter_key(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


# --------------------------------------------------------------------------- set-up


def add_reps(app, count: int) -> list[int]:
    """Sales reps up to ``count`` owners (the demo's reps and manager first), the new
    ones invited (no password to hash) into the two demo sales teams."""
    from bastion.accounts import create_user

    owners = [user_id(app, email) for email in (SAM, NINA, SVEN, MARIA)][:count]
    with app.test_request_context():
        for n in range(count - len(owners)):
            user = create_user(
                email=f"rep{n:02d}@example.com",
                name=f"Rep {n:02d}",
                password=None,
                role_slugs=["sales_rep"],
                team_name="Sales North" if n % 2 else "Sales South",
                actor="benchmark",
            )
            owners.append(user.id)
    return owners


def make_pipeline(app, name: str, stages, *, default: bool = False) -> dict:
    with system(app) as service:
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


def add_lead_rules(app) -> None:
    """5 scoring rules (3 field, 1 activity, 1 inactivity) and a round-robin rule."""
    rules = (
        {"name": "Banking", "kind": "field_value", "field": "industry", "operator": "eq",
         "value": "Banking", "points": 20},
        {"name": "Referral", "kind": "field_value", "field": "source", "operator": "eq",
         "value": "referral", "points": 10},
        {"name": "Large", "kind": "field_value", "field": "employees", "operator": "gt",
         "value": "1000", "points": 10},
        {"name": "Meeting held", "kind": "activity", "activity_kind": "meeting", "points": 15},
        {"name": "Gone quiet", "kind": "inactivity", "days": 30, "points": -10},
    )  # fmt: skip
    with system(app) as service:
        for rule in rules:
            service.create("lead_scoring_rules", {**rule, "active": True})
        service.create(
            "lead_assignment_rules",
            {"name": "North", "position": 10, "method": "round_robin", "team": "Sales North"},
        )


def create_in_batches(
    app, object_name: str, rows: Iterator[dict], total: int, batch: int
) -> tuple[float, list[int]]:
    """Seconds to create ``total`` records with the system's ``create_many``, and their ids."""
    started = time.perf_counter()
    ids: list[int] = []
    while len(ids) < total:
        chunk = [next(rows) for _ in range(min(batch, total - len(ids)))]
        with system(app) as service:
            ids.extend(service.create_many(object_name, chunk))
    return time.perf_counter() - started, ids


def backdate(app, object_name: str, ids: list[int], days: int) -> None:
    """Pretend the records were created ``days`` ago (set-up only, as the follow-up
    tests do: no public way exists, rightly)."""
    from sqlalchemy import update

    from bastion.data.catalog import current_catalog
    from bastion.db import db

    with app.test_request_context():
        table = current_catalog().table(object_name)
        db.session.execute(
            update(table)
            .where(table.c.id.between(min(ids), max(ids)))
            .values(created_at=datetime.now(UTC) - timedelta(days=days))
        )
        db.session.commit()


def opportunity_rows(
    owners: list[int], stages: list[int], first_day: date, days: int, *, tag: str
) -> Iterator[dict]:
    n = 0
    while True:
        yield {
            "name": f"{tag} deal {n}",
            "owner": owners[n % len(owners)],
            "stage": stages[(n // len(owners)) % len(stages)],
            "close_date": first_day + timedelta(days=(n * 7) % days),
            "amount": {"amount": f"{1000 + (n * 37) % 90_000}.{n % 100:02d}", "currency": "EUR"},
        }
        n += 1


# --------------------------------------------------------------------------- measures


def bench_lead_create(app, counter: StatementCounter, rounds: int, per_round: int) -> None:
    add_lead_rules(app)
    client = app.test_client()
    headers = bearer(app, ADMIN)
    bodies = {
        "lead": lambda k: {
            "last_name": f"Lead {k}",
            "company": f"Company {k}",
            "email": f"lead{k}@example.org",
            "industry": INDUSTRIES[k % len(INDUSTRIES)],
            "source": "referral" if k % 3 == 0 else "web",
            "employees": 50 * (k % 40),
        },
        "contact": lambda k: {
            "last_name": f"Contact {k}",
            "first_name": "Ada",
            "email": f"contact{k}@example.org",
        },
    }
    paths = {"lead": "/api/v1/leads", "contact": "/api/v1/contacts"}
    per_create: dict[str, list[float]] = {"lead": [], "contact": []}
    statements: dict[str, list[int]] = {"lead": [], "contact": []}
    k = 0
    for round_number in range(rounds * 2):
        kind = ("lead", "contact")[round_number % 2]
        for _ in range(per_round):
            k += 1
            before = counter.count
            started = time.perf_counter()
            call(client, "POST", paths[kind], 201, json=bodies[kind](k), headers=headers)
            per_create[kind].append((time.perf_counter() - started) * 1000)
            statements[kind].append(counter.count - before)
    with system(app) as service:
        owners = {r.get("owner") for r in service.iterate("leads")}
        leads = service.count("leads", filters=[])
    print(
        f"1. API create, {rounds} alternating rounds of {per_round} "
        f"({leads} leads spread over {len(owners)} owners by the round-robin rule)"
    )
    print(f"  {'':<52}{'p50 ms':>9}{'p95 ms':>9}  SQL statements per create")
    for kind, label in (
        ("lead", "lead (5 scoring rules, round robin)"),
        ("contact", "contact (no sales hooks)"),
    ):
        report(
            label,
            per_create[kind],
            f"{statistics.median(statements[kind]):.0f} (min {min(statements[kind])}, "
            f"max {max(statements[kind])})",
        )
    lead, contact = statistics.median(per_create["lead"]), statistics.median(per_create["contact"])
    print(f"  a lead costs {lead / contact:.1f}x a contact ({lead - contact:+.1f} ms)")


def bench_board(app, owners: list[int], count: int, requests: int, batch: int) -> None:
    board = make_pipeline(app, "Board bench", BOARD_STAGES)
    open_stages = [board["stages"][name] for name, *_ in BOARD_STAGES[:6]]
    today = date.today()
    rows = opportunity_rows(owners, open_stages, today, 180, tag="Board")
    took, _ = create_in_batches(app, "opportunities", rows, count, batch)
    print(
        f"2. Board of {count} open opportunities over 6 stages "
        f"(created in {took:.1f} s, {count / took:,.0f}/s; 50 cards per column shown)"
    )
    print(f"  {'':<52}{'p50 ms':>9}{'p95 ms':>9}")
    path = f"/sales/board?pipeline={board['id']}"
    for email, label in ((ADMIN, "GET /sales/board, administrator"), (MARIA, "manager")):
        client = signed_in(app, email)
        html = call(client, "GET", path, 200).get_data(as_text=True)
        cards = html.count("data-move-form")
        report(
            f"{label} ({cards} cards shown)",
            timed(requests, lambda _, c=client: call(c, "GET", path, 200)),
        )


def bench_forecast(
    app, main: dict, owners: list[int], count: int, requests: int, batch: int
) -> None:
    stages = [main["stages"][name] for name in ("Prospecting", "Proposal", "Negotiation")]
    first = quarter_start(date.today())
    rows = opportunity_rows(owners, stages, first, 365, tag="Forecast")
    took, _ = create_in_batches(app, "opportunities", rows, count, batch)
    last = first + timedelta(days=364)
    path = (
        "/api/v1/opportunities/forecast?period=quarter&by=owner"
        f"&from={quarter_key(first)}&to={quarter_key(last)}"
    )
    client = app.test_client()
    headers = bearer(app, ADMIN)
    answer = call(client, "GET", path, 200, headers=headers).get_json()
    size = len(str(answer))
    print(
        f"3. Forecast by owner, {quarter_key(first)} to {quarter_key(last)}: {count} "
        f"opportunities of {len(owners)} owners made in {took:.1f} s "
        f"({count / took:,.0f}/s, create_many batches of {batch}); answer {size:,} chars"
    )
    print(f"  {'':<52}{'p50 ms':>9}{'p95 ms':>9}")
    report(
        "GET .../opportunities/forecast, administrator",
        timed(requests, lambda _: call(client, "GET", path, 200, headers=headers)),
    )
    maria = bearer(app, MARIA)
    report(
        "manager (team tree scope)",
        timed(requests, lambda _: call(client, "GET", path, 200, headers=maria)),
    )


def bench_quote(app, counter: StatementCounter, lines: int, repeats: int) -> None:
    with system(app) as service:
        book = service.create("price_books", {"name": "Bench EUR", "currency": "EUR"})
        products = []
        for n in range(10):
            product = service.create("products", {"name": f"Item {n}", "code": f"B-{n}"})
            service.create(
                "price_book_entries",
                {"price_book": book.id, "product": product.id, "unit_price": f"{10 + n}.99"},
            )
            products.append(product.id)
        account = service.create("accounts", {"name": "Quote Bench Ltd"})
        deal = service.create(
            "opportunities",
            {"name": "Quote bench", "account": account.id, "close_date": date.today()},
        )
    client = app.test_client()
    headers = bearer(app, ADMIN)
    quote = call(
        client,
        "POST",
        "/api/v1/quotes",
        201,
        json={"opportunity": deal.id, "price_book": book.id},
        headers=headers,
    ).get_json()

    def line(n: int) -> dict:
        return {
            "quote": quote["id"],
            "product": products[n % len(products)],
            "quantity": str(1 + n % 7),
            "discount_percent": "5",
            "tax_rate": "8.25",
        }

    for n in range(lines - 1):
        call(client, "POST", "/api/v1/quote_lines", 201, json=line(n), headers=headers)
    timings, statements = [], []
    for _ in range(repeats):
        before = counter.count
        started = time.perf_counter()
        added = call(
            client, "POST", "/api/v1/quote_lines", 201, json=line(lines), headers=headers
        ).get_json()
        timings.append((time.perf_counter() - started) * 1000)
        statements.append(counter.count - before)
        path = f"/api/v1/quote_lines/{added['id']}?version={added['version']}"
        call(client, "DELETE", path, 204, headers=headers)
    total = call(client, "GET", f"/api/v1/quotes/{quote['id']}", 200, headers=headers).get_json()
    print(f"4. Quote recompute: line {lines} added to a quote ({repeats} samples; total after")
    print(f"   removing it again {total['total']} {total['currency']})")
    print(f"  {'':<52}{'p50 ms':>9}{'p95 ms':>9}  SQL statements")
    report(
        f"POST /api/v1/quote_lines (line {lines})",
        timings,
        f"{statistics.median(statements):.0f}",
    )


def bench_follow_ups(
    app, owners: list[int], data_dir: Path, database_url: str, count: int, batch: int
) -> None:
    from bastion.db import db

    def rows() -> Iterator[dict]:
        n = 0
        while True:
            yield {
                "last_name": f"Stale {n}",
                "company": f"Quiet {n} Ltd",
                "status": ("new", "working", "nurturing")[n % 3],
                "owner": owners[n % len(owners)],
            }
            n += 1

    # Never any activity, created 40 days ago: stale for the default 14 days.
    took, ids = create_in_batches(app, "leads", rows(), count, batch)
    backdate(app, "leads", ids, 40)
    with app.app_context():
        db.session.remove()
    env = {**os.environ, "BASTION_DATA_DIR": str(data_dir.resolve()), "BASTION_LOG_LEVEL": "INFO"}
    if database_url:
        env["BASTION_DATABASE_URL"] = database_url

    def run(*args: str) -> tuple[float, float, str]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "bastion", *args],
            env=env,
            text=True,
            capture_output=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if result.returncode:
            raise RuntimeError(f"bastion {' '.join(args)}: {result.stderr[-2000:]}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return elapsed, cpu, result.stdout.strip()

    start, start_cpu, _ = run("sales", "--help")
    print(
        f"5. bastion sales follow-ups over {count} stale leads (made in {took:.1f} s); "
        f"process start included (alone: {start:.1f} s, CPU {start_cpu:.1f} s)"
    )
    for label in ("first run (creates the tasks)", "second run (nothing to do)"):
        elapsed, cpu, output = run("sales", "follow-ups")
        print(f"  {label:<36} {elapsed:>7.1f} s (CPU {cpu:.1f} s): {output}", flush=True)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--database-url", default="", help="PostgreSQL; SQLite when empty")
    parser.add_argument("--rounds", type=int, default=5, help="lead/contact create rounds")
    parser.add_argument("--per-round", type=int, default=50, help="creates per round")
    parser.add_argument("--owners", type=int, default=20)
    parser.add_argument("--board-opportunities", type=int, default=2000)
    parser.add_argument("--forecast-opportunities", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=30, help="board/forecast samples")
    parser.add_argument("--quote-lines", type=int, default=50)
    parser.add_argument("--quote-samples", type=int, default=20)
    parser.add_argument("--stale-leads", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000, help="create_many batch size")
    args = parser.parse_args()
    if args.data_dir.exists():
        parser.error(f"{args.data_dir} exists; give a new folder")
    began = time.perf_counter()
    app = make_app(args.data_dir, args.database_url)
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"Sales benchmark on {backend}, in-process (Flask test client), log level INFO; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start "
        "(figures from a shared machine vary with its other work)",
        flush=True,
    )
    owners = add_reps(app, args.owners)
    # The default pipeline (the quote's opportunity and the forecast's land in it).
    main_pipeline = make_pipeline(app, "New business", MAIN_STAGES, default=True)
    counter = StatementCounter(app)
    bench_lead_create(app, counter, args.rounds, args.per_round)
    bench_board(app, owners, args.board_opportunities, args.requests, args.batch)
    bench_forecast(
        app, main_pipeline, owners, args.forecast_opportunities, args.requests, args.batch
    )
    bench_quote(app, counter, args.quote_lines, args.quote_samples)
    bench_follow_ups(app, owners, args.data_dir, args.database_url, args.stale_leads, args.batch)
    counter.close()
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    print(
        f"Total {time.perf_counter() - began:.0f} s elapsed, {cpu:.0f} s CPU; load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    try:
        main()
    except Exception:
        # sys.stderr is /dev/null by now: the reason a run stopped goes to the terminal.
        traceback.print_exc(file=sys.__stderr__)
        raise SystemExit(1) from None
