"""The password policy: length in code points, no truncation, common and personal passwords.

Checked where users meet it (the change-password page, the sign-in form) and on the
policy object the CLI and the admin pages share.
"""

from __future__ import annotations

import pytest

from bastion import common_passwords
from bastion.config import ConfigError, load_settings
from bastion.passwords import PasswordPolicyError, Passwords
from tests.conftest import FAST_HASHING, csrf_token, dispose, make_app, sign_in
from tests.core.identity.conftest import add_user

PASSWORD = "a long enough test password"


def change(client, current: str, new: str, confirm: str | None = None):
    return client.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(client, "/account/password"),
            "current_password": current,
            "new_password": new,
            "new_password_confirm": new if confirm is None else confirm,
        },
    )


@pytest.fixture
def policy(settings) -> Passwords:
    return Passwords(settings)


def test_the_common_list_is_zxcvbns_30000_passwords():
    assert len(common_passwords._common()) == 30_000
    assert common_passwords.is_common("password1234")
    assert common_passwords.is_common("QwertyUiop123")  # case does not help
    assert not common_passwords.is_common("a long enough test password")


@pytest.mark.parametrize("common", ["password1234", "qwertyuiop123", "Password1234"])
def test_common_passwords_are_refused(policy, common):
    with pytest.raises(PasswordPolicyError, match="commonly used"):
        policy.check_policy(common)


def test_common_password_refused_on_the_change_page(app, client):
    add_user(app, "pat@example.com", PASSWORD)
    sign_in(client, "pat@example.com", PASSWORD)
    response = change(client, PASSWORD, "qwertyuiop123")
    assert response.status_code == 422
    assert "commonly used passwords" in response.get_data(as_text=True)
    # Nothing changed: the old password still signs in.
    assert sign_in(app.test_client(), "pat@example.com", PASSWORD).status_code == 302


def test_no_composition_rules(policy):
    policy.check_policy("all lowercase long passphrase")
    policy.check_policy("ünïcödé wörds are fine tóo")


def test_length_is_counted_in_code_points_after_nfkc(policy):
    # Six "e" + combining acute accent: 12 code points typed, 6 characters after NFKC.
    with pytest.raises(PasswordPolicyError, match="at least 12"):
        policy.check_policy("e\u0301" * 6)
    policy.check_policy("é" * 3 + "crème brûlée")  # 15 characters, each one code point


def test_too_long_is_refused_with_a_sentence(policy):
    policy.check_policy("x" * 20 + "y" * 1004)  # exactly 1024
    with pytest.raises(PasswordPolicyError, match="at most 1024"):
        policy.check_policy("z" * 1025)


@pytest.mark.parametrize(
    ("context", "password"),
    [
        (("margaret@example.com", ""), "margaret likes long walks"),
        (("m.jones@example.com", "Ada Lovelace"), "ada lovelace was first"),
        (("m.jones@example.com", "Ada Lovelace"), "LOVELACE-forever-and-ever"),
        (("adalove@example.com", ""), "ADALOVE 2026 forever"),
    ],
)
def test_passwords_containing_the_users_name_or_email_are_refused(policy, context, password):
    with pytest.raises(PasswordPolicyError, match="name or email"):
        policy.check_policy(password, context=context)


def test_short_names_are_not_checked(policy):
    policy.check_policy("bob the builder can fix it", context=("bob@example.com", "Bo Li"))


def test_create_user_checks_the_users_own_name(app):
    from bastion.identity import create_user

    with app.app_context(), pytest.raises(PasswordPolicyError, match="name or email"):
        create_user(
            app.extensions["bastion.passwords"],
            email="ophelia@example.com",
            password="ophelia's secret garden",
        )


@pytest.mark.parametrize("length", [64, 200])
def test_long_passwords_are_accepted_and_verified_whole(app, length):
    password = "".join(f"{i % 10}word" for i in range(length))[:length]
    assert len(password) == length
    add_user(app, f"long{length}@example.com", password)
    assert sign_in(app.test_client(), f"long{length}@example.com", password).status_code == 302
    if length > 100:
        # Differs only in character 100: no truncation, so it is a different password.
        changed = password[:99] + ("X" if password[99] != "X" else "Y") + password[100:]
        response = sign_in(app.test_client(), f"long{length}@example.com", changed)
        assert response.status_code != 302


def test_long_password_through_the_change_page(app, client):
    add_user(app, "quinn@example.com", PASSWORD)
    sign_in(client, "quinn@example.com", PASSWORD)
    new = "river stones " * 15  # 195 characters
    assert change(client, PASSWORD, new).status_code == 302
    assert sign_in(app.test_client(), "quinn@example.com", new).status_code == 302
    assert sign_in(app.test_client(), "quinn@example.com", new[:72]).status_code != 302


def test_minimum_length_comes_from_the_settings(data_dir, database_url):
    overrides = dict(FAST_HASHING, password_min_length="16")
    if database_url:
        overrides["database_url"] = database_url
    app = make_app(load_settings(data_dir, environ={}, overrides=overrides))
    try:
        add_user(app, "rae@example.com", "sixteen chars ok")
        client = app.test_client()
        sign_in(client, "rae@example.com", "sixteen chars ok")
        page = client.get("/account/password").get_data(as_text=True)
        assert "At least 16 characters" in page
        response = change(client, "sixteen chars ok", "fifteen chars!!")
        assert response.status_code == 422
        assert "at least 16 characters" in response.get_data(as_text=True)
        assert change(client, "sixteen chars ok", "sixteen chars ok!").status_code == 302
    finally:
        dispose(app)


def test_minimum_length_never_below_eight(data_dir):
    with pytest.raises(ConfigError, match="below 8"):
        load_settings(data_dir, environ={}, overrides={"password_min_length": "7"})
