#!/usr/bin/env python3
"""Measure what field encryption adds to reading and writing records.

Two custom objects with the same fields (a name and three personal fields: a text,
an e-mail address and a phone number) differ only in that the three are encrypted
(AES-256-GCM under the keyring's data key) in one of them, and also blind-indexed in a
third. On a fresh installation, in-process:

1. per value: encrypting, decrypting (the cipher alone, then with the typed value
   parsed back as the record service does), and a blind-index digest, in µs;
2. ``RecordService.get`` of one record, plain vs encrypted (p50 / p95, ms);
3. the REST API: ``GET /api/v1/<object>/<id>`` and a list page of 50 records;
4. writes: ``RecordService.create`` and ``update`` per record, plain, encrypted, and
   encrypted with blind indexes;
5. an exact-match lookup: ``eq`` on an indexed plain field vs through a blind index.

Rounds alternate between the objects so that both see the same machine state.

    .venv/bin/python tests/benchmarks/bench_encryption.py --data-dir /tmp/bench_enc
    .venv/bin/python tests/benchmarks/bench_encryption.py --data-dir /tmp/bench_enc_pg \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_enc

Prints figures; asserts nothing. The data directory must not exist yet.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

PASSWORD = "quiet river 7 lantern"
ADMIN = "admin@example.com"
PERSONAL = ("national_id", "private_email", "mobile")
OBJECTS = {"plain": "people_plain", "encrypted": "people_enc", "blind": "people_bidx"}


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
    # Production logs every request and audit entry: the formatting stays, the lines go
    # to /dev/null (the JSON handler writes to whatever sys.stderr is); figures to stdout.
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    return app


def define_objects(app) -> None:
    from bastion.data import definitions

    for kind, name in OBJECTS.items():
        secret = {"encrypted": kind != "plain"}
        if kind == "blind":
            secret["blind_index"] = True
        fields = [
            {"name": "name", "label": "Name", "type": "text"},
            {"name": "national_id", "label": "National id", "type": "text", **secret},
            {"name": "private_email", "label": "Private email", "type": "email", **secret},
            {"name": "mobile", "label": "Mobile", "type": "phone", **secret},
        ]
        if kind == "plain":
            fields[1]["indexed"] = True  # the plain counterpart of a blind index
        with app.test_request_context():
            definitions.create_object(
                {"name": name, "label": name, "label_plural": name, "fields": fields}
            )


def values(n: int) -> dict[str, Any]:
    return {
        "name": f"Person {n}",
        "national_id": f"ID-{n:08d}",
        "private_email": f"person{n}@example.org",
        "mobile": f"+44 7700 9{n % 100000:05d}",
    }


def percentiles(timings: list[float]) -> tuple[float, float]:
    ordered = sorted(timings)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]


def timed(count: int, call: Callable[[int], Any]) -> list[float]:
    """Milliseconds per call."""
    timings = []
    for index in range(count):
        started = time.perf_counter()
        call(index)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def service(app):
    from sqlalchemy import select

    from bastion.data.catalog import forget_catalog
    from bastion.data.records import RecordService
    from bastion.db import db
    from bastion.models import User

    forget_catalog()
    return RecordService(db.session.scalar(select(User).where(User.email == ADMIN)))


def bench_values(app, count: int) -> None:
    from bastion.data.catalog import current_catalog

    with app.test_request_context():
        meta = current_catalog().get(OBJECTS["blind"])
        print(f"per value ({count:,} each, µs):")
        for name in PERSONAL:
            figures = value_costs(meta, meta.fields[name], count)
            print(
                f"  {meta.fields[name].type:6} "
                + "   ".join(f"{label} {took:6.1f}" for label, took in figures.items())
            )


def value_costs(meta, item, count: int) -> dict[str, float]:
    """µs per value of each step the record service takes for one field's value."""
    from bastion.data import blind_index
    from bastion.data.records.reading import _decrypt
    from bastion.data.values import ValueContext, parse
    from bastion.mfa import cipher

    box = cipher()
    typed = parse(item, values(7)[item.name])
    context = f"{meta.name}.{item.name}:7"
    plain = str(typed)
    tokens = [box.encrypt(plain, context=context) for _ in range(count)]
    steps = {
        "encrypt": lambda: [box.encrypt(plain, context=context) for _ in tokens],
        "decrypt": lambda: [box.decrypt(t, context=context) for t in tokens],
        "decrypt+parse (a read)": lambda: [
            _decrypt(meta, item, 7, t, ValueContext()) for t in tokens
        ],
        "blind-index digest": lambda: [blind_index.digest(meta, item, typed) for _ in tokens],
    }
    return {label: min_of(3, step) * 1_000_000 / count for label, step in steps.items()}


