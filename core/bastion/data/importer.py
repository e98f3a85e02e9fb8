"""CSV import through the record service: mapping, dry run, upsert, modes, report.

What real files look like is handled here: UTF-8 with or without a byte-order mark
(Windows-1252 and UTF-16 as a fallback), CRLF or LF line ends, commas, semicolons or
tabs as separators, quoted cells holding separators and line breaks. Every row error
names the physical line where the row starts (the header is line 1), so a user can find
it in a text editor even when quoted cells span several lines.

Columns map to fields by a mapping (column -> field API name, saved by name as an
:class:`~bastion.data.models.ImportMapping`) or, without one, by the column's name: a
field's API name, or its label (case-insensitive). Cells go to the record service as
they are; it parses and checks them exactly as it does a form or an API body. Empty
cells set nothing: a new record gets its defaults, an updated record keeps its value.

Modes:

- all-or-nothing (the default): one transaction; any bad row rolls everything back
  and the report lists every bad row, not just the first;
- skip bad rows: good rows are written (committed batch by batch, so other users are
  not locked out during a long import) and bad ones reported;
- dry run: either mode, checked against the database in a transaction that is always
  rolled back.

With a key field, a row whose key matches a record the user can see updates it (the
key must identify one record); others create a record. Duplicates (rows that look
like records the user can see, or like earlier rows of the file, on the object's
duplicate keys) are flagged, and skipped only when the user asks for it.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bastion import audit
from bastion.data import blind_index
from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import RecordError, ValidationFailed
from bastion.data.exporter import formula_like
from bastion.data.models import ImportMapping
from bastion.data.query import Filter
from bastion.data.records import MAX_LIMIT, RecordService
from bastion.data.values import FieldValueError, is_empty, parse_filter_value, to_json
from bastion.db import db

log = logging.getLogger(__name__)

#: Rows written per batch (and per progress report).
BATCH_ROWS = 500
#: Separators recognized in the header line, the first being the default.
SEPARATORS = (",", ";", "\t")
#: Mapping names are shown in menus.
MAX_MAPPING_NAME = 100
#: At most this many earlier records are compared with the rows of a batch per
#: duplicate key: a key matching more is not a useful signal.
MAX_DUPLICATE_CANDIDATES = 5_000
#: Existing records named per flagged row.
MAX_FLAGGED_RECORDS = 5
#: Values in one ``in`` filter (bastion.data.query.MAX_IN).
IN_LIMIT = 500

Progress = Callable[[int, int], None]


class ImportProblem(Exception):
    """The file or the options cannot be imported at all (nothing was written)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _RollBack(Exception):
    """Raised inside the import's transaction to undo it (dry run, bad rows)."""


@dataclass
class ImportOptions:
    #: CSV column -> field API name ("" ignores the column); None maps by column name.
    mapping: dict[str, str] | None = None
    key_field: str | None = None
    dry_run: bool = False
    skip_bad_rows: bool = False
    skip_duplicates: bool = False
    #: Owner of new records when the system imports (the CLI without --as).
    default_owner: int | None = None


@dataclass
class RowError:
    line: int
    #: [{"column": header or "", "field": API name or "", "message": sentence}]
    problems: list[dict[str, str]]

    @property
    def text(self) -> str:
        parts = []
        for item in self.problems:
            where = f"column {item['column']}: " if item.get("column") else ""
            parts.append(f"{where}{item['message']}")
        return "; ".join(parts)


@dataclass
class DuplicateFlag:
    line: int
    #: Existing records the row looks like: [{"id", "name", "matched_on"}].
    records: list[dict[str, Any]] = field(default_factory=list)
    #: Earlier lines of the file the row repeats.
    lines: list[int] = field(default_factory=list)
    matched_on: list[str] = field(default_factory=list)
    skipped: bool = False


