"""The rules of opportunities, pipelines and stages, run by the record service on every
write (pages, the API, imports, the board, other plugins).

Opportunities: a new opportunity without a stage lands in the default pipeline's first
stage; a stage must belong to the opportunity's pipeline; when the stage changes the
opportunity takes the stage's probability and forecast category (unless the same write
changes them), its outcome (won, lost, open) and ``stage_entered_at``.

"Set explicitly" means: on a create, given and not empty; on an update, given with a
value other than the one the record has. Forms send every field back, so a form that
moves the stage and leaves the probability as it was still gets the new stage's
probability.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bastion.api import Filter, Forbidden, RecordChange, RecordService
from bastion_sales.pipelines.config import (
    Stage,
    default_pipeline,
    forget,
    get_pipeline,
    get_stage,
    stages_of,
)

LOST_NEEDS_REASON = "Say why the opportunity was lost."
WON_PROBABILITY = Decimal(100)
LOST_PROBABILITY = Decimal(0)


def _system() -> RecordService:
    return RecordService(None, system=True)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _explicit(change: RecordChange, name: str) -> bool:
    """Whether this write itself sets ``name`` (see the module docstring)."""
    if name not in change.values:
        return False
    value = change.values[name]
    if change.action == "create":
        return not _empty(value)
    before = (change.before or {}).get(name)
    return not (_empty(value) and _empty(before)) and value != before


def _current(change: RecordChange, name: str) -> Any:
    if name in change.values:
        return change.values[name]
    return (change.before or {}).get(name)


# --------------------------------------------------------------------------- opportunities


def opportunity_changing(change: RecordChange) -> dict[str, str] | None:
    """Place the opportunity in a pipeline and stage, and make it follow its stage.

    A lost deal needs its reason: the object's rule ``lost_needs_reason`` checks that on
    the values this hook leaves (the core runs object rules after the hooks), so it is
    not checked here again (one message, not two).
    """
    if change.action == "delete":
        _delete_history(change)
        return None
    if change.action not in ("create", "update"):
        return None
    system = _system()
    values = change.values
    creating = change.action == "create"
    stage_moved = _explicit(change, "stage")
    pipeline_moved = not creating and _explicit(change, "pipeline")
    pipeline_id = _current(change, "pipeline")
    stage: Stage | None = None

    if stage_moved:
        stage_id = values.get("stage")
        if _empty(stage_id):
            if not _empty(pipeline_id):
                return {"stage": "Choose a stage of the opportunity's pipeline."}
            return None
        stage = get_stage(system, stage_id)
        if stage is None:
            return None  # the core already says the stage does not exist
        if _empty(pipeline_id):
            values["pipeline"] = pipeline_id = stage.pipeline
            pipeline_moved = True
        elif stage.pipeline != pipeline_id:
            return {"stage": _wrong_pipeline(system, stage, pipeline_id)}
        if creating or pipeline_moved:
            pipeline = get_pipeline(system, stage.pipeline)
            if pipeline is not None and not pipeline.active:
                return {"pipeline": _inactive(pipeline.name)}
    elif creating or pipeline_moved:
        if _empty(pipeline_id):
            if pipeline_moved:
                return {"pipeline": "Choose a pipeline: an opportunity stays in one."}
            pipeline = default_pipeline(system)
            if pipeline is None:
                return None  # no pipeline set up yet: no stage either
            chosen = False
        else:
            pipeline = get_pipeline(system, pipeline_id)
            if pipeline is None:
                return None  # the core already says the pipeline does not exist
            chosen = True
        if not pipeline.active:
            return {"pipeline": _inactive(pipeline.name)}
        first = stages_of(system, pipeline.id)
        if not first:
            if not chosen:
                return None  # the default pipeline is still being set up
            return {"pipeline": f"The pipeline {pipeline.name} has no stages yet."}
        values["pipeline"] = pipeline.id
        stage = first[0]
        values["stage"] = stage.id
    if stage is not None:
        _follow_stage(change, stage)
    else:
        current = _current(change, "stage")
        stage = get_stage(system, current) if isinstance(current, int) else None
    if stage is not None and stage.closed:
        return _closed(change, stage)
    return None


def _inactive(name: str) -> str:
    return f"The pipeline {name} is no longer in use; choose an active one."


def _wrong_pipeline(system: RecordService, stage: Stage, pipeline_id: Any) -> str:
    pipeline = get_pipeline(system, pipeline_id) if isinstance(pipeline_id, int) else None
    stage_pipeline = get_pipeline(system, stage.pipeline)
    where = stage_pipeline.name if stage_pipeline else "another pipeline"
    mine = pipeline.name if pipeline else "the opportunity's pipeline"
    return f"The stage {stage.name} belongs to {where}; choose a stage of {mine}."


def _follow_stage(change: RecordChange, stage: Stage) -> None:
    values = change.values
    if not _explicit(change, "probability"):
        values["probability"] = stage.probability
    if not _explicit(change, "forecast_category") and stage.forecast_category:
        values["forecast_category"] = stage.forecast_category
    values["outcome"] = stage.outcome
    values["stage_entered_at"] = datetime.now(UTC)


def closed_category(stage: Stage) -> str:
    """The forecast category of a deal in a won or lost stage."""
    return stage.forecast_category or ("commit" if stage.outcome == "won" else "omitted")


def _closed(change: RecordChange, stage: Stage) -> dict[str, str] | None:
    """A won deal is certain and a lost one hopeless, on every write: a probability or
    forecast category this write sets against that is refused; otherwise both are set
    (which also mends a value stored before this rule existed)."""
    wanted = WON_PROBABILITY if stage.outcome == "won" else LOST_PROBABILITY
    category = closed_category(stage)
    errors: dict[str, str] = {}
    if _explicit(change, "probability") and _decimal(change.values["probability"]) != wanted:
        errors["probability"] = (
            f"A {stage.outcome} deal has a probability of {wanted} %; "
            "move it to an open stage to change it."
        )
    if _explicit(change, "forecast_category") and change.values["forecast_category"] != category:
        errors["forecast_category"] = (
            f"A deal in {stage.name} is in the forecast category {category}; "
            "move it to an open stage to change it."
        )
    if errors:
        return errors
    change.values["probability"] = wanted
    change.values["forecast_category"] = category
    return None


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def _delete_history(change: RecordChange) -> None:
    """An opportunity's history goes with it (in the same transaction); otherwise the
    rows would stay behind, pointing nowhere, still owned by the deal's owner."""
    if change.record_id is None:
        return
    system = _system()
    rows = list(
        system.iterate("stage_history", filters=[Filter("opportunity", "eq", change.record_id)])
    )
    for row in rows:
        system.delete("stage_history", row.id)


