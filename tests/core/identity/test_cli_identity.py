"""The operators' identity commands: users, roles, teams, mfa, tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.db import db
from bastion.identity import find_user_by_email
from bastion.models import ApiToken, Role, Team
from tests.conftest import ADMIN_EMAIL, sign_in
from tests.core.identity.conftest import add_user

PASSWORD = "a long enough test password"
NEW_PASSWORD = "violet tractor humming softly"


def _user(app, email: str) -> dict | None:
    with app.app_context():
        user = find_user_by_email(email)
        if user is None:
            return None
        db.session.refresh(user)
        return {
            "active": user.active,
            "roles": sorted(r.name for r in user.roles),
            "team": user.team.name if user.team else None,
            "name": user.name,
            "mfa": user.mfa_enabled,
            "has_password": user.has_password,
        }


def _fails(result, message: str) -> None:
    assert result.exit_code != 0, result.output
    assert message in result.output, result.output


# users ---------------------------------------------------------------------------------


def test_users_create_from_stdin_and_the_user_signs_in(app, cli):
    assert cli("teams", "create", "Field").exit_code == 0
    result = cli(
        "users",
        "create",
        "--email",
        "carl@example.com",
        "--role",
        "sales_rep",
        "--role",
        "marketing",
        "--team",
        "Field",
        "--name",
        "Carl Cli",
        "--password-file",
        "-",
        input=NEW_PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created carl@example.com." in result.output
    assert _user(app, "carl@example.com") == {
        "active": True,
        "roles": ["marketing", "sales_rep"],
        "team": "Field",
        "name": "Carl Cli",
        "mfa": False,
        "has_password": True,
    }
    assert sign_in(app.test_client(), "carl@example.com", NEW_PASSWORD).status_code == 302


def test_users_create_from_a_password_file(app, cli, tmp_path: Path):
    secret = tmp_path / "pw"
    secret.write_text(NEW_PASSWORD + "\n", encoding="utf-8")
    result = cli("users", "create", "--email", "fin@example.com", "--password-file", str(secret))
    assert result.exit_code == 0, result.output
    assert sign_in(app.test_client(), "fin@example.com", NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--role", "wizard"], NEW_PASSWORD, "There is no role named 'wizard'."),
        (["--team", "Nowhere"], NEW_PASSWORD, "There is no team named 'Nowhere'."),
        ([], "short", "at least"),
        ([], "", "The password file is empty."),
    ],
)
def test_users_create_refusals(app, cli, args, stdin, message):
    result = cli(
        "users",
        "create",
        "--email",
        "bad@example.com",
        *args,
        "--password-file",
        "-",
        input=stdin,
    )
    _fails(result, message)
    assert _user(app, "bad@example.com") is None


def test_users_create_refuses_an_existing_email_and_needs_a_password_source(app, cli):
    result = cli(
        "users", "create", "--email", ADMIN_EMAIL, "--password-file", "-", input=NEW_PASSWORD
    )
    _fails(result, "already exists")
    _fails(cli("users", "create", "--email", "x@example.com"), "--password-file")


def test_users_create_invite_prints_the_link(app, cli):
    result = cli("users", "create", "--email", "ina@example.com", "--invite")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().count("\n") == 0
    assert "/password/reset/" in result.stdout
    assert _user(app, "ina@example.com")["has_password"] is False


def test_users_disable_and_enable(app, cli):
    add_user(app, "dee@example.com", PASSWORD)
    client = app.test_client()
    assert sign_in(client, "dee@example.com", PASSWORD).status_code == 302

    result = cli("users", "disable", "dee@example.com")
    assert result.exit_code == 0, result.output
    assert "Disabled dee@example.com" in result.output
    assert _user(app, "dee@example.com")["active"] is False
    assert client.get("/").headers["Location"].startswith("/login")
    assert sign_in(app.test_client(), "dee@example.com", PASSWORD).status_code == 401

    result = cli("users", "enable", "DEE@example.com")
    assert result.exit_code == 0, result.output
    assert _user(app, "dee@example.com")["active"] is True
    assert sign_in(app.test_client(), "dee@example.com", PASSWORD).status_code == 302


def test_users_disable_and_enable_refusals(app, cli):
    _fails(cli("users", "disable", ADMIN_EMAIL), "last active administrator")
    assert _user(app, ADMIN_EMAIL)["active"] is True
    _fails(cli("users", "disable", "ghost@example.com"), "There is no user with the email")
    _fails(cli("users", "enable", "ghost@example.com"), "There is no user with the email")


def test_users_reset_mfa(app, cli):
    add_user(app, "mo@example.com", PASSWORD)
    _fails(cli("users", "reset-mfa", "mo@example.com"), "has no MFA to reset")
    with app.app_context():
        user = find_user_by_email("mo@example.com")
        user.mfa_secret = "placeholder-not-a-real-secret"
        db.session.commit()
    result = cli("users", "reset-mfa", "mo@example.com")
    assert result.exit_code == 0, result.output
    assert _user(app, "mo@example.com")["mfa"] is False
    _fails(cli("users", "reset-mfa", "ghost@example.com"), "There is no user")


def test_users_list(app, cli, tmp_path: Path):
    add_user(app, "lou@example.com", PASSWORD, roles=["auditor"])
    result = cli("users", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith(ADMIN_EMAIL) and "administrator" in line for line in lines)
    assert any(line.startswith("lou@example.com") and "auditor" in line for line in lines)
    _fails(
        cli("users", "list", env={"BASTION_DATA_DIR": str(tmp_path / "empty")}),
        "is not initialized",
    )


# roles ---------------------------------------------------------------------------------


def test_roles_list_prints_slug_then_name(app, cli, tmp_path: Path):
    result = cli("roles", "list")
    assert result.exit_code == 0, result.output
    pairs = {}
    for line in result.output.splitlines():
        slug, label = line.split(None, 1)
        pairs[slug] = label
    for slug in (
        "administrator",
        "sales_manager",
        "sales_rep",
        "marketing",
        "support_agent",
        "auditor",
    ):
        assert slug in pairs
    assert pairs["administrator"].startswith("Administrator")
    _fails(
        cli("roles", "list", env={"BASTION_DATA_DIR": str(tmp_path / "empty")}),
        "is not initialized",
    )


# teams ---------------------------------------------------------------------------------


def test_teams_create_with_manager_and_parent_and_list(app, cli):
    add_user(app, "mia@example.com", PASSWORD)
    assert cli("teams", "create", "Sales").exit_code == 0
    result = cli(
        "teams", "create", "Sales East", "--manager", "mia@example.com", "--parent", "Sales"
    )
    assert result.exit_code == 0, result.output
    assert "Created the team Sales East." in result.output
    with app.app_context():
        team = db.session.query(Team).filter_by(name="Sales East").one()
        assert team.manager.email == "mia@example.com"
        assert team.parent.name == "Sales"
    listing = cli("teams", "list")
    assert listing.exit_code == 0
    assert any(
        line.startswith("Sales East")
        and "manager=mia@example.com" in line
        and "parent=Sales" in line
        for line in listing.output.splitlines()
    )


def test_teams_create_refusals(app, cli):
    assert cli("teams", "create", "Sales").exit_code == 0
    _fails(cli("teams", "create", "sales"), "A team named Sales already exists")
    _fails(cli("teams", "create", "X", "--parent", "Nope"), "There is no team named 'Nope'.")
    _fails(cli("teams", "create", "Y", "--manager", "ghost@example.com"), "There is no user")
    _fails(cli("teams", "create", ""), "must not be empty")


# mfa -----------------------------------------------------------------------------------


def _role_requires_mfa(app, slug: str) -> bool:
    with app.app_context():
        return db.session.query(Role).filter_by(name=slug).one().require_mfa


def test_mfa_require_for_a_role_sends_its_members_to_enrolment(app, cli):
    add_user(app, "rae@example.com", PASSWORD, roles=["sales_rep"])
    add_user(app, "ann@example.com", PASSWORD, roles=["marketing"])
    result = cli("mfa", "require", "--role", "sales_rep")
    assert result.exit_code == 0, result.output
    assert _role_requires_mfa(app, "sales_rep")

    rae = app.test_client()
    response = sign_in(rae, "rae@example.com", PASSWORD)
    assert response.status_code == 302
    location = response.headers["Location"]
    if not location.startswith("/account/mfa"):
        response = rae.get(location)
        assert response.status_code == 302
        location = response.headers["Location"]
    assert location.startswith("/account/mfa")
    # Anything else sends them back there too.
    assert rae.get("/admin/users").headers["Location"].startswith("/account/mfa")

    # Another role's member is not affected.
    ann = app.test_client()
    sign_in(ann, "ann@example.com", PASSWORD)
    assert ann.get("/").status_code == 200

    result = cli("mfa", "require", "--role", "sales_rep", "--off")
    assert result.exit_code == 0, result.output
    assert not _role_requires_mfa(app, "sales_rep")
    assert rae.get("/").status_code == 200


def test_mfa_require_for_everyone_and_off(app, cli):
    from bastion import mfa_policy

    result = cli("mfa", "require", "--all")
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert mfa_policy.required_for_all()
    result = cli("mfa", "require", "--all", "--off")
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert not mfa_policy.required_for_all()


def test_mfa_require_refusals(app, cli):
    _fails(cli("mfa", "require"), "Give either --all or --role")
    _fails(cli("mfa", "require", "--all", "--role", "sales_rep"), "Give either --all or --role")
    _fails(
        cli("mfa", "require", "--role", "sales_rep", "--role", "wizard"),
        "There is no role named 'wizard'.",
    )
    assert not _role_requires_mfa(app, "sales_rep")  # nothing changed on a refusal


# tokens --------------------------------------------------------------------------------


def test_tokens_create_prints_only_the_token(app, cli):
    add_user(app, "tok@example.com", PASSWORD, roles=["auditor"])
    result = cli(
        "tokens",
        "create",
        "--email",
        "tok@example.com",
        "--name",
        "backup script",
        "--expires-days",
        "30",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    raw = lines[0]
    assert len(raw) >= 32 and " " not in raw
    assert "shown only now" in result.stderr
    with app.app_context():
        token = db.session.query(ApiToken).one()
        assert token.name == "backup script"
        assert token.expires_at is not None
        assert raw not in token.token_hash
    response = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200
    assert response.get_json()["email"] == "tok@example.com"


def test_tokens_create_refusals(app, cli):
    result = cli("tokens", "create", "--email", "ghost@example.com", "--name", "x")
    _fails(result, "There is no user")
    assert result.stdout == ""
    add_user(app, "tok@example.com", PASSWORD)
    result = cli(
        "tokens", "create", "--email", "tok@example.com", "--name", "x", "--expires-days", "0"
    )
    _fails(result, "expiry")
    assert result.stdout == ""
    cli("users", "disable", "tok@example.com")
    _fails(cli("tokens", "create", "--email", "tok@example.com", "--name", "x"), "is disabled")
