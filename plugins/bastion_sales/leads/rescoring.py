"""Rescoring every open lead: shared by ``bastion sales rescore`` and the scoring
page's "Rescore open leads now" button.

Both run under the job lock ``sales-rescore`` so a scheduled run and a click never
rescore side by side (the second gives up at once with :class:`JobRunning`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bastion.api import Filter, RecordError, RecordService, job_lock
from bastion_sales.leads.scores import active_rules, rescore
from bastion_sales.leads.scoring import now_utc

LOCK = "sales-rescore"
#: The most open leads the settings page rescores within a request; more is a job for
#: the command (a request should not run for minutes).
WEB_LIMIT = 5000


@dataclass
class RescoreResult:
    """What a run did: leads looked at, scores that changed, and the refusals."""

    total: int = 0
    changed: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def rescored(self) -> int:
        return self.total - len(self.failures)


def open_lead_ids(system: RecordService) -> list[int]:
    rows = system.iterate("leads", filters=[Filter("status", "ne", "converted")], fields=("id",))
    return [r.id for r in rows]


def count_open_leads(system: RecordService) -> int:
    return system.count("leads", filters=[Filter("status", "ne", "converted")])


def rescore_open_leads(batch: int = 200) -> RescoreResult:
    """Recalculate the score of every open (not converted) lead from the current rules.

    A lead that cannot be rescored (it kept changing, or a write was refused) is
    reported and skipped; the others are saved, ``batch`` leads per transaction.
    Raises JobRunning when another run holds the lock.
    """
    with job_lock(LOCK):
        system = RecordService(None, system=True)
        ids = open_lead_ids(system)
        rules = active_rules(system)
        now = now_utc()
        result = RescoreResult(total=len(ids))
        size = max(batch, 1)
        for start in range(0, len(ids), size):
            with system.atomic():
                for lead_id in ids[start : start + size]:
                    try:
                        with system.atomic():  # a savepoint: a failure undoes only this lead
                            result.changed += rescore(system, lead_id, rules=rules, now=now)
                    except RecordError as exc:
                        result.failures.append(f"Lead {lead_id} was not rescored: {exc.message}")
        return result
