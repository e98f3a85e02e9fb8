"""The record service: the one door for every read and write of business records.

Pages, the REST API, import, export, search, reports and plugins all call it. In one
place it applies the acting user's object permission, record scope and field-level
security (``bastion.authz``); parses and validates values; encrypts encrypted fields;
refuses stale writes (optimistic concurrency on ``version``); and emits record events
for the audit trail, the search index and plugins. Nothing else touches ``obj_*``
tables.

The service is assembled from one mixin per concern: ``access`` (permissions, scope,
field security), ``reading``, ``aggregate`` (grouped counts and sums), ``validation``,
``writing``, ``references`` (what happens to links to records that go), ``merge`` and
``transactions``.
"""

from __future__ import annotations

from typing import Any

from bastion.data.catalog import Catalog, current_catalog
from bastion.data.errors import Forbidden
from bastion.data.records.access import AccessMixin
from bastion.data.records.aggregate import AggregateMixin
from bastion.data.records.merge import MergeMixin
from bastion.data.records.model import (
    DEFAULT_LIMIT,
    MAX_GROUPS,
    MAX_LIMIT,
    MAX_MERGED,
    AggregateRow,
    Page,
    Record,
)
from bastion.data.records.reading import ReadingMixin
from bastion.data.records.references import ReferencesMixin
from bastion.data.records.transactions import ATOMIC_KEY, TransactionMixin
from bastion.data.records.validation import OWNER_FIELD, ValidationMixin
from bastion.data.records.writing import BATCH_SIZE, WritingMixin
from bastion.data.values import ValueContext

__all__ = [
    "ATOMIC_KEY",
    "BATCH_SIZE",
    "DEFAULT_LIMIT",
    "MAX_GROUPS",
    "MAX_LIMIT",
    "MAX_MERGED",
    "OWNER_FIELD",
    "AggregateRow",
    "Page",
    "Record",
    "RecordService",
]


class RecordService(
    AccessMixin,
    ReadingMixin,
    AggregateMixin,
    ValidationMixin,
    WritingMixin,
    ReferencesMixin,
    MergeMixin,
    TransactionMixin,
):
    """Reads and writes as ``user``; ``system=True`` (CLI, jobs) bypasses authorization."""

    def __init__(
        self,
        user: Any,
        *,
        system: bool = False,
        context: ValueContext | None = None,
        catalog: Catalog | None = None,
    ):
        if user is None and not system:
            raise Forbidden("Nobody is signed in.")
        self.user = user
        self.system = system
        self.catalog = catalog or current_catalog()
        self.context = context or _context_for(user)
        self._access: dict[str, dict[str, str]] = {}


def _context_for(user: Any) -> ValueContext:
    from flask import has_app_context

    region, currency = "", "EUR"
    if has_app_context():
        from bastion.runtime import platform

        settings = platform().settings
        region, currency = settings.phone_region, settings.default_currency
    zone = getattr(user, "time_zone", None) or "UTC"
    return ValueContext(time_zone=zone, phone_region=region, default_currency=currency)
