"""Reading the pipelines and their stages (the configuration administrators edit).

Every function takes the record service to read with: the opportunity rules read
through a system service (a rule must work whoever writes), pages through the signed-in
user's service (sales roles may read pipelines and stages).

Reads through a *system* service are cached for the request (or CLI command) on
``flask.g``: an import of 1,000 opportunities asks for the default pipeline and its
stages once, not 1,000 times. The pipelines' and stages' own hooks clear the cache
(``forget``) before and after every write of a pipeline or stage, so a rule never sees
configuration older than the current transaction. Reads through a user's service are
never cached (what a user may see is theirs).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import g, has_app_context

from bastion.api import Filter, NotFound, RecordService

#: Stages of one pipeline, at most (the field ``position`` allows 0..1000).
MAX_STAGES = 200


@dataclass(frozen=True)
class Stage:
    id: int
    version: int
    name: str
    pipeline: int
    position: int
    probability: Decimal | None
    outcome: str
    forecast_category: str | None

    @property
    def closed(self) -> bool:
        return self.outcome in ("won", "lost")


@dataclass(frozen=True)
class Pipeline:
    id: int
    version: int
    name: str
    is_default: bool
    active: bool
    description: str | None


def _stage(record) -> Stage:
    values = record.values
    return Stage(
        id=record.id,
        version=record.version,
        name=values.get("name") or f"Stage {record.id}",
        pipeline=values.get("pipeline"),
        position=values.get("position") or 0,
        probability=values.get("probability"),
        outcome=values.get("outcome") or "open",
        forecast_category=values.get("forecast_category"),
    )


def _pipeline(record) -> Pipeline:
    values = record.values
    return Pipeline(
        id=record.id,
        version=record.version,
        name=values.get("name") or f"Pipeline {record.id}",
        is_default=bool(values.get("is_default")),
        active=values.get("active") is not False,
        description=values.get("description"),
    )


_CACHE = "_sales_pipeline_config"
_MISSING = object()


def _cache(service: RecordService) -> dict[Any, Any] | None:
    """The request's cache of configuration read by the system, or None (not cached)."""
    if not getattr(service, "system", False) or not has_app_context():
        return None
    cache = getattr(g, _CACHE, None)
    if cache is None:
        cache = {}
        setattr(g, _CACHE, cache)
    return cache


def forget() -> None:
    """Drop the cached configuration (a pipeline or stage is being written)."""
    if has_app_context():
        g.pop(_CACHE, None)


def _cached(service: RecordService, key: Any, load):
    cache = _cache(service)
    if cache is None:
        return load()
    found = cache.get(key, _MISSING)
    if found is _MISSING:
        found = cache[key] = load()
    return found


def get_stage(service: RecordService, stage_id: int) -> Stage | None:
    def load() -> Stage | None:
        try:
            return _stage(service.get("pipeline_stages", stage_id))
        except NotFound:
            return None

    return _cached(service, ("stage", stage_id), load)


def get_pipeline(service: RecordService, pipeline_id: int) -> Pipeline | None:
    def load() -> Pipeline | None:
        try:
            return _pipeline(service.get("pipelines", pipeline_id))
        except NotFound:
            return None

    return _cached(service, ("pipeline", pipeline_id), load)


def list_pipelines(service: RecordService, *, active_only: bool = False) -> list[Pipeline]:
    """Pipelines, the default first, then in the order they were created."""
    filters = [Filter("active", "eq", True)] if active_only else []
    page = service.query("pipelines", filters=filters, sort="id", limit=MAX_STAGES)
    found = [_pipeline(r) for r in page.records]
    return sorted(found, key=lambda p: (not p.is_default, p.id))


def default_pipeline(service: RecordService) -> Pipeline | None:
    """The active pipeline marked default, else the first active one, else None."""

    def load() -> Pipeline | None:
        active = list_pipelines(service, active_only=True)
        return active[0] if active else None

    return _cached(service, ("default",), load)


def stages_of(service: RecordService, pipeline_id: int) -> list[Stage]:
    """The stages of a pipeline in board order (position, then creation)."""

    def load() -> list[Stage]:
        page = service.query(
            "pipeline_stages",
            filters=[Filter("pipeline", "eq", pipeline_id)],
            sort="position,id",
            limit=MAX_STAGES,
        )
        return [_stage(r) for r in page.records]

    return list(_cached(service, ("stages", pipeline_id), load))