@dataclass
class ImportReport:
    object: str
    dry_run: bool = False
    skip_bad_rows: bool = False
    skip_duplicates: bool = False
    key_field: str | None = None
    encoding: str = "UTF-8"
    #: CSV column -> field API name, for the columns that were imported.
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    total: int = 0
    processed: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    duplicates: list[DuplicateFlag] = field(default_factory=list)
    #: Whether the changes were committed (False for a dry run or a refused file).
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        verb = "would be" if not self.written else "were"
        counts = (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"
            f", {self.skipped} skipped"
        )
        bad = f"{len(self.errors)} bad row{'s' if len(self.errors) != 1 else ''}"
        if self.dry_run:
            return f"Dry run of {self.total} rows: {counts} ({bad}); nothing was written."
        if not self.written:
            return (
                f"Nothing was written: {bad} in {self.total} rows (all or nothing). "
                "Correct them, or import with skip-bad-rows."
            )
        return f"{self.total} rows: {counts} ({bad}). Changes {verb} saved."

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["summary"] = self.summary()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImportReport:
        known = {name for name in cls.__dataclass_fields__}
        values = {key: value for key, value in data.items() if key in known}
        values["errors"] = [RowError(**item) for item in data.get("errors", [])]
        values["duplicates"] = [DuplicateFlag(**item) for item in data.get("duplicates", [])]
        return cls(**values)


# --------------------------------------------------------------------------- reading


def decode(data: bytes) -> tuple[str, str]:
    """The file's text and the encoding it was read in."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError:
            pass
    else:
        try:
            return data.decode("utf-8-sig"), "UTF-8"
        except UnicodeDecodeError:
            pass
        try:  # what spreadsheets on Windows write by default
            return data.decode("cp1252"), "Windows-1252"
        except UnicodeDecodeError:
            pass
    raise ImportProblem(
        'The file is not UTF-8 text. Save it as "CSV UTF-8" from your spreadsheet and try again.'
    )


def _separator(text: str) -> str:
    first = text.split("\n", 1)[0]
    counts = {sep: first.count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])
    return best if counts[best] else SEPARATORS[0]


def read_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(physical line where the row starts, cells) for every non-blank row.

    A quote opened and never closed would make the lenient reader take the rest of the
    file as one cell: that is refused (ImportProblem naming the line), not imported.
    """
    separator = _separator(text)
    row_lines: list[str] = []  # the physical lines of the row being read

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            row_lines.append(line)
            yield line

    total = sum(1 for _ in io.StringIO(text, newline=""))
    reader = csv.reader(lines(), delimiter=separator)
    last_line = 0
    try:
        for cells in reader:
            start, last_line = last_line + 1, reader.line_num
            if last_line == total and _unterminated(row_lines, separator):
                raise ImportProblem(
                    f"Line {start} opens a quoted cell that is never closed, so the rest of "
                    "the file would be read as one cell. Check its quotes."
                )
            row_lines.clear()
            if not any(cell.strip() for cell in cells):
                continue
            yield start, cells
    except csv.Error as exc:
        raise ImportProblem(
            f"Line {reader.line_num + 1} cannot be read as CSV ({exc}). Check its quotes."
        ) from None


def _unterminated(row_lines: list[str], separator: str) -> bool:
    """Whether the last row of a file ends inside a quoted cell."""
    if '"' not in "".join(row_lines):
        return False
    strict = csv.reader(row_lines, delimiter=separator, strict=True)
    try:
        for _ in strict:
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def count_rows(text: str) -> int:
    """Data rows of the file (the header excluded)."""
    return max(sum(1 for _ in read_rows(text)) - 1, 0)


# --------------------------------------------------------------------------- mapping


@dataclass
class Column:
    index: int
    header: str
    field: FieldMeta


def fold_title(text: str) -> str:
    """A column title compared case- and spacing-insensitively."""
    return " ".join(text.split()).casefold()


