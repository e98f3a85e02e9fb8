"""Settings administrators change at runtime on the sales settings page.

Stored through the core's plugin settings (audited); each reader falls back to its
default when the setting was never changed.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from bastion.api import get_plugin_setting

PLUGIN = "sales"
FOLLOW_UP_DAYS = "follow_up_days"
DISCOUNT_THRESHOLD = "discount_threshold"
DEFAULT_FOLLOW_UP_DAYS = 14
DEFAULT_DISCOUNT_THRESHOLD = Decimal("10")


def follow_up_days() -> int:
    """Days without activity after which a lead or open opportunity gets a follow-up task."""
    value = get_plugin_setting(PLUGIN, FOLLOW_UP_DAYS, DEFAULT_FOLLOW_UP_DAYS)
    return value if type(value) is int and value > 0 else DEFAULT_FOLLOW_UP_DAYS


def discount_threshold() -> Decimal:
    """The largest line discount (percent) a quote may carry without a manager's approval."""
    raw = get_plugin_setting(PLUGIN, DISCOUNT_THRESHOLD, str(DEFAULT_DISCOUNT_THRESHOLD))
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return DEFAULT_DISCOUNT_THRESHOLD
    return value if value.is_finite() and 0 <= value <= 100 else DEFAULT_DISCOUNT_THRESHOLD
