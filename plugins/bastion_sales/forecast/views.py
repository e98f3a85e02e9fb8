"""The forecast page (/sales/forecast) and its JSON twin (/api/v1/opportunities/forecast).

Both read the user's opportunities through their own record service, so the record
scope decides what is summed. The page's controls are a plain GET form: without
JavaScript it reloads the page, with htmx only the results are swapped in (and the URL
is pushed, so a reload or a shared link shows the same forecast).
"""

from __future__ import annotations

from typing import Any

from bastion.api import (
    BadQuery,
    Forbidden,
    RecordError,
    abort,
    render_template,
    request,
    request_service,
    requires,
    url_for,
)

from ..web import api_bp, bp
from . import formatting
from .compute import (
    CATEGORIES,
    CATEGORY_LABELS,
    CURRENCY_NOTE,
    ROUNDING_RULE,
    build_forecast,
    compute_forecast,
)
from .params import default_choice, read_choice
from .people import Group
from .periods import PeriodError

FORECAST = "sales.forecast"
#: The query-string fields of the forecast form (kept in the pushed URL).
PAGE_ARGS = ("period", "by", "from", "to")


def _explain(exc: RecordError) -> str:
    """The page's message for a forecast the core would not compute."""
    if isinstance(exc, BadQuery) and exc.field == "group_by":
        return f"{exc.message} Choose a shorter range."
    if isinstance(exc, BadQuery):  # a field of opportunities this role may not read
        return (
            "The forecast needs the amount, probability, forecast category, outcome and "
            "close date of opportunities, and your role may not read all of them."
        )
    return exc.message


def _no_group(owner: int | None) -> Group:
    return Group(owner, "")


@bp.get("/forecast")
@requires(FORECAST)
def forecast_page() -> Any:
    if not request_service().can("opportunities", "read"):
        abort(403, "You may not read opportunities, so there is no forecast to show.")
    error = None
    try:
        choice = read_choice(request.args, ahead=True)
    except PeriodError as exc:
        error = f"{exc} Showing the coming periods instead."
        choice = default_choice(request.args)
    try:
        forecast = compute_forecast(
            request_service(), kind=choice.kind, by=choice.by, periods=choice.periods
        )
    except RecordError as exc:  # too many groups, or a field hidden from this role
        error = f"{error} {_explain(exc)}" if error else _explain(exc)
        forecast = build_forecast(
            [], kind=choice.kind, by=choice.by, periods=choice.periods, group_of=_no_group
        )
    context = {
        "choice": choice,
        "forecast": forecast,
        "error": error,
        "categories": [(name, CATEGORY_LABELS[name]) for name in CATEGORIES],
        "money": formatting.amount,
        "rounding_rule": ROUNDING_RULE,
        "currency_note": CURRENCY_NOTE,
    }
    status = 400 if error else 200
    if request.headers.get("HX-Request") and request.args.get("partial") == "results":
        html = render_template("sales/forecast/_results.html", **context)
        # The address bar shows the plain page URL, so a reload or a link gives this view;
        # only the form's own fields (anything else may not even build a URL).
        args = {k: request.args[k] for k in PAGE_ARGS if request.args.get(k)}
        # 200: htmx swaps nothing on a 4xx, and the message is in the fragment.
        return html, 200, {"HX-Push-Url": url_for("sales.forecast_page", **args)}
    return render_template("sales/forecast/page.html", **context), status


@api_bp.get("/opportunities/forecast")
@requires(FORECAST)
def forecast_api() -> Any:
    """?period=month|quarter&by=owner|team&from=2026-Q3&to=2026-Q4; decimals as strings."""
    try:
        choice = read_choice(request.args)
    except PeriodError as exc:
        raise BadQuery(str(exc), field="period") from None
    if not request_service().can("opportunities", "read"):
        raise Forbidden("You may not read opportunities.")
    try:
        forecast = compute_forecast(
            request_service(), kind=choice.kind, by=choice.by, periods=choice.periods
        )
    except BadQuery as exc:  # answered as a 400 problem, in the page's words
        raise BadQuery(_explain(exc), field=exc.field) from None
    return forecast.as_json()
