"""Field values: parsing what users, the API and CSV files send, checking, and rendering.

One function per direction, driven by the field's type, so a form, a JSON body and a
CSV cell are read the same way and give the same messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import email_validator
import phonenumbers
from email_validator import EmailNotValidError, validate_email

from bastion.data.catalog import FieldMeta

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on", "t"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "off", "f"})
MAX_INTEGER = 2**63 - 1
MAX_TEXT = 100_000  # long text; anything longer is surely a mistake or an attack
LIST_SEPARATOR = ";"
#: A field's ``pattern`` is applied to texts up to this long (longer ones are refused).
MAX_PATTERN_INPUT = 1_000
#: The longest ``pattern`` an administrator may give a field.
MAX_PATTERN = 200
#: Distinct e-mail domains and phone numbers whose checks are remembered (per process).
#: An import of a million contacts repeats a few thousand domains; the bound keeps a
#: file of random garbage from growing the caches without limit.
CHECK_CACHE_SIZE = 16_384


class FieldValueError(ValueError):
    """A value that does not fit its field; the message is a sentence for the user."""


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


@dataclass(frozen=True)
class RecordLink:
    object: str
    id: int

    def __str__(self) -> str:
        return f"{self.object}:{self.id}"


@dataclass(frozen=True)
class ValueContext:
    """What parsing depends on besides the field: the reader's zone and the site's region."""

    time_zone: str = "UTC"
    phone_region: str = ""
    default_currency: str = "EUR"


def is_empty(value: Any) -> bool:
    # Called for every field of every record, so the common cases come first.
    if value is None:
        return True
    if type(value) is str:
        return not value
    return value == "" or (isinstance(value, (list, tuple)) and not value)


# --------------------------------------------------------------------------- parsing


def parse(meta: FieldMeta, raw: Any, context: ValueContext | None = None) -> Any:
    """The typed value of ``raw`` (JSON value, form or CSV text); None when empty."""
    context = context or ValueContext()
    if isinstance(raw, str):
        raw = raw.strip()
    if is_empty(raw):
        return [] if meta.type in {"multi_picklist", "many_to_many"} else None
    parser = _PARSERS.get(meta.type)
    if parser is None:
        raise FieldValueError(f"{meta.label} is computed and cannot be set.")
    return parser(meta, raw, context)


def parse_filter_value(meta: FieldMeta, raw: Any, context: ValueContext | None = None) -> Any:
    """The typed value of ``raw`` as something to find records by: a filter's value or
    an import's key, never a value to write.

    A computed field that is stored (an auto-number) has no parser, since nobody may set
    it, yet it can be compared with: its stored value is text, so it is read as text.
    """
    if meta.type not in _FOUND_AS_TEXT:
        return parse(meta, raw, context)
    text = raw.strip() if isinstance(raw, str) else raw
    return None if is_empty(text) else _text(meta, text, context or ValueContext())


#: Stored computed types that filters and import keys compare as text.
_FOUND_AS_TEXT = frozenset({"auto_number"})


def _text(meta: FieldMeta, raw: Any, _c: ValueContext) -> str:
    if not isinstance(raw, str):
        raise FieldValueError(f"{meta.label} must be text.")
    if "\x00" in raw:
        raise FieldValueError(f"{meta.label} contains a null character.")
    if meta.type != "long_text":
        raw = " ".join(raw.split()) if "\n" in raw or "\r" in raw else raw
    return raw


def _email(meta: FieldMeta, raw: Any, c: ValueContext) -> str:
    text = _text(meta, raw, c)
    # Lower case throughout: people type the same address in different cases, and
    # equality, uniqueness and duplicate checks should see one address.
    quick = _plain_email(text)
    if quick is not None:
        return quick
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise FieldValueError(f"{meta.label}: {exc}") from None
    return result.normalized.lower()


#: A local part that email-validator takes as it is (its DOT_ATOM_TEXT: RFC 5322 atext
#: separated by single dots), so it needs no quoting, Unicode or display-name handling.
_ATEXT = r"[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+"
_PLAIN_LOCAL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
#: email-validator's limit on the whole address, in UTF-8 bytes (RFC 5321 4.5.3.1.3).
_EMAIL_MAX_BYTES = 254


def _plain_email(text: str) -> str | None:
    """The normalized address for the common case, or None to ask email-validator.

    Checking an address costs most in its domain (IDNA and Unicode rules), and an
    import repeats a few domains over a million rows: the domain's verdict is
    remembered, and a plain local part is all that is left. This path only accepts
    addresses email-validator accepts, with the same result; anything else (and every
    refusal, with its message) goes through email-validator itself.
    """
    at = text.find("@")
    if at <= 0 or not _PLAIN_LOCAL.fullmatch(text, 0, at):
        return None
    settings = (
        email_validator.TEST_ENVIRONMENT,
        email_validator.GLOBALLY_DELIVERABLE,
        email_validator.ALLOW_DOMAIN_LITERAL,
    )
    forms = _domain_forms(text[at + 1 :], settings)
    if forms is None or at + 1 + forms[1] > _EMAIL_MAX_BYTES:
        return None
    return f"{text[:at]}@{forms[0]}".lower()


@lru_cache(maxsize=CHECK_CACHE_SIZE)
def _domain_forms(domain: str, _settings: tuple[bool, ...]) -> tuple[str, int] | None:
    """(normalized domain, longest UTF-8 length of its written, normalized and ASCII
    forms) when email-validator accepts the domain, else None. The domain is checked
    after a one-letter local part, which it does not depend on; the module settings it
    reads are part of the key, so a test that changes them gets fresh answers."""
    try:
        result = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    forms = (domain, result.domain, result.ascii_domain or result.domain)
    return result.domain, max(len(form.encode()) for form in forms)


def _phone(meta: FieldMeta, raw: Any, c: ValueContext) -> str:
    text = _text(meta, str(raw) if isinstance(raw, int) else raw, c)
    number = _e164(text, c.phone_region)
    if number == _NOT_A_NUMBER:
        hint = "" if c.phone_region else " with its country code, such as +44 20 7946 0958"
        raise FieldValueError(f"{meta.label} is not a phone number{hint}.")
    if number == _WRONG_LENGTH:
        raise FieldValueError(f"{meta.label} has the wrong number of digits for a phone number.")
    return number


#: What _e164 answers for a refused number (an E.164 number starts with "+").
_NOT_A_NUMBER = "not a number"
_WRONG_LENGTH = "wrong length"


@lru_cache(maxsize=CHECK_CACHE_SIZE)
def _e164(text: str, region: str) -> str:
    """The number in E.164, or one of the markers above.

    Parsing with libphonenumber's metadata is the costly part of a phone cell and
    depends on nothing else, so each distinct (text, region) is parsed once."""
    try:
        number = phonenumbers.parse(text, region or None)
    except phonenumbers.NumberParseException:
        return _NOT_A_NUMBER
    if not phonenumbers.is_possible_number(number):
        return _WRONG_LENGTH
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _url(meta: FieldMeta, raw: Any, c: ValueContext) -> str:
    text = _text(meta, raw, c)
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    try:
        host = parts.hostname or ""
        parts.port  # noqa: B018  (raises ValueError for "javascript:alert(1)")
    except ValueError:
        host = ""
    if parts.scheme not in ("http", "https") or not _HOST.fullmatch(host) or " " in text:
        raise FieldValueError(f"{meta.label} must be a web address (http or https).")
    return text


#: A host name (letters of any script, digits, hyphens, dots) or an IPv6 literal.
_HOST = re.compile(r"[\w-]+(?:\.[\w-]+)*\.?|[0-9a-f]*:[0-9a-f:.]+")


def _integer(meta: FieldMeta, raw: Any, _c: ValueContext) -> int:
    if isinstance(raw, bool):
        raise FieldValueError(f"{meta.label} must be a whole number.")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and re.fullmatch(r"[+-]?[0-9]{1,19}", raw.replace(",", "")):
        value = int(raw.replace(",", ""))
    else:
        raise FieldValueError(f"{meta.label} must be a whole number.")
    if abs(value) > MAX_INTEGER:
        raise FieldValueError(f"{meta.label} is too large.")
    return value


def _decimal_of(meta: FieldMeta, raw: Any) -> Decimal:
    if isinstance(raw, bool):
        raise FieldValueError(f"{meta.label} must be a number.")
    text = str(raw).strip().replace(",", "") if not isinstance(raw, Decimal) else raw
    if isinstance(text, str) and meta.type == "percent":
        text = text.removesuffix("%").strip()
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise FieldValueError(f"{meta.label} must be a number, such as 1234.50.") from None
    if not value.is_finite():
        raise FieldValueError(f"{meta.label} must be a number, such as 1234.50.")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > meta.scale:
        raise FieldValueError(f"{meta.label} takes at most {meta.scale} digits after the point.")
    if abs(value) >= Decimal(10) ** (18 - meta.scale):
        raise FieldValueError(f"{meta.label} is too large.")
    return value.quantize(Decimal(1).scaleb(-meta.scale))


def _decimal(meta: FieldMeta, raw: Any, _c: ValueContext) -> Decimal:
    return _decimal_of(meta, raw)


_MONEY_TEXT = re.compile(r"^(?:([A-Za-z]{3})\s*)?([^A-Za-z]+?)(?:\s*([A-Za-z]{3}))?$")


def _currency(meta: FieldMeta, raw: Any, c: ValueContext) -> Money:
    code = None
    amount: Any = raw
    if isinstance(raw, dict):
        unknown = set(raw) - {"amount", "currency"}
        if unknown or "amount" not in raw:
            raise FieldValueError(f'{meta.label} takes {{"amount": "12.50", "currency": "EUR"}}.')
        amount, code = raw["amount"], raw.get("currency")
    elif isinstance(raw, str):
        match = _MONEY_TEXT.match(raw)
        if match is None or (match.group(1) and match.group(3)):
            raise FieldValueError(f"{meta.label} must be an amount such as 12.50 or 12.50 EUR.")
        amount, code = match.group(2), match.group(1) or match.group(3)
    code = (code or meta.currency or c.default_currency).upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise FieldValueError(f"{meta.label}: the currency must be a three-letter ISO code.")
    return Money(_decimal_of(meta, amount), code)


def _date(meta: FieldMeta, raw: Any, _c: ValueContext) -> date:
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw)[:10]) if len(str(raw)) <= 10 else _bad_date(meta)
    except ValueError:
        return _bad_date(meta)


def _bad_date(meta: FieldMeta) -> date:
    raise FieldValueError(f"{meta.label} must be a date written as YYYY-MM-DD.")


def _datetime(meta: FieldMeta, raw: Any, c: ValueContext) -> datetime:
    if isinstance(raw, datetime):
        value = raw
    else:
        text = str(raw).replace("Z", "+00:00")
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise FieldValueError(
                f"{meta.label} must be a date and time such as 2026-11-23T14:30."
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(c.time_zone))
    return value.astimezone(UTC)


def _boolean(meta: FieldMeta, raw: Any, _c: ValueContext) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise FieldValueError(f"{meta.label} must be true or false.")


def _choice(meta: FieldMeta, raw: Any) -> str:
    text = str(raw).strip()
    for option in meta.options:
        if option == text:
            return option
    for option in meta.options:  # imports often differ in case only
        if option.casefold() == text.casefold():
            return option
    raise FieldValueError(f"{meta.label} must be one of: {', '.join(meta.options)}.")


def _picklist(meta: FieldMeta, raw: Any, _c: ValueContext) -> str:
    if not isinstance(raw, str):
        raise FieldValueError(f"{meta.label} must be one of: {', '.join(meta.options)}.")
    return _choice(meta, raw)


def _items(meta: FieldMeta, raw: Any) -> list[Any]:
    if isinstance(raw, str):
        return [part for part in (p.strip() for p in raw.split(LIST_SEPARATOR)) if part]
    if isinstance(raw, list | tuple):
        return list(raw)
    raise FieldValueError(f"{meta.label} takes a list.")


def _multi_picklist(meta: FieldMeta, raw: Any, _c: ValueContext) -> list[str]:
    chosen = [_choice(meta, item) for item in _items(meta, raw)]
    return [option for option in meta.options if option in chosen]  # declared order, no repeats


#: A record id as text: ASCII digits only (str.isdigit also takes "²", which int() refuses).
_ASCII_ID = re.compile(r"[0-9]{1,18}")


def _record_id(meta: FieldMeta, raw: Any) -> int:
    if isinstance(raw, dict) and set(raw) == {"id"}:
        raw = raw["id"]
    if isinstance(raw, bool):
        raise FieldValueError(f"{meta.label} must be a record id.")
    if isinstance(raw, int) or (isinstance(raw, str) and _ASCII_ID.fullmatch(raw)):
        value = int(raw)
        if 0 < value <= MAX_INTEGER:
            return value
    raise FieldValueError(f"{meta.label} must be a record id.")


def _lookup(meta: FieldMeta, raw: Any, _c: ValueContext) -> int:
    return _record_id(meta, raw)


def _many(meta: FieldMeta, raw: Any, _c: ValueContext) -> list[int]:
    ids = [_record_id(meta, item) for item in _items(meta, raw)]
    return sorted(set(ids))


def _record_link(meta: FieldMeta, raw: Any, _c: ValueContext) -> RecordLink:
    if isinstance(raw, dict) and set(raw) == {"object", "id"}:
        name, ident = raw["object"], raw["id"]
    elif isinstance(raw, str) and ":" in raw:
        name, ident = raw.split(":", 1)
    else:
        raise FieldValueError(f'{meta.label} takes {{"object": "accounts", "id": 5}}.')
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
        raise FieldValueError(f"{meta.label} names an unknown object.")
    return RecordLink(name, _record_id(meta, ident))


_PARSERS = {
    "text": _text,
    "long_text": _text,
    "email": _email,
    "phone": _phone,
    "url": _url,
    "integer": _integer,
    "decimal": _decimal,
    "percent": _decimal,
    "currency": _currency,
    "date": _date,
    "datetime": _datetime,
    "boolean": _boolean,
    "picklist": _picklist,
    "multi_picklist": _multi_picklist,
    "lookup": _lookup,
    "many_to_many": _many,
    "record_link": _record_link,
}


# --------------------------------------------------------------------------- checks


def check(meta: FieldMeta, value: Any) -> None:
    """Length, range and pattern constraints of a parsed, non-empty value."""
    if is_empty(value):
        return
    if isinstance(value, str) and meta.type not in {"lookup", "record_link"}:
        limit = meta.max_length or (MAX_TEXT if meta.type == "long_text" else 255)
        if meta.type == "url":
            limit = max(limit, 2048)
        if len(value) > limit:
            raise FieldValueError(f"{meta.label} is longer than {limit} characters.")
        if meta.pattern and len(value) > MAX_PATTERN_INPUT:
            # A backtracking pattern's time grows with the text: check short texts only.
            raise FieldValueError(
                f"{meta.label} must follow a format, so it takes at most "
                f"{MAX_PATTERN_INPUT:,} characters."
            )
        if meta.pattern and not re.fullmatch(meta.pattern, value):
            raise FieldValueError(f"{meta.label} does not have the expected format.")
    number = value.amount if isinstance(value, Money) else value
    if isinstance(number, int | Decimal) and not isinstance(number, bool):
        if meta.min_value is not None and number < meta.min_value:
            raise FieldValueError(f"{meta.label} must be at least {meta.min_value}.")
        if meta.max_value is not None and number > meta.max_value:
            raise FieldValueError(f"{meta.label} must be at most {meta.max_value}.")


def pattern_problem(pattern: str) -> str | None:
    """Why a field's ``pattern`` is refused, or None: too long, or a quantified group
    holding a quantifier, such as ``(a+)+``, whose matching time can explode."""
    if len(pattern) > MAX_PATTERN:
        return f"A pattern takes at most {MAX_PATTERN} characters."
    opened: list[int] = []
    escaped = False
    for index, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            opened.append(index)
        elif char == ")" and opened:
            start = opened.pop()
            quantified = pattern[index + 1 : index + 2] in ("+", "*", "{")
            if quantified and _QUANTIFIER.search(pattern, start + 1, index):
                return (
                    "A pattern may not repeat a group that repeats itself, such as (a+)+: "
                    "checking a value could take very long."
                )
    return None


_QUANTIFIER = re.compile(r"(?<!\\)[+*{]")


# --------------------------------------------------------------------------- output


#: Values that JSON takes as they are (exact types: a subclass may need converting).
_JSON_AS_IS = frozenset({str, int, bool, float, list, dict})


def to_json(meta: FieldMeta, value: Any) -> Any:
    """The value as the API writes it: exact numbers and times as strings."""
    if type(value) in _JSON_AS_IS:  # most values, and this runs for every field read
        return value
    if value is None:
        return [] if meta.type in {"multi_picklist", "many_to_many"} else None
    if isinstance(value, Money):
        return {"amount": str(value.amount), "currency": value.currency}
    if isinstance(value, RecordLink):
        return {"object": value.object, "id": value.id}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def to_text(meta: FieldMeta, value: Any) -> str:
    """The value as one CSV cell; ``parse`` reads it back to the same value."""
    if is_empty(value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return LIST_SEPARATOR.join(str(item) for item in value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


#: Types whose column value is not already the typed value.
_CONVERTED_FROM_STORAGE = frozenset({"multi_picklist", "currency", "record_link", "datetime"})


def from_storage(meta: FieldMeta, value: Any, extra: Any = None) -> Any:
    """A column value (and its companion column's) as the typed value."""
    if value is None:
        return [] if meta.type == "multi_picklist" else None
    if meta.type not in _CONVERTED_FROM_STORAGE:  # runs for every column read
        return value
    if meta.type == "multi_picklist":
        return [item for item in value.split(LIST_SEPARATOR) if item]
    if meta.type == "currency":
        return Money(value, extra or meta.currency)
    if meta.type == "record_link":
        return RecordLink(extra, int(value)) if extra else None
    if meta.type == "datetime" and isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def to_storage(meta: FieldMeta, value: Any) -> dict[str, Any]:
    """Column name -> stored value for a typed value (not for encrypted fields)."""
    if meta.type == "currency":
        return {
            meta.name: None if value is None else value.amount,
            f"{meta.name}__currency": None if value is None else value.currency,
        }
    if meta.type == "record_link":
        return {
            meta.name: None if value is None else value.id,
            f"{meta.name}__object": None if value is None else value.object,
        }
    if meta.type == "multi_picklist":
        # Framed by separators so "contains one option" is a LIKE on ";option;".
        return {meta.name: f";{';'.join(value)};" if value else None}
    return {meta.name: value}
