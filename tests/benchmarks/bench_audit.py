#!/usr/bin/env python3
"""Measure the audit trail: what it adds to a record write, and how fast it verifies.

1. Record writes through the record service (create, then update of the same records)
   on a fresh installation, alternating rounds with the audit listener on and off, so
   both see the same database size and machine state. "On" is production: the entry is
   chained and inserted in the write's transaction and logged (to /dev/null here).
2. ``verify_chain`` over a chain of N entries (default 1,000,000), appended in batches
   the way commits append them.

    .venv/bin/python tests/benchmarks/bench_audit.py --data-dir /tmp/bench_audit
    .venv/bin/python tests/benchmarks/bench_audit.py --data-dir /tmp/bench_audit_pg \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_audit

Prints figures; asserts nothing. The data directory must not exist yet.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

PASSWORD = "quiet river 7 lantern"
ADMIN = "admin@example.com"


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
    initialize(app, admin_email=ADMIN, admin_password=PASSWORD, demo=False)
    # Production logs every entry; the cost of formatting stays, the terminal is spared.
    # (The JSON log handler writes to whatever sys.stderr is.)
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    return app


def bench_writes(app, rounds: int, per_round: int) -> None:
    from sqlalchemy import select

    from bastion.data.catalog import forget_catalog
    from bastion.data.events import LISTENERS_KEY
    from bastion.data.listeners import audit_change
    from bastion.data.records import RecordService
    from bastion.db import db
    from bastion.models import User
    from bastion.tokens import create_token

    listeners = app.extensions[LISTENERS_KEY]
    audit_log = logging.getLogger("bastion.audit")
    with app.app_context():
        admin = db.session.scalar(select(User).where(User.email == ADMIN))
        _, raw = create_token(admin, "audit benchmark")
    headers = {"Authorization": f"Bearer {raw}"}
    client = app.test_client()
    modes = ("audited", "audited, no log line", "not audited")
    timings: dict[tuple[str, str], list[float]] = {}
    for round_number in range(rounds * len(modes)):
        mode = modes[round_number % len(modes)]
        if mode != "not audited" and audit_change not in listeners:
            listeners.insert(0, audit_change)
        elif mode == "not audited" and audit_change in listeners:
            listeners.remove(audit_change)
        audit_log.setLevel(logging.WARNING if mode == "audited, no log line" else logging.NOTSET)
        with app.test_request_context():
            forget_catalog()
            user = db.session.scalar(select(User).where(User.email == ADMIN))
            records = RecordService(user)
            ids, versions = [], []
            started = time.perf_counter()
            for n in range(per_round):
                record = records.create("contacts", {"last_name": f"Bench {round_number}-{n}"})
                ids.append(record.id)
                versions.append(record.version)
            created = time.perf_counter()
            for record_id, version in zip(ids, versions, strict=True):
                records.update("contacts", record_id, {"first_name": "Ada"}, version=version)
            updated = time.perf_counter()
        timings.setdefault(("create", mode), []).append((created - started) / per_round)
        timings.setdefault(("update", mode), []).append((updated - created) / per_round)
        # The same through the REST API, in-process (no network): what a client waits for.
        started = time.perf_counter()
        for n in range(per_round):
            response = client.post(
                "/api/v1/contacts", json={"last_name": f"Api {round_number}-{n}"}, headers=headers
            )
            assert response.status_code == 201, response.get_data(as_text=True)
        timings.setdefault(("API create", mode), []).append(
            (time.perf_counter() - started) / per_round
        )
    if audit_change not in listeners:
        listeners.insert(0, audit_change)
    audit_log.setLevel(logging.NOTSET)
    for action in ("create", "update", "API create"):
        off = statistics.median(timings[(action, "not audited")]) * 1000
        figures = []
        for mode in modes[:2]:
            on = statistics.median(timings[(action, mode)]) * 1000
            figures.append(f"{mode} {on:.3f} ms (+{(on - off) / off * 100:.1f}%)")
        print(
            f"record {action}: not audited {off:.3f} ms; "
            + "; ".join(figures)
            + f" (medians of {rounds} rounds of {per_round})"
        )


def bench_verify(app, count: int, batch: int) -> None:
    from bastion.audit import store
    from bastion.audit.anchors import anchors_for
    from bastion.audit.entries import new_entry, request_context
    from bastion.audit.verify import verify_chain
    from bastion.db import db

    with app.app_context():
        anchors = anchors_for(app)
        key = anchors.chain_key()
        context = request_context("user:1")
        existing = db.session.execute(
            __import__("sqlalchemy").text("SELECT seq FROM audit_head")
        ).scalar()
        db.session.rollback()
        to_add = max(0, count - int(existing))
        started = time.perf_counter()
        while to_add:
            size = min(batch, to_add)
            entries = (
                new_entry(
                    "record.update",
                    context=context,
                    object_type="contacts",
                    object_id=n,
                    changes={"first_name": {"before": "Ada", "after": "Augusta"}},
                )
                for n in range(size)
            )
            # The same append a commit makes, without the per-commit logging.
            store.append(db.session(), entries, size, key)
            db.session.commit()
            to_add -= size
        filled = time.perf_counter() - started
        print(f"filled the chain to {count:,} entries in {filled:.1f} s")
        started = time.perf_counter()
        result = verify_chain(anchors)
        took = time.perf_counter() - started
        print(
            f"verify: {'OK' if result.ok else 'FAILED'} {result.count:,} entries in {took:.1f} s "
            f"({result.count / took:,.0f} entries/s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=300)
    parser.add_argument("--verify-entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000)
    args = parser.parse_args()
    if args.data_dir.exists():
        parser.error(f"{args.data_dir} exists; give a new folder")
    app = make_app(args.data_dir, args.database_url)
    bench_writes(app, args.rounds, args.per_round)
    if args.verify_entries:
        bench_verify(app, args.verify_entries, args.batch)


if __name__ == "__main__":
    main()