def resolve_columns(
    service: RecordService,
    meta: ObjectMeta,
    header: list[str],
    mapping: Mapping[str, str] | None,
    key_field: str | None,
) -> tuple[list[Column], list[str]]:
    """The imported columns and the ignored ones; ImportProblem for a bad mapping."""
    access = service.field_access(meta)
    editable = {name for name, level in access.items() if level == "edit"}
    readable = {name for name, level in access.items() if level != "hidden"}
    headers = [cell.strip() for cell in header]
    if not any(headers):
        raise ImportProblem("The first line must name the columns.")
    _refuse_repeated_titles(headers)
    columns: list[Column] = []
    ignored: list[str] = []
    wanted: dict[str, str] = {}
    if mapping is not None:
        wanted = {fold_title(column): str(name or "").strip() for column, name in mapping.items()}
    for index, title in enumerate(headers):
        if not title:
            continue
        if mapping is not None:
            name = wanted.get(fold_title(title), "")
            if not name:
                ignored.append(title)
                continue
            if name not in readable or name not in meta.fields:
                raise ImportProblem(
                    f"Column {title} maps to {name!r}, which {meta.label_plural.lower()} "
                    "do not have."
                )
            if name not in editable and name != key_field and meta.fields[name].read_only:
                raise ImportProblem(
                    f"Column {title} maps to {meta.fields[name].label}, which is set by "
                    "Bastion and cannot be imported; leave the column unmapped."
                )
            if name not in editable and name != key_field:
                raise ImportProblem(
                    f"Column {title} maps to {meta.fields[name].label}, which you cannot change."
                )
            columns.append(Column(index, title, meta.fields[name]))
            continue
        item = field_for_title(meta, title, editable | ({key_field} if key_field else set()))
        if item is None:
            ignored.append(title)
        else:
            columns.append(Column(index, title, item))
    seen: dict[str, str] = {}
    for column in columns:
        other = seen.setdefault(column.field.name, column.header)
        if other != column.header:
            raise ImportProblem(
                f"Columns {other} and {column.header} both go to {column.field.label}; "
                "map one of them only."
            )
    if not columns:
        names = ", ".join(sorted(editable - {"owner"})[:8])
        raise ImportProblem(
            "No column matches a field you can set. Name the columns after the fields "
            f"(such as {names}) or choose a mapping."
        )
    return columns, ignored


def _refuse_repeated_titles(headers: list[str]) -> None:
    """Two columns of one name: which one holds the value is anyone's guess."""
    seen: set[str] = set()
    for title in headers:
        if not title:
            continue
        if fold_title(title) in seen:
            raise ImportProblem(
                f"The column {title} appears twice in the first line; rename or remove one."
            )
        seen.add(fold_title(title))


def field_for_title(meta: ObjectMeta, title: str, allowed: set[str]) -> FieldMeta | None:
    """The field among ``allowed`` a column title names: API name, or label."""
    if title in allowed and title in meta.fields:
        return meta.fields[title]
    folded = fold_title(title)
    for name in allowed:
        item = meta.fields.get(name)
        if item is not None and (name.casefold() == folded or fold_title(item.label) == folded):
            return item
    return None


# --------------------------------------------------------------------------- duplicates


