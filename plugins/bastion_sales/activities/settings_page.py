"""The sales settings page: follow-up days and the quote discount threshold.

Values are stored with the core's ``set_plugin_setting`` (which audits the old and
the new value and commits). The page also links to the other configuration pages of
the plugin; a page that is not installed (yet) is simply not listed.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from werkzeug.routing import BuildError

from bastion.api import (
    current_user,
    flash,
    recent_auth_required,
    redirect,
    render_template,
    request,
    requires,
    set_plugin_setting,
    url_for,
)
from bastion_sales.settings import (
    DISCOUNT_THRESHOLD,
    FOLLOW_UP_DAYS,
    PLUGIN,
    discount_threshold,
    follow_up_days,
)
from bastion_sales.web import bp

CONFIGURE = "sales.configure"
MIN_DAYS, MAX_DAYS = 1, 365
#: ASCII digits only: str.isdigit() also takes "²" and "٣", which int() refuses or reads.
WHOLE_NUMBER = re.compile(r"[0-9]{1,6}")
#: The other configuration pages: (label, endpoint names to try, what it is for).
CONFIG_PAGES = (
    ("Scoring rules", ("sales.scoring_rules",), "Points leads earn for their fields and activity."),
    ("Assignment rules", ("sales.assignment_rules",), "Who gets each new lead."),
    (
        "Pipelines",
        ("sales.pipelines", "sales.pipeline_settings"),
        "Pipelines, their stages and probabilities.",
    ),
)


def config_links() -> list[dict[str, str]]:
    """Links to the configuration pages that exist in this installation."""
    links = []
    for label, endpoints, description in CONFIG_PAGES:
        for endpoint in endpoints:
            try:
                href = url_for(endpoint)
            except BuildError:
                continue
            links.append({"label": label, "href": href, "description": description})
            break
    return links


def parse_days(text: str) -> tuple[int | None, str]:
    text = text.strip()
    if not text:
        return None, "Enter the number of days."
    if not WHOLE_NUMBER.fullmatch(text):
        return None, f"Enter a whole number of days from {MIN_DAYS} to {MAX_DAYS}."
    value = int(text)
    if not MIN_DAYS <= value <= MAX_DAYS:
        return None, f"Enter a whole number of days from {MIN_DAYS} to {MAX_DAYS}."
    return value, ""


def parse_threshold(text: str) -> tuple[Decimal | None, str]:
    text = text.strip().replace(",", ".").rstrip("%").strip()
    problem = "Enter a percentage from 0 to 100, such as 10 or 12.5."
    if not text:
        return None, problem
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None, problem
    if not value.is_finite() or not 0 <= value <= 100:
        return None, problem
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        return None, "Use at most two decimal places."
    return value, ""


def normalized(value: Decimal) -> str:
    """The threshold as stored: plain digits, no exponent, no "-0", no trailing zeros."""
    return format(value.normalize() + 0, "f") if value else "0"


def current_texts() -> dict[str, str]:
    return {
        "follow_up_days": str(follow_up_days()),
        "discount_threshold": normalized(discount_threshold()),
    }


def render_page(texts: dict[str, str], errors: dict[str, str], status: int = 200) -> Any:
    return render_template(
        "sales/settings/page.html",
        texts=texts,
        errors=errors,
        links=config_links(),
        min_days=MIN_DAYS,
        max_days=MAX_DAYS,
    ), status


@bp.get("/settings")
@requires(CONFIGURE)
def settings_page():
    return render_page(current_texts(), {})


@bp.post("/settings")
@requires(CONFIGURE)
@recent_auth_required  # the threshold decides which quotes need a manager's approval
def save_settings():
    texts = {
        "follow_up_days": request.form.get("follow_up_days", ""),
        "discount_threshold": request.form.get("discount_threshold", ""),
    }
    days, days_error = parse_days(texts["follow_up_days"])
    threshold, threshold_error = parse_threshold(texts["discount_threshold"])
    errors = {
        name: message
        for name, message in (
            ("follow_up_days", days_error),
            ("discount_threshold", threshold_error),
        )
        if message
    }
    if errors:
        return render_page(texts, errors, 422)
    actor = current_user._get_current_object()
    changed = []
    if days != follow_up_days():
        set_plugin_setting(PLUGIN, FOLLOW_UP_DAYS, days, actor=actor)
        changed.append("follow-up days")
    if threshold != discount_threshold():
        # Stored as a string: exact, and settings.discount_threshold() reads it back.
        set_plugin_setting(PLUGIN, DISCOUNT_THRESHOLD, normalized(threshold), actor=actor)
        changed.append("discount threshold")
    if changed:
        flash(f"Saved the {' and '.join(changed)}.", "success")
    else:
        flash("Nothing changed.", "success")
    return redirect(url_for("sales.settings_page"), 303)
