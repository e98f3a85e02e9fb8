#!/usr/bin/env python3
"""Fill a Bastion installation with accounts, contacts and activities for benchmarks.

Creates (or reuses) a demo installation in --data-dir and writes every record through
the record service as the system actor, in transactions of --batch records, so the
data passes the same validation, events and search outbox as real input. Owners are
spread over the demo users, so "filtered by owner" lists look like a real team's.

    .venv/bin/python tests/benchmarks/generate_data.py --data-dir /tmp/bench --contacts 100000
    .venv/bin/python tests/benchmarks/generate_data.py --data-dir /tmp/bench --contacts 1000000

Prints records per second; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

PASSWORD = "quiet river 7 lantern"
ADMIN = "admin@example.com"
FIRST = (
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Edsger",
    "Frances",
    "John",
    "Radia",
    "Tim",
    "Sophie",
    "Zoë",
    "Łukasz",
    "Noor",
    "Kwame",
    "Mei",
    "Aiko",
    "Olu",
    "Priya",
    "Mateo",
    "Ines",
    "Sven",
    "Hana",
    "Omar",
    "Leila",
)
LAST = (
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Dijkstra",
    "Allen",
    "Backus",
    "Perlman",
    "Berners-Lee",
    "Wilson",
    "Müller",
    "Kowalski",
    "Nakamura",
    "Mensah",
    "Okafor",
    "Sharma",
    "García",
    "Novak",
    "Haddad",
    "Lindqvist",
    "Dubois",
    "Rossi",
    "Petrov",
    "Kim",
    "Silva",
    "Ångström",
)
SUFFIXES = ("Bank", "Health", "Group", "AG", "Ltd")
INDUSTRIES = ("Banking", "Insurance", "Healthcare", "Public sector", "Retail", "Technology")
CITIES = ("Berlin", "Paris", "Zürich", "Kraków", "Lisbon", "Oslo", "Vienna", "Madrid")


def ensure_installation(data_dir: Path) -> None:
    from bastion.provision import MARKER

    if (data_dir / MARKER).exists():
        return
    env = {**os.environ, "BASTION_DATA_DIR": str(data_dir), "BASTION_LOG_LEVEL": "WARNING"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bastion",
            "init",
            "--admin-email",
            ADMIN,
            "--admin-password-file",
            "-",
            "--demo",
        ],
        input=PASSWORD,
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    ensure_installation(data_dir)
    os.environ["BASTION_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("BASTION_LOG_LEVEL", "WARNING")

    from sqlalchemy import select

    from bastion.app import create_app
    from bastion.data.records import RecordService
    from bastion.db import db
    from bastion.models import User

    app = create_app()
    rng = random.Random(args.seed)
    n_accounts = max(1, args.contacts // 10)
    n_activities = args.contacts // 2
    with app.test_request_context():
        owners = list(db.session.scalars(select(User.id).where(User.active)))

    def write(object_name: str, total: int, make) -> list[int]:
        ids: list[int] = []
        started = time.perf_counter()
        done = 0
        while done < total:
            size = min(args.batch, total - done)
            rows = [make(done + i) for i in range(size)]
            with app.test_request_context():
                service = RecordService(None, system=True)
                with service.atomic():
                    if hasattr(service, "create_many"):
                        ids.extend(service.create_many(object_name, rows))
                    else:
                        ids.extend(service.create(object_name, row).id for row in rows)
            done += size
            rate = done / (time.perf_counter() - started)
            print(f"\r{object_name}: {done}/{total} ({rate:,.0f}/s)", end="", flush=True)
        print()
        return ids

    accounts = write(
        "accounts",
        n_accounts,
        lambda i: {
            "name": f"{rng.choice(LAST)} {rng.choice(SUFFIXES)} {i}",
            "industry": rng.choice(INDUSTRIES),
            "city": rng.choice(CITIES),
            "owner": rng.choice(owners),
        },
    )
    contacts = write(
        "contacts",
        args.contacts,
        lambda i: {
            "first_name": rng.choice(FIRST),
            "last_name": f"{rng.choice(LAST)}{'' if i % 3 else i}",
            "email": f"person{i}@example.com",
            "account": rng.choice(accounts),
            "title": rng.choice(("CFO", "CTO", "Head of Risk", "Nurse", "Clerk", None)),
            "owner": rng.choice(owners),
        },
    )
    write(
        "activities",
        n_activities,
        lambda i: {
            "kind": rng.choice(("task", "call", "meeting", "note")),
            "subject": f"Follow up {i}",
            "related_to": {"object": "contacts", "id": rng.choice(contacts)},
            "done": rng.random() < 0.5,
            "owner": rng.choice(owners),
        },
    )
    print(f"Generated {n_accounts} accounts, {args.contacts} contacts, {n_activities} activities.")


if __name__ == "__main__":
    main()
