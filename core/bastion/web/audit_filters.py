"""The audit trail's filters, read from a query string, and the queries they make.

One syntax serves the audit page, its "load more" rows and its exports:

``user``
    ``system``, a user id (``12`` or ``#12``), an email address (exact, any case), or
    part of a name or email address (every user it matches, up to :data:`MAX_USERS`).
``action``
    An exact action (``auth.sign_in``), or a prefix ending in ``.`` or ``*``
    (``auth.`` / ``auth*``: every action that begins with ``auth``).
``object`` and ``record``
    The object type (``contacts``, ``user``, ``role``...) and record id, exactly.
``from`` and ``to``
    UTC dates (``2026-12-01``) or date-times (``2026-12-01T09:30``, seconds and a
    trailing ``Z`` optional). Both bounds include what they name: ``to=2026-12-01``
    reaches the end of that day, ``to=2026-12-01T09:30`` the end of that minute.
``cursor``
    The ``seq`` of the last entry already shown: the next page holds older entries.
    Keyset paging on the chain position, never an OFFSET, so a page costs the same
    however deep it is and new entries never shift what comes next.

Bad input raises :class:`FilterError` with a sentence for the page, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, func, or_, select

from bastion.audit.models import AuditEntry
from bastion.db import db
from bastion.models import User
from bastion.web.params import bounded_int

#: The most users one name filter may stand for (a wider match must be narrowed).
MAX_USERS = 50
PAGE_SIZE = 50
#: Entries fetched per query while streaming an export.
EXPORT_BATCH = 1000
MAX_SEQ = 2**63 - 1
MAX_TEXT = 200
#: "2026-12-01", "2026-12-01T09:30", "2026-12-01 09:30:15", "2026-12-01T09:30:15.5Z"
_MOMENT = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,6}))?)?)?"
    r"(?:Z|\+00:00)?"
)
FILTER_KEYS = ("user", "action", "object", "record", "from", "to")


class FilterError(ValueError):
    """A filter the trail cannot apply; ``field`` names the input at fault."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass
class AuditFilters:
    """The filters as given (``raw``) and as applied."""

    raw: dict[str, str] = field(default_factory=dict)
    #: None: anyone; otherwise the ids the user filter stands for.
    user_ids: list[int] | None = None
    system_only: bool = False
    action: str = ""
    action_prefix: bool = False
    object_type: str = ""
    object_id: str = ""
    #: occurred_at bounds as stored text (inclusive both ways).
    start: str = ""
    end: str = ""

    @property
    def active(self) -> bool:
        return any(self.raw.get(key) for key in FILTER_KEYS)

    def described(self) -> dict[str, str]:
        """The filters used, for the audit entry of an export."""
        return {key: value for key, value in self.raw.items() if value}

    def apply(self, statement: Select) -> Select:
        if self.system_only:
            statement = statement.where(AuditEntry.actor == "system")
        elif self.user_ids is not None:
            statement = statement.where(AuditEntry.actor_user_id.in_(self.user_ids))
        if self.action:
            if self.action_prefix:
                statement = statement.where(
                    AuditEntry.action.like(_like_prefix(self.action), escape="\\")
                )
            else:
                statement = statement.where(AuditEntry.action == self.action)
        if self.object_type:
            statement = statement.where(AuditEntry.object_type == self.object_type)
        if self.object_id:
            statement = statement.where(AuditEntry.object_id == self.object_id)
        if self.start:
            statement = statement.where(AuditEntry.occurred_at >= self.start)
        if self.end:
            statement = statement.where(AuditEntry.occurred_at <= self.end)
        return statement


# --------------------------------------------------------------------------- parsing