class _Duplicates:
    """Flags rows that look like readable records or earlier rows, on duplicate keys.

    Uses the normalization of :mod:`bastion.data.duplicates` (when that module is
    present) but asks the database once per key and batch instead of once per row.
    """

    def __init__(self, service: RecordService, meta: ObjectMeta):
        self.service, self.meta = service, meta
        self.groups: list[tuple[FieldMeta, ...]] = []
        #: Field names of each group, by the group's identity (asked for every row).
        self.names: dict[int, tuple[str, ...]] = {}
        #: Hash of (group, normalized key) -> first line with it; a hash, not the key,
        #: keeps a million-row file small (a collision only adds a flag).
        self.first_line: dict[int, int] = {}
        self.created: set[int] = set()
        try:
            from bastion.data import duplicates
        except ImportError:  # pragma: no cover - the module ships with the core
            self.module = None
            return
        self.module = duplicates
        access = service.field_access(meta)
        if not service.can(meta.name, "read"):
            return
        for group in meta.duplicate_keys:
            items = tuple(meta.fields.get(name) for name in group)
            if all(
                item is not None
                and access.get(item.name) != "hidden"
                and (blind_index.has_index(item) or (item.filterable and not item.encrypted))
                for item in items
            ):
                self.groups.append(items)  # type: ignore[arg-type]
        self.names = {id(group): tuple(item.name for item in group) for group in self.groups}

    def keys(self, values: Mapping[str, Any]) -> list[tuple[tuple[FieldMeta, ...], tuple]]:
        """(group, normalized key) for the groups whose fields the row fills in."""
        if self.module is None:
            return []
        normalize, context = self.module.normalize, self.service.context
        found = []
        for group in self.groups:  # called for every row: plain loops, no generators
            filled = []
            for item in group:
                value = values.get(item.name)
                if is_empty(value):
                    break  # before normalizing: most rows leave some group incomplete
                filled.append(value)
            else:
                key = [
                    normalize(item, value, context)
                    for item, value in zip(group, filled, strict=True)
                ]
                if None not in key:
                    found.append((group, tuple(key)))
        return found

    def flag_batch(self, rows: list[tuple[int, dict[str, Any]]]) -> dict[int, DuplicateFlag]:
        """Flags by line for rows (line, raw values) that will create records."""
        flags: dict[int, DuplicateFlag] = {}
        keyed = [(line, self.keys(values), values) for line, values in rows]
        for line, keys, _ in keyed:
            for group, key in keys:
                marker = hash((self.names[id(group)], *key))
                first = self.first_line.setdefault(marker, line)
                if first != line:
                    flag = flags.setdefault(line, DuplicateFlag(line))
                    if first not in flag.lines:
                        flag.lines.append(first)
                    flag.matched_on.extend(i.name for i in group if i.name not in flag.matched_on)
        for group in self.groups:
            self._existing(group, keyed, flags)
        return flags

    def _existing(
        self,
        group: tuple[FieldMeta, ...],
        keyed: list[tuple[int, list, dict[str, Any]]],
        flags: dict[int, DuplicateFlag],
    ) -> None:
        """Flag rows whose key equals a readable record's, asking in chunks whose
        ``in`` filters stay within the query's limit."""
        wanted: dict[tuple, list[int]] = {}
        probes: dict[tuple, list[set[Any]]] = {}
        probed = [self._probe_type(item) for item in group]
        for line, keys, values in keyed:
            for candidate_group, key in keys:
                if candidate_group is not group:
                    continue
                wanted.setdefault(key, []).append(line)
                sets = probes.setdefault(key, [set() for _ in group])
                for item, part, found, probe in zip(group, key, sets, probed, strict=True):
                    if probe:
                        found.update(self._probe_values(item, part, values[item.name]))
        chunk: list[tuple] = []
        options: list[set[Any]] = [set() for _ in group]
        for key, probe in probes.items():
            added = [len(new - have) for have, new in zip(options, probe, strict=True)]
            if chunk and any(
                len(have) + n > IN_LIMIT for have, n in zip(options, added, strict=True)
            ):
                self._probe(group, chunk, options, wanted, flags)
                chunk, options = [], [set() for _ in group]
            for have, new in zip(options, probe, strict=True):
                have |= new
            chunk.append(key)
        if chunk:
            self._probe(group, chunk, options, wanted, flags)

    def _probe(
        self,
        group: tuple[FieldMeta, ...],
        keys: list[tuple],
        options: list[set[Any]],
        wanted: dict[tuple, list[int]],
        flags: dict[int, DuplicateFlag],
    ) -> None:
        filters = [
            Filter(item.name, "in", sorted(str(value) for value in values))
            for item, values in zip(group, options, strict=True)
            if values and len(values) <= IN_LIMIT
        ]
        if not filters:
            return  # nothing the database can narrow down: no candidates
        chosen = set(keys)
        shown = [item.name for item in group]
        access = self.service.field_access(self.meta)
        if self.meta.name_field and access.get(self.meta.name_field) not in (None, "hidden"):
            shown.append(self.meta.name_field)
        cursor, seen = None, 0
        while seen < MAX_DUPLICATE_CANDIDATES:
            try:
                page = self.service.query(
                    self.meta.name,
                    filters=filters,
                    sort="id",
                    limit=MAX_LIMIT,
                    cursor=cursor,
                    fields=shown,
                )
            except RecordError:
                return  # a field this user may not filter on: no candidates
            for record in page.records:
                if record.id in self.created:
                    continue  # made by this import: the in-file check covers it
                key = tuple(
                    self.module.normalize(item, record.get(item.name), self.service.context)
                    for item in group
                )
                if key not in chosen:
                    continue
                for line in wanted[key]:
                    self._flag_record(flags, line, group, record)
            seen += len(page.records)
            cursor = page.next_cursor
            if cursor is None:
                return

    def _flag_record(
        self, flags: dict[int, DuplicateFlag], line: int, group: tuple[FieldMeta, ...], record: Any
    ) -> None:
        flag = flags.setdefault(line, DuplicateFlag(line))
        names = [item.name for item in group]
        flag.matched_on.extend(name for name in names if name not in flag.matched_on)
        if len(flag.records) >= MAX_FLAGGED_RECORDS:
            return
        for known in flag.records:
            if known["id"] == record.id:
                known["matched_on"].extend(n for n in names if n not in known["matched_on"])
                return
        name = self.meta.record_name({**record.values, "id": record.id})
        flag.records.append({"id": record.id, "name": name, "matched_on": names})

    def _probe_type(self, item: FieldMeta) -> bool:
        return item.type in self.module.PROBED_TYPES or item.type in (
            *self.module.TEXT_TYPES,
            "url",
        )

    def _probe_values(self, item: FieldMeta, normalized: Any, raw: Any) -> list[Any]:
        """What to look for in the database to find records equal to ``normalized``."""
        if item.type in self.module.PROBED_TYPES:
            value = to_json(item, normalized)
            return [value if not isinstance(value, dict) else f"{value['object']}:{value['id']}"]
        text = " ".join(str(raw).split())
        if item.type == "url":
            host = str(normalized)
            return [
                f"{scheme}{www}{host}{slash}"
                for scheme in ("https://", "http://")
                for www in ("", "www.")
                for slash in ("", "/")
            ]
        return sorted({text, text.lower(), text.upper(), text.title()})


