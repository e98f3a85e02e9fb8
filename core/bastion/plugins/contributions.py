"""The small value types that plugins declare and hooks return.

They validate themselves on construction, so a plugin's mistake is reported with its
name at start-up instead of surfacing later as a broken page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*\Z")
_PERMISSION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+\Z")

FIELD_TYPES = frozenset(
    {
        "text",
        "long_text",
        "email",
        "phone",
        "url",
        "integer",
        "decimal",
        "currency",
        "percent",
        "date",
        "datetime",
        "boolean",
        "picklist",
        "multi_picklist",
        "lookup",
        "many_to_many",
        "auto_number",
        "formula",
        "record_link",
    }
)
#: Names every object has; a declared or custom field may not take them.
STANDARD_FIELD_NAMES = frozenset(
    {"id", "owner", "created_at", "created_by", "updated_at", "updated_by", "version"}
)
#: Types whose value is computed by the platform; nobody writes them.
COMPUTED_TYPES = frozenset({"auto_number", "formula"})
FORMULA_TYPES = frozenset({"text", "integer", "decimal", "date", "datetime", "boolean"})


class ContributionError(ValueError):
    """A plugin declared something malformed; the message says what, and ``setting``
    which setting of the declaration (such as "scale") when one is at fault."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class PluginManifest:
    """What a plugin module declares about itself, as its module attribute ``manifest``."""

    label: str
    description: str = ""
    #: Names of other plugins this one needs enabled.
    requires: tuple[str, ...] = ()
    #: PEP 440 version specifier the core version must satisfy, e.g. ">=0.1,<1".
    core_version: str = ""
    #: Whether `bastion init` / `bastion upgrade` enable it when first seen.
    enabled_by_default: bool = False


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ContributionError(message)


@dataclass(frozen=True)
class NavItem:
    """An entry of the main navigation."""

    label: str
    endpoint: str
    icon: str = ""
    #: Shown only to users holding this permission; None: any signed-in user.
    permission: str | None = None
    order: int = 100
    #: Arguments of the endpoint's URL, e.g. (("object", "accounts"),).
    args: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _require(isinstance(self.label, str) and bool(self.label), "A NavItem needs a label.")
        _require(
            isinstance(self.endpoint, str) and bool(self.endpoint),
            f"NavItem {self.label!r} needs an endpoint name.",
        )
        _require(type(self.order) is int, f"NavItem {self.label!r}: order must be an integer.")
        _require(
            self.permission is None or isinstance(self.permission, str),
            f"NavItem {self.label!r}: permission must be a name or None.",
        )
        _require(
            isinstance(self.args, tuple)
            and all(
                isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in self.args
            ),
            f"NavItem {self.label!r}: args must be (name, value) pairs.",
        )


@dataclass(frozen=True)
class Permission:
    """A permission a plugin defines; its name starts with the plugin's name and a dot."""

    name: str
    label: str
    description: str = ""

    def __post_init__(self) -> None:
        if not _PERMISSION.match(self.name):
            raise ContributionError(
                f"Permission name {self.name!r} must look like 'plugin.action' "
                "(lower case, dot separated)."
            )


@dataclass(frozen=True)
class DashboardWidget:
    """A card on the home dashboard, rendered from ``template`` with ``context``."""

    title: str
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    permission: str | None = None
    order: int = 100
    wide: bool = False

    def __post_init__(self) -> None:
        _require(isinstance(self.title, str) and bool(self.title), "A widget needs a title.")
        _require(
            isinstance(self.template, str) and bool(self.template),
            f"Widget {self.title!r} needs a template name.",
        )
        _require(
            isinstance(self.context, Mapping), f"Widget {self.title!r}: context must be a mapping."
        )
        _require(type(self.order) is int, f"Widget {self.title!r}: order must be an integer.")
        _require(
            self.permission is None or isinstance(self.permission, str),
            f"Widget {self.title!r}: permission must be a name or None.",
        )


