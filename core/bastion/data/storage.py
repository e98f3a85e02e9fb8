"""Real tables and columns for the definitions, kept in step on SQLite and PostgreSQL.

Each object has a table ``obj_<name>`` with the standard columns and one column per
stored field (a currency field adds ``<name>__currency``, a record link
``<name>__object``); a many-to-many field has a junction table. Indexes back indexed,
unique and lookup fields. DDL runs on the caller's connection inside its transaction,
which both databases roll back, so a failed change leaves nothing half done.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable
from sqlalchemy.types import TypeDecorator

from bastion.data import blind_index
from bastion.data.catalog import NOT_IN_ROW, FieldMeta, ObjectMeta, junction_table_name

MAX_IDENTIFIER = 63  # PostgreSQL's limit; SQLite has none


def quoted(connection: Connection, name: str) -> str:
    """``name`` as an identifier in the connection's SQL dialect (quoted when needed)."""
    return connection.dialect.identifier_preparer.quote(name)


def identifier(name: str) -> str:
    """``name`` if short enough for PostgreSQL, else a prefix with a stable hash.

    The hash is of the whole name, so two long names sharing their first 52 characters
    still get different identifiers (definitions also refuse any name already taken).
    """
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_IDENTIFIER - 11]}_{digest}"


def junction_name(object_name: str, field_name: str) -> str:
    """The table of a many-to-many field's links."""
    return identifier(junction_table_name(object_name, field_name))


def _junction_index_name(junction: str) -> str:
    return identifier(f"ix_{junction}_target")


def object_storage_names(object_name: str) -> set[str]:
    """Every table and index name an object's own storage takes, now or later."""
    table = f"obj_{object_name}"
    # PostgreSQL names the primary key's index and the id sequence after the table.
    implicit = {f"{table}_pkey", f"{table}_id_seq"}
    return {table, *implicit, *_object_index_names(object_name)}


def _object_index_names(object_name: str) -> set[str]:
    """The object's own indexes: by owner, by change time, by its name field."""
    names = ("ix_{}_owner", "ix_{}_updated_at", "nx_{}", "onx_{}")
    return {identifier(name.format(object_name)) for name in names}


def field_storage_names(object_name: str, field_name: str, kind: str) -> set[str]:
    """Every table and index name a field of type ``kind`` takes, now or once indexed."""
    if kind == "many_to_many":
        junction = junction_name(object_name, field_name)
        return {junction, _junction_index_name(junction)}
    if kind in NOT_IN_ROW:
        return set()
    return set(field_index_names(object_name, field_name))


def existing_names(connection: Connection) -> set[str]:
    """Names of every table, index, sequence and view: they share one namespace."""
    if connection.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master"
    else:
        query = (
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema()"
        )
    return set(connection.execute(text(query)).scalars())


class ScaledDecimal(TypeDecorator):
    """An exact decimal stored as a scaled integer: SQLite has no exact numeric type."""

    impl = BigInteger
    cache_ok = True

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def process_bind_param(self, value: Any, dialect: Any) -> int | None:
        if value is None:
            return None
        return int(Decimal(value).scaleb(self.scale).to_integral_value())

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)).scaleb(-self.scale)


class UtcDateTime(TypeDecorator):
    """Datetimes stored as naive UTC and handed back aware, on both databases."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


TEXT_LENGTHS = {"text": 255, "email": 254, "phone": 40, "url": 2048, "picklist": 255}


def column_type(meta: FieldMeta) -> Any:
    if meta.encrypted:
        return Text()  # ciphertext, whatever the type
    kind = meta.type
    if kind in TEXT_LENGTHS:
        return String(max(meta.max_length or 0, TEXT_LENGTHS[kind]))
    if kind in {"long_text", "multi_picklist"}:
        return Text()
    if kind in {"integer", "lookup", "record_link"}:
        return BigInteger()
    if kind in {"decimal", "currency", "percent"}:
        return ScaledDecimal(meta.scale)
    if kind == "date":
        return Date()
    if kind == "datetime":
        return UtcDateTime()
    if kind == "boolean":
        return Boolean()
    if kind == "auto_number":
        return String(64)
    raise ValueError(f"Type {kind} has no column.")


def field_columns(meta: FieldMeta, *, with_fk: bool = True) -> list[Column]:
    """The columns a field occupies in its object's table (none for formulas, m2m)."""
    if not meta.in_row or meta.standard or meta.purged:
        return []
    foreign = []
    if with_fk and meta.type == "lookup" and not meta.encrypted and meta.target:
        foreign = [ForeignKey(f"obj_{meta.target}.id", name=None)]
    columns = [Column(meta.name, column_type(meta), *foreign, nullable=True)]
    if meta.type == "currency" and not meta.encrypted:
        columns.append(Column(f"{meta.name}__currency", String(3), nullable=True))
    if meta.type == "record_link" and not meta.encrypted:
        columns.append(Column(f"{meta.name}__object", String(40), nullable=True))
    if blind_index.has_index(meta):  # digests of the plaintext, for exact matches
        columns.append(Column(blind_index.column_name(meta.name), String(64), nullable=True))
    return columns


