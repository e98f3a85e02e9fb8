"""Tables that hold the data model's own state: definitions, counters, views, jobs.

Business records live in tables generated from these definitions (``bastion.data.storage``);
the tables here are ordinary core tables, migrated with Alembic (revision 0003).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db import db
from bastion.models import utcnow


class ObjectRow(db.Model):
    """An object's stored definition: declared by a plugin (``plugin``) or custom."""

    __tablename__ = "data_objects"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    label_plural: Mapped[str] = mapped_column(String(100))
    icon: Mapped[str] = mapped_column(String(40), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    #: Declaring plugin ("core" for base objects); None for an administrator's object.
    plugin: Mapped[str | None] = mapped_column(String(100))
    name_field: Mapped[str | None] = mapped_column(String(50))
    #: JSON list of {name, check, message, field}: the declaring plugin's rules.
    rules: Mapped[str] = mapped_column(Text, default="[]")
    #: The same for rules administrators added (on any object; kept across plugin syncs).
    admin_rules: Mapped[str] = mapped_column(Text, default="[]")
    #: JSON list of lists of field names.
    duplicate_keys: Mapped[str] = mapped_column(Text, default="[]")
    #: Reads of its records are audited (issue 5's read audit).
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The declaring plugin no longer declares it; its table and data stay.
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    #: From the declaration (ObjectDefinition.navigation / .system_only).
    navigation: Mapped[bool] = mapped_column(Boolean, default=True)
    system_only: Mapped[bool] = mapped_column(Boolean, default=False)
    #: An administrator changed a label; a plugin's new declaration keeps theirs.
    relabelled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FieldRow(db.Model):
    """A field's stored definition; ``status`` "removed" hides it and keeps its column."""

    __tablename__ = "data_fields"
    __table_args__ = (UniqueConstraint("object_name", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    object_name: Mapped[str] = mapped_column(
        String(40), ForeignKey("data_objects.name", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(50))
    type: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(100))
    help_text: Mapped[str] = mapped_column(Text, default="")
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    unique: Mapped[bool] = mapped_column(Boolean, default=False)
    indexed: Mapped[bool] = mapped_column(Boolean, default=False)
    searchable: Mapped[bool] = mapped_column(Boolean, default=False)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: An encrypted field's exact-match lookup: a shadow column of HMAC digests.
    blind_index: Mapped[bool] = mapped_column(Boolean, default=False)
    personal_data: Mapped[bool] = mapped_column(Boolean, default=False)
    #: A plugin's computed field: users' writes are refused (revision 0007).
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    #: JSON of the default value (null: none).
    default: Mapped[str] = mapped_column(Text, default="null")
    #: JSON list of picklist choices.
    options: Mapped[str] = mapped_column(Text, default="[]")
    target: Mapped[str | None] = mapped_column(String(40))
    on_delete: Mapped[str] = mapped_column(String(10), default="restrict")
    max_length: Mapped[int | None] = mapped_column(Integer)
    #: Range bounds as decimal strings, exact for money.
    min_value: Mapped[str | None] = mapped_column(String(40))
    max_value: Mapped[str | None] = mapped_column(String(40))
    pattern: Mapped[str | None] = mapped_column(Text)
    formula: Mapped[str | None] = mapped_column(Text)
    formula_type: Mapped[str] = mapped_column(String(20), default="text")
    scale: Mapped[int] = mapped_column(Integer, default=2)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    format: Mapped[str] = mapped_column(String(60), default="{0}")
    section: Mapped[str] = mapped_column(String(60), default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    #: Declaring plugin, or None for a custom field an administrator added.
    plugin: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10), default="active")
    relabelled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DataRevision(db.Model):
    """One row whose number grows with every definition change: processes compare it."""

    __tablename__ = "data_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)


class Sequence(db.Model):
    """The next number of an auto-number field."""

    __tablename__ = "data_sequences"

    object_name: Mapped[str] = mapped_column(String(40), primary_key=True)
    field_name: Mapped[str] = mapped_column(String(50), primary_key=True)
    next_value: Mapped[int] = mapped_column(BigInteger, default=1)


class SavedView(db.Model):
    """A user's named list view: filters, sort and columns."""

    __tablename__ = "saved_views"
    __table_args__ = (UniqueConstraint("user_id", "object_name", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    object_name: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    #: The list's query string (filters, sort, columns), as the list page reads it.
    query: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ImportMapping(db.Model):
    """A saved CSV column mapping, chosen by name on later imports."""

    __tablename__ = "import_mappings"
    __table_args__ = (UniqueConstraint("object_name", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    object_name: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    #: JSON object: CSV column -> field API name.
    mapping: Mapped[str] = mapped_column(Text, default="{}")
    key_field: Mapped[str | None] = mapped_column(String(50))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ImportJob(db.Model):
    """A CSV import's progress and outcome, polled by the import page."""

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    object_name: Mapped[str] = mapped_column(String(40))
    file_name: Mapped[str] = mapped_column(String(255), default="")
    #: queued, running, done, failed
    status: Mapped[str] = mapped_column(String(10), default="queued")
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    processed_rows: Mapped[int] = mapped_column(Integer, default=0)
    created_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    #: JSON: options, per-row errors and duplicates.
    report: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SearchOutbox(db.Model):
    """Index work written in the record's own transaction, so a crash loses none of it."""

    __tablename__ = "search_outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    object_name: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[int] = mapped_column(BigInteger)
    #: "index" or "delete"
    action: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