def parse_filters(args: Mapping[str, str]) -> AuditFilters:
    """The filters of a query string; FilterError names the first bad one."""
    raw = {key: (args.get(key) or "").strip()[:MAX_TEXT] for key in FILTER_KEYS}
    for key, value in raw.items():
        # PostgreSQL refuses NUL in text; no name, action or id holds a control character.
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise FilterError("Remove the control characters from this filter.", key)
    filters = AuditFilters(raw=raw)
    if raw["user"]:
        if raw["user"].casefold() == "system":
            filters.system_only = True
        else:
            filters.user_ids = _user_ids(raw["user"])
    if raw["action"]:
        action = raw["action"]
        if action.endswith(("*", ".")):
            filters.action_prefix = True
            action = action.rstrip("*")
        if not action or not re.fullmatch(r"[A-Za-z0-9_.\-]+", action):
            raise FilterError(
                "An action is a name such as auth.sign_in, or the start of one such as auth.",
                "action",
            )
        filters.action = action
    filters.object_type = raw["object"]
    filters.object_id = raw["record"].lstrip("#")
    if raw["from"]:
        filters.start = _stored(_moment(raw["from"], "from")[0])
    if raw["to"]:
        moment, precision = _moment(raw["to"], "to")
        try:
            filters.end = _stored(moment + precision - timedelta(microseconds=1))
        except OverflowError:  # the end of year 9999: nothing can be later
            filters.end = _stored(datetime.max.replace(tzinfo=UTC))
    if filters.start and filters.end and filters.start > filters.end:
        raise FilterError("The start of the time range is after its end; swap them.", "from")
    return filters


def parse_cursor(raw: str | None) -> int | None:
    """The ``seq`` to continue below, or None for the first page."""
    if not raw:
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_SEQ:
        raise FilterError("The page link is damaged; start again from the first page.", "cursor")
    return int(text)


def _user_ids(text: str) -> list[int]:
    number = text.lstrip("#")
    if number.isascii() and number.isdigit():
        user_id = bounded_int(number, minimum=1)
        if user_id is None:
            raise FilterError(f"No user has the id {number}.", "user")
        return [user_id]
    query = select(User.id).order_by(User.id).limit(MAX_USERS + 1)
    if "@" in text and " " not in text:
        found = list(db.session.scalars(query.where(func.lower(User.email) == text.lower())))
        if found:
            return found
    pattern = f"%{_escape_like(text.lower())}%"
    found = list(
        db.session.scalars(
            query.where(
                or_(
                    func.lower(User.name).like(pattern, escape="\\"),
                    func.lower(User.email).like(pattern, escape="\\"),
                )
            )
        )
    )
    if not found:
        raise FilterError(f"No user's name or email address contains “{text}”.", "user")
    if len(found) > MAX_USERS:
        raise FilterError(
            f"“{text}” matches more than {MAX_USERS} users; type more of the name or the "
            "whole email address.",
            "user",
        )
    return found


def _moment(text: str, name: str) -> tuple[datetime, timedelta]:
    """A UTC moment and the span it names (a day, a minute, a second, a microsecond)."""
    match = _MOMENT.fullmatch(text)
    word = "start" if name == "from" else "end"
    problem = FilterError(
        f"The {word} of the time range must be a UTC date such as 2026-12-01, or a date "
        "and time such as 2026-12-01T09:30.",
        name,
    )
    if match is None:
        raise problem
    parts = match.groupdict()
    try:
        moment = datetime.fromisoformat(parts["date"]).replace(tzinfo=UTC)
        if parts["hour"] is None:
            return moment, timedelta(days=1)
        fraction = parts["fraction"] or ""
        moment = moment.replace(
            hour=int(parts["hour"]),
            minute=int(parts["minute"]),
            second=int(parts["second"] or 0),
            microsecond=int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except ValueError:
        raise problem from None
    if parts["second"] is None:
        return moment, timedelta(minutes=1)
    if not fraction:
        return moment, timedelta(seconds=1)
    return moment, timedelta(microseconds=10 ** (6 - len(fraction)))


def _stored(moment: datetime) -> str:
    """A moment as ``occurred_at`` stores it, so that text comparison orders it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_prefix(text: str) -> str:
    return _escape_like(text) + "%"


# --------------------------------------------------------------------------- queries


def page_of(
    filters: AuditFilters, cursor: int | None, limit: int = PAGE_SIZE
) -> tuple[list[AuditEntry], int | None]:
    """Up to ``limit`` entries below ``cursor``, newest first, and the next cursor."""
    statement = filters.apply(select(AuditEntry))
    if cursor is not None:
        statement = statement.where(AuditEntry.seq < cursor)
    rows = list(db.session.scalars(statement.order_by(AuditEntry.seq.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].seq if more and rows else None)


def every_entry(filters: AuditFilters) -> Iterator[AuditEntry]:
    """Every matching entry, newest first, a batch at a time (exports)."""
    cursor: int | None = None
    while True:
        rows, cursor = page_of(filters, cursor, EXPORT_BATCH)
        for row in rows:
            yield row
            db.session.expunge(row)  # a large export never holds its rows in the session
        if cursor is None:
            return
