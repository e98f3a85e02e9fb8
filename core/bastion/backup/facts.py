"""What a database holds, read through one connection: revision, counts, definitions, audit head.

The backup reads these from the same snapshot it copies (the SQLite copy, or the
PostgreSQL transaction whose snapshot pg_dump uses), so the manifest describes exactly
the copied data; the restore reads them again from the restored database to compare.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, MetaData, Table, column, func, inspect, select, table

from bastion.audit.models import AuditArchive, AuditEntry

#: Columns of definition rows stored as JSON text, shown decoded in definitions.json.
_JSON_COLUMNS = {"rules", "admin_rules", "duplicate_keys", "default", "options"}


@dataclass
class DatabaseFacts:
    schema_revision: str | None
    record_counts: dict[str, int]
    audit_head: dict[str, Any] | None
    #: Object and field definitions, readable (definitions.json).
    definitions: dict[str, Any]
    #: Audit archive files the database's audit_archives table names.
    audit_archive_files: list[str] = field(default_factory=list)


def _plain(value: Any, name: str) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if name in _JSON_COLUMNS and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _rows(connection: Connection, name: str, order: list[str]) -> list[dict[str, Any]]:
    # Reflected, not the ORM model: a backup taken before `bastion upgrade` reads a
    # database of an older revision, whose tables may lack columns the model has.
    tbl = Table(name, MetaData(), autoload_with=connection)
    return [
        {key: _plain(value, key) for key, value in row._mapping.items()}
        for row in connection.execute(select(tbl).order_by(*(tbl.c[col] for col in order)))
    ]


def read_facts(connection: Connection) -> DatabaseFacts:
    """Everything the manifest states about the database behind ``connection``."""
    tables = set(inspect(connection).get_table_names())
    revision = None
    if "alembic_version" in tables:
        revision = connection.execute(
            select(column("version_num")).select_from(table("alembic_version"))
        ).scalar()
    objects = _rows(connection, "data_objects", ["name"]) if "data_objects" in tables else []
    fields = (
        _rows(connection, "data_fields", ["object_name", "position", "id"])
        if "data_fields" in tables
        else []
    )
    for item in objects:
        item["fields"] = [
            {k: v for k, v in row.items() if k not in {"object_name", "id"}}
            for row in fields
            if row["object_name"] == item["name"]
        ]
    counts = {}
    for item in objects:
        name = f"obj_{item['name']}"
        if name in tables:
            counts[item["name"]] = connection.execute(
                select(func.count()).select_from(table(name))
            ).scalar_one()
    head = None
    archives: list[str] = []
    if AuditEntry.__tablename__ in tables:
        last = connection.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        ).first()
        if last is not None:
            head = {"seq": int(last.seq), "hash": last.hash}
    if AuditArchive.__tablename__ in tables:
        archives = list(connection.execute(select(AuditArchive.file_name)).scalars())
        if head is None:
            # Every entry was archived and pruned: the head is the last archived one.
            last = connection.execute(
                select(AuditArchive.last_seq, AuditArchive.last_hash)
                .order_by(AuditArchive.last_seq.desc())
                .limit(1)
            ).first()
            if last is not None:
                head = {"seq": int(last.last_seq), "hash": last.last_hash}
    return DatabaseFacts(
        schema_revision=revision,
        record_counts=counts,
        audit_head=head,
        definitions={"objects": objects},
        audit_archive_files=archives,
    )
