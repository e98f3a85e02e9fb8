"""Odd numbers in URLs and query strings get a clear answer, never a server error."""

from __future__ import annotations

import pytest

from tests.conftest import csrf_token

HUGE = "9" * 25


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/admin/users?page=%C2%B2", 200),  # "²" passes str.isdigit
        (f"/admin/users?page={HUGE}", 200),
        (f"/admin/users/{HUGE}", 404),
        ("/admin/users/2147483648", 404),
        (f"/admin/teams/{HUGE}", 404),
        (
            "/admin/users/1/access?object=contacts&action=read&owner=%C2%B2",
            422,
        ),  # no such object yet
        (f"/admin/users/1/access?object=contacts&action=read&owner={HUGE}", 422),
        ("/api/v1/users?limit=%C2%B2", 400),
        (f"/api/v1/users?offset={HUGE}", 400),
        ("/api/v1/users?limit=0", 400),
        ("/api/v1/users?limit=2", 200),
    ],
)
def test_numbers_are_checked_before_use(admin_client, path, expected):
    assert admin_client.get(path).status_code == expected


def test_revoking_a_token_with_an_impossible_id_is_a_404(admin_client):
    token = csrf_token(admin_client, "/account/tokens")
    response = admin_client.post(f"/account/tokens/{HUGE}/revoke", data={"csrf_token": token})
    assert response.status_code == 404