# --------------------------------------------------------------------------- importing


@dataclass
class _Row:
    line: int
    values: dict[str, Any]
    key: Any = None
    target: tuple[int, int] | None = None  # (id, version) to update


class Importer:
    """One import of one file into one object, as ``service``'s user."""

    def __init__(
        self,
        service: RecordService,
        object_name: str,
        options: ImportOptions,
        progress: Progress | None = None,
        actor: str | None = None,
    ):
        self.service = service
        self.actor = actor
        self.meta = service.require(object_name, "import")
        self.options = options
        self.progress = progress
        self.report = ImportReport(
            self.meta.name,
            dry_run=options.dry_run,
            skip_bad_rows=options.skip_bad_rows,
            skip_duplicates=options.skip_duplicates,
            key_field=options.key_field,
        )
        self.key: FieldMeta | None = None
        self.columns: list[Column] = []
        #: Key value -> (id, version) of records this import created or updated.
        self.known: dict[Any, tuple[int, int]] = {}
        #: What the current savepoint changed in ``known`` (value before) and created.
        self.journal_known: dict[Any, tuple[int, int] | None] = {}
        self.journal_created: list[int] = []
        self.duplicates = _Duplicates(service, self.meta)
        self.may_create = service.can(self.meta.name, "create")
        self.may_edit = service.can(self.meta.name, "edit")

    # ------------------------------------------------------------------ setup

    def _check_options(self) -> None:
        name = self.options.key_field
        if name:
            item = self.meta.fields.get(name)
            if item is None or self.service.field_access(self.meta).get(name) == "hidden":
                raise ImportProblem(
                    f"{self.meta.label_plural} have no field {name!r} to use as key."
                )
            findable = item.filterable or blind_index.has_index(item)  # exact matches only
            if not findable or not item.in_row or item.type in {"multi_picklist"}:
                raise ImportProblem(f"{item.label} cannot identify records; choose another key.")
            if name != "id" and item.name not in {c.field.name for c in self.columns}:
                raise ImportProblem(f"The key {item.label} is not one of the imported columns.")
            self.key = item
        if not self.may_create and not (self.key and self.may_edit):
            raise ImportProblem(f"You may not create {self.meta.label_plural.lower()}.")

    def run(self, data: bytes) -> ImportReport:
        text, self.report.encoding = decode(data)
        self.report.total = count_rows(text)
        rows = read_rows(text)
        first = next(rows, None)
        if first is None:
            raise ImportProblem("The file is empty: it needs a header line and at least one row.")
        _, header = first
        self.columns, self.report.ignored_columns = resolve_columns(
            self.service, self.meta, header, self.options.mapping, self.options.key_field
        )
        self.report.columns = {c.header: c.field.name for c in self.columns}
        self._check_options()
        width = len(header)
        try:
            if self.options.skip_bad_rows and not self.options.dry_run:
                for batch in _batches(rows):
                    # Each batch commits: check the user's rights afresh for the next.
                    self.service.refresh_access()
                    with self.service.atomic():
                        _begin_writing()
                        self._batch(batch, width)
                    self._advance(len(batch))
                self.report.written = True
            else:
                with self.service.atomic():
                    _begin_writing()
                    for batch in _batches(rows):
                        self._batch(batch, width)
                        self._advance(len(batch))
                    if self.options.dry_run or self.report.errors:
                        raise _RollBack
                self.report.written = True
        except _RollBack:
            self.report.written = False
        self.report.errors.sort(key=lambda error: error.line)
        self._audit()
        return self.report

    def _advance(self, count: int) -> None:
        self.report.processed += count
        if self.progress is not None:
            self.progress(self.report.processed, self.report.total)

    def _audit(self) -> None:
        report = self.report
        audit.record(
            "records.import",
            actor=self.actor,
            object_type=self.meta.name,
            changes={
                "rows": report.total,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "skipped": report.skipped,
                "errors": len(report.errors),
                "duplicates": len(report.duplicates),
                "dry_run": report.dry_run,
                "mode": "skip_bad_rows" if report.skip_bad_rows else "all_or_nothing",
                "key": report.key_field,
                "written": report.written,
            },
            outcome="success" if report.written or report.dry_run else "failure",
        )

    # ------------------------------------------------------------------ one batch

    def _batch(self, batch: list[tuple[int, list[str]]], width: int) -> None:
        rows: list[_Row] = []
        for line, cells in batch:
            if len(cells) > width and any(cell.strip() for cell in cells[width:]):
                self._error(line, {"": f"This row has {len(cells)} cells but the header {width}."})
                continue
            if len(cells) < width:
                # A lost separator or a stray line break shifts or splits the cells, and
                # a count cannot tell that from dropped empty ones: refuse, don't guess.
                self._error(
                    line,
                    {
                        "": f"This row has {len(cells)} cells but the header {width}; "
                        "give every column a cell, even an empty one."
                    },
                )
                continue
            rows.append(_Row(line, self._values(cells)))
        if self.key is not None:
            rows = self._match_keys(rows)
        creating = [(row.line, row.values) for row in rows if row.target is None]
        flags = self.duplicates.flag_batch(creating) if creating else {}
        for _line, flag in sorted(flags.items()):
            flag.skipped = self.options.skip_duplicates
            self.report.duplicates.append(flag)
        if self.options.skip_duplicates:
            kept = [row for row in rows if row.target is not None or row.line not in flags]
            self.report.skipped += len(rows) - len(kept)
            rows = kept
        state = self._state(rows)
        try:
            with db.session.begin_nested():
                self._write(rows)
        except IntegrityError:
            # A unique value is taken (by a record, or by an earlier row): undo the
            # batch, then write its rows one at a time to learn which.
            self._restore(rows, state)
            for row in rows:
                state = self._state([row])
                try:
                    with db.session.begin_nested():
                        self._write([row])
                except IntegrityError:
                    self._restore([row], state)
                    self._unique_error(row)

    def _state(self, rows: list[_Row]) -> tuple[Any, ...]:
        """Where things stand before a savepoint; changes after it go to the journal."""
        report = self.report
        counts = (report.created, report.updated, report.unchanged, len(report.errors))
        self.journal_known, self.journal_created = {}, []
        return counts, [row.target for row in rows]

    def _restore(self, rows: list[_Row], state: tuple[Any, ...]) -> None:
        """Forget what a rolled-back savepoint did: its counts, errors and new ids."""
        counts, targets = state
        report = self.report
        report.created, report.updated, report.unchanged = counts[:3]
        del report.errors[counts[3] :]
        for marker, before in self.journal_known.items():
            if before is None:
                self.known.pop(marker, None)
            else:
                self.known[marker] = before
        self.duplicates.created.difference_update(self.journal_created)
        for row, target in zip(rows, targets, strict=True):
            row.target = target

    def _remember(self, key: Any, target: tuple[int, int]) -> None:
        marker = _hashable(key)
        if marker not in self.journal_known:
            self.journal_known[marker] = self.known.get(marker)
        self.known[marker] = target

    def _values(self, cells: list[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for column in self.columns:
            raw = cells[column.index].strip() if column.index < len(cells) else ""
            if not raw:
                continue
            if raw[0] == "'" and formula_like(raw[1:]):
                raw = raw[1:]  # escaped by the exporter against CSV injection
            values[column.field.name] = raw
        if self.service.system and "owner" not in values and self.options.default_owner is not None:
            values["owner"] = self.options.default_owner
        return values

    def _match_keys(self, rows: list[_Row]) -> list[_Row]:
        key = self.key
        assert key is not None
        kept: list[_Row] = []
        for row in rows:
            # A key nobody may write (the id, an auto-number) finds records only.
            found_only = key.name == "id" or not key.writable
            raw = row.values.pop(key.name, None) if found_only else row.values.get(key.name)
            if raw is None:
                kept.append(row)
                continue
            try:
                row.key = parse_filter_value(key, raw, self.service.context)
            except FieldValueError as exc:
                self._error(row.line, {key.name: str(exc)})
                continue
            kept.append(row)
        lookup = sorted({_hashable(row.key) for row in kept if row.key is not None}, key=str)
        found: dict[Any, list[tuple[int, int]]] = {}
        for start in range(0, len(lookup), MAX_LIMIT):
            chunk = lookup[start : start + MAX_LIMIT]
            values = [to_json(key, value) for value in chunk]
            cursor = None
            while True:
                page = self.service.query(
                    self.meta.name,
                    filters=[Filter(key.name, "in", values)],
                    sort="id",
                    limit=MAX_LIMIT,
                    cursor=cursor,
                    fields=[key.name],
                )
                for record in page.records:
                    found.setdefault(_hashable(record.get(key.name)), []).append(
                        (record.id, record.version)
                    )
                cursor = page.next_cursor
                if cursor is None:
                    break
        result = []
        for row in kept:
            if row.key is None:
                result.append(row)
                continue
            marker = _hashable(row.key)
            if marker in self.known:
                row.target = self.known[marker]
            else:
                matches = found.get(marker, [])
                if len(matches) > 1:
                    self._error(
                        row.line,
                        {
                            key.name: f"{len(matches)} {self.meta.label_plural.lower()} have "
                            f"this {key.label.lower()}; the key must identify one record."
                        },
                    )
                    continue
                row.target = matches[0] if matches else None
            if row.target is None and key.name == "id":
                self._error(
                    row.line,
                    {"id": f"There is no {self.meta.label.lower()} {row.key} that you can see."},
                )
                continue
            result.append(row)
        return result

    def _write(self, rows: list[_Row]) -> None:
        """Rows in file order: creations are sent together, updates one by one."""
        pending: list[_Row] = []
        pending_keys: set[Any] = set()
        for row in rows:
            marker = _hashable(row.key) if row.key is not None else None
            if marker is not None and marker in self.known:
                row.target = self.known[marker]  # written earlier in this import
            if row.target is None and marker is not None and marker in pending_keys:
                self._create(pending)  # an earlier row of this batch creates it
                pending, pending_keys = [], set()
                row.target = self.known.get(marker)
            if row.target is None:
                pending.append(row)
                if marker is not None:
                    pending_keys.add(marker)
            else:
                self._update(row)
        self._create(pending)

    def _create(self, rows: list[_Row]) -> None:
        if not rows:
            return
        if not self.may_create:
            for row in rows:
                self._error(row.line, {"": f"You may not create {self.meta.label_plural.lower()}."})
            return
        results = self.service.create_many(
            self.meta.name, [row.values for row in rows], return_errors=True
        )
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, Exception):
                self._refused(row.line, result)
                continue
            self.report.created += 1
            self.duplicates.created.add(result)
            self.journal_created.append(result)
            if row.key is not None:
                self._remember(row.key, (result, 1))

    def _update(self, row: _Row) -> None:
        assert row.target is not None
        record_id, version = row.target
        if not self.may_edit:
            self._error(row.line, {"": f"You may not change {self.meta.label_plural.lower()}."})
            return
        try:
            record = self.service.update(self.meta.name, record_id, row.values, version=version)
        except RecordError as exc:
            self._refused(row.line, exc)
            return
        if record.version == version:
            self.report.unchanged += 1
        else:
            self.report.updated += 1
        self._remember(row.key, (record_id, record.version))

    # ------------------------------------------------------------------ errors

    def _refused(self, line: int, exc: Exception) -> None:
        if isinstance(exc, ValidationFailed):
            self._error(line, dict(exc.errors))
        elif isinstance(exc, RecordError):
            self._error(line, {exc.field or "": exc.message})
        else:  # pragma: no cover - create_many returns only record errors
            raise exc

    def _unique_error(self, row: _Row) -> None:
        unique = [
            self.meta.fields[name]
            for name in row.values
            if name in self.meta.fields and self.meta.fields[name].unique
        ]
        labels = ", ".join(item.label for item in unique) or "a unique field"
        name = unique[0].name if len(unique) == 1 else ""
        self._error(
            row.line,
            {name: f"Another {self.meta.label.lower()} already has this value in {labels}."},
        )

    def _error(self, line: int, errors: Mapping[str, str]) -> None:
        by_field = {c.field.name: c.header for c in self.columns}
        problems = []
        for name, message in errors.items():
            problems.append(
                {"column": by_field.get(name, ""), "field": name, "message": str(message)}
            )
        self.report.errors.append(RowError(line, problems))


def _begin_writing() -> None:
    """Open the database transaction now, for writing.

    On SQLite the driver begins a transaction only before the first INSERT or UPDATE; a
    savepoint taken earlier would then be the outermost transaction, and releasing it
    would commit everything so far. BEGIN IMMEDIATE also takes the write lock up front
    (waiting for it like any writer), so reads made before the first write cannot go
    stale under a concurrent writer.
    """
    connection = db.session.connection()
    raw = connection.connection.dbapi_connection
    if connection.dialect.name == "sqlite" and not getattr(raw, "in_transaction", True):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _batches(rows: Iterator[tuple[int, list[str]]]) -> Iterator[list[tuple[int, list[str]]]]:
    batch: list[tuple[int, list[str]]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def run_import(
    service: RecordService,
    object_name: str,
    data: bytes,
    options: ImportOptions | None = None,
    *,
    progress: Progress | None = None,
    actor: str | None = None,
) -> ImportReport:
    """Import ``data`` (a CSV file's bytes) into ``object_name`` as ``service``'s user.

    Raises ImportProblem when the file cannot be imported at all, and the record
    service's Forbidden / NotFound when the user may not import this object.
    ``actor`` names who acts in the import's audit entry (default: the signed-in user).
    """
    importer = Importer(service, object_name, options or ImportOptions(), progress, actor)
    return importer.run(data)


# --------------------------------------------------------------------------- mappings


def mapping_names(object_name: str) -> list[str]:
    """Names of the mappings saved for an object, alphabetically."""
    rows = db.session.scalars(
        select(ImportMapping.name)
        .where(ImportMapping.object_name == object_name)
        .order_by(ImportMapping.name)
    )
    return list(rows)


def load_mapping(object_name: str, name: str) -> ImportMapping | None:
    return db.session.scalar(
        select(ImportMapping).where(
            ImportMapping.object_name == object_name, ImportMapping.name == name.strip()
        )
    )


def mapping_of(row: ImportMapping) -> dict[str, str]:
    data = json.loads(row.mapping or "{}")
    return {str(k): str(v or "") for k, v in data.items()} if isinstance(data, dict) else {}


def save_mapping(
    object_name: str,
    name: str,
    mapping: Mapping[str, str],
    key_field: str | None,
    user_id: int | None,
    *,
    replace_any: bool = False,
) -> ImportMapping:
    """Create or replace the object's mapping called ``name`` (the caller commits).

    Mappings are shared by everyone who imports the object, so one saved by someone
    else is replaced only with ``replace_any`` (the system, or ``admin.schema``).
    """
    name = " ".join(name.split())
    if not name or len(name) > MAX_MAPPING_NAME:
        raise ImportProblem(f"Name the mapping with 1 to {MAX_MAPPING_NAME} characters.")
    row = load_mapping(object_name, name)
    if row is not None and not replace_any and row.created_by_id != user_id:
        raise ImportProblem(f"Someone else saved a mapping called “{name}”; choose another name.")
    if row is None:
        row = ImportMapping(object_name=object_name, name=name)
        db.session.add(row)
    row.mapping = json.dumps(dict(mapping), ensure_ascii=False)
    row.key_field = key_field or None
    row.created_by_id = user_id
    db.session.flush()
    return row


def parse_mapping_json(text: str) -> tuple[dict[str, str], str | None]:
    """A mapping file: {"column": "field", ...} or {"mapping": {...}, "key_field": ...}."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ImportProblem(f"The mapping file is not JSON: {exc}.") from None
    key = None
    if isinstance(data, dict) and isinstance(data.get("mapping"), dict):
        key = data.get("key_field")
        data = data["mapping"]
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str | None) for k, v in data.items()
    ):
        raise ImportProblem(
            'A mapping is a JSON object of column names to field names: {"E-mail": "email"}.'
        )
    return {k: v or "" for k, v in data.items()}, key if isinstance(key, str) else None
