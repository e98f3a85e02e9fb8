"""Fixtures of the audit UI tests, shared with the data-model and identity tests: the
demo organization, users, and a user enrolled in MFA with a clock the test moves."""

from __future__ import annotations

from tests.core.data.conftest import demo_app  # noqa: F401  (fixtures)
from tests.core.identity.conftest import user_factory  # noqa: F401
from tests.core.identity.test_mfa import clock, enrolled  # noqa: F401
