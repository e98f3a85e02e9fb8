"""References to records that go: restrict, clear or re-point (merge) the lookups,
record links and many-to-many links of other records that point at them.

Those records can be many (every contact of an account), so each kind of reference is
changed with one set-based statement per record going, and the ids it touched give one
update event per changed record (``RecordChange`` with ``cause``): the audit trail says
which record lost or changed which reference, and the search index re-reads each one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete, func, insert, select, update

from bastion.data.catalog import Catalog, FieldMeta, ObjectMeta
from bastion.data.errors import Conflict
from bastion.data.events import Cause, RecordChange
from bastion.data.values import RecordLink
from bastion.db import db
from bastion.models import utcnow


@dataclass
class _Released:
    """The changes a delete or merge makes to other records, one per record."""

    cause: Cause
    actor: Any
    stamp: dict[str, Any]
    found: dict[tuple[str, int], RecordChange] = field(default_factory=dict)

    def add(self, source: str, record_id: int, name: str, before: Any, after: Any) -> None:
        change = self.found.get((source, record_id))
        if change is None:
            change = RecordChange(
                source, "update", record_id, self.actor, before={}, after={}, cause=self.cause
            )
            self.found[(source, record_id)] = change
        change.before[name] = before  # type: ignore[index]
        change.after[name] = after  # type: ignore[index]
        change.changed += (name,)


class ReferencesMixin:
    """What happens to the references to records that are deleted or merged away."""

    def _release_references(
        self, meta: ObjectMeta, ids: list[int], into: int | None = None
    ) -> None:
        """Before records go: refuse (a restricting lookup points at them), else clear
        (delete) or re-point to ``into`` (merge) every reference to them, and announce
        each record changed.

        The records going keep their own references (they leave with them), and the
        survivor of a merge keeps its version: merge() gives it a new one, once.
        """
        references = list(_references_to(self.catalog, meta.name))
        if into is None:
            for source, item in references:
                if item.type == "lookup" and item.on_delete == "restrict" and not item.removed:
                    column = self.catalog.table(source.name).c[item.name]
                    self._refuse_referenced(meta, source, item, column.in_(ids))
        actor_id = self._acting_user_id()
        released = _Released(
            Cause("delete" if into is None else "merge", meta.name, tuple(ids), into),
            self.user,
            {"updated_at": utcnow(), "updated_by": actor_id},
        )
        for source, item in references:
            if item.type == "lookup" and not item.encrypted:
                self._release_lookup(meta, source, item, ids, into, released)
            elif item.type == "many_to_many":
                self._release_links(meta, source, item, ids, into, released)
        for source, item in _record_links(self.catalog):
            self._release_record_link(meta, source, item, ids, into, released)
        if released.found:
            self._emit_many(list(released.found.values()))

    def _release_lookup(
        self,
        meta: ObjectMeta,
        source: ObjectMeta,
        item: FieldMeta,
        ids: list[int],
        into: int | None,
        released: _Released,
    ) -> None:
        table = self.catalog.table(source.name)
        column = table.c[item.name]
        for old in ids:  # one statement per record going: each change knows its before
            statement = update(table).where(column == old, *_others(meta, source, table, ids, into))
            values = {item.name: into, "version": table.c.version + 1, **released.stamp}
            changed = db.session.execute(statement.values(values).returning(table.c.id))
            for record_id in changed.scalars():
                released.add(source.name, record_id, item.name, old, into)
        if into is not None and source.name == meta.name:
            # The survivor must not become its own parent: its link is cleared.
            old = db.session.scalar(select(column).where(table.c.id == into, column.in_(ids)))
            if old is not None:
                db.session.execute(
                    update(table).where(table.c.id == into).values({item.name: None})
                )
                released.add(source.name, into, item.name, old, None)

    def _release_record_link(
        self,
        meta: ObjectMeta,
        source: ObjectMeta,
        item: FieldMeta,
        ids: list[int],
        into: int | None,
        released: _Released,
    ) -> None:
        table = self.catalog.table(source.name)
        column, kind = table.c[item.name], table.c[f"{item.name}__object"]
        cleared = {item.name: None, f"{item.name}__object": None}
        after = None if into is None else RecordLink(meta.name, into)
        for old in ids:
            match = (kind == meta.name) & (column == old)
            statement = update(table).where(match, *_others(meta, source, table, ids, into))
            values = {**cleared} if into is None else {item.name: into}
            values.update({"version": table.c.version + 1, **released.stamp})
            changed = db.session.execute(statement.values(values).returning(table.c.id))
            for record_id in changed.scalars():
                released.add(source.name, record_id, item.name, RecordLink(meta.name, old), after)
        if into is not None and source.name == meta.name:  # the survivor does not link to itself
            match = (kind == meta.name) & column.in_(ids) & (table.c.id == into)
            old = db.session.scalar(select(column).where(match))
            if old is not None:
                db.session.execute(update(table).where(table.c.id == into).values(cleared))
                released.add(source.name, into, item.name, RecordLink(meta.name, old), None)

    def _release_links(
        self,
        meta: ObjectMeta,
        source: ObjectMeta,
        item: FieldMeta,
        ids: list[int],
        into: int | None,
        released: _Released,
    ) -> None:
        """Many-to-many links to the records going: removed (delete) or moved to the
        survivor (merge). The database would drop them on its own (ON DELETE CASCADE),
        unannounced; removing them here tells who lost which link."""
        junction = self.catalog.junction(source.name, item.name)
        table = self.catalog.table(source.name)
        pointing = junction.c.target_id.in_(ids)
        if source.name == meta.name:
            pointing = pointing & junction.c.record_id.not_in(ids)
        # Delete first and learn from RETURNING what went: a link added meanwhile by
        # another transaction is either in this answer or not deleted at all.
        removed = db.session.execute(
            delete(junction).where(pointing).returning(junction.c.record_id, junction.c.target_id)
        ).all()
        if not removed:
            return
        before: dict[int, list[int]] = {}
        for record_id, target_id in removed:
            before.setdefault(record_id, []).append(target_id)
        kept = db.session.execute(
            select(junction.c.record_id, junction.c.target_id).where(
                junction.c.record_id.in_(sorted(before))
            )
        )
        for record_id, target_id in kept:
            before[record_id].append(target_id)
        for targets in before.values():
            targets.sort()
        stamped = update(table).where(table.c.id.in_(sorted(before)))
        if into is not None:
            stamped = stamped.where(table.c.id != into)
        db.session.execute(stamped.values({"version": table.c.version + 1, **released.stamp}))
        gone = set(ids)
        fresh: list[dict[str, int]] = []
        for record_id, targets in before.items():
            after = [target for target in targets if target not in gone]
            itself = source.name == meta.name and record_id == into
            if into is not None and into not in after and not itself:
                fresh.append({"record_id": record_id, "target_id": into})
                after = sorted([*after, into])
            released.add(source.name, record_id, item.name, targets, after)
        if fresh:
            db.session.execute(insert(junction), fresh)

    def _refuse_referenced(
        self, meta: ObjectMeta, source: ObjectMeta, item: FieldMeta, pointing: Any
    ) -> None:
        """Conflict when records refer through a restricting lookup to those going.

        The number said is of the referring records the user may see: a count of all of
        them would tell how many records exist beyond the user's scope.
        """
        table = self.catalog.table(source.name)
        counting = select(func.count()).select_from(table).where(pointing)
        total = db.session.scalar(counting) or 0
        if not total:
            return
        visible = total
        if not self.system:
            visible = 0
            seen = self.can(source.name, "read") and self.field_access(source).get(item.name)
            if seen and seen != "hidden":
                visible = db.session.scalar(self._in_scope(source, table, counting)) or 0
        what = f"this {meta.label.lower()}"
        if visible == total:
            raise Conflict(
                f"{total} {source.label_plural.lower()} refer to {what} in {item.label}; "
                "reassign or delete them first."
            )
        if visible:
            raise Conflict(
                f"{visible} {source.label_plural.lower()} refer to {what} in {item.label}, "
                "and other records you cannot see also refer to it; reassign or delete the "
                "ones you see, and ask someone who can see the others."
            )
        raise Conflict(
            f"Other records you cannot see refer to {what}, so it cannot be deleted; ask "
            "someone who can see them to reassign or delete them."
        )


def _others(
    meta: ObjectMeta, source: ObjectMeta, table: Table, ids: list[int], into: int | None
) -> list[Any]:
    """Conditions leaving out the records going and the survivor, when they are of the
    object referring: the first leave with their references, the second is handled
    apart (it keeps its version)."""
    if source.name != meta.name:
        return []
    return [table.c.id.not_in([*ids, *([] if into is None else [into])])]


def _references_to(catalog: Catalog, target: str) -> Iterator[tuple[ObjectMeta, FieldMeta]]:
    """Lookups and many-to-many fields pointing at ``target``, removed ones included:
    a removed field keeps its column (and foreign key) until it is purged."""
    for meta in catalog.objects.values():
        for item in meta.all_fields.values():
            if item.target == target and not item.standard and not item.purged:
                yield meta, item


def _record_links(catalog: Catalog) -> Iterator[tuple[ObjectMeta, FieldMeta]]:
    """Record-link fields (they may point at any object), removed ones included."""
    for meta in catalog.objects.values():
        for item in meta.all_fields.values():
            if item.type == "record_link" and not item.purged and not item.encrypted:
                yield meta, item