# --------------------------------------------------------------------------- history


SYSTEM_ONLY = (
    "Stage history is kept by Bastion as opportunities move; it cannot be written by hand."
)


def history_changing(change: RecordChange) -> None:
    """Only the system writes stage history (pages, the API and imports are refused)."""
    if change.actor is not None:
        raise Forbidden(SYSTEM_ONLY)


# --------------------------------------------------------------------------- stages


def stage_changing(change: RecordChange) -> dict[str, str] | None:
    """A stage stays in its pipeline; its outcome is fixed while deals are in it; a won
    stage is certain (100 %), a lost one hopeless (0 %).

    When a write makes a stage won or lost without setting the probability, it is set
    for the administrator; a probability that contradicts the outcome is refused, so a
    forecast never weights a closed deal wrongly. Lost stages default to the forecast
    category "omitted", won ones to "commit".

    Changing the outcome of a stage that opportunities are in is refused rather than
    rewriting those deals (they would be won or lost without anyone moving them).
    """
    forget()
    if change.action not in ("create", "update"):
        return None
    if change.action == "update":
        if _explicit(change, "pipeline"):
            return {"pipeline": "A stage stays in its pipeline; create a new stage instead."}
        if _explicit(change, "outcome") and _in_use(change.record_id):
            return {
                "outcome": "Opportunities are in this stage; move them to another stage "
                "before changing its outcome, or create a new stage instead."
            }
    outcome = _current(change, "outcome") or "open"
    if outcome not in ("won", "lost"):
        return None
    wanted = WON_PROBABILITY if outcome == "won" else LOST_PROBABILITY
    probability = _current(change, "probability")
    outcome_now = _explicit(change, "outcome") or change.action == "create"
    if outcome_now and not _explicit(change, "probability"):
        change.values["probability"] = wanted
    elif probability is None or _decimal(probability) != wanted:
        return {
            "probability": f"A {outcome} stage has a probability of {wanted} %; "
            f"set it to {wanted} or change the outcome."
        }
    if outcome_now and not _explicit(change, "forecast_category"):
        change.values["forecast_category"] = "commit" if outcome == "won" else "omitted"
    return None


def stage_changed(change: RecordChange) -> None:
    forget()


def _in_use(stage_id: Any) -> bool:
    if not isinstance(stage_id, int):
        return False
    page = _system().query(
        "opportunities", filters=[Filter("stage", "eq", stage_id)], limit=1, fields=["name"]
    )
    return bool(page.records)


# --------------------------------------------------------------------------- pipelines


def pipeline_changing(change: RecordChange) -> dict[str, str] | None:
    """The default pipeline stays active (new opportunities land in it)."""
    forget()
    if change.action == "delete":
        if (change.before or {}).get("is_default"):
            return {"": "This is the default pipeline; make another one the default first."}
        return None
    if _current(change, "is_default") and _current(change, "active") is False:
        return {
            "active": "The default pipeline must stay active; make another one the default first."
        }
    return None


def pipeline_changed(change: RecordChange) -> None:
    """Only one pipeline is the default: marking one clears the others."""
    forget()
    if change.action not in ("create", "update") or not (change.after or {}).get("is_default"):
        return
    if change.action == "update" and "is_default" not in change.changed:
        return
    system = _system()
    others = system.query("pipelines", filters=[Filter("is_default", "eq", True)], limit=100)
    for other in others.records:
        if other.id != change.record_id:
            system.update("pipelines", other.id, {"is_default": False}, version=other.version)