def field_indexes(meta: ObjectMeta, item: FieldMeta, table: Table) -> list[Index]:
    if not item.in_row or item.standard or item.purged:
        return []
    base = f"{meta.name}_{item.name}"
    if item.encrypted:  # ciphertext is never indexed; a blind index's digests are
        if not blind_index.has_index(item):
            return []
        column = blind_index.column_name(item.name)
        return [Index(identifier(f"ix_{meta.name}_{column}"), table.c[column])]
    if item.unique or item.type == "auto_number":
        return [Index(identifier(f"uq_{base}"), table.c[item.name], unique=True)]
    if item.type == "record_link":
        return [
            Index(identifier(f"ix_{base}"), table.c[f"{item.name}__object"], table.c[item.name])
        ]
    if item.type == "lookup":
        return [Index(identifier(f"ix_{base}"), table.c[item.name])]
    if item.indexed:
        # The second index serves the commonest list: one owner's records sorted by
        # this field. Without it the database sorts all of that owner's rows per page.
        return [
            Index(identifier(f"ix_{base}"), table.c[item.name]),
            Index(identifier(f"ox_{base}"), table.c.owner, table.c[item.name], table.c.id),
        ]
    return []


def _standard_columns() -> list[Column]:
    return [
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("owner", BigInteger, ForeignKey("users.id"), nullable=True),
        Column("created_at", UtcDateTime, nullable=False),
        Column("created_by", BigInteger, ForeignKey("users.id", ondelete="SET NULL")),
        Column("updated_at", UtcDateTime, nullable=False),
        Column("updated_by", BigInteger, ForeignKey("users.id", ondelete="SET NULL")),
        Column("version", Integer, nullable=False, default=1),
    ]


def build_tables(
    objects: dict[str, ObjectMeta],
) -> tuple[MetaData, dict[str, Table], dict[tuple[str, str], Table]]:
    metadata = MetaData()
    Table("users", metadata, Column("id", Integer, primary_key=True))
    tables: dict[str, Table] = {}
    junctions: dict[tuple[str, str], Table] = {}
    for meta in objects.values():
        columns = _standard_columns()
        for item in meta.all_fields.values():
            columns.extend(field_columns(item))
        # AUTOINCREMENT: SQLite would otherwise hand a deleted newest record's id to the
        # next one, and audit entries, links and "update by id" imports would point at it.
        table = Table(meta.table_name, metadata, *columns, sqlite_autoincrement=True)
        # Lists filter by owner and page by id; updated_at backs "recently changed".
        Index(identifier(f"ix_{meta.name}_owner"), table.c.owner, table.c.id)
        Index(identifier(f"ix_{meta.name}_updated_at"), table.c.updated_at)
        if meta.name_field and meta.name_field in table.c:
            name_item = meta.all_fields[meta.name_field]
            if not (name_item.unique or name_item.indexed or name_item.encrypted):
                # Lists sort by the name field by default, often within one owner's records.
                Index(identifier(f"nx_{meta.name}"), table.c[meta.name_field], table.c.id)
                Index(
                    identifier(f"onx_{meta.name}"),
                    table.c.owner,
                    table.c[meta.name_field],
                    table.c.id,
                )
        for item in meta.all_fields.values():
            field_indexes(meta, item, table)  # an Index on a table's columns joins that table
        tables[meta.name] = table
    for meta in objects.values():
        for item in meta.all_fields.values():
            if item.type == "many_to_many" and not item.purged and item.target in tables:
                junctions[(meta.name, item.name)] = _junction(metadata, meta, item)
    return metadata, tables, junctions


