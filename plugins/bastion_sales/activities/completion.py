"""Keep ``completed_at`` in step with ``done`` whatever the door.

The quick "log activity" form, the API, an import and the "Done" button all write
activities; the core refuses a completion time on an activity that is not done.

- Marked done without a completion time: completed now (a time the user gave, or one
  the activity already had, is kept). ``last_activity_at`` and lead scoring measure
  from it.
- Marked not done again (re-opened) without a new completion time: the old one is
  cleared, so the edit is not refused and the re-opened task no longer counts as
  activity.

Calls, meetings, emails and notes logged without ``done`` stay as they are: they count
as activity anyway (see ``last_activity``) and "My day" lists only those with a due date.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bastion.api import RecordChange


def fill_completed_at(change: RecordChange) -> dict[str, str] | None:
    """CHANGING["activities"]: fill in or clear the completion time with ``done``."""
    if change.action not in ("create", "update"):
        return None
    values = change.values
    before = change.before or {}
    if "done" not in values:
        return None
    if values["done"] is False and before.get("done"):
        # Re-opened: a completion time still sent is the old one the edit form echoed
        # back (to the minute, in the user's zone): it goes with the "done".
        if echoed(values.get("completed_at"), before.get("completed_at")):
            values["completed_at"] = None
        return None
    # Only when this change marks it done: editing an old done activity leaves it be.
    if not values.get("done") or before.get("done"):
        return None
    completed = values["completed_at"] if "completed_at" in values else before.get("completed_at")
    if completed is None:
        values["completed_at"] = datetime.now(UTC)
    return None


def echoed(given: datetime | None, old: datetime | None) -> bool:
    """Whether ``given`` is no new completion time: none, or ``old`` shown to the minute."""
    if given is None or old is None:
        return True
    return given.replace(second=0, microsecond=0) == old.replace(second=0, microsecond=0)
