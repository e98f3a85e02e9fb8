"""Merging duplicates: chosen values on the survivor, references re-pointed to it,
the others deleted, in one transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, update

from bastion.data.catalog import ObjectMeta
from bastion.data.errors import Conflict, ValidationFailed
from bastion.data.events import RecordChange
from bastion.data.records.model import Record
from bastion.data.values import FieldValueError, RecordLink, parse
from bastion.db import db
from bastion.models import utcnow


class MergeMixin:
    """Merges duplicate records into one."""

    def merge(
        self,
        object_name: str,
        winner_id: int,
        loser_ids: Iterable[int],
        *,
        values: Mapping[str, Any],
        version: Any,
    ) -> Record:
        """Merge records into ``winner_id``: chosen values on it, references re-pointed,
        the others deleted, all in one transaction."""
        meta = self.require(object_name, "edit")
        self.require(object_name, "delete")
        if not _is_id(winner_id) or isinstance(loser_ids, str | bytes | Mapping):
            raise ValidationFailed({"ids": "Record ids are whole numbers."})
        loser_list = list(loser_ids)
        if not all(_is_id(i) for i in loser_list):
            raise ValidationFailed({"ids": "Record ids are whole numbers."})
        losers = sorted(set(loser_list) - {winner_id})
        if not losers:
            raise ValidationFailed({"ids": "Choose at least one other record to merge."})
        if len(losers) > 10:
            raise ValidationFailed({"ids": "Merge at most 10 records at a time."})
        if type(version) is not int:
            raise ValidationFailed({"version": "Send the version you read, as a whole number."})
        if not isinstance(values, Mapping):
            raise ValidationFailed({"": "Values are field names and values."})
        with self.atomic():
            for loser in losers:
                self._load_row(meta, loser, "delete")
            winner = self._load_row(meta, winner_id, "edit")
            if winner["version"] != version:  # refuse before touching anything
                raise Conflict(
                    f"This {meta.label.lower()} was changed by someone else since you read it "
                    f"(version {version}, now {winner['version']}). Reload it and merge again.",
                    field="version",
                )
            before_losers = {loser: self._load_typed(meta, loser) for loser in losers}
            chosen = self._merge_values(meta, winner_id, losers, values)
            self._release_references(meta, losers, into=winner_id)
            table = self.catalog.table(meta.name)
            # Unique values move to the winner only once the losers are gone.
            db.session.execute(delete(table).where(table.c.id.in_(losers)))
            if not self._update(meta, winner_id, chosen, version):
                # Nothing of its own changed, but it absorbed the others: a new version,
                # so an edit read before the merge is refused.
                db.session.execute(
                    update(table)
                    .where(table.c.id == winner_id)
                    .values(version=table.c.version + 1, updated_at=utcnow())
                )
            change = RecordChange(
                meta.name,
                "merge",
                winner_id,
                self.user,
                after=self._load_typed(meta, winner_id),
                merged_ids=tuple(losers),
            )
            change.before = {"merged": {str(k): _jsonable(v) for k, v in before_losers.items()}}
            self._emit(change)
        return self.get(object_name, winner_id)

    def _merge_values(
        self, meta: ObjectMeta, winner_id: int, losers: list[int], values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The chosen values, without references to the merged records themselves: the
        survivor cannot be its own parent, nor point at a record about to go."""
        gone = {winner_id, *losers}
        chosen = dict(values)
        for name, raw in values.items():
            item = meta.fields.get(name) if isinstance(name, str) else None
            if item is None or (item.target != meta.name and item.type != "record_link"):
                continue
            try:
                value = parse(item, raw, self.context)
            except FieldValueError:
                continue  # the update reports it
            if item.type == "lookup" and value in gone:
                chosen[name] = None
            elif item.type == "many_to_many" and set(value) & gone:
                chosen[name] = [i for i in value if i not in gone]
            elif isinstance(value, RecordLink) and value.object == meta.name and value.id in gone:
                chosen[name] = None
        return chosen


def _is_id(value: Any) -> bool:
    return type(value) is int and value > 0


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=str))
