"""Exports of a list to CSV and JSON: streamed, through the record service, audited.

An export takes the list's query string (:mod:`bastion.data.params`: filters, ``sort``,
``fields``), needs the ``export`` permission on the object besides ``read``, and holds
only what the user may read: records in their scope and fields not hidden from them
(a :class:`~bastion.data.records.Record` never carries anything else). Records are
fetched a page at a time, so a large export never sits in memory.

CSV cells are written by :func:`bastion.data.values.to_text` under a header of field
API names, so a file exported and imported again maps by itself and keeps its values
(money with its currency, dates in ISO form, multi-picklists joined by ";"). A cell
starting with ``= + - @`` (a plain number aside), whatever its field's type, gets a
leading apostrophe, so a spreadsheet shows it instead of running it as a formula (CSV
injection); the importer removes it again.
JSON is the REST API's record shape (:mod:`bastion.data.serialize`), one array.

Each export is audited before the first byte leaves: object, format, filters, sort,
columns and the number of records, never their values.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bastion import audit
from bastion.data import blind_index
from bastion.data.catalog import Catalog, FieldMeta, ObjectMeta
from bastion.data.errors import BadQuery
from bastion.data.params import filters_to_params, parse_list_params
from bastion.data.query import AnyOf, Filter
from bastion.data.records import MAX_LIMIT, Record, RecordService
from bastion.data.serialize import record_to_json
from bastion.data.values import to_text

FORMATS = ("csv", "json")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


@dataclass
class Export:
    """A checked export, ready to stream: what was asked and what it will hold."""

    service: RecordService
    meta: ObjectMeta
    format: str
    columns: list[FieldMeta]
    filters: list[Filter | AnyOf] = field(default_factory=list)
    sort: str | None = None
    count: int = 0

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def file_name(self, today: str) -> str:
        return f"{self.meta.name}-{today}.{self.format}"

    def records(self) -> Iterator[Record]:
        """Every matching record, in order, a page at a time."""
        names = [item.name for item in self.columns]
        cursor = None
        while True:
            page = self.service.query(
                self.meta.name,
                filters=self.filters,
                sort=self.sort,
                limit=MAX_LIMIT,
                cursor=cursor,
                fields=names,
            )
            yield from page.records
            cursor = page.next_cursor
            if cursor is None:
                return

    def chunks(self, *, bom: bool = False) -> Iterator[str]:
        """The file, in pieces of about one page of records."""
        return self._csv(bom) if self.format == "csv" else self._json()

    def _csv(self, bom: bool) -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([item.name for item in self.columns])
        head = buffer.getvalue()
        yield ("\ufeff" + head) if bom else head
        batch: list[list[str]] = []
        for record in self.records():
            batch.append([csv_cell(item, record.get(item.name)) for item in self.columns])
            if len(batch) >= MAX_LIMIT:
                yield _csv_text(batch)
                batch = []
        if batch:
            yield _csv_text(batch)

    def _json(self) -> Iterator[str]:
        yield "["
        separator = "\n"
        batch: list[str] = []
        for record in self.records():
            data = record_to_json(self.service, self.meta, record)
            batch.append(separator + json.dumps(data, ensure_ascii=False))
            separator = ",\n"
            if len(batch) >= MAX_LIMIT:
                yield "".join(batch)
                batch = []
        batch.append("\n]\n")
        yield "".join(batch)


def formula_like(text: str) -> bool:
    """Whether a cell starts like a formula (after any apostrophes), a number aside.

    Decided by the value, not the field's type: a formula field computing text (a
    contact's name) or an amount with its currency ("-5.00 EUR") is as risky as a text
    field. Leading apostrophes count, so a value that starts with one survives the
    importer's removal of the escape.
    """
    core = text.lstrip("'")
    return core.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(core)


def csv_cell(item: FieldMeta, value: object) -> str:
    text = to_text(item, value)
    return "'" + text if formula_like(text) else text


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def export_columns(
    service: RecordService, meta: ObjectMeta, names: Iterable[str] | None
) -> list[FieldMeta]:
    """The readable fields to export: those named (in that order), else all of them."""
    if not names:
        return service.readable(meta)
    columns: list[FieldMeta] = []
    for name in names:
        item = service.readable_field(meta, name)  # BadQuery for unknown or hidden
        if item not in columns:
            columns.append(item)
    return columns


def prepare_export(
    service: RecordService,
    object_name: str,
    query: Iterable[tuple[str, str]],
    export_format: str,
    *,
    extra_filters: Iterable[Filter | AnyOf] = (),
    actor: str | None = None,
) -> Export:
    """Check the request (permission, format, query) and audit it; stream afterwards.

    Raises the record service's Forbidden without the ``export`` permission and
    BadQuery for a bad format, filter, sort or field, before anything is sent.
    """
    meta = service.require(object_name, "export")
    service.require(object_name, "read")
    if export_format not in FORMATS:
        raise BadQuery("Export as csv or json.", field="format")
    params = parse_list_params(query, ignore=("limit", "cursor"))
    filters = [*params.filters, *extra_filters]
    export = Export(
        service,
        meta,
        export_format,
        export_columns(service, meta, params.fields),
        filters,
        params.sort or "id",
    )
    # Counting runs the filters and sort once: a bad one is refused here, not mid-file.
    export.count = service.count(meta.name, filters=filters)
    service.query(meta.name, filters=filters, sort=export.sort, limit=1, fields=["id"])
    audit.record(
        "records.export",
        actor=actor,
        object_type=meta.name,
        changes={
            "format": export_format,
            "filters": [_describe(item, service.catalog, meta) for item in filters],
            "sort": export.sort,
            "fields": [item.name for item in export.columns],
            "rows": export.count,
        },
    )
    return export


def _describe(item: Filter | AnyOf, catalog: Catalog, meta: ObjectMeta) -> str:
    """A filter as the audit entry shows it: ``path__op=value``, alternatives with " or ".

    The value of a filter on an encrypted field (found through its blind index) is
    plaintext the audit trail must never hold: it is written as "(encrypted value)".
    """
    if isinstance(item, AnyOf):
        return " or ".join(_describe(one, catalog, meta) for one in item.filters)
    ((key, value),) = filters_to_params([item])
    if blind_index.encrypted_target(catalog, meta, item.path) is not None:
        value = "(encrypted value)"
    return f"{key}={value}"
