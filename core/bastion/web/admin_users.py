"""Users and teams, and the MFA requirement, for administrators.

Every change goes through :mod:`bastion.accounts`, the same service the CLI uses. Role
and team changes, forced password resets and MFA resets need a recent re-authentication;
each is its own POST so the decorator guards exactly the sensitive action. Only holders of
"*" may act on an account holding capabilities they lack.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select
from werkzeug.routing import BuildError

from bastion import accounts, authz, mfa_policy
from bastion.access import requires
from bastion.accounts import AccountError
from bastion.db import db
from bastion.models import Role, Team, User, as_utc
from bastion.reauth import recent_auth_required
from bastion.runtime import platform
from bastion.web.params import bounded_int

bp = Blueprint("admin_users", __name__, url_prefix="/admin")
PAGE_SIZE = 50
STATUSES = ("all", "active", "disabled")


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"local_time": local_time}


def local_time(moment: datetime | None) -> str:
    """A stored UTC time in the viewer's own time zone, or "never"."""
    if moment is None:
        return "never"
    moment = as_utc(moment)
    try:
        zone = ZoneInfo(current_user.time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _actor() -> str:
    return f"user:{current_user.id}"


def _user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _beyond_me(user: User) -> str | None:
    """Why the current user may not act on ``user``, or None.

    Someone who is not an administrator ("*") may not act on an account that holds
    capabilities they lack: resetting an administrator's MFA or password, or disabling
    them, would let a user manager weaken or take over a more powerful account.
    """
    if authz.unrestricted(current_user):
        return None
    missing = authz.held_capabilities(user) - authz.held_capabilities(current_user)
    if not missing:
        return None
    return (
        f"You cannot change the account of {user.email}: it holds permissions you do not "
        f"hold yourself ({', '.join(sorted(missing))}). Ask an administrator to do it."
    )


def _refuse_beyond_me(user: User):
    """The user page with a 403 and the reason, when the current user may not act on them."""
    reason = _beyond_me(user)
    if reason is None:
        return None
    flash(reason, "error")
    return _render_user(user, 403)


def _team_or_404(team_id: int) -> Team:
    team = db.session.get(Team, team_id)
    if team is None:
        abort(404)
    return team


def _all_roles() -> list[Role]:
    return list(db.session.scalars(select(Role).order_by(Role.label)))


def _all_teams() -> list[Team]:
    return list(db.session.scalars(select(Team).order_by(Team.name)))


def _form_choices() -> dict[str, Any]:
    return {
        "roles": _all_roles(),
        "teams": _all_teams(),
        "time_zones": accounts.time_zones(),
        "locales": accounts.SUPPORTED_LOCALES,
        "mail_enabled": platform().settings.mail_enabled,
    }


# Users --------------------------------------------------------------------------------


@bp.get("/users")
@requires("admin.users")
def users():
    text = request.args.get("q", "").strip()[:200]
    status = request.args.get("status", "all")
    if status not in STATUSES:
        status = "all"
    page = request.args.get("page", "1")
    page_number = bounded_int(page, minimum=1, maximum=100_000) or 1
    query = select(User)
    if text:
        pattern = f"%{text.lower()}%"
        query = query.where(
            or_(func.lower(User.email).like(pattern), func.lower(User.name).like(pattern))
        )
    if status != "all":
        query = query.where(User.active.is_(status == "active"))
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(
        db.session.scalars(
            query.order_by(func.lower(User.email))
            .limit(PAGE_SIZE)
            .offset((page_number - 1) * PAGE_SIZE)
        )
    )
    return render_template(
        "admin/users.html",
        users=rows,
        q=text,
        status=status,
        statuses=STATUSES,
        page=page_number,
        pages=max(1, -(-total // PAGE_SIZE)),
        total=total,
    )


@bp.get("/users/new")
@requires("admin.users")
@recent_auth_required
def new_user():
    # Re-authentication is asked for before the form is filled in, not after.
    return render_template(
        "admin/users_new.html",
        form={"time_zone": "UTC", "locale": "en", "must_change_password": "yes"},
        **_form_choices(),
    )


@bp.post("/users/new")
@requires("admin.users")
@recent_auth_required
def create_user():
    form = request.form
    invite = form.get("invite") == "yes"
    password = form.get("password", "")
    try:
        if not invite:
            if not password:
                raise AccountError(
                    "Enter a password for the new user, or tick "
                    "“Send an invitation instead of setting a password”."
                )
            if password != form.get("password_confirm", ""):
                raise AccountError("The two passwords do not match. Type them again.")
        user = accounts.create_user(
            email=form.get("email", ""),
            name=form.get("name", ""),
            password=None if invite else password,
            role_slugs=form.getlist("roles"),
            team_name=form.get("team") or None,
            time_zone=form.get("time_zone", "UTC"),
            locale=form.get("locale", "en"),
            actor=_actor(),
            granted_by=current_user,
            must_change_password=form.get("must_change_password") == "yes",
        )
    except AccountError as exc:
        flash(str(exc), "error")
        values = {k: v for k, v in form.items() if not k.startswith("password")}
        values["roles"] = form.getlist("roles")
        return render_template("admin/users_new.html", form=values, **_form_choices()), 422
    if invite:
        if platform().settings.mail_enabled:
            flash(f"{user.email} was invited; the invitation is on its way by email.", "success")
            return redirect(url_for("admin_users.user", user_id=user.id))
        # Mail is off: the link is shown on this answer only (never stored readable, never
        # put in a cookie); reloading would resubmit the form, which is refused.
        return render_template(
            "admin/users_invited.html", user=user, link=user.invitation_link
        ), 201
    flash(f"{user.email} can now sign in.", "success")
    return redirect(url_for("admin_users.user", user_id=user.id))


def _render_user(user: User, status: int = 200, form: dict[str, Any] | None = None):
    return render_template(
        "admin/users_edit.html",
        user=user,
        form=form or {"name": user.name, "time_zone": user.time_zone, "locale": user.locale},
        sessions=accounts.open_session_count(user),
        tokens=accounts.live_token_count(user),
        mfa_required=mfa_policy.mfa_required(user),
        is_self=user.id == current_user.id,
        access_url=_access_url(user),
        **_form_choices(),
    ), status


def _access_url(user: User) -> str | None:
    """The "why can this user see ..." page, when the access explainer is installed."""
    try:
        return url_for("admin_access.user_access", user_id=user.id)
    except BuildError:
        return None


@bp.get("/users/<int:user_id>")
@requires("admin.users")
def user(user_id: int):
    return _render_user(_user_or_404(user_id))


@bp.post("/users/<int:user_id>")
@requires("admin.users")
def update_user(user_id: int):
    user = _user_or_404(user_id)
    form = request.form
    try:
        accounts.update_profile(
            user,
            name=form.get("name", ""),
            time_zone=form.get("time_zone", ""),
            locale=form.get("locale", ""),
            actor=_actor(),
        )
    except AccountError as exc:
        flash(str(exc), "error")
        return _render_user(user, 422, form=dict(form))
    flash(f"Saved the profile of {user.email}.", "success")
    return redirect(url_for("admin_users.user", user_id=user.id))


@bp.post("/users/<int:user_id>/roles")
@requires("admin.users")
@recent_auth_required
def update_roles(user_id: int):
    user = _user_or_404(user_id)
    if (refused := _refuse_beyond_me(user)) is not None:
        return refused
    team_name = request.form.get("team") or None
    try:
        # Refuse an unknown or forbidden team before the roles change.
        accounts.check_team_change(user, team_name, granted_by=current_user)
        roles_changed = accounts.set_roles(
            user, request.form.getlist("roles"), actor=_actor(), granted_by=current_user
        )
        team_changed = accounts.set_team(user, team_name, actor=_actor(), granted_by=current_user)
    except AccountError as exc:
        flash(str(exc), "error")
        return _render_user(user, 422)
    if roles_changed or team_changed:
        flash(
            f"Saved the roles and team of {user.email}; their sessions pick up the change on "
            "their next request.",
            "success",
        )
    else:
        flash("Nothing changed.", "info")
    return redirect(url_for("admin_users.user", user_id=user.id))


@bp.post("/users/<int:user_id>/status")
@requires("admin.users")
def set_status(user_id: int):
    user = _user_or_404(user_id)
    if (refused := _refuse_beyond_me(user)) is not None:
        return refused
    action = request.form.get("action")
    if action not in {"enable", "disable"}:
        flash("Choose to enable or disable the account.", "error")
        return redirect(url_for("admin_users.user", user_id=user.id))
    try:
        accounts.set_active(user, action == "enable", actor=_actor())
    except AccountError as exc:
        flash(str(exc), "error")
        return _render_user(user, 409)
    if action == "disable":
        flash(f"{user.email} is disabled and has been signed out everywhere.", "success")
    else:
        flash(f"{user.email} is enabled and can sign in again.", "success")
    return redirect(url_for("admin_users.user", user_id=user.id))


@bp.post("/users/<int:user_id>/password-reset")
@requires("admin.users")
@recent_auth_required
def force_password_reset(user_id: int):
    from bastion.credentials import force_password_reset as force_reset

    user = _user_or_404(user_id)
    if (refused := _refuse_beyond_me(user)) is not None:
        return refused
    handover = force_reset(user, actor=_actor())
    if handover and user.id != current_user.id:
        if authz.unrestricted(current_user):
            # Mail is on but the reset link could not be sent: shown once, never stored.
            return render_template("admin/users_reset_link.html", user=user, link=handover)
        # Whoever holds the link can take the account over: only administrators see it.
        flash(
            f"{user.email} must choose a new password at their next sign-in and has been "
            "signed out everywhere, but the reset link could not be emailed. Ask an "
            "administrator to force the reset again and hand the link over.",
            "warning",
        )
        return redirect(url_for("admin_users.user", user_id=user.id))
    flash(
        f"{user.email} must choose a new password at their next sign-in and has been signed "
        "out everywhere.",
        "success",
    )
    if user.id == current_user.id:
        return redirect(url_for("auth.login"))
    return redirect(url_for("admin_users.user", user_id=user.id))


@bp.post("/users/<int:user_id>/mfa-reset")
@requires("admin.users")
@recent_auth_required
def reset_mfa(user_id: int):
    from bastion.mfa import reset_mfa as reset

    user = _user_or_404(user_id)
    if (refused := _refuse_beyond_me(user)) is not None:
        return refused
    if not user.mfa_enabled:
        flash(f"{user.email} has no MFA to reset.", "info")
        return redirect(url_for("admin_users.user", user_id=user.id))
    reset(user, actor=_actor())
    then = (
        "they must enrol again at their next sign-in"
        if mfa_policy.mfa_required(user)
        else "they can enrol again from their account page"
    )
    flash(
        f"The MFA of {user.email} is reset and they are signed out everywhere; {then}.", "success"
    )
    if user.id == current_user.id:
        return redirect(url_for("auth.login"))
    return redirect(url_for("admin_users.user", user_id=user.id))


@bp.post("/users/<int:user_id>/sign-out")
@requires("admin.users")
def sign_out_everywhere(user_id: int):
    user = _user_or_404(user_id)
    if (refused := _refuse_beyond_me(user)) is not None:
        return refused
    ended = accounts.sign_out_everywhere(user, actor=_actor())
    flash(
        f"Ended {ended} session{'s' if ended != 1 else ''} of {user.email}.",
        "success",
    )
    if user.id == current_user.id:
        return redirect(url_for("auth.login"))
    return redirect(url_for("admin_users.user", user_id=user.id))


# Teams --------------------------------------------------------------------------------


def _render_teams(status: int = 200, form: dict[str, Any] | None = None):
    teams, counts = _all_teams(), accounts.team_member_counts()
    return render_template(
        "admin/teams.html",
        rows=[{"team": t, "members": counts.get(t.id, 0)} for t in teams],
        teams=teams,
        form=form or {},
        managers=_manager_choices(),
    ), status


def _manager_choices() -> list[User]:
    return list(
        db.session.scalars(
            select(User).where(User.active.is_(True)).order_by(func.lower(User.email))
        )
    )


@bp.get("/teams")
@requires("admin.users")
def teams():
    return _render_teams()


@bp.post("/teams")
@requires("admin.users")
@recent_auth_required
def create_team():
    form = request.form
    try:
        team = accounts.create_team(
            form.get("name", ""),
            manager_email=form.get("manager") or None,
            parent_name=form.get("parent") or None,
            actor=_actor(),
            granted_by=current_user,
        )
    except AccountError as exc:
        flash(str(exc), "error")
        return _render_teams(422, dict(form))
    flash(f"Created the team {team.name}.", "success")
    return redirect(url_for("admin_users.teams"))


def _render_team(team: Team, status: int = 200, form: dict[str, Any] | None = None):
    members = list(
        db.session.scalars(
            select(User).where(User.team_id == team.id).order_by(func.lower(User.email))
        )
    )
    return render_template(
        "admin/teams_edit.html",
        team=team,
        members=members,
        children=accounts.sub_teams(team),
        teams=[t for t in _all_teams() if t.id != team.id],
        managers=_manager_choices(),
        form=form
        or {
            "name": team.name,
            "manager": team.manager.email if team.manager else "",
            "parent": team.parent.name if team.parent else "",
        },
    ), status


@bp.get("/teams/<int:team_id>")
@requires("admin.users")
def team(team_id: int):
    return _render_team(_team_or_404(team_id))


@bp.post("/teams/<int:team_id>")
@requires("admin.users")
@recent_auth_required
def update_team(team_id: int):
    team = _team_or_404(team_id)
    form = request.form
    try:
        changed = accounts.update_team(
            team,
            name=form.get("name", ""),
            manager_email=form.get("manager") or None,
            parent_name=form.get("parent") or None,
            actor=_actor(),
            granted_by=current_user,
        )
    except AccountError as exc:
        flash(str(exc), "error")
        return _render_team(team, 422, dict(form))
    flash(f"Saved the team {team.name}." if changed else "Nothing changed.", "success")
    return redirect(url_for("admin_users.team", team_id=team.id))


@bp.post("/teams/<int:team_id>/delete")
@requires("admin.users")
@recent_auth_required
def delete_team(team_id: int):
    team = _team_or_404(team_id)
    name = team.name
    try:
        accounts.delete_team(team, actor=_actor())
    except AccountError as exc:
        flash(str(exc), "error")
        return _render_team(team, 409)
    flash(f"Deleted the team {name}.", "success")
    return redirect(url_for("admin_users.teams"))


# Security: the MFA requirement --------------------------------------------------------


@bp.get("/security")
@requires("admin.roles")
def security():
    return render_template(
        "admin/security.html",
        required_for_all=mfa_policy.required_for_all(),
        roles=_all_roles(),
        without_mfa=_users_without_mfa(),
    )


def _users_without_mfa() -> int:
    return (
        db.session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.active.is_(True), User.mfa_secret.is_(None))
        )
        or 0
    )


@bp.post("/security")
@requires("admin.roles")
@recent_auth_required
def update_security():
    changed = accounts.set_mfa_requirement(
        for_all=request.form.get("required_for_all") == "yes",
        role_slugs=set(request.form.getlist("require_mfa")),
        actor=_actor(),
    )
    flash("Saved the MFA requirement." if changed else "Nothing changed.", "success")
    return redirect(url_for("admin_users.security"))