def min_of(repeats: int, call: Callable[[], Any]) -> float:
    """Seconds of the fastest of ``repeats`` runs (the least disturbed by the machine)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def fill(app, per_object: int) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = {}
    with app.test_request_context():
        records = service(app)
        for kind, name in OBJECTS.items():
            rows = [values(n) for n in range(per_object)]
            ids[kind] = [r for r in records.create_many(name, rows)]
    return ids


def bench_reads(app, ids: dict[str, list[int]], count: int, rounds: int) -> None:
    from bastion.tokens import create_token

    with app.app_context():
        from sqlalchemy import select

        from bastion.db import db
        from bastion.models import User

        user = db.session.scalar(select(User).where(User.email == ADMIN))
        _, raw = create_token(user, "bench")
        db.session.commit()
    headers = {"Authorization": f"Bearer {raw}"}
    client = app.test_client()
    kinds = ("plain", "encrypted")
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for kind in kinds:
            for what, took in read_round(app, client, headers, kind, ids[kind], count).items():
                results.setdefault((what, kind), []).extend(took)
    print("reads (ms, p50 / p95; 3 encrypted fields vs none):")
    for what in ("service get", "API GET one", "API list of 50"):
        p50s = {kind: percentiles(results[(what, kind)]) for kind in kinds}
        plain, enc = p50s["plain"], p50s["encrypted"]
        added = enc[0] - plain[0]
        print(
            f"  {what:15} plain {plain[0]:6.2f} / {plain[1]:6.2f}   encrypted {enc[0]:6.2f} / "
            f"{enc[1]:6.2f}   added {added:+.2f} ms ({added / plain[0] * 100:+.0f}%)"
        )


def read_round(app, client, headers, kind: str, chosen: list[int], count: int):
    """Milliseconds of each kind of read of one object's records."""
    name = OBJECTS[kind]

    def api_one(i: int) -> None:
        _ok(client.get(f"/api/v1/{name}/{chosen[i % len(chosen)]}", headers=headers))

    def api_list(_i: int) -> None:
        _ok(client.get(f"/api/v1/{name}?limit=50&sort=id", headers=headers))

    with app.test_request_context():
        records = service(app)
        got = timed(count, lambda i: records.get(name, chosen[i % len(chosen)]))
    return {
        "service get": got,
        "API GET one": timed(count, api_one),
        "API list of 50": timed(max(1, count // 10), api_list),
    }


def _ok(response) -> None:
    if response.status_code != 200:
        raise SystemExit(f"{response.status_code}: {response.get_data(as_text=True)[:300]}")


def bench_writes(app, rounds: int, per_round: int) -> None:
    results: dict[tuple[str, str], list[float]] = {}
    for round_number in range(rounds):
        for kind, name in OBJECTS.items():
            with app.test_request_context():
                records = service(app)
                made = []
                started = time.perf_counter()
                for n in range(per_round):
                    made.append(records.create(name, values(10_000 + round_number * per_round + n)))
                created = time.perf_counter()
                for record in made:
                    changes = {"national_id": f"NEW-{record.id}", "mobile": "+44 7700 900123"}
                    records.update(name, record.id, changes, version=record.version)
                updated = time.perf_counter()
            results.setdefault(("create", kind), []).append((created - started) / per_round)
            results.setdefault(("update", kind), []).append((updated - created) / per_round)
    print(f"writes (ms per record, median of {rounds} rounds of {per_round}):")
    for action in ("create", "update"):
        plain = statistics.median(results[(action, "plain")]) * 1000
        line = f"  {action:6} plain {plain:6.3f}"
        for kind in ("encrypted", "blind"):
            took = statistics.median(results[(action, kind)]) * 1000
            label = "encrypted" if kind == "encrypted" else "+ blind indexes"
            line += f"   {label} {took:6.3f} ({(took / plain - 1) * 100:+.0f}%)"
        print(line)


def bench_lookup(app, per_object: int, count: int) -> None:
    from bastion.data.query import Filter

    print(f"exact-match lookup of one record among {per_object:,} (ms, p50 / p95):")
    with app.test_request_context():
        records = service(app)
        for kind, label in (("plain", "indexed plain column"), ("blind", "blind index")):
            name = OBJECTS[kind]

            def find(i: int, name: str = name) -> None:
                wanted = values((i * 7919) % per_object)["national_id"]
                page = records.query(name, filters=[Filter("national_id", "eq", wanted)])
                if len(page.records) != 1:
                    raise SystemExit(f"{name}: {wanted} found {len(page.records)} times")

            p50, p95 = percentiles(timed(count, find))
            print(f"  {label:22} {p50:6.2f} / {p95:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--records", type=int, default=2000, help="records per object")
    parser.add_argument("--reads", type=int, default=300, help="reads per round and kind")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=200, help="writes per round")
    parser.add_argument("--values", type=int, default=20_000, help="values per cipher figure")
    args = parser.parse_args()
    if args.data_dir.exists():
        parser.error(f"{args.data_dir} exists; give a new folder")
    app = make_app(args.data_dir, args.database_url)
    define_objects(app)
    bench_values(app, args.values)
    ids = fill(app, args.records)
    bench_reads(app, ids, args.reads, args.rounds)
    bench_writes(app, args.rounds, args.per_round)
    bench_lookup(app, args.records, args.reads)


if __name__ == "__main__":
    main()
