"""Changing a user's password, and an administrator's forced reset.

Both end sessions on the server: whoever holds an old session (perhaps the one who
learned the old password) is signed out on their next request.
"""

from __future__ import annotations

import logging

from flask import current_app, has_request_context

from bastion import audit
from bastion.db import db
from bastion.mail import MailError, send_mail
from bastion.models import User, utcnow
from bastion.password_tokens import issue, link, reset_message
from bastion.runtime import platform
from bastion.sessions import end_all_sessions

log = logging.getLogger("bastion.credentials")


def change_password(
    user: User, new_password: str, *, actor: str, end_other_sessions: bool = True
) -> None:
    """Check the policy, store the new password and end the user's other sessions.

    Raises PasswordPolicyError with a sentence for the user. Inside a request the
    session making it survives (a user changing their own password stays signed in
    there); from the CLI every session ends. The caller checked the current password.
    """
    passwords = current_app.extensions["bastion.passwords"]
    passwords.check_policy(new_password, context=(user.email, user.name))
    user.password_hash = passwords.hash(new_password)
    user.password_changed_at = utcnow()
    user.must_change_password = False
    ended = 0
    if end_other_sessions:
        # end_all_sessions commits the new password together with the ended sessions.
        ended = end_all_sessions(user.id, "password_changed", keep_current=has_request_context())
    else:
        db.session.commit()
    audit.record(
        "auth.password_change",
        actor=actor,
        object_type="user",
        object_id=user.id,
        changes={"sessions_ended": ended} if ended else None,
    )


def force_password_reset(user: User, *, actor: str) -> str | None:
    """Make the user choose a new password, and sign them out everywhere now.

    The user keeps their current password for one more sign-in, after which they can do
    nothing but change it. When mail is on they are also emailed a reset link, for
    when they no longer know the current one. Returns None, or the reset link when mail
    is on but sending failed, for the administrator to hand over (shown once, never
    stored).
    """
    user.must_change_password = True
    ended = end_all_sessions(user.id, "password_reset_forced")  # commits
    emailed, handover = False, None
    if platform().settings.mail_enabled:
        url = link(issue(user, "reset"))
        try:
            send_mail(user.email, *reset_message(user, url, forced=True))
            emailed = True
        except MailError as exc:
            log.warning("The forced reset link could not be emailed: %s", exc)
            handover = url
    audit.record(
        "auth.password_reset_forced",
        actor=actor,
        object_type="user",
        object_id=user.id,
        changes={"sessions_ended": ended, "link_emailed": emailed},
    )
    return handover
