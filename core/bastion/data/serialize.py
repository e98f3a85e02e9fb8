"""Records as JSON: what the REST API answers and what JSON exports write.

One shape everywhere a record leaves the server as JSON::

    {"id": 7, "version": 3, "name": "Acme", "annual_revenue": {"amount": "1200.00",
     "currency": "EUR"}, "account": 5, "tags": ["a", "b"], "due_at": "2026-11-23T14:30:00Z"}

``id`` and ``version`` always come first; then the fields the reader may see, in the
object's display order, each written by :func:`bastion.data.values.to_json` (exact
numbers as strings, times in UTC, lookups as ids, record links as {object, id}).
Fields hidden from the reader are never in a :class:`~bastion.data.records.Record`, so
they cannot appear here. Writing goes the other way through the record service itself:
``RecordService.create``/``update`` take such JSON values as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bastion.data.catalog import ObjectMeta
from bastion.data.records import Record, RecordService
from bastion.data.values import to_json


def record_to_json(service: RecordService, meta: ObjectMeta, record: Record) -> dict[str, Any]:
    """One record as a JSON object: ``id``, ``version``, then the readable fields."""
    data: dict[str, Any] = {"id": record.id, "version": record.version}
    for item in service.readable(meta):
        if item.name in data or item.name not in record.values:
            continue
        data[item.name] = to_json(item, record.values[item.name])
    return data


def records_to_json(
    service: RecordService, meta: ObjectMeta, records: Iterable[Record]
) -> list[dict[str, Any]]:
    """Several records (a page, an export batch) as JSON objects."""
    return [record_to_json(service, meta, record) for record in records]
