"""Fixtures for the sales plugin's tests: the demo organization with its sales teams.

``make_app(demo=True)`` gives the core demo (administrator, Maria: sales manager of
team Sales; Sam: sales rep in Sales North) plus what the sales plugin's demo adds
without sample records: Nina (sales rep, Sales North), Sven (sales rep, Sales South,
a sub-team of Sales) and the sales roles' rules on the sales objects. Tests create
their own records. Every user's password is ADMIN_PASSWORD.
"""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_EMAIL, dispose, make_app
from tests.core.data.conftest import bearer, client_as, service_as, user_id

MARIA = "maria.manager@example.com"
SAM = "sam.sales@example.com"
NINA = "nina.north@example.com"
SVEN = "sven.south@example.com"
ADMIN = ADMIN_EMAIL

__all__ = ["ADMIN", "MARIA", "NINA", "SAM", "SVEN", "bearer", "client_as", "service_as", "user_id"]


@pytest.fixture
def sales_app(settings):
    application = make_app(settings, demo=True)
    yield application
    dispose(application)