@dataclass(frozen=True)
class RecordPanel:
    """A section of a record's detail page, rendered from ``template`` with ``record``,
    ``meta`` (the object) and ``context``; panels are sorted by ``order``.

    ``placement`` "top" puts it above the record's field sections (what people work in,
    such as a quote's line items); "bottom", the default, below them.
    """

    title: str
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    order: int = 100
    placement: Literal["top", "bottom"] = "bottom"

    def __post_init__(self) -> None:
        _require(isinstance(self.title, str) and bool(self.title.strip()), "A panel needs a title.")
        _require(
            isinstance(self.template, str) and bool(self.template),
            f"Panel {self.title!r} needs a template name.",
        )
        _require(
            isinstance(self.context, Mapping), f"Panel {self.title!r}: context must be a mapping."
        )
        _require(type(self.order) is int, f"Panel {self.title!r}: order must be an integer.")
        _require(
            self.placement in ("top", "bottom"),
            f"Panel {self.title!r}: placement is 'top' or 'bottom'.",
        )


def _is_site_path(url: object) -> bool:
    """A path on this site only: no javascript: or another site's URL in a button.

    Browsers read a backslash as a slash and drop tabs and newlines from URLs, so a
    backslash after the first slash, or a tab between two slashes, would lead to another
    site: any backslash, whitespace or control character is refused, and the URL must
    have neither a scheme nor a host however it is split.
    """
    if not isinstance(url, str) or not url.startswith("/") or url.startswith("//"):
        return False
    if "\\" in url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return False
    parts = urlsplit(url)
    return parts.scheme == "" and parts.netloc == ""


RECORD_ACTION_METHODS = ("get", "post")
RECORD_ACTION_STYLES = ("secondary", "primary", "danger")


@dataclass(frozen=True)
class RecordAction:
    """A button in the header of a record's detail page.

    ``url`` is a path on this site (``url_for(...)``). A "post" action is a small form
    carrying the CSRF token; ``confirm`` is a question shown before it is sent."""

    label: str
    url: str
    method: str = "get"
    order: int = 100
    style: str = "secondary"
    confirm: str | None = None

    def __post_init__(self) -> None:
        _require(
            isinstance(self.label, str) and bool(self.label.strip()), "An action needs a label."
        )
        _require(
            _is_site_path(self.url),
            f"Action {self.label!r}: url must be a path on this site, such as url_for(...).",
        )
        _require(
            self.method in RECORD_ACTION_METHODS,
            f"Action {self.label!r}: method must be 'get' or 'post'.",
        )
        _require(type(self.order) is int, f"Action {self.label!r}: order must be an integer.")
        _require(
            self.style in RECORD_ACTION_STYLES,
            f"Action {self.label!r}: style must be one of {', '.join(RECORD_ACTION_STYLES)}.",
        )
        _require(
            self.confirm is None or isinstance(self.confirm, str),
            f"Action {self.label!r}: confirm must be a question or None.",
        )


@dataclass(frozen=True)
class PluginAssets:
    """Template and static folders of a plugin, and files to include on every page."""

    templates: Path | None = None
    static: Path | None = None
    #: Paths inside ``static`` included as <link rel=stylesheet> on every page.
    stylesheets: tuple[str, ...] = ()
    #: Paths inside ``static`` included as deferred <script> on every page.
    scripts: tuple[str, ...] = ()