def _junction(metadata: MetaData, meta: ObjectMeta, item: FieldMeta) -> Table:
    name = junction_name(meta.name, item.name)
    return Table(
        name,
        metadata,
        Column(
            "record_id",
            BigInteger,
            ForeignKey(f"{meta.table_name}.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column(
            "target_id",
            BigInteger,
            ForeignKey(f"obj_{item.target}.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        Index(_junction_index_name(name), "target_id"),
    )


# --------------------------------------------------------------------------- DDL


def existing_tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def existing_columns(connection: Connection, table: str) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns(table)}


def create_object_table(connection: Connection, table: Table) -> None:
    connection.execute(CreateTable(table))
    for index in table.indexes:
        connection.execute(CreateIndex(index))


def add_field_storage(
    connection: Connection, meta: ObjectMeta, item: FieldMeta, tables: dict[str, Table]
) -> None:
    """Add a field's columns, index or junction table to an existing object table."""
    table = tables[meta.name]
    dialect = connection.dialect
    if item.type == "many_to_many":
        # A catalog that already knows the field has built its junction table.
        junction = table.metadata.tables.get(junction_name(meta.name, item.name))
        if junction is None and item.target in tables:
            junction = _junction(table.metadata, meta, item)
        if junction is not None:
            create_object_table(connection, junction)
        return
    present = existing_columns(connection, meta.table_name)
    for column in field_columns(item, with_fk=False):
        if column.name in present:
            continue
        spec = str(CreateColumn(column).compile(dialect=dialect))
        if column.name == item.name and item.type == "lookup" and not item.encrypted:
            spec += f" REFERENCES {quoted(connection, f'obj_{item.target}')} (id)"
        table_name = quoted(connection, meta.table_name)
        connection.execute(text(f"ALTER TABLE {table_name} ADD COLUMN {spec}"))
    scratch = Table(
        meta.table_name,
        MetaData(),
        Column("id", BigInteger),
        Column("owner", BigInteger),
        *[Column(c.name, c.type) for c in field_columns(item, with_fk=False)],
    )
    for index in field_indexes(meta, item, scratch):
        connection.execute(CreateIndex(index))


def field_index_names(object_name: str, field_name: str) -> tuple[str, ...]:
    return (
        identifier(f"uq_{object_name}_{field_name}"),
        identifier(f"ix_{object_name}_{field_name}"),
        identifier(f"ox_{object_name}_{field_name}"),
        identifier(f"ix_{object_name}_{blind_index.column_name(field_name)}"),
    )


def drop_field_indexes(connection: Connection, meta: ObjectMeta, item: FieldMeta) -> None:
    names = field_index_names(meta.name, item.name)
    for index in inspect(connection).get_indexes(meta.table_name):
        if index["name"] in names:
            drop_index(connection, index["name"])


def drop_index(connection: Connection, name: str) -> None:
    connection.execute(text(f"DROP INDEX {quoted(connection, name)}"))


def generated_index_names(meta: ObjectMeta) -> set[str]:
    """Names of every index the platform may create on ``meta``'s table."""
    names = _object_index_names(meta.name)
    for item in meta.all_fields.values():
        if not item.standard:
            names.update(field_index_names(meta.name, item.name))
    return names


def index_drift(
    connection: Connection, meta: ObjectMeta, table: Table
) -> tuple[list[str], list[Index]]:
    """The generated indexes of ``meta``'s table to drop and to create.

    Stale ones are those its definitions no longer call for (a field no longer unique
    or indexed, another name field) or call for with other columns or uniqueness;
    indexes anyone else created are left alone.
    """
    wanted = {index.name: index for index in table.indexes}
    generated = generated_index_names(meta)
    found = {ix["name"]: ix for ix in inspect(connection).get_indexes(meta.table_name)}
    stale = [
        name
        for name, ix in found.items()
        if name in generated and not _same_index(ix, wanted.get(name))
    ]
    missing = [index for name, index in wanted.items() if name not in found or name in stale]
    return stale, missing


def _same_index(found: dict[str, Any], index: Index | None) -> bool:
    return (
        index is not None
        and list(found["column_names"]) == [column.name for column in index.columns]
        and bool(found["unique"]) == bool(index.unique)
    )


def purge_field_storage(connection: Connection, meta: ObjectMeta, item: FieldMeta) -> bool:
    """Erase a removed field's data; drop its columns where the database allows it.

    Returns whether the columns are gone (SQLite cannot drop a column that carries a
    foreign key; its values are erased instead and the empty column stays).
    """
    if item.type == "many_to_many":
        name = junction_name(meta.name, item.name)
        if name in existing_tables(connection):
            connection.execute(text(f"DROP TABLE {quoted(connection, name)}"))
        return True
    if not item.in_row:
        return True
    drop_field_indexes(connection, meta, item)
    names = [c.name for c in field_columns(item, with_fk=False)]
    present = existing_columns(connection, meta.table_name)
    names = [name for name in names if name in present]
    if connection.dialect.name == "sqlite" and item.type == "lookup":
        assignments = ", ".join(f"{quoted(connection, name)} = NULL" for name in names)
        # Identifiers come from validated definitions (snake_case), and are quoted besides.
        table_name = quoted(connection, meta.table_name)
        connection.execute(text(f"UPDATE {table_name} SET {assignments}"))  # noqa: S608
        return False
    table_name = quoted(connection, meta.table_name)
    for name in names:
        connection.execute(text(f"ALTER TABLE {table_name} DROP COLUMN {quoted(connection, name)}"))
    return True


def add_blind_index_storage(connection: Connection, meta: ObjectMeta, item: FieldMeta) -> None:
    """Add a field's shadow column and its index, where missing (the index was turned on)."""
    column = blind_index.column_name(item.name)
    table_name = quoted(connection, meta.table_name)
    if column not in existing_columns(connection, meta.table_name):
        spec = str(CreateColumn(Column(column, String(64))).compile(dialect=connection.dialect))
        connection.execute(text(f"ALTER TABLE {table_name} ADD COLUMN {spec}"))
    present = {ix["name"] for ix in inspect(connection).get_indexes(meta.table_name)}
    scratch = Table(meta.table_name, MetaData(), Column("id", BigInteger), Column(column, String))
    for index in field_indexes(meta, item, scratch):
        if index.name not in present:
            connection.execute(CreateIndex(index))


def drop_blind_index_storage(connection: Connection, meta: ObjectMeta, field_name: str) -> None:
    """Drop a field's blind index and its shadow column (the index was turned off)."""
    index_name = identifier(f"ix_{meta.name}_{blind_index.column_name(field_name)}")
    if index_name in {ix["name"] for ix in inspect(connection).get_indexes(meta.table_name)}:
        drop_index(connection, index_name)
    column = blind_index.column_name(field_name)
    if column in existing_columns(connection, meta.table_name):
        connection.execute(
            text(
                f"ALTER TABLE {quoted(connection, meta.table_name)} "
                f"DROP COLUMN {quoted(connection, column)}"
            )
        )


def widen_text_column(connection: Connection, meta: ObjectMeta, item: FieldMeta) -> None:
    """Make a text column hold the field's (raised) ``max_length``, on PostgreSQL.

    Only ever widened: a longer varchar keeps its rows and indexes as they are, and a
    lower limit is enforced when values are checked. SQLite ignores lengths.
    """
    if connection.dialect.name != "postgresql" or not item.in_row or item.purged:
        return
    wanted = column_type(item)
    if not isinstance(wanted, String) or isinstance(wanted, Text) or wanted.length is None:
        return
    found = [c for c in inspect(connection).get_columns(meta.table_name) if c["name"] == item.name]
    length = getattr(found[0]["type"], "length", None) if found else None
    if length is None or length >= wanted.length:
        return
    kind = wanted.compile(dialect=connection.dialect)
    connection.execute(
        text(
            f"ALTER TABLE {quoted(connection, meta.table_name)} "
            f"ALTER COLUMN {quoted(connection, item.name)} TYPE {kind}"
        )
    )
