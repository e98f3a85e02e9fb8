"""Operators' commands for identity: users, roles, teams, the MFA requirement, API tokens.

They go through :mod:`bastion.accounts` like the admin pages, so the same checks apply
(the last administrator cannot be disabled, unknown roles are named, ...). The audit
actor is ``cli:<operating-system user>``. Refusals exit non-zero with a sentence on
standard error.
"""

from __future__ import annotations

from typing import Any

import click
from flask import Flask
from sqlalchemy import func, select

from bastion.cli import _os_user, with_app


def _actor() -> str:
    return f"cli:{_os_user()}"


def _refusal(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _read_password(source: Any) -> str:
    # One trailing newline is what `echo` or an editor adds; it is not part of the password.
    password = source.read()
    if password.endswith("\n"):
        password = password[:-1]
    if password.endswith("\r"):
        password = password[:-1]
    if not password:
        raise click.ClickException("The password file is empty. Put the password in it.")
    return password


# users --------------------------------------------------------------------------------


@click.group()
def users() -> None:
    """Create, list, disable and enable users; reset their MFA."""


@users.command("create")
@click.option("--email", required=True, help="The new user's email address.")
@click.option(
    "--role", "roles", multiple=True, help="A role slug (repeat for several; see `roles list`)."
)
@click.option("--team", default=None, help="The name of the user's team.")
@click.option("--name", default="", help="The user's full name.")
@click.option(
    "--password-file",
    type=click.File("r"),
    default=None,
    help="File holding the password ('-' for standard input).",
)
@click.option(
    "--invite",
    is_flag=True,
    help="Instead of a password, send an invitation link (printed, and emailed when mail "
    "is configured).",
)
@click.option("--time-zone", default="UTC", show_default=True, help="IANA time zone name.")
@click.option("--locale", default="en", show_default=True, help="Language code.")
@with_app
def users_create(
    app: Flask,
    email: str,
    roles: tuple[str, ...],
    team: str | None,
    name: str,
    password_file: Any,
    invite: bool,
    time_zone: str,
    locale: str,
) -> None:
    """Create a user with a password from a file, or invite them."""
    from bastion.accounts import AccountError, create_user

    if invite == (password_file is not None):
        raise click.UsageError("Give exactly one of --password-file and --invite.")
    password = None if invite else _read_password(password_file)
    try:
        user = create_user(
            email=email,
            name=name,
            password=password,
            role_slugs=list(roles),
            team_name=team,
            time_zone=time_zone,
            locale=locale,
            actor=_actor(),
        )
    except AccountError as exc:
        raise _refusal(exc) from None
    if invite:
        click.echo(f"Invited {user.email}. Invitation link (works once):", err=True)
        click.echo(user.invitation_link)
    else:
        click.echo(f"Created {user.email}.")


def _find_user(email: str) -> Any:
    from bastion.accounts import AccountError, find_user

    try:
        return find_user(email)
    except AccountError as exc:
        raise _refusal(exc) from None


@users.command("disable")
@click.argument("email")
@with_app
def users_disable(app: Flask, email: str) -> None:
    """Disable a user and end all their sessions."""
    from bastion.accounts import AccountError, set_active

    user = _find_user(email)
    try:
        changed = set_active(user, False, actor=_actor())
    except AccountError as exc:
        raise _refusal(exc) from None
    click.echo(
        f"Disabled {user.email}; their sessions are ended."
        if changed
        else f"{user.email} was already disabled."
    )


@users.command("enable")
@click.argument("email")
@with_app
def users_enable(app: Flask, email: str) -> None:
    """Enable a disabled user."""
    from bastion.accounts import set_active

    user = _find_user(email)
    changed = set_active(user, True, actor=_actor())
    click.echo(f"Enabled {user.email}." if changed else f"{user.email} was already enabled.")


@users.command("reset-mfa")
@click.argument("email")
@with_app
def users_reset_mfa(app: Flask, email: str) -> None:
    """Turn a user's MFA off (they enrol again) and end all their sessions."""
    from bastion.mfa import reset_mfa

    user = _find_user(email)
    if not user.mfa_enabled:
        raise click.ClickException(f"{user.email} has no MFA to reset.")
    reset_mfa(user, actor=_actor())
    click.echo(f"Reset the MFA of {user.email}; their sessions are ended.")


@users.command("list")
@with_app
def users_list(app: Flask) -> None:
    """Show every user: email, status, MFA, roles and team."""
    from bastion.db import db
    from bastion.models import User

    rows = db.session.scalars(select(User).order_by(func.lower(User.email)))
    for user in rows:
        if not user.active:
            status = "disabled"
        elif not user.has_password:
            status = "invited"
        else:
            status = "active"
        roles = ",".join(sorted(r.name for r in user.roles)) or "-"
        team = user.team.name if user.team else "-"
        mfa = "mfa" if user.mfa_enabled else "no-mfa"
        click.echo(f"{user.email:<32} {status:<9} {mfa:<6} {roles:<30} {team}".rstrip())


# roles --------------------------------------------------------------------------------


@click.group()
def roles() -> None:
    """List roles."""


@roles.command("list")
@with_app
def roles_list(app: Flask) -> None:
    """Show each role's slug and name, slug first."""
    from bastion.db import db
    from bastion.models import Role

    for role in db.session.scalars(select(Role).order_by(Role.name)):
        suffix = "  (MFA required)" if role.require_mfa else ""
        click.echo(f"{role.name:<20} {role.label}{suffix}")


# teams --------------------------------------------------------------------------------


@click.group()
def teams() -> None:
    """Create and list teams."""


@teams.command("create")
@click.argument("name")
@click.option("--manager", default=None, help="Email of the team's manager.")
@click.option("--parent", default=None, help="Name of the parent team.")
@with_app
def teams_create(app: Flask, name: str, manager: str | None, parent: str | None) -> None:
    """Create a team, optionally with a manager and inside a parent team."""
    from bastion.accounts import AccountError, create_team

    try:
        team = create_team(name, manager_email=manager, parent_name=parent, actor=_actor())
    except AccountError as exc:
        raise _refusal(exc) from None
    click.echo(f"Created the team {team.name}.")


@teams.command("list")
@with_app
def teams_list(app: Flask) -> None:
    """Show each team with its manager and parent team."""
    from bastion.accounts import team_member_counts
    from bastion.db import db
    from bastion.models import Team

    counts = team_member_counts()
    for team in db.session.scalars(select(Team).order_by(func.lower(Team.name))):
        manager = team.manager.email if team.manager else "-"
        parent = team.parent.name if team.parent else "-"
        members = counts.get(team.id, 0)
        click.echo(f"{team.name:<24} manager={manager} parent={parent} members={members}")


# mfa ----------------------------------------------------------------------------------


@click.group()
def mfa() -> None:
    """Require MFA for everyone or for the members of a role."""


@mfa.command("require")
@click.option("--all", "everyone", is_flag=True, help="Require MFA of every user.")
@click.option("--role", "role_slugs", multiple=True, help="Require MFA of a role's members.")
@click.option("--off", is_flag=True, help="Stop requiring it (for --all or the --role given).")
@with_app
def mfa_require(app: Flask, everyone: bool, role_slugs: tuple[str, ...], off: bool) -> None:
    """Require MFA (or, with --off, stop requiring it) for everyone or for roles."""
    from bastion.accounts import AccountError, find_role, set_mfa_required_for_all, set_role_mfa

    if everyone == bool(role_slugs):
        raise click.UsageError("Give either --all or --role SLUG (and --off to turn it off).")
    required = not off
    state = "required" if required else "no longer required"
    try:
        if everyone:
            set_mfa_required_for_all(required, actor=_actor())
            click.echo(f"MFA is {state} for everyone.")
            return
        for slug in role_slugs:
            find_role(slug)  # every slug is checked before anything changes
        for slug in role_slugs:
            set_role_mfa(slug, required, actor=_actor())
            click.echo(f"MFA is {state} for members of {slug}.")
    except AccountError as exc:
        raise _refusal(exc) from None


# tokens -------------------------------------------------------------------------------


@click.group()
def tokens() -> None:
    """Create personal API tokens."""


@tokens.command("create")
@click.option("--email", required=True, help="The user the token acts as.")
@click.option("--name", required=True, help="What the token is for (shown in the token list).")
@click.option(
    "--expires-days",
    type=int,
    default=None,
    help="Days until the token expires (default: it does not expire).",
)
@with_app
def tokens_create(app: Flask, email: str, name: str, expires_days: int | None) -> None:
    """Create a token and print it once; nothing else goes to standard output."""
    from bastion.tokens import create_token

    user = _find_user(email)
    if not user.active:
        raise click.ClickException(f"{user.email} is disabled; enable the user first.")
    try:
        _row, raw = create_token(user, name, expires_days=expires_days)
    except ValueError as exc:
        raise _refusal(exc) from None
    click.echo(f"Created the token {name!r} for {user.email}. It is shown only now:", err=True)
    click.echo(raw)


COMMANDS = (users, roles, teams, mfa, tokens)


def register(main: click.Group) -> None:
    """Attach the identity commands to the `bastion` command group."""
    for command in COMMANDS:
        main.add_command(command)