@dataclass(frozen=True)
class FieldDefinition:
    """One field of an object, as the data model will store, validate and show it."""

    name: str
    type: str
    label: str
    required: bool = False
    unique: bool = False
    indexed: bool = False
    searchable: bool = False
    encrypted: bool = False
    #: With ``encrypted``: exact-match lookup (eq, in filters, import keys) through an
    #: HMAC of the value in a shadow column; text, email, phone, url and integer fields.
    blind_index: bool = False
    personal_data: bool = False
    default: Any = None
    help_text: str = ""
    #: Choices of a picklist or multi-picklist.
    options: tuple[str, ...] = ()
    #: API name of the object a lookup or many-to-many field points to.
    target: str | None = None
    on_delete: Literal["restrict", "clear"] = "restrict"
    max_length: int | None = None
    min_value: float | None = None
    max_value: float | None = None
    pattern: str | None = None
    formula: str | None = None
    #: What a formula computes: text, integer, decimal, date, datetime or boolean.
    formula_type: str = "text"
    #: Digits after the decimal point of a decimal, currency or percent field.
    scale: int = 2
    #: ISO 4217 code a currency amount takes when the input names none.
    currency: str = "EUR"
    #: Pattern of an auto-number, such as "Q-{0000}": the digits are zero-padded.
    format: str = "{0}"
    #: The detail view's section that shows the field.
    section: str = ""
    #: Computed by the declaring plugin: users' writes are refused, the system's (a
    #: ``RecordService(system=True)`` or a ``record_changing`` adjustment) go through.
    read_only: bool = False

    def __post_init__(self) -> None:
        if not _SNAKE.match(self.name) or "__" in self.name or len(self.name) > 50:
            raise ContributionError(
                f"Field name {self.name!r} must be snake_case, at most 50 characters, "
                "without a double underscore.",
                "name",
            )
        if self.name in STANDARD_FIELD_NAMES:
            raise ContributionError(
                f"Field name {self.name!r} is a standard field every object already has.",
                "name",
            )
        if not isinstance(self.label, str) or not self.label.strip():
            raise ContributionError(f"Field {self.name!r} needs a label.", "label")
        if self.type not in FIELD_TYPES:
            raise ContributionError(
                f"Field {self.name!r} has unknown type {self.type!r}; "
                f"use one of {', '.join(sorted(FIELD_TYPES))}.",
                "type",
            )
        if self.type in {"lookup", "many_to_many"} and not self.target:
            raise ContributionError(
                f"Field {self.name!r} is a {self.type} and needs a target.", "target"
            )
        if self.type in {"picklist", "multi_picklist"} and not self.options:
            raise ContributionError(
                f"Field {self.name!r} is a {self.type} and needs options.", "options"
            )
        if self.type == "formula" and not self.formula:
            raise ContributionError(
                f"Field {self.name!r} is a formula and needs an expression.", "formula"
            )
        if self.type == "formula" and self.formula_type not in FORMULA_TYPES:
            raise ContributionError(
                f"Field {self.name!r}: a formula computes one of "
                f"{', '.join(sorted(FORMULA_TYPES))}.",
                "formula_type",
            )
        if self.on_delete not in ("restrict", "clear"):
            raise ContributionError(
                f"Field {self.name!r}: on_delete is 'restrict' or 'clear'.", "on_delete"
            )
        if type(self.scale) is not int or not 0 <= self.scale <= 8:
            raise ContributionError(f"Field {self.name!r}: scale must be 0 to 8 digits.", "scale")
        if not re.fullmatch(r"[A-Z]{3}", self.currency or ""):
            raise ContributionError(
                f"Field {self.name!r}: currency must be an ISO 4217 code.", "currency"
            )
        if self.type == "auto_number" and not re.search(r"\{0+\}", self.format):
            raise ContributionError(
                f"Field {self.name!r}: an auto-number format needs a {{0000}} placeholder.",
                "format",
            )
        if self.max_length is not None and (
            type(self.max_length) is not int or self.max_length < 1
        ):
            raise ContributionError(
                f"Field {self.name!r}: max_length must be a positive integer.", "max_length"
            )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ContributionError(
                    f"Field {self.name!r} has an invalid pattern: {exc}.", "pattern"
                ) from None


@dataclass(frozen=True)
class ValidationRule:
    """A check across fields: ``check`` is a formula that must be true for a valid record.

    When it is false the record is refused with ``message``, shown beside ``field`` (or
    above the form when None). Empty values make comparisons false; test for them with
    ``is_empty(field)`` when a rule should only apply to filled-in values.
    """

    name: str
    check: str
    message: str
    field: str | None = None

    def __post_init__(self) -> None:
        _require(bool(_SNAKE.match(self.name)), f"Rule name {self.name!r} must be snake_case.")
        _require(bool(self.check.strip()), f"Rule {self.name!r} needs a check.")
        _require(bool(self.message.strip()), f"Rule {self.name!r} needs a message.")


