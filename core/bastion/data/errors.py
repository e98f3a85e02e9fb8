"""What the record service refuses with; each maps to one HTTP status."""

from __future__ import annotations

from typing import Any


class RecordError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(RecordError):
    """No such record, or one outside the caller's scope: the two look the same."""

    status = 404
    title = "Not found"


class Forbidden(RecordError):
    status = 403
    title = "Forbidden"


class Conflict(RecordError):
    """A stale version, or a record others depend on."""

    status = 409
    title = "Conflict"


class Undecryptable(RecordError):
    """A stored ciphertext that does not decrypt: altered, or copied from another record
    or field. Nothing of it is shown; the record cannot be read until it is restored."""

    status = 409
    title = "Unreadable value"


class BadQuery(RecordError):
    status = 400
    title = "Bad query"


class ValidationFailed(RecordError):
    """Values that do not fit: ``errors`` maps field names ("" for the record) to messages."""

    status = 422
    title = "Invalid record"

    def __init__(self, errors: dict[str, str]):
        first = next(iter(errors.items()))
        super().__init__(first[1], field=first[0] or None)
        self.errors = errors


class DuplicatesFound(RecordError):
    """A new record looks like existing ones; ``matches`` lists those the caller may read."""

    status = 409
    title = "Possible duplicates"

    def __init__(self, message: str, matches: list[dict[str, Any]]):
        super().__init__(message)
        self.matches = matches


class PluginRefused(ValidationFailed):
    """The plugin that declares the object failed while checking or following a write.

    Its computed values (totals, scores, histories) would go stale, so nothing is saved;
    the plugin's error is logged and shown to administrators, not to the user.
    """

    def __init__(self, plugin: str):
        super().__init__(
            {
                "": f"The {plugin} module could not process this change, so nothing was "
                "saved. Try again; if it keeps failing, an administrator can see why "
                "under Administration > Plugins."
            }
        )