@dataclass(frozen=True)
class ObjectDefinition:
    """A business object (contacts, leads, ...) declared in code by a plugin."""

    name: str
    label: str
    label_plural: str
    fields: tuple[FieldDefinition, ...] = ()
    icon: str = ""
    #: The field whose value names a record in lists and lookups.
    name_field: str | None = None
    description: str = ""
    #: Checks across fields, applied on every create and update.
    rules: tuple[ValidationRule, ...] = ()
    #: Groups of fields that identify a duplicate: each tuple matches when all its
    #: fields match after normalization (emails lower-cased, phones in E.164, names
    #: folded), e.g. (("email",), ("first_name", "last_name", "account")).
    duplicate_keys: tuple[tuple[str, ...], ...] = ()
    #: Listed in the top navigation. False for a plugin's internal objects (lines,
    #: rules, history) that users reach through their parent records, links, search and
    #: the API - their URLs keep working.
    navigation: bool = True
    #: Users (administrators too) may read its records but never create, edit, delete or
    #: import them: only ``RecordService(None, system=True)`` writes (e.g. a history kept
    #: by the plugin's hooks). Refused with Forbidden; the UI hides the buttons.
    system_only: bool = False

    def __post_init__(self) -> None:
        if not _SNAKE.match(self.name):
            raise ContributionError(
                f"Object API name {self.name!r} must be plural snake_case, such as 'contacts'.",
                "name",
            )
        seen: set[str] = set()
        for item in self.fields:
            if item.name in seen:
                raise ContributionError(
                    f"Object {self.name!r} declares field {item.name!r} twice.", "fields"
                )
            seen.add(item.name)
        if len(self.name) > 40:
            raise ContributionError(
                f"Object API name {self.name!r} is longer than 40 characters.", "name"
            )
        if self.name_field is not None and self.name_field not in seen:
            raise ContributionError(
                f"Object {self.name!r} names its records by {self.name_field!r}, "
                "which is not one of its fields.",
                "name_field",
            )
        for group in self.duplicate_keys:
            for name in group:
                if name not in seen:
                    raise ContributionError(
                        f"Object {self.name!r}: duplicate key field {name!r} "
                        "is not one of its fields.",
                        "duplicate_keys",
                    )


@dataclass(frozen=True)
class DemoUser:
    email: str
    name: str
    role: str


@dataclass
class DemoContext:
    """Handed to ``load_demo_data``: the demo organization's roles and users."""

    roles: tuple[str, ...]
    users: tuple[DemoUser, ...]
    #: grant(role_name, permission, ...) adds permissions to a demo role.
    grant: Callable[..., None]
    #: True for `bastion init --demo`: also create sample business records. False in
    #: tests' demo: create users, teams and grants only, tests make their own records.
    sample_records: bool = False
    # Supplied by the core (bastion.provision); the methods below delegate to them.
    _add_team: Callable[..., None] | None = field(default=None, repr=False)
    _add_user: Callable[..., str] | None = field(default=None, repr=False)
    _allow: Callable[..., None] | None = field(default=None, repr=False)

    def user_for_role(self, role: str) -> DemoUser:
        for user in self.users:
            if user.role == role:
                return user
        raise KeyError(f"The demo organization has no user in the role {role!r}.")

    def add_team(
        self, name: str, *, parent: str | None = None, manager_email: str | None = None
    ) -> None:
        """Create a team, under the team named ``parent``, managed by an existing user.

        Raises ValueError when the team exists, or the parent or manager does not."""
        if self._add_team is None:
            raise RuntimeError("This demo context cannot create teams.")
        self._add_team(name, parent=parent, manager_email=manager_email)

    def add_user(self, email: str, name: str, role: str, *, team: str | None = None) -> DemoUser:
        """Create a demo user (the demo's password) in ``role`` and optionally a team.

        The user is added to ``users``. Raises ValueError when the email is taken or the
        role or team does not exist."""
        if self._add_user is None:
            raise RuntimeError("This demo context cannot create users.")
        stored_email = self._add_user(email, name, role, team=team)  # normalized
        user = DemoUser(stored_email, name, role)
        self.users = (*self.users, user)
        return user

    def allow(self, role: str, object_name: str, actions: tuple[str, ...], scope: str) -> None:
        """Set the role's rule on an object to exactly ``actions`` (read, create, edit,
        delete, import, export) on the records ``scope`` reaches (own, team,
        team_tree, all); an existing rule for the role and object is replaced."""
        if self._allow is None:
            raise RuntimeError("This demo context cannot change object rules.")
        self._allow(role, object_name, (actions,) if isinstance(actions, str) else actions, scope)
